"""Pub/Sub pushes of Artifact Registry's `gcr` topic (registry-apis.md §7.6) update the inventory."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from registries import services
from registries.demo import images as im
from registries.models import Registry, Tag, WebhookEvent
from registries.tasks import apply_webhook_events
from registries.webhooks import PARSERS
from registries.webhooks.artifact_registry import parse
from registries.webhooks.events import MalformedEvent
from tests.fakes.artifact_registry import LOCATION, PROJECT, FakeArtifactRegistry
from tests.registries.harness import RunningRegistry

HOST = f"{LOCATION}-docker.pkg.dev/{PROJECT}"
DIGEST = "sha256:" + "ab" * 32


def push(data: dict[str, Any], message_id: str = "9001") -> bytes:
    """A push subscription's delivery, as Pub/Sub wraps the topic's message."""
    encoded = base64.b64encode(json.dumps(data).encode()).decode()
    message = {
        "data": encoded,
        "messageId": message_id,
        "publishTime": "2026-10-01T08:30:00.123Z",
        "attributes": {},
    }
    return json.dumps(
        {"message": message, "subscription": f"projects/{PROJECT}/subscriptions/customs"}
    ).encode()


def test_an_upload_with_a_tag_is_a_push_of_that_digest_and_tag() -> None:
    body = push(
        {
            "action": "INSERT",
            "digest": f"{HOST}/images/team/app@{DIGEST}",
            "tag": f"{HOST}/images/team/app:1.4.2",
        }
    )
    [event] = PARSERS["gar"](body)
    assert (event.action, event.repository, event.digest, event.tag) == (
        "push",
        "images/team/app",
        DIGEST,
        "1.4.2",
    )
    assert (event.event_id, event.at and event.at.isoformat()) == ("9001", "2026-10-01T08:30:00.123000+00:00")


def test_deletes_and_gcr_io_references() -> None:
    [untag] = parse(push({"action": "DELETE", "tag": f"{HOST}/images/team/app:1.4.2"}))
    assert (untag.action, untag.repository, untag.digest, untag.tag) == (
        "delete",
        "images/team/app",
        "",
        "1.4.2",
    )
    [gone] = parse(push({"action": "DELETE", "digest": f"eu.gcr.io/{PROJECT}/legacy/tool@{DIGEST}"}))
    assert (gone.repository, gone.digest) == ("eu.gcr.io/legacy/tool", DIGEST)
    assert parse(push({"action": "SOMETHING_NEW", "digest": f"{HOST}/images/a@{DIGEST}"})) == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        json.dumps({"message": {"data": "e30="}}).encode(),  # no messageId
        json.dumps({"message": {"data": "%%%", "messageId": "1"}}).encode(),
        push({"action": "INSERT"}),
        push({"action": "INSERT", "digest": f"{HOST}/images/app@latest"}),
        push({"action": "INSERT", "digest": f"{LOCATION}-docker.pkg.dev/{PROJECT}/only-repo@{DIGEST}"}),
    ],
)
def test_unreadable_deliveries_are_refused(body: bytes) -> None:
    with pytest.raises(MalformedEvent):
        parse(body)


@pytest.fixture
def gar(registry: RunningRegistry) -> Iterator[FakeArtifactRegistry]:
    fake = FakeArtifactRegistry(registry_url=registry.url).start()
    fake.add_repository("images")
    yield fake
    fake.stop()
    assert not fake.drift, "\n".join(fake.drift)


@pytest.mark.django_db
def test_a_delivery_with_the_secret_in_the_url_adds_the_image(
    client: Client, registry: RunningRegistry, gar: FakeArtifactRegistry
) -> None:
    image = im.base_image("hooked")
    registry.pusher().push_image(f"{PROJECT}/images/team/app", image, tags=["1.0"])
    saved = services.save_registry(
        Registry(name="gar-hooks", kind="gar", endpoint=gar.url),
        actor=None,
        public={
            "project": PROJECT,
            "location": LOCATION,
            "api_url": gar.url,
            "iam_url": gar.url,
            "resource_manager_url": gar.url,
        },
        secrets={"service_account_key": gar.key_json()},
    )
    secret = services.rotate_webhook_secret(saved, actor=None)
    body = push(
        {
            "action": "INSERT",
            "digest": f"{HOST}/images/team/app@{image.digest}",
            "tag": f"{HOST}/images/team/app:1.0",
        }
    )
    # Pub/Sub push endpoints only know a URL: the secret rides in ?token=.
    response = client.post(
        f"/hooks/registries/{saved.pk}/?token={secret}", body, content_type="application/json"
    )
    assert response.json() == {"accepted": 1, "duplicates": 0}
    apply_webhook_events(list(WebhookEvent.objects.values_list("pk", flat=True)))
    tag = Tag.objects.select_related("artifact").get(
        repository__registry=saved, repository__name="images/team/app"
    )
    assert (tag.name, tag.artifact.digest) == ("1.0", image.digest)
    assert tag.artifact.pushed_at is not None  # uploadTime, read with dockerImages.get
