"""docker/distribution's notification envelope: {"events": [...]} (registry-apis.md §4.6)."""

from __future__ import annotations

import json
from typing import Any

from registries.connectors.base import INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES, parse_rfc3339
from registries.webhooks.events import MalformedEvent, PushEvent

ACTIONS = frozenset({"push", "delete", "pull"})


def parse(body: bytes) -> list[PushEvent]:
    """The manifest events in one POST. Blob events and mounts say nothing about the inventory."""
    try:
        envelope = json.loads(body)
    except ValueError:
        raise MalformedEvent("the body is not JSON") from None
    events = envelope.get("events") if isinstance(envelope, dict) else None
    if not isinstance(events, list):
        raise MalformedEvent('the body has no "events" list')
    return [event for raw in events if (event := _event(raw)) is not None]


def _event(raw: Any) -> PushEvent | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("target"), dict):
        raise MalformedEvent("an event without a target")
    target, action = raw["target"], raw.get("action", "")
    if action not in ACTIONS or not raw.get("id") or not target.get("repository"):
        return None
    media_type = target.get("mediaType", "")
    # A delete names the manifest by digest (then each removed tag) and carries no media type.
    if action != "delete" and media_type not in INDEX_MEDIA_TYPES | MANIFEST_MEDIA_TYPES:
        return None
    for field, limit in (("repository", 255), ("tag", 128), ("digest", 100)):
        if len(str(target.get(field, ""))) > limit:
            # Longer than any valid name; refusing it keeps a 400 from becoming a database error.
            raise MalformedEvent(f"the target's {field} is longer than {limit} characters")
    return PushEvent(
        event_id=str(raw["id"])[:100],
        action=action,
        repository=str(target["repository"]),
        digest=str(target.get("digest", "")),
        tag=str(target.get("tag", "")),
        media_type=media_type,
        at=parse_rfc3339(raw.get("timestamp")),
    )
