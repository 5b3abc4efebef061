"""Effective access: who may do what where, always with the evidence that grants it.

Rules only allow, and access is the union of the rules that match: a person's actions on a
repository are those of every rule in force for a group they belong to, on that registry (or all),
whose pattern matches the repository. Disabled and departed people have none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from accounts.models import DirectoryGroup, GroupMembership, User
from registries.models import AccessRule, Registry, Repository
from registries.patterns import compile_pattern


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
