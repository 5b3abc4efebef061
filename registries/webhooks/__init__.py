"""Registry notifications: parsers by format, each turning a request body into PushEvents."""

from __future__ import annotations

from collections.abc import Callable

from registries.webhooks import distribution
from registries.webhooks.events import PushEvent

PARSERS: dict[str, Callable[[bytes], list[PushEvent]]] = {"distribution": distribution.parse}
