"""Mirror states, arrival events and the status table, with the same three real registries as test_jobs.

Events go to loopback receivers (the harness's webhook sink, keeping raw bodies here to check the
signature); chat goes to the same kind of receiver standing in for Slack and Teams webhooks.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.template.loader import render_to_string
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from pytest_django.fixtures import Settings

from accounts.models import User
from registries.demo import images as im
from registries.mirror import jobs, status
from registries.mirror.copy import DestinationResult, Endpoint
from registries.models import BaseImage, BaseImageMirror, MirrorArrival, MirrorState
from tests import factories
from tests.registries.conftest import StartRegistry
from tests.registries.harness import WebhookSink
from tests.registries.mirror.test_jobs import MIRROR_REPO, Estate, make_estate

pytestmark = pytest.mark.django_db

State = MirrorState.State
SECRET = "mirror-event-test-key"


class RawSink(WebhookSink):
    """The harness's sink, also keeping each body as it arrived (the signature covers those bytes)."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[bytes] = []

    def record(self, path: str, headers: dict[str, str], body: bytes) -> int:
        answer = super().record(path, headers, body)
        if answer < 300:
            self.bodies.append(body)
        return answer

    def documents(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body in self.bodies]

    def events(self) -> list[dict[str, Any]]:
        return [event for document in self.documents() for event in document.get("events", [])]


@pytest.fixture
def hook() -> Iterator[RawSink]:
    sink = RawSink()
    yield sink
    sink.stop()


@pytest.fixture
def chat() -> Iterator[RawSink]:
    sink = RawSink()
    yield sink
    sink.stop()


@pytest.fixture
def estate(start_registry: StartRegistry, settings: Settings, hook: RawSink) -> Estate:
    settings.MIRROR_EVENT_WEBHOOKS = [hook.url]
    settings.MIRROR_EVENT_WEBHOOK_SECRET = SECRET
    settings.NOTIFY_SLACK_WEBHOOKS, settings.NOTIFY_TEAMS_WEBHOOKS = [], []
    made = make_estate(start_registry)
    made.push("3.12-slim", "3.12.1")
    made.push("3.13-slim", "3.13.0")
    return made


def run(estate: Estate, **options: Any) -> status.DeliveryResult:
    jobs.mirror_entry(estate.entry, **options)
    return status.deliver_arrivals()


def later(minutes: float) -> Any:
    return timezone.now() + timedelta(minutes=minutes)


# --- Arrival events -------------------------------------------------------------------------------------


def test_each_arrival_goes_out_once_as_a_signed_webhook_naming_the_region_and_the_pull_by_digest(
    estate: Estate, hook: RawSink
) -> None:
    digest = im.multi_platform_image("python", version="3.12.1").digest

    first = run(estate)
    run(estate)  # nothing new arrived: nothing is sent again
    status.deliver_arrivals(now=later(60))

    assert (first.sent, first.failed) == (4, 0)
    assert len(hook.deliveries) == 1
    delivery, body = hook.deliveries[0], hook.bodies[0]
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert delivery.headers["X-Customs-Signature-256"] == expected
    assert delivery.headers["X-Customs-Event"] == "base_image.arrived"
    events = hook.events()
    assert sorted((e["region"], e["tag"]) for e in events) == [
        ("eu-west", "3.12-slim"),
        ("eu-west", "3.13-slim"),
        ("us-east", "3.12-slim"),
        ("us-east", "3.13-slim"),
    ]
    (eu_312,) = [e for e in events if (e["region"], e["tag"]) == ("eu-west", "3.12-slim")]
    assert eu_312["type"] == "base_image.arrived"
    assert eu_312["base_image"] == estate.entry.name
    assert eu_312["digest"] == digest
    assert eu_312["pull"] == f"{estate.eu.host}/{MIRROR_REPO}@{digest}"
    assert (eu_312["registry"], eu_312["repository"]) == ("cache-eu", MIRROR_REPO)
    assert len({e["id"] for e in events}) == 4
    assert MirrorArrival.objects.filter(sent_at=None).count() == 0


def test_new_content_under_a_moved_tag_is_a_new_arrival_and_a_region_coming_back_is_not(
    estate: Estate, hook: RawSink
) -> None:
    run(estate)
    moved = estate.push("3.12-slim", "3.12.2")
    run(estate, dry_run=True)  # stale in both regions: nothing arrived
    assert len(hook.events()) == 4

    run(estate)

    new = hook.events()[4:]
    assert sorted((e["region"], e["tag"], e["digest"]) for e in new) == [
        ("eu-west", "3.12-slim", moved.digest),
        ("us-east", "3.12-slim", moved.digest),
    ]
    estate.us.stop()
    run(estate)  # us fails: no event
    assert len(hook.events()) == 6
    assert {row.state for (region, _), row in estate.states().items() if region == "us-east"} == {
        State.FAILED
    }


def test_a_region_down_gets_no_event_and_the_other_does(estate: Estate, hook: RawSink) -> None:
    estate.us.stop()

    run(estate)

    assert {e["region"] for e in hook.events()} == {"eu-west"}


