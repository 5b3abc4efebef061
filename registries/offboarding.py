"""Offboarding, first part: the plan (dry run) of everything a departed person still holds.

The plan lists every way the person could still reach a registry or Customs, grouped by where it
lives, each with what offboarding will do about it and why. Credentials that automation still
uses are re-assigned to a chosen owner instead of being disabled blindly, and the plan says which.
Executing the plan (idempotent steps through Celery) and verifying it build on these items: each
has a stable key, so a step is recognised across runs and never done twice to a different effect.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from accounts.models import GroupMembership, PersonalToken, RobotToken, User
from registries.connectors import CONNECTORS
from registries.connectors.base import Capability
from registries.models import AccessRule, Credential, Grant, Registry

CUSTOMS = "Customs"


class Action(enum.StrEnum):
    END_SESSIONS = "end_sessions"  # sign them out everywhere
    REVOKE = "revoke"  # a Customs token
    REMOVE_MEMBERSHIP = "remove_membership"  # a directory group in Customs
    DISABLE = "disable"  # a registry-native credential, through its connector
    REASSIGN = "reassign"  # still used by automation: give it another owner instead
    REMOVE_ACCESS = "remove_access"  # a registry membership or grant to them
    REVIEW = "review"  # Customs cannot change it itself (no API, or a decision for people)


@dataclass(frozen=True)
class Item:
    key: str  # stable across plans: "customs/token-12", "registry-3/credential-40"
    where: str  # "Customs" or the registry's name
    action: Action
    subject: str
    why: str
    automated: bool = True  # False: the registry gives no way to do it; a person must
    evidence: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    person: User
    items: tuple[Item, ...]

    def by_place(self) -> dict[str, list[Item]]:
        """Items grouped by where they live, Customs first, then registries by name."""
        grouped: dict[str, list[Item]] = {}
        for item in sorted(self.items, key=lambda i: (i.where != CUSTOMS, i.where, i.key)):
            grouped.setdefault(item.where, []).append(item)
        return grouped

    @property
    def reassigned(self) -> list[Item]:
        return [item for item in self.items if item.action == Action.REASSIGN]


def plan_for(person: User, *, now: datetime | None = None) -> Plan:
    """Everything `person` still holds, and what offboarding will do with each. Reads only."""
    now = now or timezone.now()
    in_use_since = now - timedelta(days=settings.HYGIENE_STALE_DAYS)
    items = [
        *_customs_items(person, now),
        *_credential_items(person, in_use_since),
        *_grant_items(person),
    ]
    return Plan(person=person, items=tuple(items))


# --- Customs itself -----------------------------------------------------------------------------


def _customs_items(person: User, now: datetime) -> Iterator[Item]:
    from allauth.usersessions.models import UserSession

    sessions = UserSession.objects.filter(user=person).count()
    if sessions:
        yield Item(
            "customs/sessions", CUSTOMS, Action.END_SESSIONS, f"{sessions} open web sessions", "signed in"
        )
    for token in PersonalToken.objects.filter(owner=person, revoked_at=None, expires_at__gt=now):
        yield Item(
            f"customs/token-{token.pk}",
            CUSTOMS,
            Action.REVOKE,
            f"{token.get_kind_display()} token {token.name} ({token.lookup}…)",
            "their own token",
            evidence={"expires_at": token.expires_at.isoformat(), "last_used_at": _iso(token.last_used_at)},
        )
    robots = RobotToken.objects.filter(created_by=person, revoked_at=None, expires_at__gt=now)
    for robot in robots.select_related("group"):
        # A robot belongs to its group and keeps working; only its sponsor changes.
        yield Item(
            f"customs/robot-{robot.pk}",
            CUSTOMS,
            Action.REASSIGN,
            f"robot token {robot.username} of {robot.group or 'no group'}",
            "they created it; the group's automation may still use it",
            evidence={"last_used_at": _iso(robot.last_used_at), "group": str(robot.group or "")},
        )
    for membership in GroupMembership.objects.filter(user=person).select_related("group"):
        yield Item(
            f"customs/membership-{membership.group_id}",
            CUSTOMS,
            Action.REMOVE_MEMBERSHIP,
            f"member of {membership.group}",
            "access rules give members of this group registry access",
            evidence={"source": membership.source, "group": membership.group.external_id},
        )
    for rule in AccessRule.objects.filter(created_by=person).select_related("group"):
        yield Item(
            f"customs/rule-{rule.pk}",
            CUSTOMS,
            Action.REVIEW,
            f"rule #{rule.pk}: {rule.group} may {', '.join(rule.actions)} {rule.pattern}",
            "they wrote it; its justification has no author left to answer for it",
            automated=False,
        )


# --- registry-native credentials ------------------------------------------------------------------


def _credential_items(person: User, in_use_since: datetime) -> Iterator[Item]:
    held = (
        Credential.objects.present()
        .exclude(registry=None)  # Customs' own tokens are listed above, from their own tables
        .filter(Q(owner_user=person) | Q(created_by_user=person))
        .select_related("registry")
    )
    for credential in held:
        registry = credential.registry
        assert registry is not None
        yield _credential_item(person, credential, registry, in_use_since)


def _credential_item(
    person: User, credential: Credential, registry: Registry, in_use_since: datetime
) -> Item:
    theirs = credential.owner_user_id == person.pk
    used = credential.last_used_at is not None and credential.last_used_at >= in_use_since
    subject = f"{credential.get_kind_display()} {credential.name}"
    evidence: dict[str, object] = {
        "owner": credential.owner_name or credential.owner_id,
        "last_used_at": _iso(credential.last_used_at),
        "last_used_source": credential.last_used_source,
        "kind": credential.kind,
    }
    key = f"registry-{registry.pk}/credential-{credential.pk}"
    if not theirs and (used or not credential.usage_known):
        # Made by them for a robot or service that is still working (or may be: usage unknown).
        why = (
            "they created it and it was used recently" if used else "they created it; its use is not recorded"
        )
        return Item(key, registry.name, Action.REASSIGN, subject, why, evidence=evidence)
    can_disable = Capability.DISABLE_CREDENTIALS in _capabilities(registry)
    why = "their own credential" if theirs else "they created it and nothing has used it recently"
    return Item(key, registry.name, Action.DISABLE, subject, why, automated=can_disable, evidence=evidence)


def _capabilities(registry: Registry) -> frozenset[Capability]:
    connector = CONNECTORS.get(registry.kind)
    return connector.capabilities if connector is not None else frozenset()


# --- access the registries give them directly ---------------------------------------------------------


def _grant_items(person: User) -> Iterator[Item]:
    grants = Grant.objects.filter(user=person).select_related("registry").order_by("registry__name", "pk")
    for grant in grants:
        yield Item(
            f"registry-{grant.registry_id}/grant-{grant.pk}",
            grant.registry.name,
            Action.REMOVE_ACCESS,
            f"{', '.join(grant.actions)} on {grant.scope} ({grant.source})",
            "the registry grants it to them by name",
            automated=Capability.WRITE_GRANTS in _capabilities(grant.registry),
            evidence={
                "principal": f"{grant.principal_kind} {grant.principal_id}",
                "observed_at": _iso(grant.observed_at),
            },
        )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
