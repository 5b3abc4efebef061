"""Inventory, credentials, grants, regions and events of every kind appear on the pages people use.

Each kind is synced against its fake by test_sync_reads_only.py's arrangement, which furnishes a
credential, a grant and a replication link wherever the kind reports them. Then one push notification
in the kind's own format goes to the notifications endpoint, and a reviewer reads the registry page,
the repository browser and page, and the credential list. Expected names are those the arrangements
give the fakes, so a page that drops a kind's rows fails here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from accounts.models import User
from registries import services
from registries.demo import images as im
from registries.models import Registry, WebhookEvent
from registries.tasks import apply_webhook_events
from tests.fakes.aws import (
    aws_answers_fixture,  # noqa: F401  (autouse: checks every AWS answer in this module)
    aws_requests_fixture,  # noqa: F401
    moto_fixture,  # noqa: F401
    moto_server_fixture,  # noqa: F401
    put_image,
)
from tests.fakes.aws import client as aws_client
from tests.registries import test_sync_reads_only as source
from tests.registries.conftest import StartRegistry
from tests.registries.harness import Notifications, RunningRegistry, WebhookSink
from tests.registries.test_acr_webhooks import event as acr_event
from tests.registries.test_artifact_registry_webhooks import HOST as GAR_HOST
from tests.registries.test_artifact_registry_webhooks import push as pubsub_push
from tests.registries.test_dockerhub_webhooks import body as hub_push
from tests.registries.test_ecr_webhooks import envelope as eventbridge
from tests.registries.test_harbor_webhooks import default as harbor_push
from tests.registries.test_harbor_webhooks import resource as harbor_resource
from tests.registries.test_registry_credentials_pages import row_of

pytestmark = pytest.mark.django_db

HOOKED = "hooked"  # the tag each kind's notification brings in, pushed after the sync
SYNCED_TAGS = ("1", "latest")  # what source.pushed tags every image with
SYNCED_REPOSITORIES = 2  # each arrangement pushes two; the notification adds a tag, not a repository


@dataclass(frozen=True)
class Arranged:
    """What one kind's fake holds, as the pages should show it once synced."""

    repository: str
    credential: str | None  # None: the kind has no credentials API
    grant: str | None  # a principal the registry reports a grant for; None: the kind reports none
    replication: tuple[str, ...] | None  # cells of one region or replication row; None: it has none
    # Pushes `HOOKED` into `repository` and posts the kind's notification of it; returns the image.
    notify: Callable[[Client, Registry], im.Image]


Arrangement = Callable[[pytest.FixtureRequest], Arranged]


@pytest.fixture
def registry(start_registry: StartRegistry, webhook_sink: WebhookSink) -> RunningRegistry:
    """The store behind every fake; it notifies the sink, so distribution's event is its own envelope."""
    return start_registry(notifications=Notifications(webhook_sink.url))


def post(client: Client, saved: Registry, body: bytes, *, in_url: bool = False) -> None:
    """Deliver as the kind does: the secret as a bearer header, or in the URL for senders without headers."""
    secret = services.rotate_webhook_secret(saved, actor=None)
    url = reverse("webhooks:registry", args=[saved.pk])
    if in_url:
        response = client.post(f"{url}?token={secret}", body, content_type="application/json")
    else:
        headers = {"Authorization": f"Bearer {secret}"}
        response = client.post(url, body, content_type="application/json", headers=headers)
    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 1, response.json()


def push_hooked(store: RunningRegistry, path: str) -> im.Image:
    image = im.base_image(f"{HOOKED}-{path.replace('/', '-')}")
    store.pusher().push_image(path, image, tags=[HOOKED])
    return image


# --- one arrangement per kind: test_sync_reads_only.py's, and the kind's notification -------------


def distribution(request: pytest.FixtureRequest) -> Arranged:
    store = source.distribution(request).vendor
    sink: WebhookSink = request.getfixturevalue("webhook_sink")

    def notify(client: Client, saved: Registry) -> im.Image:
        image = push_hooked(store, "team/app")
        sent = sink.wait_for(lambda e: e["action"] == "push" and e["target"].get("tag") == HOOKED)
        post(client, saved, json.dumps({"events": [sent]}).encode())
        return image

    return Arranged("team/app", None, None, None, notify)


def harbor(request: pytest.FixtureRequest) -> Arranged:
    source.harbor(request)
    store: RunningRegistry = request.getfixturevalue("registry")

    def notify(client: Client, saved: Registry) -> im.Image:
        image = push_hooked(store, "payments/api")
        pushed = harbor_push(
            "PUSH_ARTIFACT", harbor_resource(tag=HOOKED, digest=image.digest), repository="payments/api"
        )
        post(client, saved, json.dumps(pushed).encode())
        return image

    return Arranged(
        "payments/api",
        "robot$payments+deployer",
        "alice",
        ("to-dr", "https://harbor-dr.example.test"),
        notify,
    )


def dockerhub(request: pytest.FixtureRequest) -> Arranged:
    source.dockerhub(request)
    store: RunningRegistry = request.getfixturevalue("registry")

    def notify(client: Client, saved: Registry) -> im.Image:
        image = push_hooked(store, "acme/app")
        post(client, saved, hub_push(tag=HOOKED), in_url=True)
        return image

    return Arranged("acme/app", "release-bot", "alice", None, notify)


def quay(request: pytest.FixtureRequest) -> Arranged:
    fake = source.quay(request).vendor
    store: RunningRegistry = request.getfixturevalue("registry")

    def notify(client: Client, saved: Registry) -> im.Image:
        image = push_hooked(store, "acme/app")
        post(client, saved, fake.repo_push("acme/app", [HOOKED]), in_url=True)
        return image

    return Arranged("acme/app", "acme+ci", "acme/devs", ("mirror.example.test/upstream/worker",), notify)