def test_a_refused_delivery_is_retried_later_and_only_where_it_was_refused(
    estate: Estate, hook: RawSink, chat: RawSink, settings: Settings
) -> None:
    settings.NOTIFY_SLACK_WEBHOOKS = [chat.url]
    hook.status = 500

    first = run(estate)

    assert (first.sent, first.failed) == (0, 4)
    assert len(chat.deliveries) == 2  # Slack took it: one message per region
    arrival = MirrorArrival.objects.order_by("pk").first()
    assert arrival is not None
    assert arrival.attempts == 1
    assert arrival.error.startswith("event webhook ")
    assert arrival.error.endswith(": HTTP 500")
    assert hook.url not in arrival.error
    assert status.deliver_arrivals().sent == 0  # not due yet: the back-off holds

    hook.status = 200
    second = status.deliver_arrivals(now=later(5))

    assert (second.sent, second.failed) == (4, 0)
    assert len(hook.events()) == 4
    assert len(chat.deliveries) == 2  # not sent to Slack again
    assert status.deliver_arrivals(now=later(120)).sent == 0


def test_chat_says_what_arrived_in_which_region(estate: Estate, chat: RawSink, settings: Settings) -> None:
    settings.MIRROR_EVENT_WEBHOOKS = []
    settings.NOTIFY_SLACK_WEBHOOKS = [chat.url]
    settings.NOTIFY_TEAMS_WEBHOOKS = [chat.url + "/teams"]

    run(estate)

    slack = [d for d in chat.documents() if "text" in d]
    teams = [d for d in chat.documents() if d.get("type") == "message"]
    assert [d["text"].splitlines()[0] for d in slack] == [
        "Customs: 2 base image tags arrived in region eu-west",
        "Customs: 2 base image tags arrived in region us-east",
    ]
    digest = im.multi_platform_image("python", version="3.13.0").digest
    assert f"{estate.entry.name}:3.13-slim → {estate.us.host}/{MIRROR_REPO}@{digest}" in slack[1]["text"]
    card = teams[0]["attachments"][0]["content"]
    assert card["body"][0]["text"] == "Customs: 2 base image tags arrived in region eu-west"
    assert len(teams) == 2


def test_without_a_signing_key_events_are_not_sent_unsigned(
    estate: Estate, hook: RawSink, settings: Settings
) -> None:
    settings.MIRROR_EVENT_WEBHOOK_SECRET = ""

    result = run(estate)

    assert result.failed == 4
    assert hook.deliveries == []
    assert "CUSTOMS_MIRROR_EVENT_WEBHOOK_SECRET is not set" in MirrorArrival.objects.first().error  # type: ignore[union-attr]


def test_with_nowhere_to_send_arrivals_are_settled_not_kept(db: None, settings: Settings) -> None:
    settings.MIRROR_EVENT_WEBHOOKS, settings.NOTIFY_SLACK_WEBHOOKS, settings.NOTIFY_TEAMS_WEBHOOKS = (
        [],
        [],
        [],
    )
    mirror = a_mirror()
    status.observe(mirror, "1.0", upstream_digest=DIGEST_A, held=DIGEST_A, run=None)

    assert status.deliver_arrivals().sent == 1
    assert MirrorArrival.objects.get().sent_at is not None


# --- Recording ---------------------------------------------------------------------------------------------

DIGEST_A, DIGEST_B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def a_mirror(region: str = "eu-west") -> BaseImageMirror:
    entry = BaseImage.objects.create(name=f"docker.io/library/{factories.unique('img')}", tags=["1.*"])
    registry = factories.registry(endpoint="https://cache.example.test", region=region)
    return BaseImageMirror.objects.create(
        base_image=entry, registry=registry, repository="base/img", region=region
    )


def test_what_a_mirror_holds_decides_its_state(db: None) -> None:
    mirror = a_mirror()

    assert status.observe(mirror, "1.0", upstream_digest=DIGEST_A, held=None, run=None).state == State.MISSING
    stale = status.observe(mirror, "1.0", upstream_digest=DIGEST_B, held=DIGEST_A, run=None)
    assert (stale.state, stale.mirrored_digest) == (State.STALE, DIGEST_A)
    assert stale.reason == f"upstream moved 1.0 to {DIGEST_B[:19]}; the mirror still has {DIGEST_A[:19]}"
    failed = status.record_failure(
        mirror, "1.0", upstream_digest=DIGEST_B, reason="connection\nrefused", run=None
    )
    assert (failed.state, failed.mirrored_digest, failed.reason) == (
        State.FAILED,
        DIGEST_A,
        "connection refused",
    )
    present = status.observe(mirror, "1.0", upstream_digest=DIGEST_B, held=DIGEST_B, run=None)
    assert (present.state, present.reason, present.copied_at) == (State.PRESENT, "", None)
    assert MirrorState.objects.count() == 1


