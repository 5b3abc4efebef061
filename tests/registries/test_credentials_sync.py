"""Registry-native credentials through the sync: added, updated, kept when gone, owners linked by id only."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar

import pytest

from accounts import services as account_services
from accounts.models import User
from accounts.scim import services as scim_services
from accounts.scim.resources import UserFields
from portal.audit import AuditAction
from portal.models import AuditEvent, Finding
from registries import connectors, hygiene, services, sync
from registries.connectors.base import (
    Capability,
    ConnectorConfig,
    CredentialKind,
    PermissionCheck,
    Principal,
    PrincipalKind,
    RemoteArtifact,
    RemoteCredential,
    RemoteRepository,
    RemoteTag,
)
from registries.connectors.errors import TransientError
from registries.demo import images as im
from registries.models import Credential, Registry, SyncRun
from tests import factories
from tests.registries.harness import RunningRegistry

pytestmark = pytest.mark.django_db

KIND = "test-credentials"
CREATED = datetime(2026, 1, 5, tzinfo=UTC)
USED = datetime(2026, 11, 2, tzinfo=UTC)


@dataclass
class Upstream:
    credentials: list[RemoteCredential] = field(default_factory=list)
    read_error: Exception | None = None
    permissions: list[PermissionCheck] = field(default_factory=list)


class FakeConfig(ConnectorConfig):
    url: str


class CredentialReadingConnector:
    kind: ClassVar[str] = KIND
    label: ClassVar[str] = "Test registry that reads credentials"
    config_class: ClassVar[type[ConnectorConfig]] = FakeConfig
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.REPOSITORIES, Capability.CREDENTIALS}
    )
    needs: ClassVar[tuple[str, ...]] = ("read robots", "read members")
    upstream: ClassVar[Upstream] = Upstream()

    def __init__(self, config: FakeConfig) -> None:
        self.config = config

    def check(self) -> None:
        return None

    def check_permissions(self) -> list[PermissionCheck]:
        return list(self.upstream.permissions)

    def repositories(self) -> Iterator[RemoteRepository]:
        yield from ()

    def tags(self, repository: str) -> list[RemoteTag]:
        return []

    def artifact(self, repository: str, digest: str) -> RemoteArtifact:
        raise AssertionError("no artifacts in this fake")

    def read_credentials(self) -> Iterator[RemoteCredential]:
        if self.upstream.read_error:
            raise self.upstream.read_error
        yield from self.upstream.credentials


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch) -> Upstream:
    state = Upstream()
    monkeypatch.setattr(CredentialReadingConnector, "upstream", state)
    monkeypatch.setitem(connectors.CONNECTORS, KIND, CredentialReadingConnector)
    return state


def robot(native_id: str, **fields: Any) -> RemoteCredential:
    made = RemoteCredential(kind=CredentialKind.ROBOT, id=native_id, name=f"robot${native_id}")
    return dataclasses.replace(made, **fields)


def run_sync(registry: Registry) -> SyncRun:
    run = sync.sync_inventory(registry)
    registry.refresh_from_db()
    return run


def test_credentials_are_added_updated_and_kept_when_gone(upstream: Upstream) -> None:
    registry = factories.registry(kind=KIND, endpoint="https://fake.example.test")
    upstream.credentials = [
        robot("ci", created_at=CREATED),
        robot("deploy", expires_at=None, expiry_known=True),
    ]
    first = run_sync(registry)
    assert first.status == SyncRun.Status.SUCCEEDED, first.error
    assert first.credentials_seen == 2
    ci = Credential.objects.get(registry=registry, native_id="ci")
    assert (ci.created_at, ci.gone_at, ci.run_id) == (CREATED, None, first.pk)
    assert Credential.objects.get(native_id="deploy").never_expires

    upstream.credentials = [robot("ci", created_at=CREATED, last_used_at=USED, last_used_source="audit log")]
    second = run_sync(registry)
    ci.refresh_from_db()
    assert (ci.last_used_at, ci.last_used_source, ci.run_id) == (USED, "audit log", second.pk)
    deploy = Credential.objects.get(native_id="deploy")
    assert deploy.gone_at is not None  # still listed for the reports, marked gone
    assert list(Credential.objects.filter(registry=registry).present()) == [ci]

    upstream.credentials = [robot("ci"), robot("deploy")]
    run_sync(registry)
    deploy.refresh_from_db()
    assert deploy.gone_at is None  # back again


def test_actions_and_their_usage_evidence_are_stored_as_plain_json(upstream: Upstream) -> None:
    registry = factories.registry(kind=KIND, endpoint="https://fake.example.test")
    pushed = datetime(2026, 10, 30, 13, 0, tzinfo=timezone(timedelta(hours=1)))  # 12:00 UTC
    upstream.credentials = [
        robot(
            "ci",
            actions=frozenset({"push", "pull", "delete"}),
            actions_seen={"push": pushed, "pull": USED},
            actions_seen_source="Harbor audit log",
        ),
        robot("unknown"),
    ]
    run_sync(registry)
    ci = Credential.objects.get(registry=registry, native_id="ci")
    assert ci.actions == ["delete", "pull", "push"]
    assert ci.actions_seen == {"pull": "2026-11-02T00:00:00+00:00", "push": "2026-10-30T12:00:00+00:00"}
    assert ci.actions_seen_source == "Harbor audit log"
    unknown = Credential.objects.get(registry=registry, native_id="unknown")
    assert (unknown.actions, unknown.actions_seen, unknown.actions_seen_source) == ([], {}, "")

    # The log was read again and kept no use: the evidence is replaced, not merged.
    upstream.credentials = [robot("ci", actions=frozenset({"pull"}), actions_seen_source="Harbor audit log")]
    run_sync(registry)
    ci.refresh_from_db()
    assert (ci.actions, ci.actions_seen, ci.actions_seen_source) == (["pull"], {}, "Harbor audit log")


@pytest.mark.parametrize(
    "fields",
    [
        {"actions": frozenset({"pull", "admin"})},
        {"actions_seen": {"read": USED}},
        {"actions_seen": {"pull": datetime(2026, 11, 2)}},  # naive: cannot be placed in time
    ],
)
def test_actions_customs_cannot_compare_are_a_connector_bug(
    upstream: Upstream, fields: dict[str, Any]
) -> None:
    registry = factories.registry(kind=KIND, endpoint="https://fake.example.test")
    upstream.credentials = [robot("ci"), robot("odd", **fields)]
    run = run_sync(registry)
    assert "the connector reported credential 'odd'" in run.not_read["credentials"]
    assert not Credential.objects.exists()  # nothing of the read is kept


def test_a_credentials_usage_evidence_cannot_change_after_it_was_read() -> None:
    seen = {"pull": USED}
    credential = robot("ci", actions_seen=seen)
    seen["push"] = USED  # the connector's dict changing later does not change the record
    assert credential.actions_seen == {"pull": USED}
    with pytest.raises(TypeError):
        credential.actions_seen["push"] = USED  # type: ignore[index]


def test_owners_link_to_people_only_through_a_unique_directory_id(upstream: Upstream) -> None:
    registry = factories.registry(kind=KIND, endpoint="https://fake.example.test")
    person = factories.user(external_id="oid-ana")
    factories.user(external_id="oid-twice", directory="one")
    factories.user(external_id="oid-twice", directory="two")
    upstream.credentials = [
        robot("a", owner=Principal(PrincipalKind.USER, "hub-ana", "ana", directory_id="oid-ana")),
        robot("b", owner=Principal(PrincipalKind.USER, "hub-x", "x", directory_id="oid-twice")),
        robot("c", created_by=Principal(PrincipalKind.USER, "hub-ana", "ana", directory_id="oid-ana")),
        robot("d", owner=Principal(PrincipalKind.USER, "ana", "ana")),  # a name alone never links
    ]
    run_sync(registry)
    rows = {row.native_id: row for row in Credential.objects.filter(registry=registry)}
    assert rows["a"].owner_user == person
    assert rows["b"].owner_user is None  # the id names two people: kept as a raw reference
    assert (rows["b"].owner_kind, rows["b"].owner_id) == ("user", "hub-x")
    assert rows["c"].created_by_user == person
    assert rows["d"].owner_user is None


def _open_orphaned() -> list[Finding]:
    return list(Finding.objects.open().filter(kind=hygiene.ORPHANED.slug))


def test_a_renamed_owner_stays_linked_and_nothing_is_orphaned(upstream: Upstream) -> None:
    registry = factories.registry(kind=KIND, endpoint="https://fake.example.test")
    ana = factories.user(
        username="ana.old", display_name="Ana Old", email="ana.old@example.test", external_id="oid-ana"
    )
    upstream.credentials = [
        robot(
            "ci",
            owner=Principal(PrincipalKind.USER, "hub-ana", "ana.old@example.test", directory_id="oid-ana"),
        )
    ]
    run_sync(registry)
    hygiene.scan(registry=registry)
    assert _open_orphaned() == []

    # The directory renames her (name, username and address); her immutable id stays.
    directory = scim_services.create_token(name="idp", directory_name=ana.directory, actor=None).token
    renamed = UserFields(
        username="ana.new",
        external_id="oid-ana",
        display_name="Ana New",
        first_name="Ana",
        last_name="New",
        email="ana.new@example.test",
        attributes={},
        active=True,
    )
    scim_services.update_user(directory, ana, renamed)
    upstream.credentials = [
        robot(
            "ci",
            owner=Principal(PrincipalKind.USER, "hub-ana", "ana.new@example.test", directory_id="oid-ana"),
        )
    ]
    run_sync(registry)
    row = Credential.objects.get(registry=registry, native_id="ci")
    assert (row.owner_user_id, row.owner_name) == (ana.pk, "ana.new@example.test")
    result = hygiene.scan(registry=registry)
    assert result.by_kind[hygiene.ORPHANED.slug].opened == 0
    assert _open_orphaned() == []


def test_a_rehired_person_does_not_take_over_the_leavers_credential(upstream: Upstream) -> None:
    registry = factories.registry(kind=KIND, endpoint="https://fake.example.test")
    leaver = factories.user(username="erin", email="erin@example.test", external_id="oid-erin-1")
    # The registry keeps naming her by the id she had when she made the robot.
    reported = Principal(PrincipalKind.USER, "hub-erin", "erin@example.test", directory_id="oid-erin-1")
    upstream.credentials = [robot("deploy", owner=reported)]
    run_sync(registry)
    account_services.deactivate_user(leaver, actor=None, reason="left", departed=True)
    # Rehired: a new person in the directory, with a new immutable id and the same address.
    rehired = factories.user(username="erin.again", email="erin@example.test", external_id="oid-erin-2")
    run_sync(registry)

    row = Credential.objects.get(registry=registry, native_id="deploy")
    assert row.owner_user_id == leaver.pk != rehired.pk
    hygiene.scan(registry=registry)
    [finding] = _open_orphaned()
    assert finding.subject_id == str(row.pk)
    assert finding.detail["reason"] == "owner_departed"
    assert finding.detail["owner_status"] == User.Status.DEPARTED
    assert finding.owner_id == leaver.pk


def test_a_person_the_directory_deleted_still_answers_for_their_credential(upstream: Upstream) -> None:
    registry = factories.registry(kind=KIND, endpoint="https://fake.example.test")
    directory = scim_services.create_token(name="idp", directory_name="corp", actor=None).token
    fields = UserFields(
        username="gus@example.test",
        external_id="oid-gus",
        display_name="Gus",
        first_name="Gus",
        last_name="",
        email="gus@example.test",
        attributes={},
        active=True,
    )
    gus = scim_services.create_user(directory, fields)
    reported = Principal(PrincipalKind.USER, "hub-gus", "gus@example.test", directory_id="oid-gus")
    upstream.credentials = [robot("release", owner=reported)]
    run_sync(registry)

    scim_services.delete_user(directory, gus)
    run_sync(registry)  # the next sync links owners afresh

    row = Credential.objects.get(registry=registry, native_id="release")
    assert row.owner_user_id == gus.pk  # the departed tombstone, not nobody
    hygiene.scan(registry=registry)
    [finding] = _open_orphaned()
    assert finding.detail["reason"] == "owner_departed"

    # The directory restores the same object (same immutable id): the new account answers for it.
    restored = scim_services.create_user(directory, fields)
    run_sync(registry)
    row.refresh_from_db()
    assert row.owner_user_id == restored.pk != gus.pk
    gus.refresh_from_db()
    assert gus.external_id == ""
    released = AuditEvent.objects.filter(target_id=str(gus.pk), action=AuditAction.USER_UPDATED).last()
    assert released is not None
    assert released.detail["released_external_id"] == "oid-gus"


def test_a_failed_read_changes_nothing(upstream: Upstream) -> None:
    registry = factories.registry(kind=KIND, endpoint="https://fake.example.test")
    upstream.credentials = [robot("ci")]
    run_sync(registry)
    upstream.read_error = TransientError("503 from the robots list")
    run = run_sync(registry)
    assert run.status == SyncRun.Status.SUCCEEDED  # the inventory still applies
    assert run.credentials_seen is None
    assert run.not_read == {"credentials": "503 from the robots list"}
    assert Credential.objects.get(native_id="ci").gone_at is None


def test_two_credentials_with_one_id_are_a_connector_bug_and_change_nothing(upstream: Upstream) -> None:
    registry = factories.registry(kind=KIND, endpoint="https://fake.example.test")
    upstream.credentials = [robot("ci"), robot("ci", name="robot$other")]
    run = run_sync(registry)
    assert "same id" in run.not_read["credentials"]
    assert not Credential.objects.exists()


def test_test_connection_reports_each_permission(upstream: Upstream) -> None:
    registry = factories.registry(kind=KIND, endpoint="https://fake.example.test")
    upstream.permissions = [
        PermissionCheck("read robots", ok=True),
        PermissionCheck("read members", ok=False, detail="403"),
    ]
    result = services.check_connection(registry)
    assert not result.ok
    assert result.reason == "the registry answered, but 1 of 2 required permissions are missing"
    assert [(s.permission, s.ok) for s in result.steps] == [("read robots", True), ("read members", False)]
    upstream.permissions = [PermissionCheck("read robots", ok=True)]
    assert services.check_connection(registry).ok


def test_missing_writes_and_untried_ones_do_not_fail_a_least_privilege_account(upstream: Upstream) -> None:
    registry = factories.registry(kind=KIND, endpoint="https://fake.example.test")
    upstream.permissions = [
        PermissionCheck("read robots", ok=True),
        PermissionCheck("disable robots", ok=False, detail="403", required=False),
        PermissionCheck("edit members", ok=False, required=False, tried=False),
    ]
    result = services.check_connection(registry)
    assert result.ok
    assert result.reason == (
        "the registry answered with these credentials; 1 write permissions are missing (plans and "
        "offboarding cannot write); 1 write permissions could not be tried without changing anything"
    )
    upstream.permissions = [
        PermissionCheck("read robots", ok=False, detail="403"),
        PermissionCheck("disable robots", ok=True, required=False),
    ]
    refused = services.check_connection(registry)
    assert not refused.ok
    assert refused.reason == "the registry answered, but 1 of 1 required permissions are missing"


def test_the_check_shows_optional_and_untried_permissions_apart(
    upstream: Upstream, client: Any, admin: Any
) -> None:
    registry = factories.registry(kind=KIND, endpoint="https://fake.example.test")
    upstream.permissions = [
        PermissionCheck("read robots", ok=True),
        PermissionCheck("disable robots", ok=False, detail="403", required=False),
        PermissionCheck("edit members", ok=False, required=False, tried=False),
    ]
    client.force_login(admin)
    steps = client.post(f"/api/v1/registries/{registry.pk}/test-connection/").json()["steps"]
    assert steps[1:] == [
        {"permission": "disable robots", "ok": False, "detail": "403", "is_required": False, "tried": True},
        {"permission": "edit members", "ok": False, "detail": "", "is_required": False, "tried": False},
    ]
    page = client.post(f"/registries/{registry.pk}/check/").content.decode()
    assert '<li class="ok">✓ read robots</li>' in page
    assert (
        '<li class="warning">✗ disable robots <span class="muted">(optional: plans and offboarding)' in page
    )
    assert '<li class="muted">? edit members <span class="muted">(optional' in page


def test_distribution_checks_catalog_and_pull_on_a_real_registry(registry: RunningRegistry) -> None:
    pusher = registry.pusher()
    pusher.push_image("team/app", im.base_image("app"), tags=["1"])
    saved = services.save_registry(
        Registry(name="local", kind="distribution", endpoint=registry.url), actor=None, public={}
    )
    result = services.check_connection(saved)
    assert result.ok
    assert [step.ok for step in result.steps] == [True, True]
    assert result.steps[1].detail == "tried on team/app"


def test_the_sync_history_says_what_was_not_read_and_why(upstream: Upstream, client: Any, admin: Any) -> None:
    registry = factories.registry(kind=KIND, endpoint="https://fake.example.test")
    upstream.read_error = TransientError("503 from the robots list")
    run_sync(registry)
    client.force_login(admin)
    page = client.get(f"/registries/{registry.pk}/runs/").content.decode()
    assert "credentials not read: 503 from the robots list" in page
