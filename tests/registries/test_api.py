"""/api/v1/ for registries and the inventory: roles, secrets never read back, filters, query budgets."""

from __future__ import annotations

import logging
from typing import Any
from unittest import mock

import pytest
import responses
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries, DjangoCaptureOnCommitCallbacks

from accounts.models import User
from portal.audit import AuditAction
from portal.models import AuditEvent
from registries.models import ArtifactPresence, Registry, SyncRun
from tests import factories

pytestmark = pytest.mark.django_db

PASSWORD = "hunter2-Zq9-distinctive-password"
LAB = "https://registry.example.test"
REGISTRIES = reverse("api:registry-list")
REPOSITORIES = reverse("api:repository-list")


def new_registry(**fields: Any) -> dict[str, Any]:
    return {
        "name": "prod-eu",
        "kind": "distribution",
        "endpoint": LAB,
        "region": "eu-west-1",
        "config": {"username": "robot"},
        "secrets": {"password": PASSWORD},
    } | fields


def test_admins_create_a_registry_and_the_password_never_comes_back(
    client: Client, admin: User, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client.force_login(admin)
    created = client.post(REGISTRIES, new_registry(), content_type="application/json")
    assert created.status_code == 201, created.content
    registry = Registry.objects.get()
    assert registry.secrets() == {"password": PASSWORD}
    assert created.json()["config"]["username"] == "robot"
    assert "secrets" not in created.json()
    detail = reverse("api:registry-detail", args=[registry.pk])
    for response in (created, client.get(REGISTRIES), client.get(detail)):
        assert PASSWORD not in response.content.decode()
    patched = client.patch(detail, {"region": "eu-central-1"}, content_type="application/json")
    assert patched.status_code == 200
    assert PASSWORD not in patched.content.decode()
    registry.refresh_from_db()
    assert registry.region == "eu-central-1"
    assert registry.secrets() == {"password": PASSWORD}  # omitted secrets keep their value
    assert PASSWORD not in caplog.text


def test_a_bad_config_is_refused_in_the_usual_error_shape(client: Client, admin: User) -> None:
    client.force_login(admin)
    response = client.post(
        REGISTRIES, new_registry(config={"page_size": 5000}), content_type="application/json"
    )
    assert response.status_code == 400
    assert "page_size" in response.json()["error"]["message"]
    assert PASSWORD not in response.content.decode()


def test_the_kind_of_a_registry_cannot_change(client: Client, admin: User) -> None:
    registry = factories.registry()
    client.force_login(admin)
    response = client.patch(
        reverse("api:registry-detail", args=[registry.pk]),
        {"kind": "harbor"},
        content_type="application/json",
    )
    assert response.status_code == 400


def test_developers_read_but_do_not_write(client: Client, developer: User) -> None:
    registry = factories.registry()
    client.force_login(developer)
    assert client.get(REGISTRIES).status_code == 200
    assert client.post(REGISTRIES, new_registry(), content_type="application/json").status_code == 403
    assert client.delete(reverse("api:registry-detail", args=[registry.pk])).status_code == 403


def test_deleting_a_registry_is_audited(client: Client, admin: User) -> None:
    registry = factories.registry()
    client.force_login(admin)
    assert client.delete(reverse("api:registry-detail", args=[registry.pk])).status_code == 204
    assert not Registry.objects.exists()
    assert AuditEvent.objects.filter(action=AuditAction.REGISTRY_DELETED).exists()


@responses.activate
def test_test_connection_reports_the_reason(client: Client, admin: User) -> None:
    registry = factories.registry(endpoint=LAB, secrets={"password": PASSWORD}, config={"username": "robot"})
    responses.get(f"{LAB}/v2/", status=401, headers={"WWW-Authenticate": 'Basic realm="lab"'})
    responses.get(f"{LAB}/v2/", status=401)
    client.force_login(admin)
    response = client.post(reverse("api:registry-test-connection", args=[registry.pk]))
    assert response.json()["ok"] is False
    assert "401" in response.json()["reason"]
    assert PASSWORD not in response.content.decode()


def test_test_connection_on_a_closed_port_says_refused(client: Client, admin: User) -> None:
    registry = factories.registry(endpoint=factories.CLOSED_ENDPOINT)
    client.force_login(admin)
    response = client.post(reverse("api:registry-test-connection", args=[registry.pk]))
    assert response.json() == {
        "ok": False,
        "reason": "http://127.0.0.1:9/v2/: connection refused",
        "steps": [],
    }


def test_sync_queues_a_manual_run(
    client: Client, admin: User, django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks
) -> None:
    registry = factories.registry()
    client.force_login(admin)
    with (
        mock.patch("registries.tasks.sync_registry.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = client.post(reverse("api:registry-sync", args=[registry.pk]))
    assert response.status_code == 202
    delay.assert_called_once_with(registry.pk, "manual")


def test_sync_runs_filter_by_registry_and_status_with_live_counts(client: Client, developer: User) -> None:
    registry, other = factories.registry(), factories.registry()
    factories.sync_run(registry, status=SyncRun.Status.RUNNING, repositories_seen=12)
    factories.sync_run(registry, status=SyncRun.Status.SUCCEEDED, finished_at=timezone.now())
    factories.sync_run(other)
    client.force_login(developer)
    rows = client.get(
        reverse("api:sync-run-list"), {"registry": str(registry.pk), "status": "running"}
    ).json()["results"]
    assert [(r["status"], r["repositories_seen"], r["duration_seconds"]) for r in rows] == [
        ("running", 12, None)
    ]


def test_repositories_share_the_browsers_filters(client: Client, developer: User) -> None:
    eu = factories.registry(region="eu-west-1")
    us = factories.replica(eu, region="us-east-1")
    factories.repository(eu, name="team/web", size=5)
    api = factories.repository(eu, name="team/api", size=50)
    factories.repository(factories.registry(region="ap-south-1"), name="tools/lint", size=20)
    ArtifactPresence.objects.create(artifact=factories.artifact(api), replica=us)
    client.force_login(developer)

    def names(**query: Any) -> list[str]:
        return [r["name"] for r in client.get(REPOSITORIES, query).json()["results"]]

    assert names() == ["team/api", "team/web", "tools/lint"]
    assert names(search="web") == ["team/web"]
    assert names(namespace="tools") == ["tools/lint"]
    assert names(region="us-east-1") == ["team/api"]
    assert names(registry=eu.pk, ordering="size") == ["team/api", "team/web"]
    assert client.get(REPOSITORIES, {"region": "mars-1"}).status_code == 400


def test_the_repository_list_costs_the_same_for_2_and_40(
    client: Client, developer: User, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    registry = factories.registry()
    for _ in range(2):
        factories.repository(registry)
    client.force_login(developer)
    with django_assert_num_queries(6):  # session, user, role, region choices, count, page
        client.get(REPOSITORIES, {"ordering": "last_pushed"})
    for _ in range(38):
        factories.repository(factories.registry())
    with django_assert_num_queries(6):
        assert client.get(REPOSITORIES, {"ordering": "last_pushed"}).json()["count"] == 40


def test_an_artifact_carries_platforms_layers_tags_and_presence(client: Client, developer: User) -> None:
    registry = factories.registry(endpoint="https://registry.example.test", region="eu-west-1")
    lagging = factories.replica(registry, region="us-east-1", last_sync_at=timezone.now())
    repository = factories.repository(registry, name="team/app")
    index = factories.artifact(repository, media_type="application/vnd.oci.image.index.v1+json")
    factories.artifact(repository, index=index, platform="linux/amd64", layer_digests=["sha256:" + "1" * 64])
    factories.tag(index, name="1.0")
    client.force_login(developer)
    body = client.get(reverse("api:artifact-detail", args=[index.pk])).json()
    assert body["tags"] == ["1.0"]
    assert [p["platform"] for p in body["platforms"]] == ["linux/amd64"]
    assert body["pull_reference"] == f"registry.example.test/team/app@{index.digest}"
    assert [(p["region"], p["state"]) for p in body["presence"]] == [
        ("eu-west-1", "holds"),
        ("us-east-1", "missing"),
    ]
    ArtifactPresence.objects.create(artifact=index, replica=lagging)
    listed = client.get(reverse("api:artifact-list"), {"repository": repository.pk}).json()
    assert index.digest in {a["digest"] for a in listed["results"]}
    held = next(a for a in listed["results"] if a["digest"] == index.digest)
    assert [p["state"] for p in held["presence"]] == ["holds", "holds"]


def test_the_artifact_list_costs_the_same_for_few_and_many(
    client: Client, developer: User, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    registry = factories.registry()
    factories.replica(registry)
    repository = factories.repository(registry)

    def add(n: int) -> None:
        for _ in range(n):
            factories.tag(factories.artifact(repository))

    add(2)
    client.force_login(developer)
    url = reverse("api:artifact-list")
    with django_assert_num_queries(10):
        client.get(url, {"repository": repository.pk})
    add(30)
    with django_assert_num_queries(10):
        client.get(url, {"repository": repository.pk})


def test_tags_filter_by_repository(client: Client, developer: User) -> None:
    repository = factories.repository(factories.registry())
    artifact = factories.artifact(repository)
    factories.tag(artifact, name="1.0")
    factories.tag(factories.artifact(factories.repository(factories.registry())), name="2.0")
    client.force_login(developer)
    rows = client.get(reverse("api:tag-list"), {"repository": repository.pk}).json()["results"]
    assert [(r["name"], r["digest"]) for r in rows] == [("1.0", artifact.digest)]


def test_the_schema_lists_the_inventory_endpoints(client: Client, developer: User) -> None:
    client.force_login(developer)
    schema = client.get(reverse("api:schema")).content.decode()
    for path in ("/api/v1/registries/{id}/test-connection/", "/api/v1/sync-runs/", "/api/v1/repositories/"):
        assert path in schema
    assert "secrets" in schema  # documented as write-only input


def test_a_token_service_name_is_unique_across_registries(client: Client, admin: User) -> None:
    client.force_login(admin)
    body = {
        "name": "one",
        "kind": "distribution",
        "endpoint": "https://one.example.test",
        "token_service": "shared.example.test",
    }
    assert client.post("/api/v1/registries/", body, content_type="application/json").status_code == 201
    clash = client.post(
        "/api/v1/registries/",
        body | {"name": "two", "endpoint": "https://two.example.test"},
        content_type="application/json",
    )
    assert clash.status_code == 400
    assert clash.json()["error"]["code"] == "invalid"