def acr(request: pytest.FixtureRequest) -> Arranged:
    source.acr(request)
    store: RunningRegistry = request.getfixturevalue("registry")

    def notify(client: Client, saved: Registry) -> im.Image:
        image = push_hooked(store, "payments/api")
        event = acr_event(event_id="weu-hooked", digest=image.digest, repository="payments/api", tag=HOOKED)
        post(client, saved, json.dumps(event).encode())
        return image

    # The fake's home region, which ACR reports even without geo-replicas.
    return Arranged("payments/api", "team-reader", "team-reader", ("westeurope",), notify)


def ecr(request: pytest.FixtureRequest) -> Arranged:
    source.ecr(request)
    moto: str = request.getfixturevalue("moto")
    [key] = aws_client("iam", moto).list_access_keys(UserName="alice")["AccessKeyMetadata"]
    store: RunningRegistry = request.getfixturevalue("registry")

    def notify(client: Client, saved: Registry) -> im.Image:
        image = push_hooked(store, "team/app")
        put_image(moto, "team/app", image, [HOOKED])
        detail = {"repository-name": "team/app", "image-digest": image.digest, "image-tag": HOOKED}
        post(client, saved, json.dumps(eventbridge(**detail)).encode())
        return image

    return Arranged("team/app", f"alice {key['AccessKeyId']}", "deployers", ("ap-south-1",), notify)


def gar(request: pytest.FixtureRequest) -> Arranged:
    fake = source.gar(request).vendor
    project = fake.project
    store: RunningRegistry = request.getfixturevalue("registry")

    def notify(client: Client, saved: Registry) -> im.Image:
        image = push_hooked(store, f"{project}/images/team/app")
        pushed = {
            "action": "INSERT",
            "digest": f"{GAR_HOST}/images/team/app@{image.digest}",
            "tag": f"{GAR_HOST}/images/team/app:{HOOKED}",
        }
        post(client, saved, pubsub_push(pushed), in_url=True)
        return image

    robot = f"ci-pusher@{project}.iam.gserviceaccount.com"
    region = ("images", f"{fake.url}/{project}/images")  # a Docker repository's location is a region
    return Arranged("images/team/app", f"{robot} key ci0001", "ann@acme.test", region, notify)


KINDS: dict[str, Arrangement] = {
    "distribution": distribution,
    "harbor": harbor,
    "dockerhub": dockerhub,
    "quay": quay,
    "acr": acr,
    "ecr": ecr,
    "gar": gar,
}


# --- reading the pages -----------------------------------------------------------------------------


def page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


def section(html: str, heading_id: str) -> str:
    """The <section> a heading labels, so a name is looked for where it belongs and nowhere else."""
    start = html.index(f'aria-labelledby="{heading_id}"')
    return html[start : html.index("</section>", start)]


def shown(text: str) -> str:
    """`text` as the whole content of an element (a cell, a link), not as part of a longer text."""
    return f">{escape(text)}<"


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_shows_on_the_pages_people_use(
    kind: str, request: pytest.FixtureRequest, client: Client, reviewer: User
) -> None:
    arranged = KINDS[kind](request)
    saved = Registry.objects.get(kind=kind)
    client.force_login(reviewer)

    hooked = arranged.notify(client, saved)
    apply_webhook_events(list(WebhookEvent.objects.filter(registry=saved).values_list("pk", flat=True)))

    detail = page(client, reverse("registries:detail", args=[saved.pk]))
    browser = page(client, f"{reverse('registries:repositories')}?registry={saved.pk}")
    repository = saved.repositories.get(name=arranged.repository)
    tags = section(page(client, reverse("registries:repository", args=[repository.pk])), "tags-heading")
    listed = page(client, f"{reverse('registries:credentials')}?registry={saved.pk}")

    # Inventory: the registry page counts the repositories (it lists none), the browser names them,
    # the repository page holds the synced tags and the notified one at the pushed digest.
    assert f'?registry={saved.pk}">{SYNCED_REPOSITORIES}</a>' in detail
    assert shown(arranged.repository) in browser
    for tag in (*SYNCED_TAGS, HOOKED):
        assert shown(tag) in tags, tag
    assert hooked.digest in row_of(tags, shown(HOOKED))

    # The notification, on the registry page with what applying it did.
    event = row_of(section(detail, "events-heading"), shown(HOOKED))
    assert shown(arranged.repository) in event
    assert f"added {hooked.digest[:19]}" in event

    # Credentials, on the registry page and in the list filtered to it.
    held = section(detail, "credentials-heading")
    if arranged.credential is None:
        assert "This kind of registry does not report its credentials" in held
        assert "<tbody>" not in held
        assert "No credential matches." in listed
    else:
        assert shown(arranged.credential) in held, held
        assert shown(saved.name) in row_of(listed, shown(arranged.credential))

    # Grants the registry reports.
    grants = section(detail, "grants-heading")
    if arranged.grant is None:
        assert "This kind of registry does not report its grants" in grants
        assert "<tbody>" not in grants
    else:
        assert shown(arranged.grant) in grants, grants

    # Regions and replication the registry reports.
    replication = section(detail, "replication-heading")
    if arranged.replication is None:
        assert "Nothing reported" in replication
        assert "<tbody>" not in replication
    else:
        row = row_of(replication, shown(arranged.replication[0]))
        assert all(shown(part) in row for part in arranged.replication), row
