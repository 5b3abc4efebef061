"""Harbor webhooks, Default and CloudEvents payloads (registry-apis.md §9.4), parsed and applied."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import Client

from registries import services
from registries.demo import images as im
from registries.models import Artifact, Registry, Repository, Tag, WebhookEvent
from registries.tasks import apply_webhook_events
from registries.webhooks import PARSERS
from registries.webhooks.events import MalformedEvent
from registries.webhooks.harbor import parse
from tests.fakes.harbor import FakeHarbor
from tests.registries.harness import RunningRegistry

DIGEST = "sha256:" + "a" * 64
OCCURRED = datetime(2024, 5, 2, 10, 15, 30, tzinfo=UTC)


def default(kind: str, *resources: dict[str, str], repository: str = "team/app") -> dict[str, Any]:
    """A Default-format body as Harbor sends it (registry-apis.md §9.4)."""
    namespace, _, name = repository.partition("/")
    return {
        "type": kind,
        "occur_at": int(OCCURRED.timestamp()),
        "operator": "robot$team+ci",
        "event_data": {
            "resources": list(resources),
            "repository": {
                "date_created": 1700000000,
                "name": name,
                "namespace": namespace,
                "repo_full_name": repository,
                "repo_type": "private",
            },
        },
    }


def cloudevent(kind: str, *resources: dict[str, str], repository: str = "team/app") -> dict[str, Any]:
    """The same event in CloudEvents format: the Default body's event_data is `data`."""
    return {
        "specversion": "1.0",
        "id": "4b2a6f8e-0f1e-4d51-9f3c-2a6f4c1d9e77",
        "requestid": "1f0b7d2c-6c3e-4a8e-b5a2-9d0e3f1c2b44",
        "source": "/projects/3/webhook/policies/1",
        "type": kind,
        "datacontenttype": "application/json",
        "time": "2024-05-02T10:15:30Z",
        "operator": "robot$team+ci",
        "data": default("", *resources, repository=repository)["event_data"],
    }


def resource(tag: str = "1.4.2", digest: str = DIGEST) -> dict[str, str]:
    return {"digest": digest, "tag": tag, "resource_url": f"harbor.acme.test/team/app:{tag}"}


def body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


@pytest.mark.parametrize(
    ("payload", "action"),
    [
        (default("PUSH_ARTIFACT", resource()), "push"),
        (default("PULL_ARTIFACT", resource()), "pull"),
        (cloudevent("harbor.artifact.pushed", resource()), "push"),
        (cloudevent("harbor.artifact.pulled", resource()), "pull"),
    ],
)
def test_artifact_pushes_and_pulls_in_both_formats(payload: dict[str, Any], action: str) -> None:
    [event] = parse(body(payload))
    assert (event.action, event.repository, event.digest, event.tag, event.at) == (
        action,
        "team/app",
        DIGEST,
        "1.4.2",
        OCCURRED,
    )
    assert PARSERS["harbor"] is parse
    assert event.event_id.startswith("harbor:")


@pytest.mark.parametrize(
    "payload",
    [default("DELETE_ARTIFACT", resource()), cloudevent("harbor.artifact.deleted", resource())],
)
def test_a_deletion_removes_the_artifact_not_just_the_tag_it_was_shown_by(payload: dict[str, Any]) -> None:
    [event] = parse(body(payload))
    assert (event.action, event.digest, event.tag) == ("delete", DIGEST, "")


def test_each_resource_is_one_event_with_an_id_that_survives_redelivery() -> None:
    payload = default("PUSH_ARTIFACT", resource("1.0"), resource("latest"))
    first, second = parse(body(payload))
    assert [first.tag, second.tag] == ["1.0", "latest"]
    assert first.event_id != second.event_id
    assert [e.event_id for e in parse(body(payload))] == [first.event_id, second.event_id]  # Harbor retried
    later = {**payload, "occur_at": payload["occur_at"] + 60}  # the same tag pushed again later
    assert parse(body(later))[0].event_id != first.event_id
    assert len(first.event_id) <= 100  # fits WebhookEvent.event_id


