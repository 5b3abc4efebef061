"""Access drift: rules against the grants a registry holds, the findings, and the reconcile plan.

The registry here is a test connector registered for each test only: it lists repositories (with
no tags), reports the grants of an in-memory upstream, and, for the writable kind, applies plans to
that upstream the way a registry would, so a sync after an apply reads the result back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries, DjangoCaptureOnCommitCallbacks

from accounts.models import DirectoryGroup, User
from portal import findings
from portal.audit import AuditAction
from portal.errors import RequestRejected
from portal.models import AuditEvent, Finding
from registries import connectors, drift, services, sync, tasks
from registries.connectors.base import (
    AccessPlan,
    Capability,
    ChangeOp,
    ConnectorConfig,
    GrantChange,
    Principal,
    PrincipalKind,
    RemoteArtifact,
    RemoteGrant,
    RemoteRepository,
    RemoteTag,
)
from registries.connectors.errors import PermanentError, TransientError
from registries.models import AccessRule, Grant, PrincipalLink, Registry, SyncRun
from tests import factories

pytestmark = pytest.mark.django_db

WRITABLE, READ_ONLY = "test-writable", "test-grants-read-only"


@dataclass
class Upstream:
    """What the fake registry holds. `fail_at` makes the nth change of an apply fail (0-based)."""

    repositories: list[str] = field(default_factory=list)
    grants: list[RemoteGrant] = field(default_factory=list)
    read_error: Exception | None = None
    fail_at: int | None = None
    applied: list[GrantChange] = field(default_factory=list)


class FakeConfig(ConnectorConfig):
    url: str


class GrantReadingConnector:
    kind: ClassVar[str] = READ_ONLY
    label: ClassVar[str] = "Test registry that reads grants"
    config_class: ClassVar[type[ConnectorConfig]] = FakeConfig
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.REPOSITORIES, Capability.GRANTS})
    upstream: ClassVar[Upstream] = Upstream()

    def __init__(self, config: FakeConfig) -> None:
        self.config = config

    def check(self) -> None:
        return None

    def repositories(self) -> Iterator[RemoteRepository]:
        yield from (RemoteRepository(name=name) for name in self.upstream.repositories)

    def tags(self, repository: str) -> list[RemoteTag]:
        return []

    def artifact(self, repository: str, digest: str) -> RemoteArtifact:
        raise AssertionError("no tags, so no artifact is ever read")

    def read_grants(self) -> Iterator[RemoteGrant]:
        if self.upstream.read_error:
            raise self.upstream.read_error
        yield from self.upstream.grants


class WritableConnector(GrantReadingConnector):
    kind: ClassVar[str] = WRITABLE
    label: ClassVar[str] = "Test registry that writes grants"
    capabilities: ClassVar[frozenset[Capability]] = GrantReadingConnector.capabilities | {
        Capability.WRITE_GRANTS
    }

    def apply_access_plan(self, plan: AccessPlan) -> Iterator[GrantChange]:
        for index, change in enumerate(plan.changes):
            if index == self.upstream.fail_at:
                raise PermanentError(f"the registry refused change {index + 1}")
            self._make(change)
            self.upstream.applied.append(change)
            yield change

    def _make(self, change: GrantChange) -> None:
        grants = self.upstream.grants
        if change.op == ChangeOp.ADD:
            grants.append(RemoteGrant(change.principal, change.scope, frozenset(change.actions), "customs"))
            return
        for index, grant in enumerate(grants):
            if grant.principal.id == change.principal.id and (grant.scope, grant.source) == (
                change.scope,
                change.source,
            ):
                left = grant.actions - set(change.actions)
                grants[index] = RemoteGrant(grant.principal, grant.scope, left, grant.source)
        self.upstream.grants = [grant for grant in grants if grant.actions]


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch) -> Upstream:
    """A fresh fake registry, its connectors registered for this test only."""
    state = Upstream()
    monkeypatch.setattr(GrantReadingConnector, "upstream", state)
    monkeypatch.setitem(connectors.CONNECTORS, READ_ONLY, GrantReadingConnector)
    monkeypatch.setitem(connectors.CONNECTORS, WRITABLE, WritableConnector)
    return state


def make_registry(kind: str = WRITABLE, **fields: Any) -> Registry:
    return factories.registry(kind=kind, endpoint="https://fake.example.test", **fields)


def group_principal(group: DirectoryGroup) -> Principal:
    return Principal(
        PrincipalKind.GROUP, f"native-{group.external_id}", group.display_name, group.external_id
    )


def grant(who: Principal, scope: str, *actions: str, source: str = "role assignment 1") -> RemoteGrant:
    return RemoteGrant(principal=who, scope=scope, actions=frozenset(actions), source=source)


def rule(group: DirectoryGroup, pattern: str, *actions: str, **fields: object) -> AccessRule:
    flags = {f"can_{action}": action in actions for action in AccessRule.ACTIONS}
    return AccessRule.objects.create(group=group, pattern=pattern, justification="test", **flags, **fields)


def synced(registry: Registry) -> SyncRun:
    run = sync.sync_inventory(registry)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    return run


ROBOT = Principal(PrincipalKind.ROBOT, "robot$team+ci", "team+ci")


# --- computing drift -------------------------------------------------------------------------------


def test_a_grant_matching_the_rules_is_no_drift(upstream: Upstream) -> None:
    team = factories.group()
    registry = make_registry()
    upstream.repositories = ["team/a", "team/b"]
    upstream.grants = [grant(group_principal(team), "team/**", "pull", "push")]
    rule(team, "team/*", "pull", "push", registry=registry)
    synced(registry)

    result = drift.compute(registry)

    assert result.status == drift.Status.COMPARED
    assert (result.grants, result.rules, result.unruled, result.unreflected) == (1, 1, (), ())
    assert not result.plan


def test_patterns_decide_which_repositories_a_rule_and_a_grant_reach(upstream: Upstream) -> None:
    team = factories.group()
    registry = make_registry()
    # team/** reaches team/x/deep; the rule's team/* stops at one segment.
    upstream.repositories = ["team/a", "team/x/deep", "other/c"]
    upstream.grants = [grant(group_principal(team), "team/**", "pull", "push")]
    rule(team, "team/*", "pull", "push", registry=registry)
    synced(registry)

    [unruled] = drift.compute(registry).unruled

    assert unruled.by_action == {"pull": ("team/x/deep",), "push": ("team/x/deep",)}
    assert unruled.grant.group == team  # mapped through the directory id, not the name


def test_rules_for_all_registries_count_and_other_registries_rules_do_not(upstream: Upstream) -> None:
    team = factories.group()
    registry = make_registry()
    upstream.repositories = ["team/a"]
    upstream.grants = [grant(group_principal(team), "team/a", "pull", "push")]
    rule(team, "team/**", "pull")  # every registry
    rule(team, "team/**", "push", registry=factories.registry())  # somewhere else
    synced(registry)

    [unruled] = drift.compute(registry).unruled

    assert unruled.by_action == {"push": ("team/a",)}


def test_an_expired_rule_is_ignored(upstream: Upstream) -> None:
    team = factories.group()
    registry = make_registry()
    upstream.repositories = ["team/a"]
    upstream.grants = [grant(group_principal(team), "team/a", "pull")]
    rule(team, "team/a", "pull", registry=registry, expires_at=timezone.now() - timedelta(minutes=1))
    rule(team, "team/**", "delete", registry=registry, expires_at=timezone.now() + timedelta(days=1))
    synced(registry)

    result = drift.compute(registry)

    assert [u.by_action for u in result.unruled] == [{"pull": ("team/a",)}]
    # The rule still in force asks for delete, which the group lacks.
    assert [(u.rule.pattern, u.by_action) for u in result.unreflected] == [
        ("team/**", {"delete": ("team/a",)})
    ]


def test_unmapped_principals_have_no_rules(upstream: Upstream) -> None:
    team = factories.group()
    registry = make_registry()
    upstream.repositories = ["team/a"]
    # A group the directory does not know (no directory id), and a robot: no rule can name either.
    stranger = Principal(PrincipalKind.GROUP, "harbor-group-7", team.display_name)
    upstream.grants = [
        grant(stranger, "team/a", "pull"),
        grant(ROBOT, "**", "push", source="robot permissions"),
    ]
    rule(team, "team/**", "pull", "push", registry=registry)
    synced(registry)

    result = drift.compute(registry)

    assert sorted((u.grant.principal_id, u.actions) for u in result.unruled) == [
        ("harbor-group-7", ("pull",)),
        ("robot$team+ci", ("push",)),
    ]
    assert all(u.grant.group is None for u in result.unruled)  # same name, no id: never matched by name


def test_a_person_is_covered_by_their_groups_rules_until_they_leave(upstream: Upstream) -> None:
    team, person = factories.group(), factories.user()
    factories.member(person, team)
    registry = make_registry()
    upstream.repositories = ["team/a"]
    upstream.grants = [
        grant(Principal(PrincipalKind.USER, "u-1", "alice", person.external_id), "team/a", "push")
    ]
    rule(team, "team/*", "push", registry=registry)
    synced(registry)
    assert drift.compute(registry).unruled == ()

    User.objects.filter(pk=person.pk).update(status=User.Status.DEPARTED)

    [unruled] = drift.compute(registry).unruled
    assert (unruled.grant.user_id, unruled.by_action) == (person.pk, {"push": ("team/a",)})


def test_a_grant_reaching_nothing_inventoried_is_compared_by_its_scope(upstream: Upstream) -> None:
    team = factories.group()
    registry = make_registry()
    upstream.repositories = ["team/a"]
    upstream.grants = [
        grant(group_principal(team), "empty/**", "pull", source="project empty"),
        grant(group_principal(team), "gone/app", "pull", source="repository policy gone/app"),
        grant(group_principal(team), "team/a", "pull"),
    ]
    rule(team, "empty/**", "pull", registry=registry)  # names the same scope
    rule(team, "team/*", "pull", registry=registry)
    synced(registry)

    [unruled] = drift.compute(registry).unruled

    assert (unruled.grant.scope, unruled.by_action) == ("gone/app", {"pull": ()})


def test_registries_behind_the_token_server_have_no_drift_by_construction(upstream: Upstream) -> None:
    team = factories.group()
    registry = make_registry(token_service="registry.example.test")
    upstream.repositories = ["team/a"]
    upstream.grants = [grant(ROBOT, "**", "push")]
    rule(team, "team/*", "pull", registry=registry)
    synced(registry)

    result = drift.reconcile_findings(registry)

    assert result.status == drift.Status.BY_CONSTRUCTION
    assert (result.unruled, result.unreflected, bool(result.plan)) == ((), (), False)
    assert not Finding.objects.filter(kind__in=["access_without_rule", "rule_not_reflected"]).exists()


def test_a_connector_that_reads_no_grants_has_nothing_to_compare() -> None:
    registry = factories.registry()  # distribution
    rule(factories.group(), "**", "pull", registry=registry)

    result = drift.reconcile_findings(registry)

    assert result.status == drift.Status.NOT_READABLE
    assert not Finding.objects.filter(kind="rule_not_reflected").exists()


def test_no_comparison_before_a_sync_has_read_the_grants(upstream: Upstream) -> None:
    registry = make_registry()
    rule(factories.group(), "**", "pull", registry=registry)

    assert drift.compute(registry).status == drift.Status.NOT_READ_YET


# --- reading grants during a sync ----------------------------------------------------------------------


def test_a_sync_replaces_the_grants_and_records_the_run(upstream: Upstream) -> None:
    registry = make_registry()
    upstream.grants = [grant(ROBOT, "**", "push"), grant(ROBOT, "team/**", "pull", source="robot 2")]
    synced(registry)
    upstream.grants = [grant(ROBOT, "team/a", "delete", source="robot 3")]

    run = synced(registry)

    rows = list(Grant.objects.filter(registry=registry))
    assert [(g.principal_kind, g.principal_id, g.scope, g.actions, g.source, g.run_id) for g in rows] == [
        ("robot", "robot$team+ci", "team/a", ["delete"], "robot 3", run.pk)
    ]
    assert run.grants_seen == 1


@pytest.mark.parametrize(
    "error",
    [TransientError("503 from the grants endpoint"), None],
    ids=["read-fails", "bad-scope"],
)
def test_a_failed_grant_read_leaves_the_previous_grants(upstream: Upstream, error: Exception | None) -> None:
    registry = make_registry()
    upstream.repositories = ["team/a"]
    upstream.grants = [grant(ROBOT, "**", "push")]
    synced(registry)
    upstream.repositories = ["team/a", "team/b"]
    if error:
        upstream.read_error = error
    else:
        upstream.grants = [grant(ROBOT, "Team/*", "push")]  # not a pattern: a connector bug

    run = sync.sync_inventory(registry)

    # The grants keep their previous rows and the run says why; the inventory still applies.
    assert run.status == SyncRun.Status.SUCCEEDED
    assert run.grants_seen is None
    assert ("503 from the grants endpoint" if error else "unusable scope 'Team/*'") in run.not_read["grants"]
    assert list(Grant.objects.filter(registry=registry).values_list("scope", flat=True)) == ["**"]
    assert sorted(registry.repositories.values_list("name", flat=True)) == ["team/a", "team/b"]


# --- findings ------------------------------------------------------------------------------------------


def open_findings(kind: findings.FindingKind) -> list[Finding]:
    return list(Finding.objects.unresolved().filter(kind=kind.slug).order_by("key"))


def test_findings_open_after_a_sync_and_resolve_when_the_grants_change(upstream: Upstream) -> None:
    team = factories.group()
    registry, elsewhere = make_registry(), make_registry()
    upstream.repositories = ["team/a"]
    upstream.grants = [grant(ROBOT, "team/**", "push", source="robot permissions")]
    rule(team, "team/*", "pull")  # both registries
    synced(elsewhere)
    synced(registry)

    [unruled] = [f for f in open_findings(findings.ACCESS_WITHOUT_RULE) if f.subject_id == str(registry.pk)]
    assert unruled.severity == Finding.Severity.HIGH
    assert "robot team+ci may push on team/a without a rule (robot permissions)" in unruled.summary
    assert unruled.detail["repositories"] == ["team/a"]
    assert len(open_findings(findings.RULE_NOT_REFLECTED)) == 2  # one per registry

    upstream.grants = [grant(group_principal(team), "team/**", "pull")]
    synced(registry)

    assert [f.subject_id for f in open_findings(findings.ACCESS_WITHOUT_RULE)] == [str(elsewhere.pk)]
    assert [f.key for f in open_findings(findings.RULE_NOT_REFLECTED)] == [
        f"rule_not_reflected:registry-{elsewhere.pk}/rule-{AccessRule.objects.get(group=team).pk}"
    ]
    assert Finding.objects.get(pk=unruled.pk).resolved_at is not None


def test_a_finding_refreshes_rather_than_duplicates(upstream: Upstream) -> None:
    registry = make_registry()
    upstream.grants = [grant(ROBOT, "**", "push")]
    synced(registry)
    synced(registry)

    assert Finding.objects.filter(kind="access_without_rule").count() == 1


def test_the_command_reports_each_registry_and_refuses_an_unknown_name(
    upstream: Upstream, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = make_registry(name="fake-eu")
    behind = factories.registry(name="lab", token_service="lab.example.test")
    upstream.grants = [grant(ROBOT, "**", "push")]
    synced(registry)
    Finding.objects.all().delete()

    call_command("access_drift", "--registry", "fake-eu")
    call_command("access_drift", "--registry", behind.name)

    out = capsys.readouterr().out
    assert "fake-eu: 1 grants, 0 rules in force; 1 grants give access without a rule" in out
    assert "lab: no drift by construction" in out
    assert len(open_findings(findings.ACCESS_WITHOUT_RULE)) == 1
    with pytest.raises(CommandError, match="no registry named 'nope'"):
        call_command("access_drift", "--registry", "nope")


def test_the_task_reconciles_one_registry(upstream: Upstream) -> None:
    registry = make_registry()
    upstream.grants = [grant(ROBOT, "**", "push")]
    synced(registry)
    Finding.objects.all().delete()

    tasks.check_access_drift.apply(args=(registry.pk,)).get()

    assert len(open_findings(findings.ACCESS_WITHOUT_RULE)) == 1


# --- the plan ----------------------------------------------------------------------------------------


def test_the_plan_narrows_a_grant_and_gives_back_what_rules_allow(upstream: Upstream) -> None:
    team, other = factories.group(), factories.group()
    registry = make_registry()
    upstream.repositories = ["team/a", "team/b", "other/c"]
    upstream.grants = [grant(group_principal(team), "team/**", "pull", "push", source="project team")]
    rule(team, "team/**", "pull", registry=registry)
    push = rule(team, "team/a", "push", registry=registry)
    pull = rule(other, "other/*", "pull", registry=registry)
    synced(registry)

    plan = drift.compute(registry).plan

    [removal] = plan.removals
    assert (removal.principal.id, removal.scope, removal.actions, removal.source) == (
        f"native-{team.external_id}",
        "team/**",
        ("push",),
        "project team",
    )
    assert "no rule gives" in removal.reason
    assert "team/b" in removal.reason
    assert sorted((a.principal.id, a.scope, a.actions, a.reason) for a in plan.additions) == sorted(
        [
            (team.external_id, "team/a", ("push",), f"rule #{push.pk}: push on team/a"),
            (other.external_id, "other/c", ("pull",), f"rule #{pull.pk}: pull on other/*"),
        ]
    )


def test_applying_the_plan_then_syncing_leaves_no_drift(upstream: Upstream) -> None:
    team = factories.group()
    registry = make_registry()
    upstream.repositories = ["team/a", "team/b"]
    upstream.grants = [grant(group_principal(team), "team/**", "pull", "push"), grant(ROBOT, "**", "delete")]
    rule(team, "team/**", "pull", registry=registry)
    rule(team, "team/a", "push", registry=registry)
    synced(registry)
    plan = drift.compute(registry).plan

    with mock.patch.object(tasks.sync_registry, "delay"):
        result = drift.apply_plan(registry, actor=None, expected=drift.fingerprint(plan))
    synced(registry)

    assert result.complete
    assert len(result.applied) == len(plan.changes) == 3
    assert [c.op for c in upstream.applied] == [ChangeOp.ADD, ChangeOp.REMOVE, ChangeOp.REMOVE]
    after = drift.compute(registry)
    assert (after.unruled, after.unreflected, bool(after.plan)) == ((), (), False)
    assert not open_findings(findings.ACCESS_WITHOUT_RULE)


# --- the page and applying ------------------------------------------------------------------------------


def drifted(upstream: Upstream, extra_repositories: int = 0) -> Registry:
    team = factories.group()
    registry = make_registry()
    upstream.repositories = ["team/a"] + [f"team/extra-{n}" for n in range(extra_repositories)]
    upstream.grants = [grant(ROBOT, "team/**", "push", source="robot permissions")] + [
        grant(ROBOT, f"team/extra-{n}", "delete", source=f"policy {n}") for n in range(extra_repositories)
    ]
    rule(team, "team/*", "pull", registry=registry)
    synced(registry)
    return registry


def reconcile_url(registry: Registry) -> str:
    return reverse("registries:reconcile", kwargs={"registry_id": registry.pk})


def apply_url(registry: Registry) -> str:
    return reverse("registries:reconcile_apply", kwargs={"registry_id": registry.pk})


def test_reviewers_see_the_plan_as_a_dry_run(upstream: Upstream, client: Client, reviewer: User) -> None:
    registry = drifted(upstream)
    client.force_login(reviewer)

    page = client.get(reconcile_url(registry)).content.decode()

    assert "1 addition, 1 removal" in page
    assert "robot permissions" in page
    assert "team+ci" in page
    assert "Apply this plan" not in page  # reviewers read; admins apply


def test_the_registry_page_links_the_plan_or_says_there_is_no_drift(
    upstream: Upstream, client: Client, reviewer: User, developer: User
) -> None:
    registry = drifted(upstream)
    behind = factories.registry(token_service="behind.example.test")
    client.force_login(reviewer)

    assert (
        reconcile_url(registry)
        in client.get(reverse("registries:detail", args=[registry.pk])).content.decode()
    )
    assert "No drift by construction" in client.get(reconcile_url(behind)).content.decode()
    client.force_login(developer)
    assert (
        reconcile_url(registry)
        not in client.get(reverse("registries:detail", args=[registry.pk])).content.decode()
    )


def test_the_plan_page_costs_the_same_with_more_rows(
    upstream: Upstream, client: Client, admin: User, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    few, many = drifted(upstream), drifted(upstream, extra_repositories=30)
    client.force_login(admin)
    client.get(reconcile_url(few))  # warm the session and the role lookup alike for both

    # session, user, role, registry, last grant read, repositories, rules, grants, links for the plan,
    # links listed, unlinked principals
    with django_assert_num_queries(11):
        client.get(reconcile_url(few))
    with django_assert_num_queries(11):
        response = client.get(reconcile_url(many))
    assert "31 removals" in response.content.decode()


def post_apply(client: Client, registry: Registry, fingerprint: str | None = None) -> str:
    plan = drift.compute(registry).plan
    response = client.post(
        apply_url(registry), {"fingerprint": fingerprint or drift.fingerprint(plan)}, follow=True
    )
    assert response.redirect_chain[-1][0] == reconcile_url(registry)
    return response.content.decode()


def test_an_admin_applies_the_plan_and_it_is_audited(
    upstream: Upstream,
    client: Client,
    admin: User,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    registry = drifted(upstream)
    plan = drift.compute(registry).plan
    client.force_login(admin)

    # The patch is entered first so it is still in place when the callbacks run, on leaving.
    with (
        mock.patch.object(tasks.sync_registry, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        page = post_apply(client, registry)

    assert "Applied all 2 changes" in page
    assert upstream.applied == list(plan.changes)
    event = AuditEvent.objects.get(action=AuditAction.REGISTRY_ACCESS_PLAN_APPLIED)
    assert (event.actor_id, event.target_id, event.detail["applied"]) == (admin.pk, str(registry.pk), 2)
    assert event.detail["plan"] == [change.as_dict() for change in plan.changes]
    delay.assert_called_once_with(registry.pk, SyncRun.Trigger.MANUAL)  # the grants are read back


def test_a_plan_that_changed_since_it_was_shown_is_not_applied(
    upstream: Upstream, client: Client, admin: User
) -> None:
    registry = drifted(upstream)
    client.force_login(admin)

    page = post_apply(client, registry, fingerprint="0" * 64)

    assert "The plan changed since it was shown" in page
    assert upstream.applied == []
    assert not AuditEvent.objects.filter(action__startswith="registry.access_plan").exists()


def test_a_connector_that_cannot_write_applies_nothing(
    upstream: Upstream, client: Client, admin: User
) -> None:
    registry = drifted(upstream)
    Registry.objects.filter(pk=registry.pk).update(kind=READ_ONLY)
    registry.refresh_from_db()
    client.force_login(admin)

    page = client.get(reconcile_url(registry)).content.decode()
    applied = post_apply(client, registry)

    assert "cannot change access in the registry" in page
    assert "Apply this plan" not in page
    assert "cannot change access in a registry" in applied
    assert "Nothing was applied" in applied
    assert not AuditEvent.objects.filter(action__startswith="registry.access_plan").exists()


def test_a_failure_half_way_is_reported_audited_and_a_rerun_plans_afresh(
    upstream: Upstream, client: Client, admin: User
) -> None:
    registry = drifted(upstream)
    upstream.fail_at = 1
    client.force_login(admin)

    with mock.patch.object(tasks.sync_registry, "delay"):
        page = post_apply(client, registry)

    assert "refused a change after 1 of 2 were applied: the registry refused change 2" in page
    event = AuditEvent.objects.get(action=AuditAction.REGISTRY_ACCESS_PLAN_FAILED)
    assert (event.detail["applied"], event.detail["planned"]) == (1, 2)
    assert event.detail["error"] == "the registry refused change 2"
    # The sync the apply queued reads back what was made; the next plan holds only what is left.
    synced(registry)
    [left] = drift.compute(registry).plan.changes
    assert (left.op, left.principal.id) == (ChangeOp.REMOVE, ROBOT.id)


@pytest.mark.parametrize("who", ["reviewer", "developer"])
def test_only_admins_apply(
    upstream: Upstream, client: Client, cast: dict[str, User | None], who: str
) -> None:
    registry = drifted(upstream)
    user = cast[who]
    assert user is not None
    client.force_login(user)

    response = client.post(
        apply_url(registry), {"fingerprint": drift.fingerprint(drift.compute(registry).plan)}
    )

    assert response.status_code == 403
    assert upstream.applied == []


def test_developers_do_not_see_the_plan(upstream: Upstream, client: Client, developer: User) -> None:
    client.force_login(developer)

    assert client.get(reconcile_url(drifted(upstream))).status_code == 403


def test_a_rule_change_rechecks_drift_on_the_registries_it_touches(
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    first, second = factories.registry(), factories.registry()
    group = factories.group()
    request = services.RuleRequest(
        group=group, pattern="team/**", actions=frozenset({"pull"}), justification="t", registry=first
    )
    with mock.patch.object(tasks.check_access_drift, "delay") as delay:
        with django_capture_on_commit_callbacks(execute=True):
            rule = services.save_access_rule(None, request, actor=None)
        assert [c.args for c in delay.call_args_list] == [(first.pk,)]
        delay.reset_mock()
        with django_capture_on_commit_callbacks(execute=True):
            services.save_access_rule(rule, dataclasses.replace(request, registry=second), actor=None)
        assert sorted(c.args for c in delay.call_args_list) == sorted([(first.pk,), (second.pk,)])
        delay.reset_mock()
        with django_capture_on_commit_callbacks(execute=True):
            services.save_access_rule(rule, dataclasses.replace(request, registry=None), actor=None)
        assert [c.args for c in delay.call_args_list] == [(None,)]  # every registry
        delay.reset_mock()
        with django_capture_on_commit_callbacks(execute=True):
            services.delete_access_rule(rule, actor=None)
        assert [c.args for c in delay.call_args_list] == [(None,)]


# --- principals an admin links to directory groups ------------------------------------------------


def test_a_linked_principal_counts_as_its_group_and_receives_its_access(upstream: Upstream) -> None:
    team, other = factories.group(), factories.group()
    registry = make_registry()
    upstream.repositories = ["team/a", "other/b"]
    hub_team = Principal(PrincipalKind.GROUP, "team-41", "payments")  # a Docker Hub team: no directory id
    upstream.grants = [grant(hub_team, "team/a", "pull", "push", source="team payments: write")]
    rule(team, "team/**", "pull", "push", registry=registry)
    rule(other, "other/*", "pull", registry=registry)
    services.link_principal(registry, kind="group", principal_id="team-41", group=team, actor=None)
    services.link_principal(
        registry, kind="service_account", principal_id="arn:aws:iam::1:role/other", group=other, actor=None
    )
    synced(registry)

    result = drift.compute(registry)

    assert result.unruled == ()  # the team's grant is the group's, which its rules allow
    [addition] = result.plan.additions  # the other group's access goes to the role linked to it
    assert (addition.principal.kind, addition.principal.id, addition.scope) == (
        PrincipalKind.SERVICE_ACCOUNT,
        "arn:aws:iam::1:role/other",
        "other/b",
    )
    assert addition.principal.directory_id == other.external_id


def test_links_are_audited_refused_when_ambiguous_and_removable(upstream: Upstream) -> None:
    team, other = factories.group(), factories.group()
    registry = make_registry()
    link = services.link_principal(registry, kind="group", principal_id="t-1", group=team, actor=None)
    assert AuditEvent.objects.filter(action=AuditAction.PRINCIPAL_LINK_CREATED).count() == 1
    with pytest.raises(RequestRejected, match="already linked"):
        services.link_principal(registry, kind="group", principal_id="t-1", group=other, actor=None)
    with pytest.raises(RequestRejected, match="already linked"):  # one principal per group and registry
        services.link_principal(registry, kind="group", principal_id="t-2", group=team, actor=None)
    with pytest.raises(RequestRejected, match="unknown principal kind"):
        services.link_principal(registry, kind="team", principal_id="t-3", group=other, actor=None)
    services.unlink_principal(link, actor=None)
    assert not PrincipalLink.objects.exists()
    assert AuditEvent.objects.filter(action=AuditAction.PRINCIPAL_LINK_DELETED).count() == 1


def test_an_admin_links_and_unlinks_on_the_plan_page(upstream: Upstream, client: Client, admin: User) -> None:
    team = factories.group()
    registry = drifted(upstream)
    client.force_login(admin)
    response = client.post(
        reverse("registries:principal_link_add", args=[registry.pk]),
        {
            "principal_kind": "group",
            "principal_id": "team-9",
            "principal_name": "ci",
            "group": team.external_id,
        },
    )
    assert response.status_code == 302
    link = PrincipalLink.objects.get(registry=registry)
    assert (link.principal_id, link.group) == ("team-9", team)
    page = client.get(reconcile_url(registry)).content.decode()
    assert "team-9" in page
    assert team.display_name in page
    client.post(reverse("registries:principal_link_delete", args=[registry.pk, link.pk]))
    assert not PrincipalLink.objects.exists()
