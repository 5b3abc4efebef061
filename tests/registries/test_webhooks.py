"""Notifications from a real registry update the inventory without a full sync."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from registries import services, sync
from registries.demo import images as im
from registries.models import Artifact, Registry, Repository, Tag, WebhookEvent
from registries.tasks import apply_webhook_events
from registries.webhooks import distribution
from tests.registries.conftest import StartRegistry
from tests.registries.harness import Notifications, WebhookSink

pytestmark = pytest.mark.django_db


def envelopes_for(start_registry: StartRegistry, sink: WebhookSink) -> tuple[Registry, list[bytes], im.Image]:
    """Push to a real registry and keep the notification envelopes it sent (as the sink parsed them)."""
    running = start_registry(notifications=Notifications(sink.url, authorization="Bearer sink"))
    image = im.base_image("hooked")
    pusher = running.pusher()
    pusher.push_image("team/hooked", image, tags=["1.0"])
    sink.wait_for(lambda event: event["action"] == "push" and event["target"].get("tag") == "1.0")
    registry = services.save_registry(
        Registry(name="hooked", kind="distribution", endpoint=running.url), actor=None, public={}
    )
    return registry, [json.dumps({"events": d.events}).encode() for d in sink.deliveries], image


def post(client: Client, registry: Registry, body: bytes, secret: str) -> dict[str, int]:
    response = client.post(
        f"/hooks/registries/{registry.pk}/",
        body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 200, response.content
    result: dict[str, int] = response.json()
    return result


def test_a_push_event_adds_the_artifact_and_tag_within_one_request(
    client: Client, start_registry: StartRegistry, webhook_sink: WebhookSink
) -> None:
    registry, bodies, image = envelopes_for(start_registry, webhook_sink)
    secret = services.rotate_webhook_secret(registry, actor=None)
    accepted = sum(post(client, registry, body, secret)["accepted"] for body in bodies)
    assert accepted >= 1
    apply_webhook_events(list(WebhookEvent.objects.values_list("pk", flat=True)))
    tag = Tag.objects.select_related("artifact").get(repository__name="team/hooked", name="1.0")
    assert tag.artifact.digest == image.digest
    assert tag.artifact.pushed_at is not None
    assert Repository.objects.get(name="team/hooked").tag_count == 1
    assert "added" in WebhookEvent.objects.exclude(tag="").get().result


def test_redelivered_events_are_ignored(
    client: Client, start_registry: StartRegistry, webhook_sink: WebhookSink
) -> None:
    registry, bodies, _ = envelopes_for(start_registry, webhook_sink)
    secret = services.rotate_webhook_secret(registry, actor=None)
    first = [post(client, registry, body, secret) for body in bodies]
    again = [post(client, registry, body, secret) for body in bodies]
    assert sum(r["accepted"] for r in again) == 0
    assert sum(r["duplicates"] for r in again) == sum(r["accepted"] for r in first)


def test_a_delete_event_removes_the_artifact(
    client: Client, start_registry: StartRegistry, webhook_sink: WebhookSink
) -> None:
    running = start_registry(notifications=Notifications(webhook_sink.url))
    image = im.base_image("doomed")
    running.pusher().push_image("team/doomed", image, tags=["1"])
    registry = services.save_registry(
        Registry(name="doomed", kind="distribution", endpoint=running.url), actor=None, public={}
    )
    sync.sync_inventory(registry)
    assert Artifact.objects.filter(digest=image.digest).exists()
    running.pusher().delete_manifest("team/doomed", image.digest)
    webhook_sink.wait_for(lambda event: event["action"] == "delete")
    secret = services.rotate_webhook_secret(registry, actor=None)
    for delivery in webhook_sink.deliveries:
        post(client, registry, json.dumps({"events": delivery.events}).encode(), secret)
    apply_webhook_events(list(WebhookEvent.objects.values_list("pk", flat=True)))
    assert not Artifact.objects.filter(digest=image.digest).exists()
    assert Repository.objects.get(name="team/doomed").tag_count == 0


def test_the_endpoint_requires_the_registrys_secret(client: Client) -> None:
    registry = services.save_registry(
        Registry(name="locked", kind="distribution", endpoint="http://127.0.0.1:9"), actor=None, public={}
    )
    body = json.dumps({"events": []})
    assert (
        client.post(f"/hooks/registries/{registry.pk}/", body, content_type="application/json").status_code
        == 401
    )
    secret = services.rotate_webhook_secret(registry, actor=None)
    wrong = client.post(
        f"/hooks/registries/{registry.pk}/",
        body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret}x"},
    )
    assert wrong.status_code == 401
    assert post(client, registry, body.encode(), secret) == {"accepted": 0, "duplicates": 0}


def test_senders_without_headers_may_put_the_secret_in_the_url(client: Client) -> None:
    registry = services.save_registry(
        Registry(name="by-url", kind="distribution", endpoint="http://127.0.0.1:9"), actor=None, public={}
    )
    secret = services.rotate_webhook_secret(registry, actor=None)
    url = f"/hooks/registries/{registry.pk}/"
    body = json.dumps({"events": []})
    assert client.post(f"{url}?token={secret}", body, content_type="application/json").status_code == 200
    assert client.post(f"{url}?token={secret}x", body, content_type="application/json").status_code == 401
    # A header, when sent, is what counts: a right token in the URL does not rescue a wrong header.
    wrong_header = client.post(
        f"{url}?token={secret}",
        body,
        content_type="application/json",
        headers={"Authorization": "Bearer nope"},
    )
    assert wrong_header.status_code == 401


def test_a_malformed_notification_is_refused_with_a_reason(client: Client) -> None:
    registry = services.save_registry(
        Registry(name="mal", kind="distribution", endpoint="http://127.0.0.1:9"), actor=None, public={}
    )
    secret = services.rotate_webhook_secret(registry, actor=None)
    response = client.post(
        f"/hooks/registries/{registry.pk}/",
        b"{not json",
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 400
    assert "not JSON" in response.json()["error"]
    assert not WebhookEvent.objects.exists()


def test_blob_events_are_not_inventory() -> None:
    body = json.dumps(
        {
            "events": [
                {
                    "id": "1",
                    "action": "push",
                    "timestamp": "2026-01-02T03:04:05.123456789Z",
                    "target": {
                        "mediaType": "application/octet-stream",
                        "repository": "a",
                        "digest": "sha256:ab",
                    },
                }
            ]
        }
    ).encode()
    assert distribution.parse(body) == []


def test_an_over_long_name_is_refused_as_malformed(client: Client) -> None:
    registry = services.save_registry(
        Registry(name="long", kind="distribution", endpoint="http://127.0.0.1:9"), actor=None, public={}
    )
    secret = services.rotate_webhook_secret(registry, actor=None)
    event = {
        "id": "e1",
        "action": "push",
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "repository": "a/" + "b" * 300,
            "digest": "sha256:00",
        },
    }
    response = client.post(
        f"/hooks/registries/{registry.pk}/",
        json.dumps({"events": [event]}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 400
    assert "longer than 255" in response.json()["error"]
    assert not WebhookEvent.objects.exists()


def test_a_push_naming_only_the_tag_is_resolved_through_the_registry(start_registry: StartRegistry) -> None:
    # Docker Hub and Quay say which tag was pushed, never the digest.
    running = start_registry()
    image = im.base_image("tag-only")
    running.pusher().push_image("team/tag-only", image, tags=["7"])
    registry = services.save_registry(
        Registry(name="tag-only", kind="distribution", endpoint=running.url), actor=None, public={}
    )
    event = WebhookEvent.objects.create(
        registry=registry, event_id="hub-1", action="push", repository="team/tag-only", tag="7"
    )
    assert sync.apply_event(registry, event) == f"added {image.digest[:19]} as 7"
    assert Tag.objects.get(repository__name="team/tag-only", name="7").artifact.digest == image.digest
