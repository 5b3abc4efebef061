"""Docker Hub repository webhooks: one push per POST, with the tag but no digest (registry-apis.md §8.6).

Docker Hub sends no event id, no signature and no event type (it only ever reports pushes), and it
cannot set headers: the registry's notification secret rides in the URL as `?token=` (see
registries/webhooks/views.py). The digest is resolved when the event is applied
(registries/sync.py asks the connector's `resolve()` for the tag's digest at that moment).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from registries.webhooks.events import MalformedEvent, PushEvent

LIMITS = {"repository": 255, "tag": 128}  # longer than any valid name: refused before the database


def parse(body: bytes) -> list[PushEvent]:
    """The push one Docker Hub webhook POST reports."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise MalformedEvent("the body is not JSON") from None
    if not isinstance(payload, dict):
        raise MalformedEvent("the body is not a JSON object")
    push, repository = payload.get("push_data"), payload.get("repository")
    if not isinstance(push, dict) or not isinstance(repository, dict):
        raise MalformedEvent('a Docker Hub webhook has "push_data" and "repository" objects')
    name, tag = repository.get("repo_name"), push.get("tag")
    if not isinstance(name, str) or not name or not isinstance(tag, str) or not tag:
        raise MalformedEvent("the push names no repository (repo_name) or no tag")
    for field, value in (("repository", name), ("tag", tag)):
        if len(value) > LIMITS[field]:
            raise MalformedEvent(f"the push's {field} is longer than {LIMITS[field]} characters")
    at = _epoch(push.get("pushed_at"))
    return [
        PushEvent(
            event_id=_event_id(payload.get("callback_url"), push.get("pushed_at"), name, tag),
            action="push",
            repository=name,
            tag=tag,
            at=at,
        )
    ]


def _event_id(callback: Any, pushed_at: Any, repository: str, tag: str) -> str:
    # Without an id from Docker Hub, the same push redelivered must get the same one: the callback
    # URL is unique per delivery target and hook, and the push time and tag name the push itself.
    material = "\n".join(str(part) for part in (callback or "", pushed_at or "", repository, tag))
    return "dockerhub-" + hashlib.sha256(material.encode()).hexdigest()[:40]


def _epoch(value: Any) -> datetime | None:
    # Docker Hub writes pushed_at as Unix seconds (an integer, sometimes a float).
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
