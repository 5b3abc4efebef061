"""Pub/Sub pushes of Artifact Registry's `gcr` topic (registry-apis.md §7.6) update the inventory.

Push authentication is checked against Google's ID-token signing keys as the loopback fake of Google
serves them (tests/fakes/artifact_registry.py signs the tokens with a key it generates).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.core.cache import cache
from django.test import Client

from registries import services
from registries.demo import images as im
from registries.models import Registry, Tag, WebhookEvent
from registries.tasks import apply_webhook_events
from registries.webhooks import PARSERS
from registries.webhooks.artifact_registry import parse
from registries.webhooks.events import MalformedEvent, Origin
from tests.fakes.artifact_registry import (
    CERTS_JWKS,
    CERTS_X509,
    LOCATION,
    PROJECT,
    PUSHER,
    FakeArtifactRegistry,
)
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
    ("name", "origin", "repository"),
    [
        (f"europe-west1-docker.pkg.dev/{PROJECT}/images/app", Origin(PROJECT, "europe-west1"), "images/app"),
        ("us-docker.pkg.dev/other-proj/images/app", Origin("other-proj", "us"), "images/app"),
        # Container Registry's hosts are Artifact Registry repositories in these multi-regions.
        (f"gcr.io/{PROJECT}/tool", Origin(PROJECT, "us"), "gcr.io/tool"),
        (f"us.gcr.io/{PROJECT}/tool", Origin(PROJECT, "us"), "us.gcr.io/tool"),
        (f"eu.gcr.io/{PROJECT}/tool", Origin(PROJECT, "europe"), "eu.gcr.io/tool"),
        (f"asia.gcr.io/{PROJECT}/tool", Origin(PROJECT, "asia"), "asia.gcr.io/tool"),
        # A domain-scoped project writes its colon as a slash.
        ("gcr.io/example.com/tools/app", Origin("example.com:tools", "us"), "gcr.io/app"),
        ("registry.example.com/acme/images/app", Origin("acme", ""), "images/app"),  # not Google's
    ],
)
def test_each_event_says_which_project_and_location_it_happened_in(
    name: str, origin: Origin, repository: str
) -> None:
    [event] = parse(push({"action": "INSERT", "digest": f"{name}@{DIGEST}"}))
    assert (event.origin, event.repository) == (origin, repository)


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


# --- events of another location or project ------------------------------------------------------


def save_gar(google: FakeArtifactRegistry, *, location: str = LOCATION, **public: Any) -> Registry:
    return services.save_registry(
        Registry(name=f"gar-{location}", kind="gar", endpoint=google.url, region=location),
        actor=None,
        public={"project": PROJECT, "location": location, **public},
        secrets={"service_account_key": google.key_json()},
    )


@pytest.fixture
def google() -> Iterator[FakeArtifactRegistry]:
    """Google's APIs on loopback with no docker host behind them: these tests read no image."""
    fake = FakeArtifactRegistry(registry_url="http://127.0.0.1:9").start()
    cache.clear()  # signing keys another test's fake served must not be remembered for this one
    yield fake
    fake.stop()
    assert not fake.drift, "\n".join(fake.drift)


def post(client: Client, registry: Registry, body: bytes, **headers: str) -> Any:
    url = f"/hooks/registries/{registry.pk}/"
    if token := headers.pop("token", ""):
        url += f"?token={token}"
    return client.post(url, body, content_type="application/json", headers=headers)


