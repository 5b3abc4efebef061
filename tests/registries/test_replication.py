"""Regions and replication: what each registry reports about itself, read by a sync into ReplicationLink rows.

Each connector is driven through the real sync against its fake (tests/fakes/*, moto for ECR); the rows
are replaced by the next complete read and left alone by a failed one. Then the registry page and the API.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import User
from registries import connectors, services, sync
from registries.connectors.base import ReplicationKind, ReplicationStatus, can_read_replication
from registries.demo import images as im
from registries.models import Registry, ReplicationLink, SyncRun
from tests import factories
from tests.fakes.acr import FakeAcr
from tests.fakes.artifact_registry import LOCATION, PROJECT, FakeArtifactRegistry
from tests.fakes.aws import (
    ACCOUNT,
    REGION,
    aws_answers_fixture,  # noqa: F401  (autouse: checks every AWS answer in this module)
    client,
    moto_fixture,  # noqa: F401
    moto_server_fixture,  # noqa: F401
)
from tests.fakes.harbor import FakeHarbor
from tests.fakes.quay import FakeQuay
from tests.registries.harness import RunningRegistry

pytestmark = pytest.mark.django_db

OTHER_ACCOUNT = "210987654321"
FAILED_RUN = {
    "status": "Failed", "trigger": "event_based", "start_time": "2026-11-03T02:00:00Z",
    "end_time": "2026-11-03T02:05:00Z", "status_text": "dr-site unreachable", "total": 4, "failed": 4,
    "succeed": 0, "in_progress": 0, "stopped": 0,
}  # fmt: skip
GOOD_RUN = FAILED_RUN | {
    "status": "Succeed", "start_time": "2026-11-01T02:00:00Z", "end_time": "2026-11-01T02:01:00Z",
    "status_text": "", "failed": 0, "succeed": 4,
}  # fmt: skip


def links(registry: Registry) -> dict[str, ReplicationLink]:
    return {link.native_id: link for link in ReplicationLink.objects.filter(registry=registry)}


def synced(registry: Registry) -> SyncRun:
    run = sync.sync_inventory(registry)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    return run


# --- Harbor: replication policies ------------------------------------------------------------------------


def saved_harbor(fake: FakeHarbor) -> Registry:
    return services.save_registry(
        Registry(name="harbor-eu", kind="harbor", endpoint=fake.url),
        actor=None,
        public={"username": fake.username},
        secrets={"password": fake.password},
    )


def test_harbor_policies_become_links_with_their_latest_execution(harbor: FakeHarbor) -> None:
    harbor.replicate("to-dr", to="https://harbor-dr.example.test", executions=[GOOD_RUN, FAILED_RUN])
    saved = saved_harbor(harbor)

    run = synced(saved)

    [link] = links(saved).values()
    assert (link.kind, link.direction, link.location, link.url) == (
        "push-replication",
        "outbound",
        "dr-site",
        "https://harbor-dr.example.test",
    )
    assert (link.status, link.status_text) == (
        "failed",
        "Failed: dr-site unreachable (0 of 4 copied, 4 failed)",
    )
    assert (link.last_started_at, link.last_finished_at) == (
        datetime(2026, 11, 3, 2, 0, tzinfo=UTC),
        datetime(2026, 11, 3, 2, 5, tzinfo=UTC),
    )
    assert (link.filters, link.trigger, link.enabled) == (["name matches payments/**"], "event_based", True)
    assert link.notes == "deletions are replicated"
    assert (run.replication_seen, link.run) == (1, run)


def test_harbor_links_are_replaced_by_the_next_read_and_kept_when_a_read_fails(harbor: FakeHarbor) -> None:
    harbor.replicate("to-dr", to="https://harbor-dr.example.test", executions=[FAILED_RUN])
    saved = saved_harbor(harbor)
    synced(saved)
    harbor.policies.clear()  # "to-dr" deleted, "to-backup" created
    harbor.executions.clear()
    harbor.replicate("to-backup", to="https://backup.example.test", executions=[GOOD_RUN])

    synced(saved)

    [kept] = links(saved).values()
    assert (kept.name, kept.status, kept.url) == ("to-backup", "ok", "https://backup.example.test")

    harbor.forbidden = {"GET /replication/policies"}  # the robot lost replication-policy: list
    run = sync.sync_inventory(saved)

    assert run.status == SyncRun.Status.SUCCEEDED  # the inventory still applies
    assert "/replication/policies" in run.not_read["replication"]
    assert run.replication_seen is None
    assert list(links(saved).values()) == [kept]
    assert ReplicationLink.objects.get(pk=kept.pk).observed_at == kept.observed_at  # not even touched


# --- ACR: the home region and geo-replications ---------------------------------------------------------


@pytest.fixture
def acr(registry: RunningRegistry, settings: Any) -> Iterator[FakeAcr]:
    fake = FakeAcr(registry_url=registry.url).start()
    settings.OUTBOUND_CA_BUNDLE = fake.ca_bundle
    yield fake
    fake.stop()
    assert not fake.drift, "the fake answered in a shape ACR does not use:\n" + "\n".join(fake.drift)


def test_acr_geo_replications_become_links_with_status_and_push_webhooks(acr: FakeAcr) -> None:
    acr.replications = {"westeurope": "Ready", "eastus": "Syncing", "japaneast": "Ready"}
    acr.webhooks = {"pushweu": ("westeurope", ["push"])}
    saved = services.save_registry(
        Registry(name="acr-eu", kind="acr", endpoint=acr.url),
        actor=None,
        public={k: v for k, v in acr.public_config().items() if k != "url"},
        secrets={"client_secret": acr.client_secret},
    )

    run = synced(saved)

    found = links(saved)
    assert set(found) == {"westeurope", "eastus", "japaneast"}
    home, east = found["westeurope"], found["eastus"]
    assert (home.kind, home.status, home.url, home.direction) == ("region", "ok", acr.url, "")
    assert home.notes == "push webhooks here: pushweu"
    assert (east.kind, east.status, east.status_text, east.direction) == (
        "geo-replica",
        "in_progress",
        "Syncing: The replication is syncing.",  # displayStatus and ARM's message
        "both",
    )
    assert east.url == "https://acme.eastus.geo.azurecr.io"
    assert east.notes == "no push webhook in this region"  # pushes there reach Customs only by sync
    assert run.replication_seen == 3

    acr.replications = {"westeurope": "Ready"}  # the other replicas were deleted
    synced(saved)

    assert set(links(saved)) == {"westeurope"}


# --- ECR: the replication configuration ---------------------------------------------------------------


def replicate_ecr(moto: str, *destinations: dict[str, str], prefix: str = "") -> None:
    rule: dict[str, Any] = {"destinations": list(destinations)}
    if prefix:
        rule["repositoryFilters"] = [{"filter": prefix, "filterType": "PREFIX_MATCH"}]
    client("ecr", moto).put_replication_configuration(replicationConfiguration={"rules": [rule]})


def saved_ecr(moto: str) -> Registry:
    endpoints = {f"{service}_endpoint_url": moto for service in ("ecr", "iam", "sts")}
    return services.save_registry(
        Registry(name="ecr-eu", kind="ecr", endpoint="http://127.0.0.1:9"),
        actor=None,
        public={"account_id": ACCOUNT, "region": REGION, "access_key_id": "testing", "max_attempts": 1}
        | endpoints,
        secrets={"secret_access_key": "testing"},
    )


def test_ecr_destinations_become_push_replications_and_are_replaced(moto: str) -> None:
    replicate_ecr(
        moto,
        {"region": "us-east-1", "registryId": ACCOUNT},
        {"region": "ap-south-1", "registryId": OTHER_ACCOUNT},
        prefix="team/",
    )
    saved = saved_ecr(moto)

    synced(saved)

    found = links(saved)
    assert set(found) == {f"us-east-1/{ACCOUNT}", f"ap-south-1/{OTHER_ACCOUNT}"}
    other = found[f"ap-south-1/{OTHER_ACCOUNT}"]
    assert (other.kind, other.location, other.direction) == (
        "push-replication",
        f"ap-south-1 ({OTHER_ACCOUNT})",
        "outbound",
    )
    assert other.url == f"https://{OTHER_ACCOUNT}.dkr.ecr.ap-south-1.amazonaws.com"
    assert (other.status, other.filters) == ("unknown", ["prefix team/"])  # ECR has status per image only
    assert found[f"us-east-1/{ACCOUNT}"].location == "us-east-1"

    replicate_ecr(moto, {"region": "eu-central-1", "registryId": ACCOUNT})
    synced(saved)

    [only] = links(saved).values()
    assert (only.native_id, only.filters) == (f"eu-central-1/{ACCOUNT}", ["every repository"])


def test_ecr_without_replication_reads_as_none(moto: str) -> None:
    saved = saved_ecr(moto)
    assert synced(saved).replication_seen == 0  # read, and nothing to report: not the same as None
    assert not links(saved)


# --- Quay: repository mirrors ---------------------------------------------------------------------------


@pytest.fixture
def quay(registry: RunningRegistry) -> Iterator[FakeQuay]:
    fake = FakeQuay(registry_url=registry.url).start()
    yield fake
    fake.stop()
    assert not fake.drift, "the fake answered in a shape §10 does not document:\n" + "\n".join(fake.drift)


def test_quay_mirrors_become_pull_mirrors_and_follow_their_sync_status(
    registry: RunningRegistry, quay: FakeQuay
) -> None:
    registry.pusher().push_image("acme/tools", im.base_image("tools"), tags=["1.0"])
    quay.mirrors["acme/tools"] = {
        "is_enabled": True,
        "mirror_type": "PULL",
        "external_reference": "registry.example.com/upstream/tools",
        "external_registry_username": None,
        "sync_interval": 3600,
        "sync_start_date": "2026-11-26T10:00:00Z",
        "sync_status": "SUCCESS",
        "root_rule": {"rule_kind": "tag_glob_csv", "rule_value": ["1.*", "latest"]},
        "robot_username": "acme+mirror",
    }
    saved = services.save_registry(
        Registry(name="quay-acme", kind="quay", endpoint=quay.url),
        actor=None,
        public={"namespaces": "acme", "registry_username": quay.robot_name},
        secrets={"token": quay.token, "registry_password": quay.robot_token},
    )

    synced(saved)

    [mirror] = links(saved).values()
    assert (mirror.native_id, mirror.kind, mirror.direction) == ("acme/tools", "pull-mirror", "inbound")
    assert (mirror.location, mirror.url) == ("registry.example.com", "registry.example.com/upstream/tools")
    assert (mirror.status, mirror.status_text, mirror.next_run_at) == (
        "ok",
        "SUCCESS",
        datetime(2026, 11, 26, 10, 0, tzinfo=UTC),
    )
    assert mirror.filters == ["tags matching 1.*", "tags matching latest"]
    assert (mirror.trigger, mirror.notes) == ("every 3600 s", "pushes as acme+mirror")

    quay.mirrors["acme/tools"] |= {"sync_status": "FAIL", "is_enabled": False}
    synced(saved)

    [again] = links(saved).values()
    assert (again.status, again.status_text, again.enabled) == ("failed", "FAIL", False)
    assert again.pk != mirror.pk  # replaced, not merged


# --- Artifact Registry: each repository's location ------------------------------------------------------


def test_artifact_registry_reports_the_location_of_each_docker_repository(registry: RunningRegistry) -> None:
    fake = FakeArtifactRegistry(registry_url=registry.url).start()
    try:
        fake.add_repository("images")
        fake.add_repository("gcr.io")
        fake.add_repository("cache", mode="REMOTE_REPOSITORY")
        fake.add_repository("mirror", mode="VIRTUAL_REPOSITORY")  # stores nothing: not reported
        fake.add_repository("jars", format="MAVEN")
        built = connectors.build(
            "gar",
            {
                "url": fake.url,
                "project": PROJECT,
                "location": LOCATION,
                "api_url": fake.url,
                "gcr_url": fake.url,
            },
            {"service_account_key": fake.key_json()},
        )
        assert can_read_replication(built)
        found = {link.name: link for link in built.read_replication()}
    finally:
        fake.stop()
    assert not fake.drift, "\n".join(fake.drift)
    assert set(found) == {"images", "gcr.io", "cache"}
    assert {link.kind for link in found.values()} == {ReplicationKind.REGION}
    assert {link.location for link in found.values()} == {LOCATION}
    assert found["images"].url == f"{fake.url}/{PROJECT}/images"
    assert found["gcr.io"].url == f"{fake.url}/{PROJECT}"  # gcr.io/<project>/<image>
    assert found["cache"].notes == "remote repository: a cache of another registry"


def test_an_acr_token_connector_does_not_claim_to_read_replication() -> None:
    # Signed in with an ACR token there is no ARM, so nothing to read: the sync must not try.
    token_only = connectors.build(
        "acr",
        {"url": "https://acme.azurecr.io", "username": "customs-reader"},
        {"password": "not-used"},
    )
    assert not can_read_replication(token_only)


# --- the registry page and the API --------------------------------------------------------------------


def stored(registry: Registry, count: int) -> None:
    ReplicationLink.objects.bulk_create(
        ReplicationLink(
            registry=registry,
            native_id=str(n),
            name=f"to-site-{n}",
            kind=ReplicationKind.PUSH_REPLICATION,
            location=f"site-{n}",
            url=f"https://site-{n}.example.test",
            direction="outbound",
            status=ReplicationStatus.FAILED if n == 0 else ReplicationStatus.OK,
            status_text="Failed: site unreachable" if n == 0 else "Succeed",
            last_started_at=datetime(2026, 11, 3, 2, n, tzinfo=UTC),
            filters=["name matches payments/**"],
        )
        for n in range(count)
    )


def test_the_registry_page_shows_regions_and_replication(client: Client, developer: User) -> None:
    saved = factories.registry()
    stored(saved, 2)
    client.force_login(developer)

    page = client.get(reverse("registries:detail", args=[saved.pk])).content.decode()

    assert "Regions and replication" in page
    assert '<span class="sev sev-high">failed</span> <small>Failed: site unreachable</small>' in page
    assert '<span class="sev sev-low">ok</span>' in page
    assert "https://site-1.example.test" in page
    assert "2026-11-03 02:01" in page
    assert "name matches payments/**" in page


def test_the_registry_page_says_when_nothing_was_reported(client: Client, developer: User) -> None:
    client.force_login(developer)
    page = client.get(reverse("registries:detail", args=[factories.registry().pk])).content.decode()
    assert "Nothing reported" in page


def test_the_section_costs_the_registry_page_one_query_whatever_the_rows(
    client: Client, developer: User
) -> None:
    saved = factories.registry()
    client.force_login(developer)
    url = reverse("registries:detail", args=[saved.pk])
    client.get(url)  # warm caches (session, role) so the two counts compare like with like

    with CaptureQueriesContext(connection) as few:
        client.get(url)
    stored(saved, 12)
    with CaptureQueriesContext(connection) as many:
        client.get(url)

    assert len(many) == len(few)
    ours = [q["sql"] for q in many.captured_queries if "registries_replicationlink" in q["sql"]]
    assert len(ours) == 1


def test_the_api_lists_the_links_to_whoever_sees_the_registry(client: Client, developer: User) -> None:
    saved = factories.registry()
    stored(saved, 3)
    client.force_login(developer)

    response = client.get(reverse("api:registry-replication", args=[saved.pk]))

    assert response.status_code == 200
    body = json.loads(response.content)
    assert body["count"] == 3
    first = body["results"][0]
    assert (first["kind"], first["status"], first["status_text"]) == (
        "push-replication",
        "failed",
        "Failed: site unreachable",
    )
    assert first["filters"] == ["name matches payments/**"]
    assert client.get(reverse("api:registry-replication", args=[999999])).status_code == 404
