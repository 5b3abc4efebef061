"""Effective access: who may do what where, always with the evidence that grants it.

Rules only allow, and access is the union of the rules that match: a person's actions on a
repository are those of every rule in force for a group they belong to, on that registry (or all),
whose pattern matches the repository. Disabled and departed people have none. A robot token's
actions are those of the rules in force for the group that owns it, and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from accounts.models import DirectoryGroup, GroupMembership, RobotToken, User
from registries.models import AccessRule, Registry, Repository
from registries.patterns import InvalidPattern, Pattern, compile_pattern


@dataclass(frozen=True)
class Evidence:
    """One rule, and the membership through which it reaches the person (when asked about a person)."""

    rule_id: int
    pattern: str
    actions: tuple[str, ...]
    group: str
    group_id: str  # the directory's immutable id
    expires_at: datetime | None
    membership_source: str = ""
    membership_synced_at: datetime | None = None


@dataclass(frozen=True)
class Access:
    actions: frozenset[str]
    evidence: tuple[Evidence, ...]

    def allows(self, action: str) -> bool:
        return action in self.actions


NO_ACCESS = Access(actions=frozenset(), evidence=())


def user_access(user: User, registry: Registry, repository: str, *, now: datetime | None = None) -> Access:
    """What this person may do on this repository, and why."""
    if not user.may_sign_in:
        return NO_ACCESS
    memberships = {m.group_id: m for m in GroupMembership.objects.filter(user=user)}
    if not memberships:
        return NO_ACCESS
    rules = (
        AccessRule.objects.in_force(now=now)
        .for_registry(registry)
        .filter(group_id__in=memberships)
        .matching(repository)
        .select_related("group")
    )
    evidence = [_evidence(rule, memberships[rule.group_id]) for rule in rules]
    return Access(actions=frozenset(a for e in evidence for a in e.actions), evidence=tuple(evidence))


def robot_access(
    robot: RobotToken, registry: Registry, repository: str, *, now: datetime | None = None
) -> Access:
    """What this robot may do on this repository, and why: its group's rules, no membership involved."""
    # Revoked, expired and orphaned robots (their group deleted) grant nothing, like a departed person.
    if robot.revoked_at or robot.expires_at <= (now or timezone.now()) or robot.group_id is None:
        return NO_ACCESS
    rules = (
        AccessRule.objects.in_force(now=now)
        .for_registry(registry)
        .filter(group_id=robot.group_id)
        .matching(repository)
        .select_related("group")
    )
    evidence = [_evidence(rule) for rule in rules]
    return Access(actions=frozenset(a for e in evidence for a in e.actions), evidence=tuple(evidence))


@dataclass(frozen=True)
class RuleSet:
    """The rules in force for one principal on one registry, compiled, for many repositories in a row.

    The token server asks about several scopes per request: this reads the rules once (one query)
    and answers each repository in Python with the per-process pattern cache. No evidence: a
    registry token needs actions, and the explorer has user_access for the why.
    """

    rules: tuple[tuple[Pattern, frozenset[str]], ...] = ()
    # The first of these rules to expire: until then the set holds without reading it again.
    expires_at: datetime | None = None

    def actions_on(self, repository: str) -> frozenset[str]:
        found: set[str] = set()
        for pattern, actions in self.rules:
            if pattern.matches(repository):
                found |= actions
        return frozenset(found)


def rules_for_user(user: User, registry: Registry, *, now: datetime | None = None) -> RuleSet:
    """The rules reaching a person through any of their groups; none once they may not sign in."""
    if not user.may_sign_in:
        return RuleSet()
    return _rule_set(_RULES_OF_USER, (user.pk, registry.pk, now or timezone.now()))


def rules_for_robot(robot: RobotToken, registry: Registry, *, now: datetime | None = None) -> RuleSet:
    """Its group's rules; none when the robot is revoked, expired or has lost its group."""
    moment = now or timezone.now()
    if robot.revoked_at or robot.expires_at <= moment or robot.group_id is None:
        return RuleSet()
    return _rule_set(_RULES_OF_GROUP, (robot.group_id, registry.pk, moment))


