"""ACR webhooks: one distribution-shaped event per POST, one webhook per region (registry-apis.md §5.5)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import Client

from registries import services
from registries.demo import images as im
from registries.models import Registry, Tag, WebhookEvent
from registries.tasks import apply_webhook_events
from registries.webhooks import PARSERS
from registries.webhooks.acr import parse
from registries.webhooks.events import MalformedEvent
from tests.fakes.acr import FakeAcr
from tests.registries.harness import RunningRegistry

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DIGEST = "sha256:" + "ab" * 32


def event(action: str = "push", *, event_id: str = "5f0c-1", **target: Any) -> dict[str, Any]:
    """The webhook body as ACR documents it, with its .NET seven-digit fractions."""
    return {
        "id": event_id,
        "timestamp": "2026-05-02T10:15:30.5123456Z",
        "action": action,
        "target": {
            "mediaType": MANIFEST,
            "size": 1570,
            "digest": DIGEST,
            "length": 1570,
            "repository": "team/app",
            "tag": "1.4.2",
            **target,
        },
        "request": {"id": "9a1e", "host": "acme.azurecr.io", "method": "PUT", "useragent": "containerd/1.7"},
    }


def test_a_push_is_one_event_with_its_time() -> None:
    [push] = parse(json.dumps(event()).encode())
    assert (push.event_id, push.action, push.repository, push.tag, push.digest) == (
        "5f0c-1",
        "push",
        "team/app",
        "1.4.2",
        DIGEST,
    )
    assert push.at == datetime(2026, 5, 2, 10, 15, 30, 512345, tzinfo=UTC)
    assert PARSERS["acr"] is parse


def test_deletes_count_and_charts_pings_and_quarantine_do_not() -> None:
    [delete] = parse(json.dumps(event("delete", mediaType="", tag="")).encode())
    assert (delete.action, delete.digest) == ("delete", DIGEST)
    for action in ("chart_push", "chart_delete", "quarantine"):
        assert parse(json.dumps(event(action)).encode()) == []
    assert (
        parse(json.dumps({"id": "p", "timestamp": "2026-05-02T10:00:00Z", "action": "ping"}).encode()) == []
    )


def test_a_body_that_is_not_an_acr_event_is_malformed() -> None:
    with pytest.raises(MalformedEvent, match="not JSON"):
        parse(b"{")
    with pytest.raises(MalformedEvent, match="not one ACR event"):
        parse(b"[1, 2]")
    with pytest.raises(MalformedEvent, match="without a target"):
        parse(json.dumps({"id": "x", "action": "push"}).encode())


@pytest.fixture
def acr(registry: RunningRegistry, settings: Any) -> Iterator[FakeAcr]:
    fake = FakeAcr(registry_url=registry.url).start()
    settings.OUTBOUND_CA_BUNDLE = fake.ca_bundle
    yield fake
    fake.stop()
    assert not fake.drift, "\n".join(fake.drift)


@pytest.mark.django_db
def test_each_regions_webhook_brings_the_push_in_once(
    client: Client, registry: RunningRegistry, acr: FakeAcr
) -> None:
    image = im.base_image("hooked")
    registry.pusher().push_image("team/app", image, tags=["1.4.2"])
    saved = services.save_registry(
        Registry(name="acr-hooked", kind="acr", endpoint=acr.url),
        actor=None,
        public={k: v for k, v in acr.public_config().items() if k != "url"},
        secrets={"client_secret": acr.client_secret},
    )
    secret = services.rotate_webhook_secret(saved, actor=None)
    # The same push, from the West Europe and the East US webhooks: each with its own id.
    for event_id in ("weu-1", "eus-1"):
        body = json.dumps(event(event_id=event_id, digest=image.digest)).encode()
        response = client.post(
            f"/hooks/registries/{saved.pk}/",
            body,
            content_type="application/json",
            headers={"Authorization": f"Bearer {secret}"},  # a webhook custom header in ACR
        )
        assert response.status_code == 200, response.content
        assert response.json() == {"accepted": 1, "duplicates": 0}
    apply_webhook_events(list(WebhookEvent.objects.values_list("pk", flat=True)))
    tag = Tag.objects.select_related("artifact").get(repository__registry=saved, name="1.4.2")
    assert tag.artifact.digest == image.digest
    results = sorted(WebhookEvent.objects.values_list("result", flat=True))
    assert [r.split(" ", 1)[0] for r in results] == ["added", "known"]
