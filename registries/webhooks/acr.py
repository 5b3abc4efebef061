"""Azure Container Registry webhooks: one event per POST, shaped like a distribution event (§5.5).

ACR posts `{"id", "timestamp", "action", "target": {...}, "request": {...}}` on its own, where
docker/distribution wraps events in `{"events": [...]}`. A geo-replicated registry has one webhook
per region, each posting the pushes that land there, so the same push may arrive once per region
with its own id: applying a push twice is harmless (the second finds the artifact known).
Helm chart actions (`chart_push`, `chart_delete`) and `quarantine` are not images and are ignored.
"""

from __future__ import annotations

import json

from registries.webhooks import distribution
from registries.webhooks.events import MalformedEvent, PushEvent


def parse(body: bytes) -> list[PushEvent]:
    try:
        event = json.loads(body)
    except ValueError:
        raise MalformedEvent("the body is not JSON") from None
    if isinstance(event, dict) and isinstance(event.get("events"), list):
        return distribution.parse(body)  # a relay that batches events the way distribution does
    if not isinstance(event, dict):
        raise MalformedEvent("the body is not one ACR event")
    if event.get("action") == "ping":
        return []  # the portal's "Ping" button: proves the URL and secret, changes nothing
    return distribution.parse(json.dumps({"events": [event]}).encode())
