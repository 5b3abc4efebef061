"""Docker Hub repository webhooks: parsed into pushes, resolved to digests through the fake Hub."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import Client

from registries import services
from registries.models import Registry, Tag, WebhookEvent
from registries.tasks import apply_webhook_events
from registries.webhooks import PARSERS, dockerhub
from registries.webhooks.events import MalformedEvent
from tests.fakes.dockerhub import FakeDockerHub
from tests.registries.harness import RunningRegistry
from tests.registries.test_dockerhub import public_config, seed


def payload(**push: Any) -> dict[str, Any]:
    """A webhook body as Docker Hub sends it (registry-apis.md §8.6)."""
    return {
        "callback_url": "https://registry.hub.docker.com/u/acme/app/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/",
        "push_data": {"pushed_at": 1714644930, "pusher": "ci-bot", "tag": "1.0", **push},
        "repository": {
            "comment_count": 0,
            "date_created": 1700000000,
            "description": "",
            "dockerfile": "",
            "full_description": "",
            "is_official": False,
            "is_private": True,
            "is_trusted": False,
            "name": "app",
            "namespace": "acme",
            "owner": "acme",
            "repo_name": "acme/app",
            "repo_url": "https://registry.hub.docker.com/u/acme/app/",
            "star_count": 0,
            "status": "Active",
        },
    }


def body(**push: Any) -> bytes:
    return json.dumps(payload(**push)).encode()


def test_a_push_names_the_repository_and_tag_but_no_digest() -> None:
    (event,) = dockerhub.parse(body())
    assert (event.action, event.repository, event.tag, event.digest) == ("push", "acme/app", "1.0", "")
    assert event.at == datetime(2024, 5, 2, 10, 15, 30, tzinfo=UTC)
    assert PARSERS["dockerhub"] is dockerhub.parse


def test_the_event_id_is_the_same_for_a_redelivery_and_differs_per_push() -> None:
    first, again = dockerhub.parse(body()), dockerhub.parse(body())
    assert first[0].event_id == again[0].event_id
    assert first[0].event_id.startswith("dockerhub-")
    assert len(first[0].event_id) <= 100
    assert dockerhub.parse(body(pushed_at=1714644931))[0].event_id != first[0].event_id
    assert dockerhub.parse(body(tag="1.1"))[0].event_id != first[0].event_id


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (json.dumps({"push_data": {"tag": "1"}}).encode(), '"push_data" and "repository"'),
        (body(tag=""), "no tag"),
        (body(tag="x" * 129), "longer than 128"),
    ],
)
def test_what_is_not_a_docker_hub_push_is_refused(raw: bytes, problem: str) -> None:
    with pytest.raises(MalformedEvent, match=problem):
        dockerhub.parse(raw)


def test_an_odd_push_time_is_unknown_rather_than_wrong() -> None:
    assert dockerhub.parse(body(pushed_at="yesterday"))[0].at is None
    assert dockerhub.parse(body(pushed_at=True))[0].at is None


@pytest.fixture
def hub(registry: RunningRegistry) -> Iterator[FakeDockerHub]:
    fake = FakeDockerHub(registry_url=registry.url).start()
    yield fake
    fake.stop()
    assert not fake.drift, "\n".join(fake.drift)


@pytest.mark.django_db
def test_a_webhook_with_the_secret_in_the_url_adds_the_tag_at_the_digest_the_hub_resolves(
    client: Client, registry: RunningRegistry, hub: FakeDockerHub
) -> None:
    images = seed(registry)
    saved = services.save_registry(
        Registry(name="hub-acme", kind="dockerhub", endpoint=hub.url),
        actor=None,
        public={key: value for key, value in public_config(hub).items() if key != "url"},
        secrets={"token": hub.token},
    )
    secret = services.rotate_webhook_secret(saved, actor=None)
    # Docker Hub cannot send headers: the secret is in the URL it is given.
    url = f"/hooks/registries/{saved.pk}/?token={secret}"
    assert client.post(url, body(), content_type="application/json").json() == {
        "accepted": 1,
        "duplicates": 0,
    }
    assert client.post(url, body(), content_type="application/json").json() == {
        "accepted": 0,
        "duplicates": 1,
    }
    assert (
        client.post(f"/hooks/registries/{saved.pk}/", body(), content_type="application/json").status_code
        == 401
    )

    apply_webhook_events(list(WebhookEvent.objects.values_list("pk", flat=True)))
    tag = Tag.objects.select_related("artifact").get(
        repository__registry=saved, repository__name="acme/app", name="1.0"
    )
    assert tag.artifact.digest == images["app"].digest
    # The Hub sent no digest; the event keeps the one the tag named when it was applied.
    assert WebhookEvent.objects.get(registry=saved).digest == images["app"].digest
    assert tag.artifact.pushed_at == datetime(2024, 5, 2, 10, 15, 30, tzinfo=UTC)
    assert WebhookEvent.objects.get().result.startswith("added sha256:")
