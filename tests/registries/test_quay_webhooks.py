"""Quay repo_push notifications: parsed per tag, resolved to digests through the registry, deduplicated."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from registries import services
from registries.demo import images as im
from registries.models import Registry, Tag, WebhookEvent
from registries.tasks import apply_webhook_events
from registries.webhooks import PARSERS
from registries.webhooks.events import MalformedEvent
from registries.webhooks.quay import parse_at
from tests.fakes.quay import FakeQuay
from tests.registries.harness import RunningRegistry

NOW = datetime(2026, 11, 26, 10, 0, 5, tzinfo=UTC)


@pytest.fixture
def quay(registry: RunningRegistry) -> Iterator[FakeQuay]:
    fake = FakeQuay(registry_url=registry.url).start()
    yield fake
    fake.stop()
    assert not fake.drift, "\n".join(fake.drift)


def test_one_event_per_updated_tag_without_a_digest(registry: RunningRegistry, quay: FakeQuay) -> None:
    events = parse_at(quay.repo_push("acme/app", ["1.0", "latest", "1.0"]), received=NOW)
    assert [(e.action, e.repository, e.tag, e.digest) for e in events] == [
        ("push", "acme/app", "1.0", ""),
        ("push", "acme/app", "latest", ""),
    ]
    assert len({e.event_id for e in events}) == 2
    assert PARSERS["quay"] is not None


def test_event_ids_are_stable_for_redeliveries_and_new_for_later_pushes(
    registry: RunningRegistry, quay: FakeQuay
) -> None:
    body = quay.repo_push("acme/app", ["latest"])
    first = parse_at(body, received=NOW)[0].event_id
    assert parse_at(body, received=NOW + timedelta(minutes=3))[0].event_id == first  # a retry
    assert parse_at(body, received=NOW + timedelta(days=1))[0].event_id != first  # a new push of latest


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (json.dumps({"repository": "app", "updated_tags": ["1"]}).encode(), "names no repository"),
        (json.dumps({"repository": "acme/app", "build_id": "x"}).encode(), "updated_tags"),
        (json.dumps({"repository": "acme/app", "updated_tags": [""]}).encode(), "updated_tags"),
        (json.dumps({"repository": "acme/app", "updated_tags": ["t" * 129]}).encode(), "128 characters"),
    ],
)
def test_bodies_that_are_not_repo_push_are_refused(body: bytes, problem: str) -> None:
    with pytest.raises(MalformedEvent, match=problem):
        parse_at(body, received=NOW)


@pytest.mark.django_db
def test_a_notification_updates_the_inventory_through_the_registry(
    client: Client, registry: RunningRegistry, quay: FakeQuay
) -> None:
    image = im.base_image("hooked")
    registry.pusher().push_image("acme/app", image, tags=["1.0"])
    saved = services.save_registry(
        Registry(name="quay-hooked", kind="quay", endpoint=quay.url),
        actor=None,
        public={"namespaces": "acme", "registry_username": quay.robot_name},
        secrets={"token": quay.token, "registry_password": quay.robot_token},
    )
    secret = services.rotate_webhook_secret(saved, actor=None)
    body = quay.repo_push("acme/app", ["1.0"])
    # Quay's webhook is a URL and nothing else: the secret rides in it.
    url = f"/hooks/registries/{saved.pk}/?token={secret}"
    first = client.post(url, body, content_type="application/json")
    again = client.post(url, body, content_type="application/json")
    assert (first.json(), again.json()) == (
        {"accepted": 1, "duplicates": 0},
        {"accepted": 0, "duplicates": 1},
    )

    apply_webhook_events(list(WebhookEvent.objects.values_list("pk", flat=True)))
    tag = Tag.objects.select_related("artifact").get(repository__registry=saved, name="1.0")
    assert tag.artifact.digest == image.digest  # resolved with a HEAD through the fake's /v2
    assert "added" in WebhookEvent.objects.get().result
