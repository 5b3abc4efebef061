"""EventBridge "ECR Image Action" deliveries (registry-apis.md §6.5) through the notifications endpoint."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from django.test import Client

from registries import services
from registries.models import WebhookEvent
from registries.webhooks import PARSERS
from registries.webhooks.ecr import parse
from registries.webhooks.events import MalformedEvent, Origin
from tests import factories

DIGEST = "sha256:" + "c" * 64


def envelope(**detail: Any) -> dict[str, Any]:
    """The sample from registry-apis.md §6.5, with `detail` fields overridden."""
    return {
        "version": "0",
        "id": "13cde686-328b-6117-af20-0e5566167482",
        "detail-type": "ECR Image Action",
        "source": "aws.ecr",
        "account": "123456789012",
        "time": "2024-05-02T10:15:30Z",
        "region": "eu-west-1",
        "resources": [],
        "detail": {
            "result": "SUCCESS",
            "repository-name": "team/app",
            "image-digest": DIGEST,
            "action-type": "PUSH",
            "image-tag": "1.4.2",
            **detail,
        },
    }


def test_a_successful_push_becomes_a_push_event() -> None:
    [event] = parse(json.dumps(envelope()).encode())
    assert (event.action, event.repository, event.digest, event.tag) == ("push", "team/app", DIGEST, "1.4.2")
    assert event.at == datetime(2024, 5, 2, 10, 15, 30, tzinfo=UTC)
    assert event.event_id == "13cde686-328b-6117-af20-0e5566167482"
    assert PARSERS["ecr"] is parse


def test_a_delete_is_a_delete_and_failures_and_other_events_are_ignored() -> None:
    [deleted] = parse(json.dumps(envelope(**{"action-type": "DELETE"})).encode())
    assert deleted.action == "delete"
    assert parse(json.dumps(envelope(result="FAILURE")).encode()) == []
    scan = envelope() | {"detail-type": "ECR Image Scan"}
    assert parse(json.dumps(scan).encode()) == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"not json", "not JSON"),
        (json.dumps({"detail-type": "ECR Image Action"}).encode(), "detail object"),
        (json.dumps(envelope(**{"repository-name": ""})).encode(), "without a repository-name"),
        (json.dumps(envelope(**{"image-tag": "x" * 129})).encode(), "image-tag is longer"),
    ],
)
def test_malformed_deliveries_are_refused(body: bytes, problem: str) -> None:
    with pytest.raises(MalformedEvent, match=problem):
        parse(body)


@pytest.mark.django_db
def test_the_endpoint_takes_eventbridge_deliveries_with_the_bearer_secret(client: Client) -> None:
    registry = factories.registry(
        kind="ecr",
        endpoint="https://123456789012.dkr.ecr.eu-west-1.amazonaws.com",
        config={"role_arn": "arn:aws:iam::123456789012:role/customs"},
    )
    secret = services.rotate_webhook_secret(registry, actor=None)
    url = f"/hooks/registries/{registry.pk}/"
    body = json.dumps(envelope())
    # The API destination's connection sends the secret as an API-key header named Authorization.
    first = client.post(
        url, body, content_type="application/json", headers={"Authorization": f"Bearer {secret}"}
    )
    again = client.post(
        url, body, content_type="application/json", headers={"Authorization": f"Bearer {secret}"}
    )
    assert (first.json(), again.json()) == (
        {"accepted": 1, "duplicates": 0},
        {"accepted": 0, "duplicates": 1},
    )
    assert client.post(url, body, content_type="application/json").status_code == 401
    stored = WebhookEvent.objects.get(registry=registry)
    assert (stored.action, stored.repository, stored.digest, stored.tag) == (
        "push",
        "team/app",
        DIGEST,
        "1.4.2",
    )


def test_each_event_says_which_account_and_region_it_happened_in() -> None:
    [event] = parse(json.dumps(envelope()).encode())
    assert event.origin == Origin(account="123456789012", region="eu-west-1")
    transformed = {k: v for k, v in envelope().items() if k not in ("account", "region")}
    assert parse(json.dumps(transformed).encode())[0].origin is None  # an input transformer dropped them


@pytest.mark.django_db
def test_events_of_another_account_or_region_are_acknowledged_and_left_alone(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    registry = factories.registry(
        kind="ecr",
        endpoint="https://123456789012.dkr.ecr.eu-west-1.amazonaws.com",
        config={"role_arn": "arn:aws:iam::123456789012:role/customs"},
    )
    secret = services.rotate_webhook_secret(registry, actor=None)
    caplog.set_level(logging.INFO, logger="registries.webhooks.views")

    def post(event: dict[str, Any]) -> Any:
        return client.post(
            f"/hooks/registries/{registry.pk}/",
            json.dumps(event),
            content_type="application/json",
            headers={"Authorization": f"Bearer {secret}"},
        )

    elsewhere = [
        envelope() | {"id": "replica-region", "region": "us-east-1"},  # a rule in another region
        envelope() | {"id": "other-account", "account": "210987654321"},  # another account's bus
    ]
    for event in elsewhere:
        response = post(event)
        # 2xx: a refused delivery is retried by EventBridge, and this one will never be ours.
        assert (response.status_code, response.json()) == (
            200,
            {"accepted": 0, "duplicates": 0, "not_ours": 1},
        )
    assert not WebhookEvent.objects.exists()
    assert "us-east-1" in caplog.text
    assert "210987654321" in caplog.text
    assert post(envelope()).json() == {"accepted": 1, "duplicates": 0}
    assert WebhookEvent.objects.get().event_id == envelope()["id"]