# The token server's hot path, as SQL: building the same query through the ORM costs several times
# what PostgreSQL takes to answer it (measured by bench/tokens.py), and it runs for every `docker
# login` and pull. The conditions are AccessRuleQuerySet.in_force() and for_registry(); the test
# test_rule_sets_agree_with_user_access keeps the two in step.
_RULES_OF_USER = """
    SELECT r.pattern, r.can_pull, r.can_push, r.can_delete, r.expires_at FROM registries_accessrule r
    WHERE r.group_id IN (SELECT m.group_id FROM accounts_groupmembership m WHERE m.user_id = %s)
      AND (r.registry_id = %s OR r.registry_id IS NULL)
      AND (r.expires_at IS NULL OR r.expires_at > %s)
"""
_RULES_OF_GROUP = """
    SELECT r.pattern, r.can_pull, r.can_push, r.can_delete, r.expires_at FROM registries_accessrule r
    WHERE r.group_id = %s
      AND (r.registry_id = %s OR r.registry_id IS NULL)
      AND (r.expires_at IS NULL OR r.expires_at > %s)
"""


def _rule_set(sql: str, params: tuple[int, int, datetime]) -> RuleSet:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    compiled = []
    expiries = [expires_at for *_, expires_at in rows if expires_at is not None]
    for pattern, pull, push, delete, _expires_at in rows:
        try:
            matcher = compile_pattern(pattern)
        except InvalidPattern:
            continue  # saved around the services with a broken pattern: it grants nothing
        actions = (a for a, allowed in zip(AccessRule.ACTIONS, (pull, push, delete), strict=True) if allowed)
        compiled.append((matcher, frozenset(actions)))
    return RuleSet(tuple(compiled), min(expiries, default=None))


def who_can(
    registry: Registry, repository: str, action: str, *, now: datetime | None = None
) -> list[tuple[User, list[Evidence]]]:
    """Everyone who may perform `action` on the repository, each with the rules and memberships why."""
    rules = list(
        AccessRule.objects.in_force(now=now)
        .for_registry(registry)
        .granting(action)
        .matching(repository)
        .select_related("group")
    )
    by_group: dict[int, list[AccessRule]] = {}
    for rule in rules:
        by_group.setdefault(rule.group_id, []).append(rule)
    people: dict[int, tuple[User, list[Evidence]]] = {}
    memberships = (
        GroupMembership.objects.filter(
            group_id__in=by_group, user__status=User.Status.ACTIVE, user__is_active=True
        )
        .select_related("user")
        .order_by("user__username")
    )
    for membership in memberships:
        entry = people.setdefault(membership.user_id, (membership.user, []))
        entry[1].extend(_evidence(rule, membership) for rule in by_group[membership.group_id])
    return list(people.values())


def robots_who_can(
    registry: Registry, repository: str, action: str, *, now: datetime | None = None
) -> list[tuple[RobotToken, list[Evidence]]]:
    """Every robot token that may perform `action` on the repository, with its group's rules why."""
    moment = now or timezone.now()
    rules = list(
        AccessRule.objects.in_force(now=moment)
        .for_registry(registry)
        .granting(action)
        .matching(repository)
        .select_related("group")
    )
    by_group: dict[int, list[AccessRule]] = {}
    for rule in rules:
        by_group.setdefault(rule.group_id, []).append(rule)
    robots = RobotToken.objects.active(now=moment).filter(group_id__in=by_group).order_by("name")
    return [(robot, [_evidence(rule) for rule in by_group[robot.group_id or 0]]) for robot in robots]


def group_reach(
    group: DirectoryGroup, *, now: datetime | None = None
) -> list[tuple[AccessRule, QuerySet[Repository]]]:
    """Each rule in force for the group, with the inventoried repositories it matches."""
    reach: list[tuple[AccessRule, QuerySet[Repository]]] = []
    for rule in AccessRule.objects.in_force(now=now).filter(group=group).select_related("registry"):
        repositories = Repository.objects.filter(name__regex=compile_pattern(rule.pattern).anchored)
        if rule.registry_id:
            repositories = repositories.filter(registry_id=rule.registry_id)
        reach.append((rule, repositories))
    return reach


