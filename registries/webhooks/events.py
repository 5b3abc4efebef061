from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


class MalformedEvent(ValueError):
    """A notification body Customs cannot read; the message says what is wrong with it."""


@dataclass(frozen=True)
class PushEvent:
    """One registry event, whatever the registry's format: push, delete or pull of a manifest."""

    event_id: str
    action: str  # "push", "delete" or "pull"
    repository: str
    digest: str = ""
    tag: str = ""
    media_type: str = ""
    at: datetime | None = None
