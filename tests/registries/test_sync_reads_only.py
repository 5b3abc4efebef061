"""A full sync only reads: for every kind, nothing but token exchanges is sent with a writing method.

Writes belong to reconcile plans and offboarding (README, "least privilege"); a sync that wrote would
need an account with more than the read permissions each kind's form asks for. Each kind runs
against its fake, furnished with a credential, a grant and a replication link wherever the kind
reports them, so the reads those start run too (a GAR account's keys, a Harbor policy's executions,
a Docker Hub token's audit log); the fake's own request log is read afterwards, and the run's counts
show each of those was read. test_every_kind_on_the_pages.py reuses these arrangements.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import pytest

from registries import services, sync
from registries.connectors import CONNECTORS
from registries.connectors.base import Capability
from registries.demo import images as im
from registries.models import Registry, SyncRun
from tests.fakes.acr import FakeAcr, FakeToken
from tests.fakes.artifact_registry import FakeArtifactRegistry
from tests.fakes.aws import (
    ACCOUNT,
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
from tests.fakes.dockerhub import FakeDockerHub, OrgToken, PersonalToken
from tests.fakes.harbor import FakeHarbor
from tests.fakes.quay import FakeQuay, Robot, Team
from tests.fakes.server import LoopbackFake
from tests.registries.harness import RunningRegistry

pytestmark = pytest.mark.django_db
Fake = TypeVar("Fake", bound=LoopbackFake)
Vendor = TypeVar("Vendor")

WRITES = ("POST", "PUT", "PATCH", "DELETE")
EARLIER = datetime(2026, 10, 1, 8, 30, tzinfo=UTC)
# What a kind may report beyond its inventory; each arrangement furnishes those its kind declares.
BEYOND_INVENTORY = frozenset({Capability.CREDENTIALS, Capability.GRANTS, Capability.REPLICAS})
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


@dataclass(frozen=True)
class Synced(Generic[Vendor]):
    """One kind's arrangement, synced: what stood in for the vendor, the run, and what it was sent."""

    vendor: Vendor  # the fake (for distribution, the registry itself) the sync ran against
    run: SyncRun
    seen: list[str]  # "METHOD /path" of each request the vendor saw during the sync


def pushed(registry: RunningRegistry, *names: str) -> dict[str, im.Image]:
    pusher, images = registry.pusher(), {}
    for number, name in enumerate(names):
        images[name] = im.base_image(name.replace("/", "-"), version=str(number))
        pusher.push_image(name, images[name], tags=["1", "latest"])
    return images


def save(name: str, kind: str, endpoint: str, public: dict[str, Any], secrets: dict[str, str]) -> Registry:
    registry = Registry(name=name, kind=kind, endpoint=endpoint)
    return services.save_registry(registry, actor=None, public=public, secrets=secrets)


def synced(registry: Registry) -> SyncRun:
    run = sync.sync_inventory(registry)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.repositories_seen >= 2
    return run


def found(run: SyncRun) -> set[Capability]:
    """Which of credentials, grants and replication the run read and found some of."""
    counts = {
        Capability.CREDENTIALS: run.credentials_seen,
        Capability.GRANTS: run.grants_seen,
        Capability.REPLICAS: run.replication_links.count(),  # the rows the pages show, not only a count
    }
    return {aspect for aspect, count in counts.items() if count}


def reported(kind: str) -> set[Capability]:
    """Which of credentials, grants and replication the kind's connector declares it reads."""
    return set(CONNECTORS[kind].capabilities & BEYOND_INVENTORY)


def writes_in(requests_seen: list[str], kind: str) -> list[str]:
    return [seen for seen in requests_seen if seen.startswith(WRITES) and not NOT_WRITES[kind].match(seen)]


# --- one arrangement per kind: its vendor furnished, a registry saved, and synced -------------------


def distribution(request: pytest.FixtureRequest) -> Synced[RunningRegistry]:
    registry: RunningRegistry = request.getfixturevalue("registry")
    pushed(registry, "team/app", "team/worker")
    before = len(registry.log_text())
    run = synced(save("plain", "distribution", registry.url, {}, {}))
    # docker-registry logs every request it answers: "http.request.method=GET ... http.request.uri=..."
    log = registry.log_text()[before:]
    answered = re.findall(r'http\.request\.method=(\w+).*?http\.request\.uri="([^"]*)"', log)
    return Synced(registry, run, [f"{method} {uri}" for method, uri in answered])