def _evidence(rule: AccessRule, membership: GroupMembership | None = None) -> Evidence:
    return Evidence(
        rule_id=rule.pk,
        pattern=rule.pattern,
        actions=tuple(rule.actions),
        group=rule.group.display_name,
        group_id=rule.group.external_id,
        expires_at=rule.expires_at,
        membership_source=membership.source if membership else "",
        membership_synced_at=membership.synced_at if membership else None,
    )


# --- Added for the access pages and API: reach counts, rules reaching a person, the full report -------


def repository_scope(rule: AccessRule) -> Q:
    """The inventoried repositories a rule matches, as a filter (the pattern is the source of truth)."""
    try:
        anchored = compile_pattern(rule.pattern).anchored
    except InvalidPattern:
        return Q(pk__in=[])  # a rule saved outside the services with a broken pattern matches nothing
    on_registry = Q(registry_id=rule.registry_id) if rule.registry_id else Q()
    return Q(name__regex=anchored) & on_registry


def reach_counts(rules: Iterable[AccessRule]) -> dict[int, int]:
    """How many inventoried repositories each rule matches: one pass over the inventory for all of them."""
    counts = {f"rule_{rule.pk}": Count("pk", filter=repository_scope(rule)) for rule in rules}
    if not counts:
        return {}
    totals = Repository.objects.order_by().aggregate(**counts)
    return {int(key.removeprefix("rule_")): value or 0 for key, value in totals.items()}


def rules_reaching(
    user: User, *, registry: Registry | None = None, now: datetime | None = None
) -> list[tuple[AccessRule, GroupMembership]]:
    """The rules in force that reach a person, each with the membership it reaches them through."""
    if not user.may_sign_in:
        return []
    memberships = {m.group_id: m for m in GroupMembership.objects.filter(user=user).select_related("group")}
    rules = AccessRule.objects.in_force(now=now).filter(group_id__in=memberships)
    if registry is not None:
        rules = rules.for_registry(registry)
    return [(rule, memberships[rule.group_id]) for rule in rules.select_related("group", "registry")]


REPORT_COLUMNS = (
    "username",
    "display_name",
    "status",
    "group",
    "group_external_id",
    "membership_source",
    "membership_synced_at",
    "rule_id",
    "registry",
    "pattern",
    "actions",
    "expires_at",
)


def access_report(
    *,
    registry: Registry | None = None,
    group: DirectoryGroup | None = None,
    now: datetime | None = None,
    chunk_size: int = 2000,
) -> Iterator[tuple[Any, ...]]:
    """One row per (person, membership, rule in force), in REPORT_COLUMNS order, read in chunks.

    Everyone in a group is listed, whatever their status: the status column tells reviewers whom a
    rule reaches on paper but grants nothing to (disabled and departed people).
    """
    rules = AccessRule.objects.in_force(now=now)
    if now is not None:
        # As of a past moment: rules written since were not in force then.
        rules = rules.filter(created_at__lte=now)
    if registry is not None:
        rules = rules.for_registry(registry)
    if group is not None:
        rules = rules.filter(group=group)
    # One join from each membership to its group's rules: the values below reuse the join the
    # filter made, so each row pairs a membership with one rule in force.
    rule = "group__access_rules__"
    rows = (
        GroupMembership.objects.filter(**{f"{rule}in": rules})
        .order_by("user__username", "group__display_name", f"{rule}pattern", f"{rule}pk")
        .values_list(
            "user__username",
            "user__display_name",
            "user__status",
            "group__display_name",
            "group__external_id",
            "source",
            "synced_at",
            f"{rule}pk",
            f"{rule}registry__name",
            f"{rule}pattern",
            f"{rule}can_pull",
            f"{rule}can_push",
            f"{rule}can_delete",
            f"{rule}expires_at",
        )
    )
    for *person, rule_id, registry_name, pattern, pull, push, delete, expires_at in rows.iterator(
        chunk_size=chunk_size
    ):
        actions = ",".join(
            a for a, allowed in zip(AccessRule.ACTIONS, (pull, push, delete), strict=True) if allowed
        )
        yield (*person, rule_id, registry_name or "*", pattern, actions, expires_at)
