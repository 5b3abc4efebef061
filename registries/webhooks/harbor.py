"""Harbor webhooks, in either payload format a webhook target may choose (registry-apis.md §9.4).

- Default: `{"type": "PUSH_ARTIFACT", "occur_at": <epoch s>, "operator", "event_data": {...}}`;
- CloudEvents: `{"specversion": "1.0", "id", "type": "harbor.artifact.pushed", "time", "data": {...}}`.

Both carry the same `event_data`: the repository and one resource per artifact (digest and tag).
Only artifact pushes, pulls and deletions change the inventory; scans, quotas, replication and
retention notices are accepted and ignored.

The Default format has no event id, so one is derived from what the event says (type, time,
repository, digest, tag): Harbor retrying a delivery sends the same body and is recognised.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from registries.connectors.base import parse_rfc3339
from registries.webhooks.events import MalformedEvent, PushEvent

DEFAULT_TYPES = {"PUSH_ARTIFACT": "push", "PULL_ARTIFACT": "pull", "DELETE_ARTIFACT": "delete"}
CLOUDEVENT_TYPES = {
    "harbor.artifact.pushed": "push",
    "harbor.artifact.pulled": "pull",
    "harbor.artifact.deleted": "delete",
}
LIMITS = (("repository", 255), ("tag", 128), ("digest", 100))


def parse(body: bytes) -> list[PushEvent]:
    """The artifact events in one Harbor webhook POST, in either format."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise MalformedEvent("the body is not JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        raise MalformedEvent('the body is not a Harbor event (no "type")')
    if "specversion" in payload:
        action = CLOUDEVENT_TYPES.get(payload["type"])
        data, at = payload.get("data"), parse_rfc3339(payload.get("time"))
        event_id = str(payload.get("id") or "")
    else:
        action = DEFAULT_TYPES.get(payload["type"])
        data, at, event_id = payload.get("event_data"), _epoch(payload.get("occur_at")), ""
    if action is None:
        return []  # scans, quotas, replication, retention: nothing for the inventory
    if not isinstance(data, dict):
        raise MalformedEvent("an artifact event without event data")
    repository = _repository(data.get("repository"))
    resources = data.get("resources")
    if not isinstance(resources, list) or not resources:
        raise MalformedEvent("an artifact event without resources")
    return [_event(payload["type"], event_id, action, repository, raw, at) for raw in resources]


def _repository(raw: Any) -> str:
    if not isinstance(raw, dict):
        raise MalformedEvent("an artifact event without a repository")
    name = raw.get("repo_full_name") or (
        f"{raw['namespace']}/{raw['name']}" if raw.get("namespace") and raw.get("name") else ""
    )
    if not isinstance(name, str) or not name:
        raise MalformedEvent("an artifact event without a repository name")
    return name


def _event(
    kind: str, event_id: str, action: str, repository: str, raw: Any, at: datetime | None
) -> PushEvent:
    if not isinstance(raw, dict):
        raise MalformedEvent("a resource that is not an object")
    digest, tag = str(raw.get("digest") or ""), str(raw.get("tag") or "")
    if not digest and not tag:
        raise MalformedEvent("a resource with neither digest nor tag")
    if action == "delete" and digest:
        # DELETE_ARTIFACT removes the artifact with all its tags; the tag is only the one it was shown by.
        tag = ""
    values = {"repository": repository, "tag": tag, "digest": digest}
    for field, limit in LIMITS:
        if len(values[field]) > limit:
            # Longer than any valid name; refusing it keeps a 400 from becoming a database error.
            raise MalformedEvent(f"the resource's {field} is longer than {limit} characters")
    # One id per resource: a CloudEvent's id names the whole delivery, which may list several.
    facts = "\n".join((kind, event_id, at.isoformat() if at else "", repository, digest, tag))
    return PushEvent(
        event_id="harbor:" + hashlib.sha256(facts.encode()).hexdigest()[:40],
        action=action,
        repository=repository,
        digest=digest,
        tag=tag,
        at=at,
    )


def _epoch(value: object) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return datetime.fromtimestamp(value, tz=UTC)