def harbor(request: pytest.FixtureRequest) -> Synced[FakeHarbor]:
    fake: FakeHarbor = request.getfixturevalue("harbor")
    pushed(request.getfixturevalue("registry"), "library/app", "payments/api")
    fake.add_member("payments", role_id=2, user_id=fake.add_user("alice"))
    fake.add_robot("deployer", access={"payments": ["pull", "push"]})
    fake.replicate("to-dr", to="https://harbor-dr.example.test", executions=[])
    fake.requests_seen.clear()
    run = synced(save("harbor", "harbor", fake.url, {"username": fake.username}, {"password": fake.password}))
    return Synced(fake, run, fake.requests_seen)


def dockerhub(request: pytest.FixtureRequest) -> Synced[FakeDockerHub]:
    fake = started(request, FakeDockerHub)
    pushed(request.getfixturevalue("registry"), "acme/app", "acme/worker")
    fake.add_team("dev", ["alice"], app="write")
    # The Hub lists only the caller's own tokens. This one says nothing of its use, so the sync reads
    # the audit log for it; the organisation token's scopes come from a request per token.
    fake.personal_tokens.append(PersonalToken("release-bot", ["repo:write"], EARLIER))
    pull = {"type": "TYPE_REPO", "path": "acme/app", "scopes": ["repo-pull"]}
    fake.org_tokens.append(
        OrgToken("ci-pull", created_by=fake.username, created_at=EARLIER, resources=[pull])
    )
    public = {"registry_url": fake.url, "namespace": "acme", "username": fake.username}
    fake.requests_seen.clear()
    run = synced(save("hub", "dockerhub", fake.url, public, {"token": fake.token}))
    return Synced(fake, run, fake.requests_seen)


QUAY_MIRROR: dict[str, Any] = {
    "is_enabled": True,
    "mirror_type": "PULL",
    "external_reference": "mirror.example.test/upstream/worker",
    "external_registry_username": None,
    "sync_interval": 3600,
    "sync_start_date": "2026-11-26T10:00:00Z",
    "sync_status": "SUCCESS",
    "root_rule": {"rule_kind": "tag_glob_csv", "rule_value": ["latest"]},
    "robot_username": "acme+ci",
}


def quay(request: pytest.FixtureRequest) -> Synced[FakeQuay]:
    fake = started(request, FakeQuay)
    pushed(request.getfixturevalue("registry"), "acme/app", "acme/worker")
    fake.teams["acme"] = {"devs": Team(members={"bob": False, "acme+ci": True})}
    fake.robots["acme"] = {"ci": Robot(created=EARLIER)}
    fake.team_permissions["acme/app"] = {"devs": "write"}
    fake.mirrors["acme/worker"] = QUAY_MIRROR  # a mirrored repository: the sync reads its configuration
    public = {"namespaces": "acme", "registry_username": fake.robot_name}
    secrets = {"token": fake.token, "registry_password": fake.robot_token}
    fake.requests_seen.clear()
    run = synced(save("quay", "quay", fake.url, public, secrets))
    return Synced(fake, run, fake.requests_seen)


def acr(request: pytest.FixtureRequest) -> Synced[FakeAcr]:
    # ACR always reports its home region, so a token and its scope map are all it needs.
    fake = started(request, FakeAcr)
    request.getfixturevalue("settings").OUTBOUND_CA_BUNDLE = fake.ca_bundle
    pushed(request.getfixturevalue("registry"), "payments/api", "library/debian")
    fake.scope_maps = {"team-read": ["repositories/payments/*/content/read"]}
    fake.tokens = {"team-reader": FakeToken("team-read", passwords=[("password1", None)])}
    public = fake.public_config()
    fake.requests_seen.clear()
    run = synced(save("acr", "acr", public.pop("url"), public, {"client_secret": fake.client_secret}))
    return Synced(fake, run, fake.requests_seen)