def test_the_repository_may_be_given_by_namespace_and_name() -> None:
    payload = default("PUSH_ARTIFACT", resource(), repository="team/batch/worker")
    del payload["event_data"]["repository"]["repo_full_name"]
    payload["event_data"]["repository"].update(namespace="team", name="batch/worker")
    assert parse(body(payload))[0].repository == "team/batch/worker"


@pytest.mark.parametrize(
    "payload",
    [
        default("SCANNING_COMPLETED", resource()),
        default("QUOTA_WARNING", resource()),
        default("REPLICATION", resource()),
        cloudevent("harbor.scan.completed", resource()),
        cloudevent("harbor.tag_retention.finished", resource()),
    ],
)
def test_events_that_do_not_change_the_inventory_are_accepted_and_ignored(payload: dict[str, Any]) -> None:
    assert parse(body(payload)) == []


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"not json", "not JSON"),
        (body({"events": []}), 'no "type"'),
        (body({**default("PUSH_ARTIFACT", resource()), "event_data": None}), "without event data"),
        (body(default("PUSH_ARTIFACT")), "without resources"),
        (body(default("PUSH_ARTIFACT", {"resource_url": "x"})), "neither digest nor tag"),
        (body(default("PUSH_ARTIFACT", resource(tag="t" * 129))), "tag is longer than 128"),
        (
            body({**default("PUSH_ARTIFACT", resource()), "event_data": {"resources": [resource()]}}),
            "repository",
        ),
    ],
)
def test_bodies_customs_cannot_read_are_refused_with_the_reason(raw: bytes, problem: str) -> None:
    with pytest.raises(MalformedEvent, match=problem):
        parse(raw)


@pytest.mark.django_db
def test_harbor_webhooks_through_the_endpoint_update_the_inventory(
    client: Client, registry: RunningRegistry, harbor: FakeHarbor
) -> None:
    image = im.base_image("hooked")
    registry.pusher().push_image("team/app", image, tags=["1.4.2"])
    harbor.push_times[image.digest] = OCCURRED  # Harbor's own push time, which the event repeats
    saved = services.save_registry(
        Registry(name="harbor-eu", kind="harbor", endpoint=harbor.url),
        actor=None,
        public={"username": harbor.username},
        secrets={"password": harbor.password},
    )
    secret = services.rotate_webhook_secret(saved, actor=None)

    def post(payload: dict[str, Any], content_type: str = "application/json") -> dict[str, int]:
        # Harbor sends a target's auth_header as Authorization: set it to "Bearer <secret>".
        response = client.post(
            f"/hooks/registries/{saved.pk}/",
            body(payload),
            content_type=content_type,
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert response.status_code == 200, response.content
        result: dict[str, int] = response.json()
        return result

    pushed = default("PUSH_ARTIFACT", resource(digest=image.digest))
    assert post(pushed) == {"accepted": 1, "duplicates": 0}
    assert post(pushed) == {"accepted": 0, "duplicates": 1}  # Harbor's retry
    apply_webhook_events(list(WebhookEvent.objects.values_list("pk", flat=True)))
    tag = Tag.objects.select_related("artifact").get(repository__name="team/app", name="1.4.2")
    assert (tag.artifact.digest, tag.artifact.pushed_at) == (image.digest, OCCURRED)  # manifest via /v2/

    deleted = cloudevent("harbor.artifact.deleted", resource(digest=image.digest))
    assert post(deleted, content_type="application/cloudevents+json")["accepted"] == 1
    apply_webhook_events(list(WebhookEvent.objects.filter(action="delete").values_list("pk", flat=True)))
    assert not Artifact.objects.filter(repository__name="team/app").exists()
    assert Repository.objects.get(name="team/app").tag_count == 0
