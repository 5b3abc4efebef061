"""EventBridge "ECR Image Action" events, delivered by an API destination (registry-apis.md §6.5).

An EventBridge rule matching `source: aws.ecr`, `detail-type: ECR Image Action` sends each event,
unchanged, as the body of one POST; the API destination's connection adds the `Authorization:
Bearer` header with this registry's notification secret. Only successful pushes and deletes change
the inventory; failed actions, scans and replication events are acknowledged and ignored.

Every event names its `account` and `region`. A rule may send a whole account's events, in several
regions, to one registry's endpoint, and an ECR registry is one account in one region: an event of
another is not this registry's (registries/webhooks/views.py leaves it alone).
"""

from __future__ import annotations

import json
from typing import Any

from registries.connectors.base import ConnectorConfig, parse_rfc3339
from registries.connectors.ecr import EcrConfig
from registries.webhooks.events import MalformedEvent, Origin, PushEvent

DETAIL_TYPE = "ECR Image Action"
ACTIONS = {"PUSH": "push", "DELETE": "delete"}
LIMITS = (("repository-name", 255), ("image-tag", 128), ("image-digest", 100))


def parse(body: bytes) -> list[PushEvent]:
    """The image action in one delivery (a list of events is accepted too, for input transformers)."""
    try:
        envelope = json.loads(body)
    except ValueError:
        raise MalformedEvent("the body is not JSON") from None
    events = envelope if isinstance(envelope, list) else [envelope]
    return [event for raw in events if (event := _event(raw)) is not None]


def _event(raw: Any) -> PushEvent | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("detail"), dict):
        raise MalformedEvent("an EventBridge event has a detail object")
    if raw.get("source") != "aws.ecr" or raw.get("detail-type") != DETAIL_TYPE:
        return None  # another rule's event sent to the same destination: nothing for the inventory
    detail = raw["detail"]
    action = ACTIONS.get(str(detail.get("action-type", "")))
    if action is None or detail.get("result") != "SUCCESS" or not raw.get("id"):
        return None
    if not detail.get("repository-name"):
        raise MalformedEvent("an ECR Image Action without a repository-name")
    for field, limit in LIMITS:
        if len(str(detail.get(field, ""))) > limit:
            # Longer than any valid name; refusing it keeps a 400 from becoming a database error.
            raise MalformedEvent(f"the detail's {field} is longer than {limit} characters")
    return PushEvent(
        event_id=str(raw["id"])[:100],
        action=action,
        repository=str(detail["repository-name"]),
        digest=str(detail.get("image-digest", "")),
        tag=str(detail.get("image-tag", "")),
        media_type=str(detail.get("manifest-media-type", "")),
        at=parse_rfc3339(raw.get("time")),
        origin=_origin(raw),
    )


def origin(config: ConnectorConfig) -> Origin:
    """Where this registry's events happen: its account and region."""
    assert isinstance(config, EcrConfig)
    return Origin(account=config.aws_account, region=config.aws_region)


def _origin(raw: dict[str, Any]) -> Origin | None:
    # An input transformer may have left them out; then the event cannot be told apart and is kept.
    account, region = raw.get("account"), raw.get("region")
    if isinstance(account, str) and account and isinstance(region, str) and region:
        return Origin(account=account, region=region)
    return None
