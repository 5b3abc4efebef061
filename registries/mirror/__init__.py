"""Regional mirrors of approved base images.

copy.py and client.py move images between registries and touch no database; jobs.py plans and
runs the mirror job and records what copy_image returns (status.py), tasks.py schedules it.
"""

from registries.mirror.client import DigestMismatch, Endpoint
from registries.mirror.copy import DestinationResult, copy_image, fallback_tag, resolve

__all__ = ["DestinationResult", "DigestMismatch", "Endpoint", "copy_image", "fallback_tag", "resolve"]
