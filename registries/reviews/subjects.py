"""Who and what a campaign reaches: people, Customs robot tokens and registry credentials with access
in scope, each with the evidence (rules, grants, last use) its item keeps."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from accounts.models import DirectoryGroup, GroupMembership, PersonalToken, RobotToken, User
from registries.connectors.base import PrincipalKind
from registries.models import AccessRule, Credential, Grant
from registries.reviews.base import ACTIONS, Item, iso_or_none
from registries.reviews.scope import Scope

MACHINE_PRINCIPALS = (PrincipalKind.ROBOT, PrincipalKind.SERVICE_ACCOUNT)


@dataclass
class Subject:
    """Someone or something with access in scope, and the evidence for it, before it is an item."""

    kind: str
    label: str
    person: User | None = None
    robot: RobotToken | None = None
    credential: Credential | None = None
    rules: list[dict[str, Any]] = field(default_factory=list)
    grants: list[dict[str, Any]] = field(default_factory=list)
    groups: dict[int, DirectoryGroup] = field(default_factory=dict)
    last_used_at: datetime | None = None
    last_used_source: str = ""

    @property
    def actions(self) -> list[str]:
        held = {action for entry in self.rules + self.grants for action in entry["actions"]}
        return [action for action in ACTIONS if action in held]


def subjects_in_scope(scope: Scope, *, now: datetime | None = None) -> list[Subject]:
    """Every person, robot token and registry credential with access in scope, with its evidence."""
    now = now or timezone.now()
    by_group: dict[int, list[tuple[AccessRule, list[str]]]] = {}
    for rule, actions in rules_in_scope(scope, now=now):
        by_group.setdefault(rule.group_id, []).append((rule, actions))
    people = _people(scope, by_group)
    _note_registry_token_use(people)
    return [*people.values(), *_robots(by_group, now), *_credentials(scope)]


def rules_in_scope(scope: Scope, *, now: datetime) -> list[tuple[AccessRule, list[str]]]:
    """The rules in force giving actions in scope, each with those actions."""
    rules = AccessRule.objects.in_force(now=now).filter(scope.granting())
    if scope.registry_ids:
        rules = rules.filter(Q(registry=None) | Q(registry_id__in=scope.registry_ids))
    found = []
    for rule in rules.select_related("group", "registry").order_by("pk"):
        if actions := scope.reached(rule.registry_id, rule.pattern, rule.actions):
            found.append((rule, actions))
    return found


def _people(scope: Scope, by_group: dict[int, list[tuple[AccessRule, list[str]]]]) -> dict[int, Subject]:
    people: dict[int, Subject] = {}
    # Disabled and departed people have no access (registries/effective.py): nothing to review.
    active = Q(user__status=User.Status.ACTIVE, user__is_active=True)
    memberships = GroupMembership.objects.filter(active, group_id__in=by_group).select_related(
        "user", "group__owner"
    )
    for membership in memberships.order_by("user__username", "group__display_name"):
        subject = people.setdefault(membership.user_id, _person(membership.user))
        subject.groups[membership.group_id] = membership.group
        subject.rules += [
            _rule_evidence(rule, actions, membership) for rule, actions in by_group[membership.group_id]
        ]
    for grant, user in _personal_grants(scope):
        if actions := scope.reached(grant.registry_id, grant.scope, grant.actions):
            people.setdefault(user.pk, _person(user)).grants.append(_grant_evidence(grant, actions))
    return people


def _personal_grants(scope: Scope) -> Iterator[tuple[Grant, User]]:
    """Grants to active people, as the sync linked them (by directory id, or by username where the
    registry's admin says its usernames are the directory's)."""
    active = Q(user__status=User.Status.ACTIVE, user__is_active=True)
    by_user = _grants(scope).filter(active, principal_kind=PrincipalKind.USER).select_related("user")
    for grant in by_user:
        assert grant.user is not None  # the filter on the user's status keeps only linked grants
        yield grant, grant.user


def _person(user: User) -> Subject:
    label = f"{user.username} ({user.display_name})" if user.display_name else user.username
    return Subject(kind=Item.Kind.PERSON, label=label, person=user)


def _grants(scope: Scope) -> QuerySet[Grant]:
    grants = Grant.objects.filter(scope.granting()).select_related("registry")
    if scope.registry_ids:
        grants = grants.filter(registry_id__in=scope.registry_ids)
    return grants.order_by("registry__name", "scope", "pk")


def _note_registry_token_use(people: dict[int, Subject]) -> None:
    """Last use: the newest use of any of their Customs registry tokens."""
    tokens = PersonalToken.objects.filter(owner_id__in=people, kind=PersonalToken.Kind.REGISTRY)
    for owner, used in tokens.values("owner").annotate(used=Max("last_used_at")).values_list("owner", "used"):
        if used is not None:
            people[owner].last_used_at, people[owner].last_used_source = used, "Customs registry token"


def _robots(by_group: dict[int, list[tuple[AccessRule, list[str]]]], now: datetime) -> Iterator[Subject]:
    robots = RobotToken.objects.active(now=now).filter(group_id__in=by_group).select_related("group__owner")
    for robot in robots.order_by("name"):
        assert robot.group is not None  # active() keeps only robots with a group
        subject = Subject(
            kind=Item.Kind.ROBOT,
            label=f"{robot.username} (robot of {robot.group})",
            robot=robot,
            groups={robot.group.pk: robot.group},
            last_used_at=robot.last_used_at,
            last_used_source="Customs" if robot.last_used_at else "",
        )
        subject.rules = [_rule_evidence(rule, actions) for rule, actions in by_group[robot.group.pk]]
        yield subject


def _credentials(scope: Scope) -> Iterator[Subject]:
    """Registry credentials reached through the grants listed for the principal they act as."""
    reaching: dict[tuple[int, str, str], list[dict[str, Any]]] = {}
    for grant in _grants(scope).filter(principal_kind__in=MACHINE_PRINCIPALS):
        if actions := scope.reached(grant.registry_id, grant.scope, grant.actions):
            key = (grant.registry_id, grant.principal_kind, grant.principal_id)
            reaching.setdefault(key, []).append(_grant_evidence(grant, actions))
    credentials = (
        Credential.objects.present()
        .filter(enabled=True, owner_kind__in=MACHINE_PRINCIPALS, registry_id__in={key[0] for key in reaching})
        .select_related("registry", "steward", "owner_user", "created_by_user")
        .order_by("registry__name", "name", "pk")
    )
    for credential in credentials:
        assert credential.registry_id is not None
        grants = reaching.get((credential.registry_id, credential.owner_kind, credential.owner_id))
        if grants:
            yield Subject(
                kind=Item.Kind.CREDENTIAL,
                label=f"{credential.get_kind_display()} {credential.name} on {credential.registry}",
                credential=credential,
                grants=grants,
                last_used_at=credential.last_used_at,
                last_used_source=credential.last_used_source if credential.usage_known else "not recorded",
            )


def _rule_evidence(
    rule: AccessRule, actions: list[str], membership: GroupMembership | None = None
) -> dict[str, Any]:
    return {
        "rule": rule.pk,
        "group_pk": rule.group_id,
        "group": rule.group.display_name,
        "group_id": rule.group.external_id,  # the directory's immutable id
        "registry": rule.registry.name if rule.registry else "*",
        "pattern": rule.pattern,
        "actions": actions,
        "expires_at": iso_or_none(rule.expires_at),
        "justification": rule.justification[:500],
        "membership_source": membership.source if membership else "",
        "membership_synced_at": iso_or_none(membership.synced_at) if membership else None,
    }


def _grant_evidence(grant: Grant, actions: list[str]) -> dict[str, Any]:
    # The grant itself, not only its row: a sync between the opening and the close replaces rows.
    return {
        "grant": grant.pk,
        "registry_pk": grant.registry_id,
        "registry": grant.registry.name,
        "principal_kind": grant.principal_kind,
        "principal_id": grant.principal_id,
        "principal_name": grant.principal_name,
        "scope": grant.scope,
        "actions": actions,
        "source": grant.source,
        "observed_at": iso_or_none(grant.observed_at),
    }