def gar(request: pytest.FixtureRequest) -> Synced[FakeArtifactRegistry]:
    # Artifact Registry reports each repository's location as a region.
    fake = started(request, FakeArtifactRegistry)
    fake.add_repository("images")
    project = fake.project
    pushed(request.getfixturevalue("registry"), f"{project}/images/team/app", f"{project}/images/base")
    fake.bind("images", "roles/artifactregistry.reader", "user:ann@acme.test")
    # A service account bound on the repository: the sync lists its keys.
    robot = f"ci-pusher@{project}.iam.gserviceaccount.com"
    fake.bind("images", "roles/artifactregistry.writer", f"serviceAccount:{robot}")
    fake.add_key(robot, "ci0001")
    public = {
        "project": project,
        "location": fake.location,
        "api_url": fake.url,
        "iam_url": fake.url,
        "resource_manager_url": fake.url,
        "gcr_url": fake.url,
    }
    fake.requests_seen.clear()
    run = synced(save("gar", "gar", fake.url, public, {"service_account_key": fake.key_json()}))
    return Synced(fake, run, fake.requests_seen)


def ecr(request: pytest.FixtureRequest) -> Synced[FakeEcrHost]:
    moto: str = request.getfixturevalue("moto")
    registry: RunningRegistry = request.getfixturevalue("registry")
    host = FakeEcrHost(registry.url, registry_password(moto)).start()
    request.addfinalizer(host.stop)
    images = pushed(registry, "team/app", "team/worker")
    for name, image in images.items():
        client("ecr", moto).create_repository(repositoryName=name)
        put_image(moto, name, image, ["1", "latest"])
    furnish_aws(moto)
    aws: AwsRequests = request.getfixturevalue("aws_requests")
    aws.sent.clear()
    run = synced(save("ecr", "ecr", host.url, ecr_public(moto), {"secret_access_key": "testing"}))
    return Synced(host, run, host.requests_seen)


def furnish_aws(moto: str) -> None:
    """An IAM group allowed to pull, with a member holding an access key, and a replication rule."""
    iam = client("iam", moto)
    iam.create_group(GroupName="deployers")
    pull = {"Effect": "Allow", "Action": ["ecr:BatchGetImage"], "Resource": "*"}
    document = json.dumps({"Version": "2012-10-17", "Statement": [pull]})
    iam.put_group_policy(GroupName="deployers", PolicyName="pull", PolicyDocument=document)
    iam.create_user(UserName="alice")
    iam.add_user_to_group(GroupName="deployers", UserName="alice")
    iam.create_access_key(UserName="alice")
    rule = {"destinations": [{"region": "ap-south-1", "registryId": ACCOUNT}]}
    client("ecr", moto).put_replication_configuration(replicationConfiguration={"rules": [rule]})


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


KINDS: dict[str, Callable[[pytest.FixtureRequest], Synced[Any]]] = {
    "distribution": distribution,
    "harbor": harbor,
    "dockerhub": dockerhub,
    "quay": quay,
    "acr": acr,
    "gar": gar,
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_full_sync_sends_no_write(kind: str, request: pytest.FixtureRequest) -> None:
    arranged = KINDS[kind](request)
    # Credentials, grants and replication were each read and found, so their follow-up reads ran too.
    assert found(arranged.run) == reported(kind), arranged.run.not_read
    seen = arranged.seen
    assert any(line.startswith(("GET ", "HEAD ")) for line in seen), seen  # the log saw the sync
    assert writes_in(seen, kind) == [], writes_in(seen, kind)


def test_a_full_ecr_sync_calls_no_writing_operation(request: pytest.FixtureRequest) -> None:
    arranged = ecr(request)
    assert found(arranged.run) == reported("ecr"), arranged.run.not_read
    aws: AwsRequests = request.getfixturevalue("aws_requests")
    operations = sorted({f"{sent.service}.{sent.operation}" for sent in aws.sent})
    follow_ups = {"iam.GetGroupPolicy", "iam.GetGroup", "iam.GetAccessKeyLastUsed", "ecr.DescribeRegistry"}
    assert {"ecr.DescribeRepositories", "ecr.DescribeImages", "iam.ListUsers"} | follow_ups <= set(operations)
    reads = ("Describe", "List", "Get", "BatchGet", "BatchCheck")
    assert [op for op in operations if not op.split(".", 1)[1].startswith(reads)] == []
    v2 = arranged.seen
    assert any(line.startswith("GET /v2/team/app/manifests/") for line in v2), v2
    assert [line for line in v2 if line.startswith(WRITES)] == []
