"""Credential hygiene: every rule, its edges, and the findings' life (open, refresh, resolve, reopen)."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts import services as account_services
from accounts.models import User
from portal import findings, notify
from portal.models import Finding
from registries import hygiene, services, tasks
from registries.connectors.errors import TransientError
from registries.hygiene import CredentialFacts, Person, Thresholds
from registries.models import Credential, Registry, Repository, SyncRun
from tests import factories
from tests.registries.harness import RunningRegistry
from tests.registries.test_tasks import customs_row

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
LIMITS = Thresholds(
    stale=timedelta(days=45),
    notice_days=(14, 7, 1),
    over_privileged=timedelta(days=90),
    unused_pull=timedelta(days=90),
    unused_push=timedelta(days=180),
)
ALICE = Person(pk=1, label="Alice", status=User.Status.ACTIVE)


def facts(**fields: Any) -> CredentialFacts:
    defaults: dict[str, Any] = {
        "pk": 7,
        "area": "registry-3",
        "where": "prod-eu",
        "kind": "robot",
        "name": "ci",
        "enabled": True,
        "owner_kind": "user",
        "owner_ref": "alice@example.test",
        "owner": ALICE,
        "creator_ref": "",
        "creator": None,
        "created_at": NOW - timedelta(days=10),
        "first_seen_at": NOW - timedelta(days=5),
        "expires_at": NOW + timedelta(days=60),
        "expiry_known": True,
        "last_used_at": NOW - timedelta(days=1),
        "usage_known": True,
        "last_used_source": "Harbor audit log",
        "observed_at": NOW - timedelta(hours=1),
    }
    return CredentialFacts(**(defaults | fields))


# --- stale ---------------------------------------------------------------------------------------------


def test_stale_at_exactly_the_threshold_and_not_one_second_before() -> None:
    assert hygiene.stale(facts(last_used_at=NOW - timedelta(days=45)), LIMITS, NOW) is not None
    assert (
        hygiene.stale(facts(last_used_at=NOW - timedelta(days=45) + timedelta(seconds=1)), LIMITS, NOW)
        is None
    )


def test_stale_says_where_the_last_use_came_from() -> None:
    found = hygiene.stale(facts(last_used_at=NOW - timedelta(days=50)), LIMITS, NOW)
    assert found is not None
    assert found.detail["field"] == "last_used_at"
    assert found.detail["source"] == "Harbor audit log"
    assert found.detail["idle_days"] == 50
    assert "last used 50 days ago" in found.summary


def test_unknown_last_use_counts_from_creation_and_says_so() -> None:
    unknown = facts(usage_known=False, last_used_at=None, created_at=NOW - timedelta(days=46))
    found = hygiene.stale(unknown, LIMITS, NOW)
    assert found is not None
    assert "last use unknown" in found.summary
    assert found.detail == found.detail | {"field": "created_at", "usage_known": False}
    assert (
        hygiene.stale(dataclasses.replace(unknown, created_at=NOW - timedelta(days=44)), LIMITS, NOW) is None
    )


def test_never_used_is_not_the_same_as_unknown() -> None:
    never = hygiene.stale(facts(last_used_at=None, created_at=NOW - timedelta(days=60)), LIMITS, NOW)
    assert never is not None
    assert "never used since it was created" in never.summary


def test_no_expiry_and_no_usage_data_at_all_counts_from_first_sight() -> None:
    blank = facts(
        usage_known=False,
        last_used_at=None,
        created_at=None,
        expires_at=None,
        first_seen_at=NOW - timedelta(days=45),
    )
    found = hygiene.stale(blank, LIMITS, NOW)
    assert found is not None
    assert found.detail["field"] == "first_seen_at"
    assert found.detail["source"] == "Customs"
    assert "last use and creation unknown" in found.summary
    # The same credential with expiry known to be absent never expires; unknown expiry is not "never".
    assert hygiene.never_expires(blank, LIMITS, NOW) is not None
    assert hygiene.never_expires(dataclasses.replace(blank, expiry_known=False), LIMITS, NOW) is None


def test_disabled_credentials_are_not_stale_nor_orphaned() -> None:
    old = facts(enabled=False, last_used_at=NOW - timedelta(days=400), owner=None, owner_ref="")
    assert hygiene.stale(old, LIMITS, NOW) is None
    assert hygiene.orphaned(old, LIMITS, NOW) is None


# --- orphaned ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason"), [(User.Status.DEPARTED, "owner_departed"), (User.Status.DISABLED, "owner_disabled")]
)
def test_orphaned_when_the_owner_left_or_was_disabled(status: str, reason: str) -> None:
    found = hygiene.orphaned(facts(owner=Person(2, "Bob", status)), LIMITS, NOW)
    assert found is not None
    assert found.detail["reason"] == reason
    assert found.severity == ""  # the kind's own: high
    assert found.owner_id == 2


def test_orphaned_when_the_owner_is_unknown_to_the_directory_or_missing() -> None:
    unknown = hygiene.orphaned(facts(owner=None, owner_ref="ci-bot"), LIMITS, NOW)
    assert unknown is not None
    assert unknown.detail["reason"] == "owner_unknown"
    assert unknown.severity == findings.Severity.MEDIUM
    assert unknown.owner_label == "ci-bot"
    nobody = hygiene.orphaned(facts(owner=None, owner_ref="", owner_kind=""), LIMITS, NOW)
    assert nobody is not None
    assert nobody.detail["reason"] == "no_owner"


def test_a_robot_answers_through_its_creator() -> None:
    robot = facts(
        owner_kind="group", owner=None, owner_ref="Payments", creator=Person(5, "Carol", "departed")
    )
    found = hygiene.orphaned(robot, LIMITS, NOW)
    assert found is not None
    assert found.detail["reason"] == "owner_departed"
    assert found.owner_id == 5
    fine = dataclasses.replace(robot, creator=Person(5, "Carol", User.Status.ACTIVE))
    assert hygiene.orphaned(fine, LIMITS, NOW) is None


# --- expiry --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "stage"),
    [
        (timedelta(days=14, seconds=1), None),
        (timedelta(days=14), 14),
        (timedelta(days=7, seconds=1), 14),
        (timedelta(days=7), 7),
        (timedelta(days=1), 1),
        (timedelta(seconds=1), 1),
    ],
)
def test_expiry_notice_stages(left: timedelta, stage: int | None) -> None:
    found = hygiene.expires_soon(facts(expires_at=NOW + left), LIMITS, NOW)
    assert (found.detail["stage"] if found else None) == stage


def test_expired_but_still_present() -> None:
    gone_by = facts(expires_at=NOW - timedelta(days=3))
    found = hygiene.expired(gone_by, LIMITS, NOW)
    assert found is not None
    assert "expired 3 days ago" in found.summary
    assert hygiene.expires_soon(gone_by, LIMITS, NOW) is None
    assert hygiene.expired(facts(expires_at=NOW), LIMITS, NOW) is not None  # at the instant it expires
    assert hygiene.expired(facts(expires_at=NOW + timedelta(seconds=1)), LIMITS, NOW) is None


def test_shared_admin_only_while_enabled() -> None:
    assert hygiene.shared_admin(facts(shared_admin=True), LIMITS, NOW) is not None
    assert hygiene.shared_admin(facts(shared_admin=True, enabled=False), LIMITS, NOW) is None
    assert hygiene.shared_admin(facts(), LIMITS, NOW) is None


# --- over-privileged -----------------------------------------------------------------------------------


def _seen(**days_ago: int) -> dict[str, str]:
    return {action: (NOW - timedelta(days=days)).isoformat() for action, days in days_ago.items()}


def test_over_privileged_when_only_pulls_were_seen() -> None:
    writer = facts(
        actions=frozenset({"pull", "push"}), actions_seen=_seen(pull=2, push=120), actions_seen_source="log"
    )
    found = hygiene.over_privileged(writer, LIMITS, NOW)
    assert found is not None
    assert found.detail["granted"] == ["pull", "push"]
    assert (
        hygiene.over_privileged(dataclasses.replace(writer, actions_seen=_seen(pull=2, push=89)), LIMITS, NOW)
        is None
    )


def test_over_privileged_window_includes_its_first_instant() -> None:
    # A use exactly 90 days ago is in the 90-day window, as a credential idle for exactly 45 days is stale.
    writer = facts(actions=frozenset({"pull", "push"}), actions_seen_source="log")
    window = LIMITS.over_privileged
    at_edge = (NOW - window).isoformat()
    just_out = (NOW - window - timedelta(seconds=1)).isoformat()
    pull_at_edge = {"pull": at_edge, "push": just_out}
    assert hygiene.over_privileged(dataclasses.replace(writer, actions_seen=pull_at_edge), LIMITS, NOW)
    pull_just_out = {"pull": just_out}
    assert (
        hygiene.over_privileged(dataclasses.replace(writer, actions_seen=pull_just_out), LIMITS, NOW) is None
    )
    push_at_edge = {"pull": _seen(pull=1)["pull"], "push": at_edge}
    assert (
        hygiene.over_privileged(dataclasses.replace(writer, actions_seen=push_at_edge), LIMITS, NOW) is None
    )


def test_over_privileged_needs_usage_evidence_and_write_rights() -> None:
    no_evidence = facts(actions=frozenset({"pull", "push"}), actions_seen={}, actions_seen_source="")
    assert hygiene.over_privileged(no_evidence, LIMITS, NOW) is None
    reader = facts(actions=frozenset({"pull"}), actions_seen=_seen(pull=1), actions_seen_source="log")
    assert hygiene.over_privileged(reader, LIMITS, NOW) is None
    # Nothing seen at all is staleness, not over-privilege.
    idle = facts(actions=frozenset({"pull", "push"}), actions_seen={}, actions_seen_source="log")
    assert hygiene.over_privileged(idle, LIMITS, NOW) is None


# --- the scan, against the database ---------------------------------------------------------------------


def _open(kind: findings.FindingKind) -> list[Finding]:
    return list(Finding.objects.open().filter(kind=kind.slug).order_by("pk"))


@pytest.mark.django_db
def test_a_finding_opens_refreshes_and_resolves_itself() -> None:
    registry = factories.registry(kind="harbor")
    owner = factories.user()
    credential = factories.registry_credential(
        registry,
        owner_user=owner,
        owner_kind="user",
        owner_id=owner.external_id,
        created_at=NOW - timedelta(days=100),
    )
    hygiene.scan(now=NOW)
    [finding] = _open(hygiene.STALE)
    assert finding.subject_id == str(credential.pk)
    assert finding.owner == owner
    assert finding.scope == f"registry-{registry.pk}"
    later = NOW + timedelta(hours=1)
    result = hygiene.scan(now=later)
    finding.refresh_from_db()
    assert result.by_kind[hygiene.STALE.slug].refreshed == 1
    assert result.by_kind[hygiene.STALE.slug].opened == 0
    assert finding.last_seen == later
    assert finding.first_seen == NOW
    Credential.objects.filter(pk=credential.pk).update(last_used_at=later, usage_known=True)
    hygiene.scan(now=later + timedelta(minutes=1))
    finding.refresh_from_db()
    assert finding.resolved_at == later + timedelta(minutes=1)
    # The condition returns: the same finding reopens, with a new episode for notices.
    Credential.objects.filter(pk=credential.pk).update(last_used_at=None, usage_known=False)
    reopened_at = later + timedelta(days=1)
    hygiene.scan(now=reopened_at)
    finding.refresh_from_db()
    assert finding.resolved_at is None
    assert finding.opened_at == reopened_at
    assert finding.first_seen == NOW


@pytest.mark.django_db
def test_owner_renamed_changes_nothing_but_the_label() -> None:
    registry = factories.registry(kind="harbor")
    owner = factories.user(display_name="Dana Old")
    factories.registry_credential(registry, owner_user=owner, owner_kind="user", expires_at=None)
    hygiene.scan(now=NOW)
    [finding] = _open(hygiene.NEVER_EXPIRES)
    assert _open(hygiene.ORPHANED) == []
    User.objects.filter(pk=owner.pk).update(display_name="Dana New", username="dana.new")
    result = hygiene.scan(now=NOW + timedelta(hours=1))
    assert result.by_kind[hygiene.ORPHANED.slug].opened == 0
    assert result.by_kind[hygiene.NEVER_EXPIRES.slug].opened == 0
    finding.refresh_from_db()
    assert finding.owner == owner
    assert finding.opened_at == NOW
    assert finding.owner_label == "Dana New"


@pytest.mark.django_db
def test_a_rehired_owner_does_not_adopt_the_departed_identity_keys() -> None:
    registry = factories.registry(kind="harbor")
    leaver = factories.user(username="erin", external_id="oid-erin-1")
    credential = factories.registry_credential(
        registry, owner_user=leaver, owner_kind="user", owner_id="oid-erin-1"
    )
    account_services.deactivate_user(leaver, actor=None, reason="left", departed=True)
    # Rehired: the directory gives the same person a new immutable id and the same e-mail address.
    rehired = factories.user(username="erin2", external_id="oid-erin-2", email=leaver.email)
    hygiene.scan(now=NOW)
    [finding] = _open(hygiene.ORPHANED)
    assert finding.subject_id == str(credential.pk)
    assert finding.detail["reason"] == "owner_departed"
    assert finding.owner == leaver != rehired


@pytest.mark.django_db
def test_findings_of_a_removed_registry_resolve() -> None:
    registry = factories.registry(kind="harbor")
    factories.registry_credential(registry, shared_admin=True)
    hygiene.scan(now=NOW)
    [finding] = _open(hygiene.SHARED_ADMIN)
    registry.delete()
    hygiene.scan(now=NOW + timedelta(minutes=5))
    finding.refresh_from_db()
    assert finding.resolved_at == NOW + timedelta(minutes=5)


@pytest.mark.django_db
def test_a_gone_credential_resolves_its_findings() -> None:
    registry = factories.registry(kind="harbor")
    credential = factories.registry_credential(registry, expires_at=NOW - timedelta(days=1))
    hygiene.scan(now=NOW)
    assert len(_open(hygiene.EXPIRED)) == 1
    Credential.objects.filter(pk=credential.pk).update(gone_at=NOW)
    hygiene.scan(now=NOW + timedelta(minutes=1))
    assert _open(hygiene.EXPIRED) == []


@pytest.mark.django_db
def test_a_suppression_resurfaces_at_its_end_date() -> None:
    registry = factories.registry(kind="harbor")
    factories.registry_credential(registry, shared_admin=True)
    hygiene.scan()
    [finding] = _open(hygiene.SHARED_ADMIN)
    reviewer = factories.user()
    until = factories.days_from_now(3)
    findings.suppress(finding, actor=reviewer, until=until, justification="break-glass account, vaulted")
    hygiene.scan()
    assert _open(hygiene.SHARED_ADMIN) == []
    assert list(
        Finding.objects.open(now=until + timedelta(seconds=1)).filter(kind=hygiene.SHARED_ADMIN.slug)
    ) == [finding]


@pytest.mark.django_db
def test_a_registry_scan_leaves_other_registries_alone() -> None:
    first, second = factories.registry(kind="harbor"), factories.registry(kind="harbor")
    factories.registry_credential(first, shared_admin=True)
    other = factories.registry_credential(second, shared_admin=True)
    hygiene.scan(now=NOW)
    Credential.objects.filter(pk=other.pk).update(enabled=False)
    hygiene.scan(registry=first, now=NOW + timedelta(minutes=1))
    assert len(_open(hygiene.SHARED_ADMIN)) == 2  # second's is stale until second is scanned
    hygiene.scan(registry=second, now=NOW + timedelta(minutes=2))
    assert [f.scope for f in _open(hygiene.SHARED_ADMIN)] == [f"registry-{first.pk}"]


@pytest.mark.django_db
def test_customs_tokens_are_listed_and_judged_beside_registry_ones() -> None:
    payments = factories.group()
    person = factories.user()
    factories.member(person, payments)
    factories.access_rule(payments, "payments/**", "pull", "push")
    registry_token, _ = factories.token(person, kind="registry", scopes=["registry"])
    api_token, _ = factories.token(person)
    robot, _ = factories.robot(payments)
    revoked, _ = factories.token(person)
    account_services.revoke_token(revoked, actor=person)
    hygiene.scan()
    rows = {row.native_id: row for row in Credential.objects.filter(registry=None)}
    registry_row = rows[f"customs:personal-token:{registry_token.pk}"]
    assert registry_row.kind == "customs_registry_token"
    assert registry_row.actions == ["pull", "push"]
    assert registry_row.owner_user == person
    assert registry_row.gone_at is None
    assert rows[f"customs:personal-token:{api_token.pk}"].actions == []
    robot_row = rows[f"customs:robot-token:{robot.pk}"]
    assert robot_row.name == f"robot${robot.name}"
    assert robot_row.owner_name == payments.display_name
    assert rows[f"customs:personal-token:{revoked.pk}"].gone_at is not None
    # Their owner departs: departure revokes Customs' tokens, so none is left orphaned.
    account_services.deactivate_user(person, actor=None, reason="left", departed=True)
    hygiene.scan()
    assert Credential.objects.filter(registry=None, owner_user=person).present().count() == 0
    assert _open(hygiene.ORPHANED) == []


@pytest.mark.django_db
def test_unused_repositories_only_where_the_registry_reports_pulls() -> None:
    harbor = factories.registry(kind="harbor")
    plain = factories.registry(kind="distribution")
    old = NOW - timedelta(days=400)
    idle = factories.repository(harbor, first_seen=old, last_pushed_at=NOW - timedelta(days=181))
    factories.repository(harbor, first_seen=old, last_pushed_at=NOW - timedelta(days=179))  # pushed recently
    factories.repository(harbor, first_seen=old, last_pulled_at=NOW - timedelta(days=89))  # pulled recently
    factories.repository(harbor, first_seen=NOW - timedelta(days=10))  # too new to judge
    factories.repository(plain, first_seen=old)  # nobody reports its pulls
    hygiene.scan(now=NOW)
    [finding] = _open(hygiene.UNUSED_REPOSITORY)
    assert finding.subject_id == str(idle.pk)
    assert "never pulled" in finding.summary
    Repository.objects.filter(pk=idle.pk).update(last_pulled_at=NOW)
    hygiene.scan(now=NOW + timedelta(minutes=1))
    assert _open(hygiene.UNUSED_REPOSITORY) == []


@pytest.mark.django_db
def test_unused_repository_at_exactly_the_thresholds_and_not_one_second_inside() -> None:
    harbor = factories.registry(kind="harbor")
    old, second = NOW - timedelta(days=400), timedelta(seconds=1)
    pull_edge, push_edge = NOW - LIMITS.unused_pull, NOW - LIMITS.unused_push
    at_edges = factories.repository(
        harbor, first_seen=old, last_pulled_at=pull_edge, last_pushed_at=push_edge
    )
    factories.repository(harbor, first_seen=old, last_pulled_at=pull_edge + second, last_pushed_at=push_edge)
    factories.repository(harbor, first_seen=old, last_pulled_at=pull_edge, last_pushed_at=push_edge + second)
    # Never pushed: the push age counts from when Customs first met the repository.
    met_at_edge = factories.repository(harbor, first_seen=push_edge)
    factories.repository(harbor, first_seen=push_edge + second)
    found = list(hygiene.unused_repositories(harbor.pk, LIMITS, NOW))
    assert sorted(int(o.subject_id) for o in found) == sorted([at_edges.pk, met_at_edge.pk])


@pytest.mark.django_db
def test_time_bound_rules_past_their_end() -> None:
    team = factories.group()
    ended = factories.access_rule(team, "team/**", expires_in=timedelta(days=1))
    factories.access_rule(team, "other/**")
    hygiene.scan(now=NOW + timedelta(days=2))
    [finding] = _open(hygiene.RULE_EXPIRED)
    assert finding.subject_id == str(ended.pk)
    assert finding.scope == "rules"


@pytest.mark.django_db
def test_reconcile_handles_more_subjects_than_one_batch() -> None:
    kind = hygiene.NEVER_EXPIRES
    many = [findings.Observation(subject_key=f"bulk/c-{n}", summary=f"c{n}") for n in range(4500)]
    first = findings.reconcile(kind, many, scope="bulk", now=NOW)
    assert first.opened == 4500
    again = findings.reconcile(kind, many[:3000], scope="bulk", now=NOW + timedelta(hours=1))
    assert (again.opened, again.refreshed, again.resolved) == (0, 3000, 1500)
    back = findings.reconcile(kind, many, scope="bulk", now=NOW + timedelta(hours=2))
    assert (back.opened, back.reopened, back.refreshed) == (0, 1500, 3000)
    assert Finding.objects.filter(kind=kind.slug, scope="bulk").count() == 4500


@pytest.mark.django_db
def test_scan_findings_command_reports_progress_and_refuses_unknown_registries() -> None:
    registry = factories.registry(kind="harbor")
    factories.registry_credential(registry, shared_admin=True)
    out = StringIO()
    call_command("scan_findings", stdout=out)
    text = out.getvalue()
    assert "checked 1 credentials" in text
    assert "Shared admin account enabled: 1 open" in text
    # Shared admin, never expires (no expiry reported as absent) and no owner at all.
    assert re.fullmatch(
        r"scanned 1 credentials in [0-9.]+ s: 3 findings opened, 0 resolved", text.splitlines()[-2]
    )
    assert text.splitlines()[-1] == "notices: 0 sent, 0 failed, 0 skipped"
    with pytest.raises(CommandError, match="no registry named 'nope'"):
        call_command("scan_findings", "--registry", "nope")


@pytest.mark.django_db
def test_the_scan_task_scans_one_registry_and_sends_what_is_due(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[bool] = []
    monkeypatch.setattr(notify, "send_pending", lambda: sent.append(True))
    registry = factories.registry(kind="harbor")
    factories.registry_credential(registry, shared_admin=True, owner_id="ci-bot", expiry_known=False)
    assert tasks.scan_findings(registry.pk) == {hygiene.SHARED_ADMIN.slug: 1, hygiene.ORPHANED.slug: 1}
    assert sent == [True]
    assert tasks.scan_findings(999_999) == {}  # deleted since it was queued


@pytest.mark.django_db
def test_a_successful_sync_queues_a_scan_of_its_registry(
    monkeypatch: pytest.MonkeyPatch, registry: RunningRegistry
) -> None:
    queued: list[int] = []
    monkeypatch.setattr(tasks.scan_findings, "delay", queued.append)
    connected = services.save_registry(
        Registry(name="scanned", kind="distribution", endpoint=registry.url), actor=None, public={}
    )
    tasks.sync_registry(connected.pk)
    assert queued == [connected.pk]
    failing = factories.registry(kind="distribution")  # nothing listens there: the sync fails
    with pytest.raises(TransientError):  # handed to Celery's retry, called directly here
        tasks.sync_registry(failing.pk)
    assert queued == [connected.pk]
    assert SyncRun.objects.get(registry=failing).status == SyncRun.Status.FAILED


# --- evidence: every finding says which field, from which source, read when -------------------------


@pytest.mark.django_db
def test_every_finding_names_its_field_source_and_when_that_was_read() -> None:
    """What a sync read was read at the sync (the credential's observed_at, the repository's
    synced_at); the directory's statuses and Customs' own tokens and rules are read by the scan."""
    scan_at = timezone.now().replace(microsecond=0) + timedelta(days=2)  # past the end of the rule below
    read_at = scan_at - timedelta(hours=3)
    harbor = factories.registry(kind="harbor")
    active, leaver = factories.user(), factories.user(status=User.Status.DEPARTED)

    def held(**fields: Any) -> str:
        defaults: dict[str, Any] = {
            "owner_user": active,
            "owner_kind": "user",
            "expires_at": scan_at + timedelta(days=60),
            "last_used_at": scan_at - timedelta(days=1),
            "last_used_source": "Harbor audit log",
            "observed_at": read_at,
        }
        return str(factories.registry_credential(harbor, **(defaults | fields)).pk)

    token, _ = factories.token(active, days=5)
    repository = factories.repository(
        harbor, first_seen=scan_at - timedelta(days=400), last_pushed_at=scan_at - timedelta(days=200)
    )
    Repository.objects.filter(pk=repository.pk).update(synced_at=read_at)
    rule = factories.access_rule(factories.group(), "team/**", expires_in=timedelta(days=1))
    sync, scan = read_at.isoformat(), scan_at.isoformat()
    writes_rarely = {"pull": (scan_at - timedelta(days=2)).isoformat(), "push": "2020-01-01T00:00:00+00:00"}
    expected = {
        (hygiene.STALE, held(last_used_at=scan_at - timedelta(days=60))): (
            "last_used_at",
            "Harbor audit log",
            sync,
        ),
        # A registry that does not name the log it read: the registry itself is the source.
        (hygiene.STALE, held(last_used_at=scan_at - timedelta(days=50), last_used_source="")): (
            "last_used_at",
            harbor.name,
            sync,
        ),
        (hygiene.ORPHANED, held(owner_user=leaver)): ("owner_user.status", "directory", scan),
        (hygiene.ORPHANED, held(owner_user=None, owner_kind="group", created_by_user=leaver)): (
            "created_by_user.status",
            "directory",
            scan,
        ),
        (hygiene.ORPHANED, held(owner_user=None, owner_id="ghost")): ("owner_user", harbor.name, sync),
        (hygiene.ORPHANED, held(owner_user=None, owner_kind="")): ("owner_user", harbor.name, sync),
        (hygiene.NEVER_EXPIRES, held(expires_at=None)): ("expires_at", harbor.name, sync),
        (hygiene.EXPIRES_SOON, held(expires_at=scan_at + timedelta(days=5))): (
            "expires_at",
            harbor.name,
            sync,
        ),
        (hygiene.EXPIRES_SOON, str(_customs_row(token.pk).pk)): ("expires_at", "Customs", scan),
        (hygiene.EXPIRED, held(expires_at=scan_at - timedelta(days=2))): ("expires_at", harbor.name, sync),
        (hygiene.SHARED_ADMIN, held(shared_admin=True)): ("shared_admin", harbor.name, sync),
        (
            hygiene.OVER_PRIVILEGED,
            held(actions=["pull", "push"], actions_seen=writes_rarely, actions_seen_source="Harbor log"),
        ): ("actions_seen", "Harbor log", sync),
        (hygiene.UNUSED_REPOSITORY, str(repository.pk)): (
            "last_pulled_at, last_pushed_at",
            harbor.name,
            sync,
        ),
        (hygiene.RULE_EXPIRED, str(rule.pk)): ("expires_at", "Customs", scan),
    }
    hygiene.scan(now=scan_at)

    evidence = {
        (finding.kind, finding.subject_id): (
            finding.detail.get("field"),
            finding.detail.get("source"),
            finding.detail.get("observed_at"),
        )
        for finding in Finding.objects.open(now=scan_at)
    }
    for (kind, subject), wanted in expected.items():
        assert evidence.get((kind.slug, subject)) == wanted, (kind.slug, subject)
    # Every rule ran, and every finding it opened (not only those above) carries all three.
    assert {kind for kind, _ in evidence} == {kind.slug for kind, _ in expected}
    subject_models = {finding.kind: finding.subject_type for finding in Finding.objects.all()}
    for (slug, _), (field, source, observed) in evidence.items():
        model = apps.get_model(subject_models[slug])
        for name in str(field).split(", "):
            model._meta.get_field(name.split(".")[0])  # a field the subject has, or FieldDoesNotExist
        assert source in {harbor.name, "Harbor audit log", "Harbor log", "directory", "Customs"}, slug
        assert datetime.fromisoformat(str(observed)) in (read_at, scan_at), slug


def _customs_row(token_pk: int) -> Credential:
    # The scan copies tokens in; this one exists before it so its expected evidence can be written down.
    hygiene.copy_customs_tokens()
    return customs_row("personal-token", token_pk)


# --- thresholds come from settings ---------------------------------------------------------------------


@pytest.mark.django_db
def test_a_scan_follows_the_threshold_settings(settings: Any) -> None:
    harbor = factories.registry(kind="harbor")
    owner = factories.user()
    factories.registry_credential(
        harbor,
        owner_user=owner,
        owner_kind="user",
        last_used_at=NOW - timedelta(days=20),
        last_used_source="log",
        expires_at=NOW + timedelta(days=20),
        actions=["pull", "push"],
        actions_seen={
            "pull": (NOW - timedelta(days=1)).isoformat(),
            "push": (NOW - timedelta(days=40)).isoformat(),
        },
        actions_seen_source="log",
    )
    repository = factories.repository(
        harbor,
        first_seen=NOW - timedelta(days=400),
        last_pulled_at=NOW - timedelta(days=40),
        last_pushed_at=NOW - timedelta(days=70),
    )
    kinds = (hygiene.STALE, hygiene.EXPIRES_SOON, hygiene.OVER_PRIVILEGED, hygiene.UNUSED_REPOSITORY)
    hygiene.scan(now=NOW)
    assert [_open(kind) for kind in kinds] == [[], [], [], []]  # the defaults: 45, 14/7/1, 90, 90/180 days

    settings.HYGIENE_STALE_DAYS = 15
    settings.HYGIENE_EXPIRY_NOTICE_DAYS = [30, 21]
    settings.HYGIENE_OVERPRIVILEGED_DAYS = 30
    settings.HYGIENE_UNUSED_PULL_DAYS = 30
    settings.HYGIENE_UNUSED_PUSH_DAYS = 60
    hygiene.scan(now=NOW + timedelta(minutes=1))
    [stale], [soon], [over], [unused] = (_open(kind) for kind in kinds)
    assert stale.detail["threshold_days"] == 15
    assert soon.detail["stage"] == 21
    assert over.detail["window_days"] == 30
    assert unused.subject_id == str(repository.pk)
    assert (unused.detail["pull_threshold_days"], unused.detail["push_threshold_days"]) == (30, 60)
