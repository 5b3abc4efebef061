"""Registry and inventory pages: what they show, what admins change, what they cost, what they never show."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from unittest import mock

import pytest
import responses
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries, DjangoCaptureOnCommitCallbacks

from accounts import tokens
from accounts.models import User
from portal.audit import AuditAction
from portal.models import AuditEvent
from registries.models import ArtifactPresence, Registry, Replica, SyncRun
from tests import factories

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

pytestmark = pytest.mark.django_db

PASSWORD = "hunter2-Zq9-distinctive-password"  # a value no page, response or log line may ever contain
LIST = reverse("registries:list")
ADD = reverse("registries:add")
BROWSER = reverse("registries:repositories")
LAB = "https://registry.example.test"


def form_data(**fields: Any) -> dict[str, Any]:
    return {
        "kind": "distribution",
        "name": "prod-eu",
        "endpoint": LAB,
        "region": "eu-west-1",
        "sync_enabled": "on",
        "sync_interval_minutes": 60,
        "sync_concurrency": 8,
        "config_username": "robot",
        "config_password": PASSWORD,
        "config_verify_tls": "on",
        "config_page_size": 100,
    } | fields


def body(response: Response) -> str:
    return response.content.decode()


# --- The registry list ---------------------------------------------------------------------------


def test_the_list_shows_regions_last_sync_and_repository_counts(client: Client, developer: User) -> None:
    registry = factories.registry(name="prod-eu", region="eu-west-1")
    factories.replica(registry, region="us-east-1")
    factories.repository(registry)
    factories.repository(registry)
    factories.sync_run(registry, status=SyncRun.Status.SUCCEEDED, repositories_seen=2, tags_seen=7)
    client.force_login(developer)
    page = body(client.get(LIST))
    assert "prod-eu" in page
    assert "eu-west-1" in page
    assert "us-east-1" in page
    assert "Succeeded" in page
    assert "7 tags" in page
    assert f'?registry={registry.pk}">2</a>' in page
    assert ADD not in page  # developers browse, they do not connect registries


def test_the_list_costs_the_same_for_two_registries_and_twenty(
    client: Client, admin: User, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    def make(n: int) -> None:
        for _ in range(n):
            registry = factories.registry()
            factories.replica(registry)
            factories.sync_run(registry)
            factories.repository(registry)

    client.force_login(admin)
    make(2)
    with django_assert_num_queries(7):
        client.get(LIST)
    make(18)
    with django_assert_num_queries(7):  # sessions, user, role, count, registries, replicas, last runs
        client.get(LIST)


# --- Adding and editing --------------------------------------------------------------------------


def test_an_admin_adds_a_registry_and_the_password_is_stored_but_never_shown(
    client: Client, admin: User, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client.force_login(admin)
    form = client.get(ADD + "?kind=distribution")
    assert 'type="password"' in body(form)
    response = client.post(ADD, form_data())
    registry = Registry.objects.get(name="prod-eu")
    assert response.status_code == 302
    assert registry.secrets() == {"password": PASSWORD}
    assert registry.config["username"] == "robot"
    assert "password" not in registry.config
    for url in (
        LIST,
        reverse("registries:detail", args=[registry.pk]),
        reverse("registries:edit", args=[registry.pk]),
    ):
        assert PASSWORD not in body(client.get(url)), url
    assert PASSWORD not in caplog.text
    event = AuditEvent.objects.get(action=AuditAction.REGISTRY_CREATED)
    assert PASSWORD not in str(event.detail)


def test_adding_a_registry_starts_with_the_choice_of_kind(client: Client, admin: User) -> None:
    client.force_login(admin)
    page = body(client.get(ADD))
    assert "?kind=distribution" in page
    assert "?kind=harbor" in page
    assert 'type="password"' not in page  # no settings until the kind is known


def test_a_refused_form_does_not_echo_the_password(client: Client, admin: User) -> None:
    client.force_login(admin)
    response = client.post(ADD, form_data(endpoint="ftp://nope.example.test"))
    assert response.status_code == 200
    assert "https://" in body(response)  # the config class's words about the URL
    assert PASSWORD not in body(response)
    assert not Registry.objects.exists()


def test_editing_with_the_password_blank_keeps_the_stored_one(client: Client, admin: User) -> None:
    registry = factories.registry(
        name="prod-eu", secrets={"password": PASSWORD}, config={"username": "robot"}
    )
    client.force_login(admin)
    edit = reverse("registries:edit", args=[registry.pk])
    page = body(client.get(edit))
    assert 'value="robot"' in page
    assert PASSWORD not in page
    # The same endpoint: stored secrets never follow a registry to another host.
    response = client.post(
        edit, form_data(config_password="", region="eu-central-1", endpoint=registry.endpoint)
    )
    assert response.status_code == 302
    registry.refresh_from_db()
    assert registry.region == "eu-central-1"
    assert registry.secrets() == {"password": PASSWORD}

    client.post(edit, form_data(config_password="a-new-one"))
    registry.refresh_from_db()
    assert registry.secrets() == {"password": "a-new-one"}


def test_the_name_must_be_unique(client: Client, admin: User) -> None:
    factories.registry(name="prod-eu")
    client.force_login(admin)
    response = client.post(ADD, form_data())
    assert "Another registry has this name." in body(response)


def test_reviewers_and_developers_cannot_add_or_edit(client: Client, reviewer: User, developer: User) -> None:
    registry = factories.registry()
    for person in (reviewer, developer):
        client.force_login(person)
        assert client.post(ADD, form_data()).status_code == 403
        assert client.post(reverse("registries:edit", args=[registry.pk]), form_data()).status_code == 403
    assert Registry.objects.count() == 1


def test_a_missing_registry_is_a_404(client: Client, admin: User) -> None:
    client.force_login(admin)
    assert client.get(reverse("registries:detail", args=[999999])).status_code == 404
    assert client.get(reverse("registries:repository", args=[999999])).status_code == 404


# --- Connection tests ----------------------------------------------------------------------------


@responses.activate
def test_testing_unsaved_settings_reports_a_rejected_password(
    client: Client, admin: User, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    responses.get(
        f"{LAB}/v2/", status=401, json={"errors": [{"code": "UNAUTHORIZED", "message": "bad login"}]}
    )
    client.force_login(admin)
    response = client.post(reverse("registries:check_new"), form_data(name=""))
    assert response.status_code == 200
    assert "401" in body(response)
    assert "UNAUTHORIZED" in body(response)
    assert PASSWORD not in body(response)
    assert PASSWORD not in caplog.text
    assert PASSWORD not in str(responses.calls[0].request.url)
    assert not Registry.objects.exists()  # testing saves nothing


def test_testing_a_closed_port_reports_connection_refused(client: Client, admin: User) -> None:
    client.force_login(admin)
    response = client.post(reverse("registries:check_new"), form_data(endpoint=factories.CLOSED_ENDPOINT))
    assert "connection refused" in body(response)
    assert "✗" in body(response)


@responses.activate
def test_testing_an_existing_registry_uses_the_stored_password_when_the_field_is_blank(
    client: Client, admin: User
) -> None:
    registry = factories.registry(endpoint=LAB, secrets={"password": PASSWORD}, config={"username": "robot"})
    responses.get(f"{LAB}/v2/", status=401, headers={"WWW-Authenticate": 'Basic realm="lab"'})
    responses.get(f"{LAB}/v2/", status=200, json={})
    responses.get(f"{LAB}/v2/_catalog", status=200, json={"repositories": []})
    client.force_login(admin)
    response = client.post(reverse("registries:check", args=[registry.pk]), form_data(config_password=""))
    assert "✓ the registry answered" in body(response)
    assert "list the catalog" in body(response)  # each permission, checked
    sent = responses.calls[1].request.headers["Authorization"]
    assert sent.startswith("Basic ")  # the stored password went to the registry, and only there
    assert PASSWORD not in body(response)


def test_testing_with_a_broken_form_names_the_fields(client: Client, admin: User) -> None:
    client.force_login(admin)
    response = client.post(reverse("registries:check_new"), form_data(config_page_size="many"))
    assert "Fix the form first" in body(response)
    assert "Page size" in body(response)


# --- Sync, notifications, replicas ---------------------------------------------------------------


def test_sync_now_queues_a_manual_sync_after_commit(
    client: Client, admin: User, django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks
) -> None:
    registry = factories.registry()
    client.force_login(admin)
    with (
        mock.patch("registries.tasks.sync_registry.delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = client.post(reverse("registries:sync", args=[registry.pk]))
    assert response.status_code == 302
    delay.assert_called_once_with(registry.pk, "manual")
    assert AuditEvent.objects.filter(action=AuditAction.REGISTRY_SYNC_REQUESTED).exists()


def test_rotating_the_notifications_secret_shows_it_once_with_a_config_snippet(
    client: Client, admin: User
) -> None:
    registry = factories.registry()
    client.force_login(admin)
    response = client.post(reverse("registries:rotate_webhook_secret", args=[registry.pk]))
    page = body(response)
    assert response["Cache-Control"] == "no-store"
    secret = re.findall(r"crw_[A-Za-z0-9_-]+", page)[0]
    registry.refresh_from_db()
    assert tokens.matches(secret, registry.webhook_secret_digest)
    assert f"Authorization: [Bearer {secret}]" in page
    assert f"/hooks/registries/{registry.pk}/" in page
    assert "notifications:" in page
    assert secret not in body(client.get(reverse("registries:detail", args=[registry.pk])))


def test_admins_add_and_remove_replicas(client: Client, admin: User) -> None:
    registry = factories.registry(region="eu-west-1")
    client.force_login(admin)
    add = reverse("registries:replica_add", args=[registry.pk])
    client.post(add, {"region": "us-east-1", "endpoint": "https://us.example.test/"})
    replica = Replica.objects.get(registry=registry)
    assert replica.endpoint == "https://us.example.test"
    client.post(add, {"region": "us-east-1", "endpoint": "https://other.example.test"})
    client.post(add, {"region": "eu-west-1", "endpoint": "https://other.example.test"})
    assert Replica.objects.count() == 1  # one per region, and never the primary's region
    client.post(reverse("registries:replica_delete", args=[registry.pk, replica.pk]))
    assert not Replica.objects.exists()
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {AuditAction.REPLICA_CREATED, AuditAction.REPLICA_DELETED} <= actions


def test_deleting_a_registry_is_audited(client: Client, admin: User) -> None:
    registry = factories.registry(name="old-one")
    client.force_login(admin)
    assert client.post(reverse("registries:delete", args=[registry.pk])).status_code == 302
    assert not Registry.objects.exists()
    assert AuditEvent.objects.get(action=AuditAction.REGISTRY_DELETED).target_label == "old-one"


# --- The registry page ---------------------------------------------------------------------------


def test_the_registry_page_shows_public_config_runs_and_events(client: Client, developer: User) -> None:
    registry = factories.registry(config={"username": "robot"}, secrets={"password": PASSWORD})
    factories.sync_run(
        registry,
        status=SyncRun.Status.FAILED,
        error="401 from https://x/v2/",
        finished_at=timezone.now(),
        trigger=SyncRun.Trigger.MANUAL,
    )
    registry.webhook_events.create(event_id="e1", action="push", repository="team/app", tag="1.0")
    client.force_login(developer)
    page = body(client.get(reverse("registries:detail", args=[registry.pk])))
    assert "robot" in page
    assert PASSWORD not in page
    assert "401 from https://x/v2/" in page
    assert "Manual" in page
    assert "team/app" in page
    assert "Sync now" not in page  # developers read only


def test_sync_history_polls_while_a_run_is_running_and_stops_after(client: Client, developer: User) -> None:
    registry = factories.registry()
    run = factories.sync_run(registry, status=SyncRun.Status.RUNNING, repositories_seen=3)
    runs = reverse("registries:runs", args=[registry.pk])
    client.force_login(developer)
    running = body(client.get(runs))
    assert 'hx-trigger="every 2s"' in running
    assert "so far" in running
    run.status, run.finished_at, run.repositories_seen = SyncRun.Status.SUCCEEDED, timezone.now(), 40
    run.save()
    done = body(client.get(runs))
    assert "hx-trigger" not in done
    assert ">40<" in done


# --- The repository browser ----------------------------------------------------------------------


@pytest.fixture
def inventory() -> dict[str, Any]:
    eu = factories.registry(name="eu", region="eu-west-1")
    us_replica = factories.replica(eu, region="us-east-1", last_sync_at=timezone.now())
    other = factories.registry(name="lab", region="ap-south-1")
    now = timezone.now()
    web = factories.repository(eu, name="team/web", size=10, tag_count=5, last_pushed_at=now)
    api = factories.repository(
        eu, name="team/api", size=30, tag_count=1, last_pushed_at=now - timedelta(days=2)
    )
    tool = factories.repository(other, name="tools/lint", size=20, tag_count=9)
    ArtifactPresence.objects.create(artifact=factories.artifact(api), replica=us_replica)
    return {"eu": eu, "other": other, "web": web, "api": api, "tool": tool}


def names(response: Response) -> list[str]:
    return [repository.name for repository in response.context["page"].object_list]


def test_the_browser_searches_filters_and_sorts(
    client: Client, developer: User, inventory: dict[str, Any]
) -> None:
    client.force_login(developer)
    assert names(client.get(BROWSER)) == ["team/api", "team/web", "tools/lint"]
    assert names(client.get(BROWSER, {"search": "WE"})) == ["team/web"]
    assert names(client.get(BROWSER, {"registry": inventory["other"].pk})) == ["tools/lint"]
    assert names(client.get(BROWSER, {"namespace": "team"})) == ["team/api", "team/web"]
    assert names(client.get(BROWSER, {"region": "us-east-1"})) == ["team/api"]  # held by the replica
    assert names(client.get(BROWSER, {"region": "eu-west-1"})) == ["team/api", "team/web"]  # primary
    assert names(client.get(BROWSER, {"ordering": "size"})) == ["team/api", "tools/lint", "team/web"]
    assert names(client.get(BROWSER, {"ordering": "tag_count"})) == ["tools/lint", "team/web", "team/api"]
    # Never pushed sorts last, not first.
    assert names(client.get(BROWSER, {"ordering": "last_pushed"})) == ["team/web", "team/api", "tools/lint"]


def test_the_browser_answers_htmx_with_the_results_alone(client: Client, developer: User) -> None:
    client.force_login(developer)
    response = client.get(BROWSER, {"search": "x"}, headers={"HX-Request": "true"})
    assert body(response).lstrip().startswith('<div id="repository-results"')


def test_the_browser_costs_the_same_for_2_and_40_repositories(
    client: Client, developer: User, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    registry = factories.registry()
    for _ in range(2):
        factories.repository(registry)
    client.force_login(developer)
    query: dict[str, Any] = {"region": "eu-west-1", "ordering": "last_pushed", "registry": registry.pk}
    # session, user, role, region choices, registry choice check, registry choices, count, page
    with django_assert_num_queries(8):
        client.get(BROWSER, query)
    for _ in range(38):
        factories.repository(factories.registry())
    with django_assert_num_queries(8):
        client.get(BROWSER, query)
    with django_assert_num_queries(7):  # unfiltered: no registry choice to check
        assert len(names(client.get(BROWSER))) == 40


# --- Repository and artifact pages ---------------------------------------------------------------


def test_the_repository_page_lists_tags_and_which_regions_lag(client: Client, developer: User) -> None:
    registry = factories.registry(region="eu-west-1")
    synced = factories.replica(registry, region="us-east-1", last_sync_at=timezone.now())
    factories.replica(registry, region="ap-south-1")  # never synced: unknown, not lagging
    repository = factories.repository(registry, name="team/app")
    index = factories.artifact(repository, media_type="application/vnd.oci.image.index.v1+json")
    factories.artifact(repository, index=index, platform="linux/amd64")
    factories.artifact(repository, index=index, platform="linux/arm64")
    old = factories.artifact(repository, platform="linux/amd64")
    factories.tag(index, name="2.0")
    factories.tag(old, name="1.0")
    ArtifactPresence.objects.create(artifact=old, replica=synced)
    client.force_login(developer)
    response = client.get(reverse("registries:repository", args=[repository.pk]))
    page = body(response)
    assert "linux/amd64, linux/arm64" in page
    assert index.digest[:20] in page
    rows = {artifact.digest: regions for artifact, _, regions in response.context["artifact_rows"]}
    # Replicas in region order: ap-south-1 (never synced), then us-east-1.
    assert [r.state for r in rows[index.digest]] == ["holds", "unknown", "missing"]
    assert [r.state for r in rows[old.digest]] == ["holds", "unknown", "holds"]
    assert "lagging" in page


def test_the_repository_page_costs_the_same_for_few_and_many_tags(
    client: Client, developer: User, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    registry = factories.registry()
    factories.replica(registry)
    repository = factories.repository(registry)
    url = reverse("registries:repository", args=[repository.pk])

    def add(n: int) -> None:
        for _ in range(n):
            factories.tag(factories.artifact(repository))

    add(2)
    client.force_login(developer)
    with django_assert_num_queries(13):
        client.get(url)
    add(30)
    with django_assert_num_queries(13):
        client.get(url)


def test_the_artifact_page_has_everything_to_pull_it_by_digest(client: Client, developer: User) -> None:
    registry = factories.registry(endpoint="https://registry.example.test:5000/")
    repository = factories.repository(registry, name="team/app")
    index = factories.artifact(repository, media_type="application/vnd.oci.image.index.v1+json")
    child = factories.artifact(
        repository,
        index=index,
        platform="linux/arm64",
        config_digest="sha256:" + "c" * 64,
        layer_digests=["sha256:" + "1" * 64, "sha256:" + "2" * 64],
        labels={"org.opencontainers.image.source": "https://git.example.test/app"},
        base_name="docker.io/library/debian:12",
        base_digest="sha256:" + "b" * 64,
    )
    factories.tag(index, name="2.0")
    client.force_login(developer)
    index_page = body(client.get(reverse("registries:artifact", args=[repository.pk, index.digest])))
    assert f"registry.example.test:5000/team/app@{index.digest}" in index_page
    assert "navigator.clipboard" in index_page
    assert child.digest in index_page
    assert "linux/arm64" in index_page
    child_page = body(client.get(reverse("registries:artifact", args=[repository.pk, child.digest])))
    assert "sha256:" + "2" * 64 in child_page
    assert "sha256:" + "c" * 64 in child_page
    assert "docker.io/library/debian:12" in child_page
    assert "org.opencontainers.image.source" in child_page
    assert "2.0" in child_page
    assert "through its index" in child_page


def test_an_artifact_of_another_repository_is_a_404(client: Client, developer: User) -> None:
    registry = factories.registry()
    artifact = factories.artifact(factories.repository(registry))
    elsewhere = factories.repository(registry)
    client.force_login(developer)
    assert client.get(reverse("registries:artifact", args=[elsewhere.pk, artifact.digest])).status_code == 404


def test_every_browser_filter_has_a_readable_label(client: Client, developer: User) -> None:
    client.force_login(developer)
    page = client.get(reverse("registries:repositories")).content.decode()
    assert "[invalid name]" not in page
    for label in ("Name contains", "Registry", "Namespace", "Region", "Sort by"):
        assert f">{label}</label>" in page


def test_an_admin_names_the_token_service_of_a_registry_behind_customs(client: Client, admin: User) -> None:
    client.force_login(admin)
    data = {
        "name": "self-hosted",
        "endpoint": "https://registry.example.test",
        "region": "",
        "sync_enabled": "on",
        "sync_interval_minutes": 60,
        "sync_concurrency": 8,
        "token_service": "registry.example.test",
        "config_page_size": 100,
        "config_verify_tls": "on",
    }
    response = client.post(reverse("registries:add") + "?kind=distribution", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Registry.objects.get(name="self-hosted").token_service == "registry.example.test"
    again = client.post(reverse("registries:add") + "?kind=distribution", data | {"name": "another"})
    assert "Another registry uses this token service name." in again.content.decode()


def test_a_registry_behind_customs_shows_its_token_configuration(
    client: Client, admin: User, developer: User
) -> None:
    from registries.tokenserver import keys

    keys.generate(actor=None)
    registry = factories.registry()
    Registry.objects.filter(pk=registry.pk).update(token_service="registry.example.test")
    client.force_login(admin)
    page = client.get(reverse("registries:detail", args=[registry.pk])).content.decode()
    assert "service: registry.example.test" in page
    assert "realm: http://testserver/auth/token" in page
    bundle = client.get(reverse("registries:token_bundle"))
    assert bundle.status_code == 200
    assert bundle.content.decode().startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" not in bundle.content.decode()
    client.force_login(developer)
    assert (
        "service: registry.example.test"
        not in client.get(reverse("registries:detail", args=[registry.pk])).content.decode()
    )


def test_the_form_says_what_the_account_needs_before_anything_is_saved(client: Client, admin: User) -> None:
    client.force_login(admin)
    page = body(client.get(ADD + "?kind=distribution"))
    assert "What the account needs" in page
    assert "registry:catalog:*" in page