@pytest.mark.django_db
def test_events_of_another_location_or_project_are_acknowledged_and_left_alone(
    client: Client, google: FakeArtifactRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    registry = save_gar(google, location="europe-west1")
    secret = services.rotate_webhook_secret(registry, actor=None)
    ours = push({"action": "INSERT", "digest": f"europe-west1-docker.pkg.dev/{PROJECT}/images/app@{DIGEST}"})
    elsewhere = [
        f"us-central1-docker.pkg.dev/{PROJECT}/images/app@{DIGEST}",  # the same names, another location
        f"europe-west1-docker.pkg.dev/other-proj/images/app@{DIGEST}",  # the same location, another project
        f"eu.gcr.io/{PROJECT}/app@{DIGEST}",  # the multi-region europe, not europe-west1
    ]
    caplog.set_level(logging.INFO, logger="registries.webhooks.views")
    for number, reference in enumerate(elsewhere):
        response = post(
            client, registry, push({"action": "INSERT", "digest": reference}, str(number)), token=secret
        )
        # 2xx: refused, Pub/Sub would deliver it again for days.
        assert (response.status_code, response.json()) == (
            200,
            {"accepted": 0, "duplicates": 0, "not_ours": 1},
        )
    assert not WebhookEvent.objects.exists()
    assert "us-central1" in caplog.text
    assert "not ours" in caplog.text
    assert post(client, registry, ours, token=secret).json() == {"accepted": 1, "duplicates": 0}
    assert WebhookEvent.objects.get().repository == "images/app"


@pytest.mark.django_db
def test_gcr_io_hosts_belong_to_the_registry_of_their_multi_region(
    client: Client, google: FakeArtifactRegistry
) -> None:
    europe = save_gar(google, location="europe")
    secret = services.rotate_webhook_secret(europe, actor=None)
    answers = {
        host: post(
            client,
            europe,
            push({"action": "DELETE", "digest": f"{host}/{PROJECT}/tool@{DIGEST}"}, host),
            token=secret,
        ).json()
        for host in ("gcr.io", "us.gcr.io", "eu.gcr.io", "asia.gcr.io")
    }
    assert answers["eu.gcr.io"] == {"accepted": 1, "duplicates": 0}
    assert all(answers[host].get("not_ours") == 1 for host in ("gcr.io", "us.gcr.io", "asia.gcr.io"))
    assert list(WebhookEvent.objects.values_list("repository", flat=True)) == ["eu.gcr.io/tool"]


# --- push authentication: Google-signed ID tokens -----------------------------------------------


def endpoint(registry: Registry) -> str:
    """Pub/Sub's default audience: the push endpoint, as the portal publishes it."""
    return f"{settings.SITE_URL}/hooks/registries/{registry.pk}/"


def upload() -> bytes:
    return push({"action": "INSERT", "digest": f"{HOST}/images/team/app@{DIGEST}"})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.django_db
@pytest.mark.parametrize("certs", [CERTS_X509, CERTS_JWKS])
def test_a_push_signed_by_google_for_the_named_account_is_accepted(
    client: Client, google: FakeArtifactRegistry, certs: str
) -> None:
    registry = save_gar(google, push_service_account=PUSHER.upper(), push_certs_url=f"{google.url}{certs}")
    token = google.id_token(endpoint(registry))
    response = post(client, registry, upload(), **bearer(token))
    assert (response.status_code, response.json()) == (200, {"accepted": 1, "duplicates": 0})
    assert post(client, registry, upload(), **bearer(token)).json() == {"accepted": 0, "duplicates": 1}
    # Google's keys were read once: the second push was checked against them from the cache.
    assert google.requests_seen.count(f"GET {certs}") == 1


@pytest.mark.django_db
def test_a_configured_audience_replaces_the_endpoint_url(
    client: Client, google: FakeArtifactRegistry
) -> None:
    registry = save_gar(
        google,
        push_service_account=PUSHER,
        push_audience="customs-notifications",
        push_certs_url=f"{google.url}{CERTS_X509}",
    )
    assert (
        post(client, registry, upload(), **bearer(google.id_token("customs-notifications"))).status_code
        == 200
    )
    refused = post(client, registry, upload(), **bearer(google.id_token(endpoint(registry))))
    assert refused.status_code == 401
    assert "audience" in refused.json()["error"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("token_for", "problem"),
    [
        (lambda fake, url: fake.id_token(url + "other/"), "audience"),
        (
            lambda fake, url: fake.id_token(url, email=f"intruder@{PROJECT}.iam.gserviceaccount.com"),
            "service account",
        ),
        (lambda fake, url: fake.id_token(url, email_verified=False), "service account"),
        (lambda fake, url: fake.id_token(url, issued=datetime.now(UTC) - timedelta(hours=2)), "expired"),
        (
            lambda fake, url: fake.id_token(
                url, signed_by=rsa.generate_private_key(public_exponent=65537, key_size=2048)
            ),
            "signature",
        ),
        (lambda fake, url: "not.a.jwt", "not valid"),
    ],
    ids=["wrong audience", "wrong email", "email not verified", "expired", "wrong signature", "garbage"],
)
def test_a_token_google_did_not_sign_for_this_endpoint_and_account_is_refused(
    client: Client, google: FakeArtifactRegistry, token_for: Any, problem: str
) -> None:
    registry = save_gar(google, push_service_account=PUSHER, push_certs_url=f"{google.url}{CERTS_X509}")
    response = post(client, registry, upload(), **bearer(token_for(google, endpoint(registry))))
    assert response.status_code == 401
    assert problem in response.json()["error"]
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db
def test_the_secret_in_the_url_still_works_beside_a_token_customs_cannot_check(
    client: Client, google: FakeArtifactRegistry
) -> None:
    registry = save_gar(google, push_certs_url=f"{google.url}{CERTS_X509}")  # no push service account
    secret = services.rotate_webhook_secret(registry, actor=None)
    token = google.id_token(endpoint(registry))
    refused = post(client, registry, upload(), **bearer(token))
    assert refused.status_code == 401
    assert "names no push service account" in refused.json()["error"]
    # Pub/Sub with authentication on, and the secret in the push endpoint's URL.
    accepted = post(client, registry, upload(), token=secret, **bearer(token))
    assert accepted.json() == {"accepted": 1, "duplicates": 0}
    # A Customs secret in the header is still the header that counts: a wrong one is not rescued.
    wrong = post(client, registry, upload(), token=secret, **bearer(secret + "x"))
    assert wrong.status_code == 401
    assert google.requests_seen.count(f"GET {CERTS_X509}") == 0  # nothing needed Google's keys


@pytest.mark.django_db
def test_unreachable_signing_keys_ask_pub_sub_to_deliver_again(
    client: Client, google: FakeArtifactRegistry
) -> None:
    registry = save_gar(google, push_service_account=PUSHER, push_certs_url=f"{google.url}/nowhere")
    response = post(client, registry, upload(), **bearer(google.id_token(endpoint(registry))))
    assert response.status_code == 503  # not the sender's fault: Pub/Sub retries a 5xx
    assert "could not be read" in response.json()["error"]
    assert not WebhookEvent.objects.exists()