def test_a_copy_counts_only_when_the_tag_names_upstreams_digest(db: None) -> None:
    mirror = a_mirror()
    where = Endpoint("https://cache.example.test", "base/img")

    wrong = status.record_copy(
        mirror, "1.0", upstream_digest=DIGEST_A, result=DestinationResult(where, digest=DIGEST_B), run=None
    )
    assert wrong.state == State.FAILED
    assert "names sha256:bbbbbbbbbbbb, not sha256:aaaaaaaaaaaa" in wrong.reason
    refused = status.record_copy(
        mirror, "1.0", upstream_digest=DIGEST_A, result=DestinationResult(where, error="401 from x"), run=None
    )
    assert (refused.state, refused.reason) == (State.FAILED, "401 from x")
    assert not MirrorArrival.objects.exists()
    done = status.record_copy(
        mirror, "1.0", upstream_digest=DIGEST_A, result=DestinationResult(where, digest=DIGEST_A), run=None
    )
    assert (done.state, done.mirrored_digest) == (State.PRESENT, DIGEST_A)
    assert done.copied_at is not None


def test_an_arrival_is_written_once_per_mirror_tag_and_digest(db: None) -> None:
    mirror, other = a_mirror(), a_mirror("us-east")

    for _ in range(2):
        status.observe(mirror, "1.0", upstream_digest=DIGEST_A, held=DIGEST_A, run=None)
    status.record_failure(mirror, "1.0", upstream_digest=DIGEST_A, reason="down", run=None)
    status.observe(mirror, "1.0", upstream_digest=DIGEST_A, held=DIGEST_A, run=None)
    status.observe(mirror, "1.0", upstream_digest=DIGEST_B, held=DIGEST_B, run=None)
    status.observe(other, "1.0", upstream_digest=DIGEST_A, held=DIGEST_A, run=None)

    assert sorted(MirrorArrival.objects.values_list("mirror__region", "digest")) == [
        ("eu-west", DIGEST_A),
        ("eu-west", DIGEST_B),
        ("us-east", DIGEST_A),
    ]


def test_an_event_body_is_signed_over_its_exact_bytes() -> None:
    body = b'{"events":[]}'

    assert status.signature(body, "k") == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert status.signature(body, "k") != status.signature(body + b" ", "k")


# --- The page -----------------------------------------------------------------------------------------------


def detail(client: Client, user: User, entry: BaseImage) -> Any:
    client.force_login(user)
    return client.get(reverse("registries:base_image", args=[entry.pk]))


def partial(response: Any) -> str:
    """The status table as the entry page includes it, from the context the page's view built."""
    return render_to_string(
        "registries/base_images/_mirror_status.html", {"mirror_status": response.context["mirror_status"]}
    )


def test_the_entry_page_shows_each_regions_state_with_the_reason_and_the_pull_by_digest(
    estate: Estate, client: Client, developer: User
) -> None:
    run(estate)
    moved = estate.push("3.12-slim", "3.12.2")
    estate.us.stop()
    run(estate)  # eu: 3.12 copied anew; us: down

    response = detail(client, developer, estate.entry)

    assert response.status_code == 200
    page = response.context["mirror_status"]
    assert [(m.region, m.registry) for m in page.mirrors] == [
        ("eu-west", "cache-eu"),
        ("us-east", "cache-us"),
    ]
    eu, us = page.mirrors
    assert [(row.tag, row.state) for row in eu.rows] == [("3.12-slim", "present"), ("3.13-slim", "present")]
    assert eu.rows[0].pull == f"{estate.eu.host}/{MIRROR_REPO}@{moved.digest}"
    assert {row.state for row in us.rows} == {"failed"}
    assert all("connection refused" in row.reason for row in us.rows)
    html = partial(response)
    assert "eu-west" in html
    assert f"docker pull {estate.eu.host}/{MIRROR_REPO}@{moved.digest}" in html
    assert "connection refused" in html
    assert "2 failed" in html
    assert "Last run" in html


def test_a_stale_tag_reads_as_stale_with_both_digests(
    estate: Estate, client: Client, developer: User
) -> None:
    run(estate)
    moved = estate.push("3.12-slim", "3.12.2")
    run(estate, dry_run=True)

    response = detail(client, developer, estate.entry)

    html = partial(response)
    assert html.count("Stale (upstream tag moved)") == 2
    assert f"upstream moved 3.12-slim to {moved.digest[:19]}" in html
    assert "(compare only)" in html


def test_a_mirror_never_checked_says_so(db: None, client: Client, developer: User) -> None:
    mirror = a_mirror()

    response = detail(client, developer, mirror.base_image)

    html = partial(response)
    assert "Not checked yet" in html
    assert "has not run for this image yet" in html


def test_the_status_costs_the_same_queries_however_many_tags(
    db: None, client: Client, developer: User
) -> None:
    mirror = a_mirror()
    BaseImageMirror.objects.create(
        base_image=mirror.base_image, registry=factories.registry(region="us-east"), repository="base/img"
    )

    def queries() -> int:
        client.force_login(developer)
        with CaptureQueriesContext(connection) as captured:
            assert detail(client, developer, mirror.base_image).status_code == 200
        return len(captured)

    status.observe(mirror, "1.0", upstream_digest=DIGEST_A, held=DIGEST_A, run=None)
    few = queries()
    for n in range(20):
        status.observe(mirror, f"1.{n}", upstream_digest=DIGEST_B, held=None, run=None)
    assert queries() == few
