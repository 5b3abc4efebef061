"""Artifact Registry's notifications: Pub/Sub push deliveries of the `gcr` topic (registry-apis.md §7.6).

A push subscription POSTs `{"message": {"data", "messageId", "publishTime", "attributes"},
"subscription"}`; `data` is base64 JSON `{"action": "INSERT"|"DELETE", "digest"?, "tag"?}` with
fully qualified references (`europe-west1-docker.pkg.dev/acme-prod/images/team/app@sha256:…`,
`gcr.io/acme-prod/app:1.4`). Repository names follow the connector: `<repository>/<image path>`,
and `gcr.io/<image path>` for gcr.io hosts, whose references carry no repository segment.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from registries.connectors.base import parse_rfc3339
from registries.webhooks.events import MalformedEvent, PushEvent

ACTIONS = {"INSERT": "push", "DELETE": "delete"}
GCR_HOSTS = frozenset({"gcr.io", "us.gcr.io", "eu.gcr.io", "asia.gcr.io"})


def parse(body: bytes) -> list[PushEvent]:
    """The one event a Pub/Sub push carries; other actions (none are documented) are ignored."""
    message = _message(body)
    data = _data(message)
    action = ACTIONS.get(str(data.get("action", "")))
    if action is None:
        return []
    digest_ref, tag_ref = str(data.get("digest") or ""), str(data.get("tag") or "")
    if not (digest_ref or tag_ref):
        raise MalformedEvent("the notification names neither a digest nor a tag")
    repository, digest, tag = _reference(digest_ref, tag_ref)
    if len(repository) > 255 or len(tag) > 128 or len(digest) > 100:
        raise MalformedEvent("the image reference is longer than any valid one")
    return [
        PushEvent(
            event_id=str(message.get("messageId") or message.get("message_id") or "")[:100],
            action=action,
            repository=repository,
            digest=digest,
            tag=tag,
            at=parse_rfc3339(message.get("publishTime")),
        )
    ]


def _message(body: bytes) -> dict[str, Any]:
    try:
        envelope = json.loads(body)
    except ValueError:
        raise MalformedEvent("the body is not JSON") from None
    message = envelope.get("message") if isinstance(envelope, dict) else None
    if not isinstance(message, dict) or not (message.get("messageId") or message.get("message_id")):
        raise MalformedEvent('the body has no Pub/Sub "message" with a messageId')
    return message


def _data(message: dict[str, Any]) -> dict[str, Any]:
    try:
        data = json.loads(base64.b64decode(str(message.get("data", "")), validate=True))
    except (binascii.Error, ValueError):
        raise MalformedEvent("the message data is not base64-encoded JSON") from None
    if not isinstance(data, dict):
        raise MalformedEvent("the message data is not a JSON object")
    return data


def _reference(digest_ref: str, tag_ref: str) -> tuple[str, str, str]:
    """(repository, digest, tag) from the fully qualified references; both name the same image."""
    digest = tag = ""
    name = ""
    if digest_ref:
        name, at, digest = digest_ref.rpartition("@")
        if not at or not digest.startswith("sha256:"):
            raise MalformedEvent("the digest reference has no @sha256: digest")
    if tag_ref:
        tag_name, colon, tag = tag_ref.rpartition(":")
        if not colon or "/" in tag or not tag:
            raise MalformedEvent("the tag reference has no :tag")
        name = name or tag_name
    return _repository(name), digest, tag


def _repository(name: str) -> str:
    # host/project/repository/path for *-docker.pkg.dev; host/project/path for gcr.io.
    host, _, rest = name.partition("/")
    _project, _, path = rest.partition("/")
    if host in GCR_HOSTS and path:
        return f"{host}/{path}"
    repository, _, image = path.partition("/")
    if not (repository and image):
        raise MalformedEvent("the image reference is not <host>/<project>/<repository>/<image>")
    return path
