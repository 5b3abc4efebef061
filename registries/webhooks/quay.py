"""Quay repository notifications, event `repo_push` (registry-apis.md §10).

    {"repository": "acme/app", "namespace": "acme", "name": "app", "docker_url": "quay.io/acme/app",
     "homepage": "https://quay.io/repository/acme/app", "updated_tags": ["1.4.2", "latest"]}

One PushEvent per updated tag. The body names no digest (sync.apply_event asks the registry what
each tag points at now), no time, no delivery id and no signature: Quay's webhook method can only be
given a URL, so the registry's secret rides in it as `?token=`.

Event ids: with nothing unique in the body, a push of `latest` today and one tomorrow send identical
bytes. An id made from the body alone would call tomorrow's a duplicate of today's for ever, so the id
also carries the ten-minute window the notification arrived in: a redelivery inside the window is
recognised (Quay's notification worker retries within a few minutes, unverified), and a redelivery
across a window boundary is applied twice, which is harmless because applying a push is idempotent.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from django.utils import timezone

from registries.webhooks.events import MalformedEvent, PushEvent

WINDOW_SECONDS = 600


def parse(body: bytes) -> list[PushEvent]:
    """The tags one repo_push notification reports as updated."""
    return parse_at(body, received=timezone.now())


def parse_at(body: bytes, *, received: datetime) -> list[PushEvent]:
    data = _body(body)
    repository = _repository(data)
    tags = data.get("updated_tags")
    if not isinstance(tags, list) or not all(isinstance(tag, str) and tag for tag in tags):
        raise MalformedEvent('"updated_tags" must be a list of tag names (only repo_push is understood)')
    window = int(received.timestamp()) // WINDOW_SECONDS
    events = []
    for tag in dict.fromkeys(tags):
        if len(tag) > 128:
            raise MalformedEvent("a tag is longer than 128 characters")
        key = f"{repository}:{tag}:{window}".encode()
        events.append(
            PushEvent(
                event_id="quay-" + hashlib.sha256(key).hexdigest()[:40],
                action="push",
                repository=repository,
                tag=tag,
            )
        )
    return events


def _body(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise MalformedEvent("the body is not JSON") from None
    if not isinstance(data, dict):
        raise MalformedEvent("the body is not a JSON object")
    return data


def _repository(data: dict[str, Any]) -> str:
    repository = data.get("repository")
    if not isinstance(repository, str) or "/" not in repository:
        # Older senders put only the name here; namespace and name together say the same.
        namespace, name = data.get("namespace"), data.get("name")
        if not (isinstance(namespace, str) and isinstance(name, str) and namespace and name):
            raise MalformedEvent('the body names no repository ("namespace/name")')
        repository = f"{namespace}/{name}"
    if len(repository) > 255:
        raise MalformedEvent("the repository is longer than 255 characters")
    return repository
