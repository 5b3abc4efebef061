"""Access rules and the answers built on them: what a person may do, who may push, what a group reaches."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import DirectoryGroup, Source, User
from accounts.services import deactivate_user
from portal.audit import AuditAction
from portal.errors import RequestRejected
from portal.models import AuditEvent
from registries import effective, services
from registries.models import AccessRule, Registry, Repository
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def registry() -> Registry:
    return Registry.objects.create(name="prod-eu", kind="distribution", endpoint="https://r.example.test")


rule = factories.access_rule


def person_in(*groups: DirectoryGroup) -> User:
    person = factories.user()
    for group in groups:
        factories.member(person, group)
    return person


def test_access_is_the_union_of_matching_rules_with_evidence(registry: Registry) -> None:
    payments, ops = factories.group(display_name="Payments"), factories.group(display_name="Ops")
    pull_all = rule(payments, "payments/**", "pull")
    push_api = rule(ops, "payments/api", "pull", "push", registry=registry)
    rule(ops, "web/*", "push")  # does not match
    alice = person_in(payments, ops)
    access = effective.user_access(alice, registry, "payments/api")
    assert access.actions == {"pull", "push"}
    assert {e.rule_id for e in access.evidence} == {pull_all.pk, push_api.pk}
    evidence = next(e for e in access.evidence if e.rule_id == push_api.pk)
    assert (evidence.group, evidence.group_id, evidence.membership_source) == (
        "Ops",
        ops.external_id,
        Source.OIDC,
    )
    assert evidence.membership_synced_at is not None


def test_a_rule_for_one_registry_grants_nothing_on_another(registry: Registry) -> None:
    other = Registry.objects.create(name="prod-us", kind="distribution", endpoint="https://us.example.test")
    team = factories.group()
    rule(team, "payments/api", "push", registry=registry)
    bob = person_in(team)
    assert effective.user_access(bob, registry, "payments/api").allows("push")
    assert effective.user_access(bob, other, "payments/api") == effective.NO_ACCESS


def test_an_expired_rule_stops_granting_at_its_expiry_without_any_job(registry: Registry) -> None:
    team = factories.group()
    rule(team, "payments/**", "pull", expires_in=timedelta(hours=1))
    carol = person_in(team)
    assert effective.user_access(carol, registry, "payments/api").allows("pull")
    later = timezone.now() + timedelta(hours=2)
    assert not effective.user_access(carol, registry, "payments/api", now=later).allows("pull")
    assert effective.who_can(registry, "payments/api", "pull", now=later) == []


def test_departed_people_can_do_nothing(registry: Registry) -> None:
    team = factories.group()
    rule(team, "**", "pull", "push", "delete")
    dave = person_in(team)
    deactivate_user(dave, actor=None, reason="left", departed=True)
    assert effective.user_access(dave, registry, "anything/at-all") == effective.NO_ACCESS
    assert effective.who_can(registry, "anything/at-all", "push") == []


def test_who_can_push_names_each_person_once_with_every_reason(registry: Registry) -> None:
    writers, admins, readers = factories.group(), factories.group(), factories.group()
    rule(writers, "payments/*", "push")
    rule(admins, "**", "push", "delete")
    rule(readers, "payments/*", "pull")
    erin, frank = person_in(writers, admins), person_in(writers)
    person_in(readers)
    answer = {
        user.username: sorted(e.rule_id for e in ev)
        for user, ev in effective.who_can(registry, "payments/api", "push")
    }
    assert set(answer) == {erin.username, frank.username}
    assert len(answer[erin.username]) == 2


def test_what_a_group_reaches_lists_the_inventoried_repositories(registry: Registry) -> None:
    team = factories.group()
    for name in ("payments/api", "payments/worker", "payments/tools/cli", "web/shop"):
        Repository.objects.create(registry=registry, name=name, namespace=Repository.namespace_of(name))
    rule(team, "payments/*", "pull")
    [(found, repositories)] = effective.group_reach(team)
    assert sorted(repositories.values_list("name", flat=True)) == ["payments/api", "payments/worker"]


@pytest.mark.parametrize(
    ("pattern", "actions", "justification", "message"),
    [
        ("Payments/API", {"pull"}, "why", "lowercase"),
        ("payments/**x", {"pull"}, "why", "whole path segment"),
        ("payments/api", set(), "why", "choose actions"),
        ("payments/api", {"pull", "admin"}, "why", "choose actions"),
        ("payments/api", {"pull"}, "  ", "justification"),
    ],
)
def test_bad_rules_are_refused_with_a_reason_and_nothing_saved(
    pattern: str, actions: set[str], justification: str, message: str
) -> None:
    request = services.RuleRequest(
        group=factories.group(), pattern=pattern, actions=frozenset(actions), justification=justification
    )
    with pytest.raises(RequestRejected, match=message):
        services.save_access_rule(None, request, actor=None)
    assert not AccessRule.objects.exists()


def test_every_rule_change_is_audited_with_before_and_after(registry: Registry) -> None:
    team = factories.group()
    created = rule(team, "payments/api", "pull")
    changed = services.save_access_rule(
        created,
        services.RuleRequest(
            group=team,
            pattern="payments/*",
            actions=frozenset({"pull", "push"}),
            justification="wider for the migration",
        ),
        actor=None,
    )
    services.delete_access_rule(changed, actor=None)
    actions = list(AuditEvent.objects.order_by("sequence").values_list("action", flat=True))
    assert actions[-3:] == [
        AuditAction.ACCESS_RULE_CREATED,
        AuditAction.ACCESS_RULE_UPDATED,
        AuditAction.ACCESS_RULE_DELETED,
    ]
    update = AuditEvent.objects.get(action=AuditAction.ACCESS_RULE_UPDATED)
    assert (update.detail["before"]["pattern"], update.detail["after"]["pattern"]) == (
        "payments/api",
        "payments/*",
    )
    assert update.detail["after"]["actions"] == ["pull", "push"]


def test_a_rule_row_without_its_derived_columns_never_widens_access(registry: Registry) -> None:
    # Written outside the services (a data migration, a bulk import): the pattern still decides.
    team = factories.group()
    AccessRule.objects.create(group=team, pattern="payments/api", can_push=True, justification="raw insert")
    grace = person_in(team)
    assert not effective.user_access(grace, registry, "web/shop").allows("push")
    assert effective.user_access(grace, registry, "payments/api").allows("push")


def test_rule_sets_agree_with_user_access(registry: Registry) -> None:
    """The token server's SQL (rules_for_user) must answer as the ORM path (user_access) does."""
    other = factories.registry()
    platform, payments, contractors = factories.group(), factories.group(), factories.group()
    rule(platform, "library/**", "pull", "push")
    rule(payments, "payments/*", "pull", "push", "delete", registry=registry)
    rule(payments, "payments/*", "pull", registry=other)
    rule(contractors, "payments/api", "pull", expires_in=timedelta(hours=1))
    lapsed = rule(contractors, "library/debian", "pull", "delete")
    AccessRule.objects.filter(pk=lapsed.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    broken = rule(platform, "tools/x", "pull")
    AccessRule.objects.filter(pk=broken.pk).update(pattern="Tools/[x")  # saved around the services
    people = [
        person_in(platform),
        person_in(payments, contractors),
        person_in(platform, payments),
        person_in(),
    ]
    names = ["library/debian", "library/a/b", "payments/api", "payments/api/v2", "tools/x", "Tools/[x"]
    for where in (registry, other):
        for person in people:
            rules = effective.rules_for_user(person, where)
            for name in names:
                assert rules.actions_on(name) == effective.user_access(person, where, name).actions, (
                    person,
                    where,
                    name,
                )
    leaver = people[2]
    deactivate_user(leaver, actor=None, reason="left", departed=True)
    assert effective.rules_for_user(leaver, registry).actions_on("library/debian") == frozenset()


def test_a_robots_rule_set_is_its_groups_rules_while_it_is_valid(registry: Registry) -> None:
    team = factories.group()
    rule(team, "ci/**", "pull", "push")
    robot, _ = factories.robot(team)
    assert effective.rules_for_robot(robot, registry).actions_on("ci/app") == {"pull", "push"}
    assert effective.robot_access(robot, registry, "ci/app").actions == {"pull", "push"}
    robot.revoked_at = timezone.now()
    assert effective.rules_for_robot(robot, registry).actions_on("ci/app") == frozenset()
