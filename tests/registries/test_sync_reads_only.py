"""A full sync only reads: for every kind, nothing but token exchanges is sent with a writing method.

Writes belong to reconcile plans and offboarding (README, "least privilege"); a sync that wrote would
need an account with more than the read permissions each kind's form asks for. Each kind runs
against its fake, furnished with some people and credentials so the grant and credential reads
run too, and the fake's own request log is read afterwards.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest

from registries import services, sync
from registries.demo import images as im
from registries.models import Registry, SyncRun
from tests.fakes.acr import FakeAcr, FakeToken
from tests.fakes.artifact_registry import FakeArtifactRegistry
from tests.fakes.aws import (
    AwsRequests,
    FakeEcrHost,
    aws_answers_fixture,  # noqa: F401  (autouse: checks every AWS answer in this module)
    aws_requests_fixture,  # noqa: F401
    client,
    ecr_public,
    moto_fixture,  # noqa: F401
    moto_server_fixture,  # noqa: F401
    put_image,
    registry_password,
)
from tests.fakes.dockerhub import FakeDockerHub
from tests.fakes.harbor import FakeHarbor
from tests.fakes.quay import FakeQuay, Robot, Team
from tests.fakes.server import LoopbackFake
from tests.registries.harness import RunningRegistry

pytestmark = pytest.mark.django_db
Fake = TypeVar("Fake", bound=LoopbackFake)

WRITES = ("POST", "PUT", "PATCH", "DELETE")
EARLIER = datetime(2026, 10, 1, 8, 30, tzinfo=UTC)
# Requests with a writing method that write nothing: each vendor's token exchanges, and Resource
# Manager's getIamPolicy, which Google defines as a POST.
NOT_WRITES: dict[str, re.Pattern[str]] = {
    "distribution": re.compile(r"^$"),  # the docker-registry token flow is a GET
    "harbor": re.compile(r"^$"),
    "quay": re.compile(r"^$"),
    "dockerhub": re.compile(r"^POST /v2/auth/token$"),  # the Hub's JWT for an access token
    "acr": re.compile(r"^POST /(?:[\w-]+/oauth2/v2\.0/token|oauth2/exchange|oauth2/token)$"),  # Entra, ACR
    "gar": re.compile(r"^POST /(?:token|v1/projects/[\w-]+:getIamPolicy)$"),
}


def pushed(registry: RunningRegistry, *names: str) -> dict[str, im.Image]:
    pusher, images = registry.pusher(), {}
    for number, name in enumerate(names):
        images[name] = im.base_image(name.replace("/", "-"), version=str(number))
        pusher.push_image(name, images[name], tags=["1", "latest"])
    return images


def save(name: str, kind: str, endpoint: str, public: dict[str, Any], secrets: dict[str, str]) -> Registry:
    registry = Registry(name=name, kind=kind, endpoint=endpoint)
    return services.save_registry(registry, actor=None, public=public, secrets=secrets)


def synced(registry: Registry) -> None:
    run = sync.sync_inventory(registry)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.repositories_seen >= 2


def writes_in(requests_seen: list[str], kind: str) -> list[str]:
    return [seen for seen in requests_seen if seen.startswith(WRITES) and not NOT_WRITES[kind].match(seen)]


# --- one arrangement per kind: (saved registry, the requests the fake saw during the sync) ------------


def distribution(request: pytest.FixtureRequest) -> list[str]:
    registry: RunningRegistry = request.getfixturevalue("registry")
    pushed(registry, "team/app", "team/worker")
    before = len(registry.log_text())
    synced(save("plain", "distribution", registry.url, {}, {}))
    # docker-registry logs every request it answers: "http.request.method=GET ... http.request.uri=..."
    log = registry.log_text()[before:]
    return [
        f"{method} {uri}"
        for method, uri in re.findall(r'http\.request\.method=(\w+).*?http\.request\.uri="([^"]*)"', log)
    ]


def harbor(request: pytest.FixtureRequest) -> list[str]:
    fake: FakeHarbor = request.getfixturevalue("harbor")
    pushed(request.getfixturevalue("registry"), "library/app", "payments/api")
    user = fake.add_user("alice")
    fake.add_member("payments", role_id=2, user_id=user)
    fake.requests_seen.clear()
    synced(save("harbor", "harbor", fake.url, {"username": fake.username}, {"password": fake.password}))
    return fake.requests_seen


def dockerhub(request: pytest.FixtureRequest) -> list[str]:
    fake = started(request, FakeDockerHub)
    pushed(request.getfixturevalue("registry"), "acme/app", "acme/worker")
    fake.add_team("dev", ["alice"], app="write")
    public = {"registry_url": fake.url, "namespace": "acme", "username": fake.username}
    fake.requests_seen.clear()
    synced(save("hub", "dockerhub", fake.url, public, {"token": fake.token}))
    return fake.requests_seen


def quay(request: pytest.FixtureRequest) -> list[str]:
    fake = started(request, FakeQuay)
    pushed(request.getfixturevalue("registry"), "acme/app", "acme/worker")
    fake.teams["acme"] = {"devs": Team(members={"bob": False, "acme+ci": True})}
    fake.robots["acme"] = {"ci": Robot(created=EARLIER)}
    public = {"namespaces": "acme", "registry_username": fake.robot_name}
    secrets = {"token": fake.token, "registry_password": fake.robot_token}
    fake.requests_seen.clear()
    synced(save("quay", "quay", fake.url, public, secrets))
    return fake.requests_seen


def acr(request: pytest.FixtureRequest) -> list[str]:
    fake = started(request, FakeAcr)
    request.getfixturevalue("settings").OUTBOUND_CA_BUNDLE = fake.ca_bundle
    pushed(request.getfixturevalue("registry"), "payments/api", "library/debian")
    fake.scope_maps = {"team-read": ["repositories/payments/*/content/read"]}
    fake.tokens = {"team-reader": FakeToken("team-read", passwords=[("password1", None)])}
    public = fake.public_config()
    fake.requests_seen.clear()
    synced(save("acr", "acr", public.pop("url"), public, {"client_secret": fake.client_secret}))
    return fake.requests_seen


def gar(request: pytest.FixtureRequest) -> list[str]:
    fake = started(request, FakeArtifactRegistry)
    fake.add_repository("images")
    project = fake.project
    pushed(request.getfixturevalue("registry"), f"{project}/images/team/app", f"{project}/images/base")
    fake.bind("images", "roles/artifactregistry.reader", "user:ann@acme.test")
    public = {
        "project": project,
        "location": fake.location,
        "api_url": fake.url,
        "iam_url": fake.url,
        "resource_manager_url": fake.url,
        "gcr_url": fake.url,
    }
    fake.requests_seen.clear()
    synced(save("gar", "gar", fake.url, public, {"service_account_key": fake.key_json()}))
    return fake.requests_seen


def ecr(request: pytest.FixtureRequest) -> list[str]:
    moto: str = request.getfixturevalue("moto")
    registry: RunningRegistry = request.getfixturevalue("registry")
    host = FakeEcrHost(registry.url, registry_password(moto)).start()
    request.addfinalizer(host.stop)
    images = pushed(registry, "team/app", "team/worker")
    for name, image in images.items():
        client("ecr", moto).create_repository(repositoryName=name)
        put_image(moto, name, image, ["1", "latest"])
    client("iam", moto).create_user(UserName="alice")
    client("iam", moto).create_access_key(UserName="alice")
    public = ecr_public(moto)
    aws: AwsRequests = request.getfixturevalue("aws_requests")
    aws.sent.clear()
    synced(save("ecr", "ecr", host.url, public, {"secret_access_key": "testing"}))
    return host.requests_seen


def started(request: pytest.FixtureRequest, fake_class: type[Fake]) -> Fake:
    fake = fake_class(registry_url=request.getfixturevalue("registry").url)
    fake.start()

    def stop() -> None:
        fake.stop()
        assert not fake.drift, "the fake answered in a shape the vendor does not use:\n" + "\n".join(
            fake.drift
        )

    request.addfinalizer(stop)
    return fake


KINDS: dict[str, Callable[[pytest.FixtureRequest], list[str]]] = {
    "distribution": distribution,
    "harbor": harbor,
    "dockerhub": dockerhub,
    "quay": quay,
    "acr": acr,
    "gar": gar,
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_full_sync_sends_no_write(kind: str, request: pytest.FixtureRequest) -> None:
    seen = KINDS[kind](request)
    assert any(line.startswith(("GET ", "HEAD ")) for line in seen), seen  # the log saw the sync
    assert writes_in(seen, kind) == [], writes_in(seen, kind)


def test_a_full_ecr_sync_calls_no_writing_operation(request: pytest.FixtureRequest) -> None:
    v2 = ecr(request)
    aws: AwsRequests = request.getfixturevalue("aws_requests")
    operations = sorted({f"{sent.service}.{sent.operation}" for sent in aws.sent})
    assert {"ecr.DescribeRepositories", "ecr.DescribeImages", "iam.ListUsers"} <= set(operations)
    reads = ("Describe", "List", "Get", "BatchGet", "BatchCheck")
    assert [op for op in operations if not op.split(".", 1)[1].startswith(reads)] == []
    assert any(line.startswith("GET /v2/team/app/manifests/") for line in v2), v2
    assert [line for line in v2 if line.startswith(WRITES)] == []
