"""Artifact Registry's notifications: Pub/Sub push deliveries of the `gcr` topic (registry-apis.md §7.6).

A push subscription POSTs `{"message": {"data", "messageId", "publishTime", "attributes"},
"subscription"}`; `data` is base64 JSON `{"action": "INSERT"|"DELETE", "digest"?, "tag"?}` with
fully qualified references (`europe-west1-docker.pkg.dev/acme-prod/images/team/app@sha256:…`,
`gcr.io/acme-prod/app:1.4`). Repository names follow the connector: `<repository>/<image path>`,
and `gcr.io/<image path>` for gcr.io hosts, whose references carry no repository segment.

The topic carries every location of the project, and a Customs registry is one project in one
location: each event says where it happened (the host names the location, gcr.io hosts their
multi-region) so that events of another location or project are left alone (registries/webhooks/views.py).

A push subscription authenticates either with the registry's notification secret in its URL
(`?token=`) or, with push authentication on, with a Google-signed ID token for the service account
the registry's config names (registries/webhooks/pubsub.py).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any

from registries.connectors.artifact_registry import ArtifactRegistryConfig
from registries.connectors.base import ConnectorConfig, parse_rfc3339
from registries.webhooks import pubsub
from registries.webhooks.events import MalformedEvent, Origin, PushEvent, TokenRefused

ACTIONS = {"INSERT": "push", "DELETE": "delete"}
# Container Registry's hosts now live in Artifact Registry repositories of these multi-regions.
GCR_HOSTS = {"gcr.io": "us", "us.gcr.io": "us", "eu.gcr.io": "europe", "asia.gcr.io": "asia"}
DOCKER_HOST_SUFFIX = "-docker.pkg.dev"


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
    origin, repository, digest, tag = _reference(digest_ref, tag_ref)
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
            origin=origin,
        )
    ]


def origin(config: ConnectorConfig) -> Origin:
    """Where this registry's events happen: its project and location."""
    assert isinstance(config, ArtifactRegistryConfig)
    return Origin(account=config.project, region=config.location)


def verify_token(token: str, config: ConnectorConfig, endpoints: Sequence[str]) -> None:
    """Accept a push subscription's ID token for the registry's push service account, addressed to
    the configured audience or, by default, to this endpoint; else raise TokenRefused."""
    assert isinstance(config, ArtifactRegistryConfig)
    if not config.push_service_account:
        raise TokenRefused(
            "this registry names no push service account, so Google ID tokens are not accepted: "
            "name the subscription's service account in the registry's settings"
        )
    pubsub.verify(
        token,
        audiences=[config.push_audience] if config.push_audience else endpoints,
        email=config.push_service_account,
        certs_url=config.push_certs_url,
    )


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


def _reference(digest_ref: str, tag_ref: str) -> tuple[Origin, str, str, str]:
    """(origin, repository, digest, tag) from the fully qualified references; both name the same image."""
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
    host, project, path = _split(name)
    return Origin(account=project, region=_location(host)), _repository(host, path), digest, tag


def _split(name: str) -> tuple[str, str, str]:
    """(host, project, path below the project) of an image name."""
    host, _, rest = name.partition("/")
    project, _, path = rest.partition("/")
    if "." in project:
        # A domain-scoped project (example.com:tools) is written with a slash: gcr.io/example.com/tools/app.
        # Plain project ids have no dots, so a dot says the next segment is the rest of the id.
        scoped, _, path = path.partition("/")
        project = f"{project}:{scoped}"
    return host, project, path


def _location(host: str) -> str:
    # "" for a host Artifact Registry does not serve: it matches no registry's location.
    if host in GCR_HOSTS:
        return GCR_HOSTS[host]
    return host.removesuffix(DOCKER_HOST_SUFFIX) if host.endswith(DOCKER_HOST_SUFFIX) else ""


def _repository(host: str, path: str) -> str:
    # <repository>/<image path> under *-docker.pkg.dev; just <image path> under a gcr.io host.
    if host in GCR_HOSTS and path:
        return f"{host}/{path}"
    repository, _, image = path.partition("/")
    if not (repository and image):
        raise MalformedEvent("the image reference is not <host>/<project>/<repository>/<image>")
    return path
