"""Offboarding, first part: the plan (dry run) of everything a departed person still holds.

The plan lists every way the person could still reach a registry or Customs, grouped by where it
lives, each with what offboarding will do about it and why. Credentials that automation still
uses are re-assigned to a chosen owner instead of being disabled blindly, and the plan says which.
Executing the plan (idempotent steps through Celery) and verifying it build on these items: each
has a stable key, so a step is recognised across runs and never done twice to a different effect.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts import services as account_services
from accounts.models import DirectoryGroup, GroupMembership, PersonalToken, RobotToken, User
from portal import audit
from portal.audit import AuditAction
from portal.errors import RequestRejected
from registries import sync
from registries.connectors.base import (
    AccessPlan,
    Capability,
    ChangeOp,
    Connector,
    GrantChange,
    Principal,
    PrincipalKind,
    RemoteGrant,
    can_disable_credentials,
    can_remove_members,
    can_write_grants,
)
from registries.connectors.errors import ConnectorError, PermanentError, TransientError
from registries.models import AccessRule, Credential, Grant, Offboarding, OffboardingStep, Registry

CUSTOMS = "Customs"
# The states offboarding_one_open_per_person counts: at most one of these per person.
OPEN_STATES = (Offboarding.State.PLANNED, Offboarding.State.RUNNING)


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
    capabilities = _Capabilities()
    items = [
        *_customs_items(person, now),
        *_credential_items(person, in_use_since, capabilities),
        *_member_items(person, capabilities),
        *_grant_items(person, capabilities),
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


def _credential_items(person: User, in_use_since: datetime, capabilities: _Capabilities) -> Iterator[Item]:
    held = (
        Credential.objects.present()
        .exclude(registry=None)  # Customs' own tokens are listed above, from their own tables
        .filter(Q(owner_user=person) | Q(created_by_user=person))
        .select_related("registry")
    )
    for credential in held:
        registry = credential.registry
        assert registry is not None
        yield _credential_item(
            person, credential, registry, in_use_since, can_disable=capabilities.disables(credential)
        )


def _credential_item(
    person: User, credential: Credential, registry: Registry, in_use_since: datetime, *, can_disable: bool
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
    why = "their own credential" if theirs else "they created it and nothing has used it recently"
    return Item(key, registry.name, Action.DISABLE, subject, why, automated=can_disable, evidence=evidence)


class _Capabilities:
    """What each registry's connector can do (its variant included), asked once per plan: asking
    reads the registry's configuration and decrypts its secrets."""

    def __init__(self) -> None:
        self._known: dict[int, type[Connector] | None] = {}

    def _class(self, registry: Registry) -> type[Connector] | None:
        if registry.pk not in self._known:
            self._known[registry.pk] = sync.connector_class_for(registry)
        return self._known[registry.pk]

    def of(self, registry: Registry) -> frozenset[Capability]:
        connector = self._class(registry)
        return connector.capabilities if connector is not None else frozenset()

    def removes(self, grant: Grant) -> bool:
        """Whether the connector can take this grant away: some refuse some kinds of grant (an Azure
        role assignment, an IAM group policy), and the plan must say so rather than fail at run time."""
        if Capability.WRITE_GRANTS not in self.of(grant.registry):
            return False
        removable = getattr(self._class(grant.registry), "removable", None)
        return removable is None or bool(removable(grant.principal_kind, grant.source))

    def disables(self, credential: Credential) -> bool:
        """Whether the connector can switch this credential off: some registries' admin logins are
        changed only in their own configuration (Harbor's admin, a Quay superuser)."""
        assert credential.registry is not None
        if Capability.DISABLE_CREDENTIALS not in self.of(credential.registry):
            return False
        disablable = getattr(self._class(credential.registry), "disablable", None)
        return disablable is None or bool(disablable(credential.kind))

    def membership_covers_grants(self, registry: Registry) -> bool:
        """Taking them out of the organisation ends every grant listed for them there."""
        connector = self._class(registry)
        return Capability.REMOVE_MEMBERS in self.of(registry) and bool(
            getattr(connector, "membership_covers_grants", False)
        )


# --- access the registries give them directly ---------------------------------------------------------


def _identities(person: User) -> dict[Registry, list[tuple[str, str]]]:
    """Who the person is in each registry: the user principals its grants name them as, and their
    username where an admin said the registry's usernames are the directory's (Quay)."""
    found: dict[Registry, list[tuple[str, str]]] = {}
    grants = _their_grants(person).filter(principal_kind=PrincipalKind.USER).select_related("registry")
    for grant in grants.order_by("registry__name", "principal_id"):
        identity = (grant.principal_id, grant.principal_name)
        if identity not in found.setdefault(grant.registry, []):
            found[grant.registry].append(identity)
    for registry in _registries_linking_usernames():
        if not any(principal_id == person.username for principal_id, _ in found.setdefault(registry, [])):
            found[registry].append((person.username, ""))
    for registry in _registries_linking_emails():
        if person.external_id and not found.get(registry):
            # A member in no team is in no grant: their address is who they are there (Docker Hub).
            found.setdefault(registry, []).append((person.external_id.strip().lower(), ""))
    return found


def _registries_linking_emails() -> list[Registry]:
    return list(Registry.objects.filter(config__link_members_by_email=True).order_by("name"))


def _registries_linking_usernames() -> list[Registry]:
    """Registries whose admin says their usernames are the directory's (Quay has no directory id)."""
    return list(Registry.objects.filter(config__link_users_by_username=True).order_by("name"))


def _their_grants(person: User) -> QuerySet[Grant]:
    """Grants that name them: linked by directory id, or by username where the registry says so."""
    by_username = Q(
        registry__in=_registries_linking_usernames(),
        principal_kind=PrincipalKind.USER,
        principal_id=person.username,
    )
    return Grant.objects.filter(Q(user=person) | by_username)


def _member_items(person: User, capabilities: _Capabilities) -> Iterator[Item]:
    for registry, identities in _identities(person).items():
        if Capability.REMOVE_MEMBERS not in capabilities.of(registry):
            continue
        for number, (principal_id, principal_name) in enumerate(identities, start=1):
            yield Item(
                f"registry-{registry.pk}/member-{number}",
                registry.name,
                Action.REMOVE_ACCESS,
                f"{principal_name or principal_id}: organisation and team memberships",
                "membership is what gives them access there",
                evidence={"principal_id": principal_id, "principal_name": principal_name},
            )


def _grant_items(person: User, capabilities: _Capabilities) -> Iterator[Item]:
    grants = _their_grants(person).select_related("registry").order_by("registry__name", "pk")
    for grant in grants:
        if grant.principal_kind == PrincipalKind.USER and capabilities.membership_covers_grants(
            grant.registry
        ):
            continue  # ended by the membership step above
        yield Item(
            f"registry-{grant.registry_id}/grant-{grant.pk}",
            grant.registry.name,
            Action.REMOVE_ACCESS,
            f"{', '.join(grant.actions)} on {grant.scope} ({grant.source})",
            "the registry grants it to them by name",
            automated=capabilities.removes(grant),
            # The grant itself, not its row: a sync between plan and run replaces the rows.
            evidence={
                "principal_kind": grant.principal_kind,
                "principal_id": grant.principal_id,
                "principal_name": grant.principal_name,
                "scope": grant.scope,
                "actions": grant.actions,
                "source": grant.source,
                "observed_at": _iso(grant.observed_at),
            },
        )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# --- starting, confirming and running an offboarding ---------------------------------------------------


class OffboardingRefused(RequestRejected):
    """An offboarding that cannot start or go on, with the reason for the person asking."""


def start(
    person: User,
    *,
    actor: User | None,
    reason: str,
    reassign_to: User | None = None,
    trigger: str = Offboarding.Trigger.MANUAL,
) -> Offboarding:
    """Record the plan as an offboarding's steps. Nothing changes until it is confirmed."""
    if actor is not None and actor.pk == person.pk:
        raise OffboardingRefused("you cannot offboard yourself")
    if reassign_to is not None and (reassign_to.pk == person.pk or not reassign_to.may_sign_in):
        raise OffboardingRefused("re-assign to someone else who is still active")
    if Offboarding.objects.filter(person=person, state__in=OPEN_STATES).exists():
        # Said before planning, which reads every registry's configuration; the constraint below
        # still settles a race.
        raise OffboardingRefused(f"{person} already has an offboarding that has not finished")
    plan = plan_for(person)
    if plan.reassigned and reassign_to is None and trigger == Offboarding.Trigger.MANUAL:
        raise OffboardingRefused(
            f"{len(plan.reassigned)} credentials they created are still in use: choose who takes them over"
        )
    try:
        with transaction.atomic():
            offboarding = Offboarding.objects.create(
                person=person, reason=reason, reassign_to=reassign_to, started_by=actor, trigger=trigger
            )
            OffboardingStep.objects.bulk_create(_steps(offboarding, plan))
            audit.record(
                actor, AuditAction.OFFBOARDING_PLANNED, target=person, steps=len(plan.items), reason=reason
            )
    except IntegrityError:
        raise OffboardingRefused(f"{person} already has an offboarding that has not finished") from None
    return offboarding


def _steps(offboarding: Offboarding, plan: Plan) -> Iterator[OffboardingStep]:
    position = 0
    for items in plan.by_place().values():
        for item in items:
            position += 1
            yield OffboardingStep(
                offboarding=offboarding,
                position=position,
                key=item.key,
                place=item.where[:255],
                action=item.action,
                subject=item.subject[:500],
                why=item.why[:500],
                automated=item.automated,
                evidence=item.evidence,
                state=OffboardingStep.State.PENDING if item.automated else OffboardingStep.State.MANUAL,
            )


def confirm(offboarding: Offboarding, *, actor: User | None) -> None:
    """Cut the person off from Customs at once, then let the worker do the registries.

    Their status, Customs tokens and sessions change in one transaction; the steps for those are
    marked done in it too, so the record never says otherwise.
    """
    with transaction.atomic():
        locked = Offboarding.objects.select_for_update().get(pk=offboarding.pk)
        _refuse_own(locked, actor)
        if locked.state != Offboarding.State.PLANNED:
            raise OffboardingRefused(f"this offboarding is {locked.get_state_display().lower()}")
        person = locked.person
        if person.may_sign_in:  # the directory may have disabled them already, and cut them off then
            account_services.deactivate_user(
                person, actor=actor, reason=locked.reason or "offboarded", departed=True
            )
        now = timezone.now()
        locked.steps.filter(
            action__in=[Action.END_SESSIONS, Action.REVOKE], state=OffboardingStep.State.PENDING
        ).update(state=OffboardingStep.State.DONE, done_at=now, result="with the status change", attempts=1)
        locked.state, locked.confirmed_at = Offboarding.State.RUNNING, now
        locked.save(update_fields=["state", "confirmed_at"])
        audit.record(actor, AuditAction.OFFBOARDING_CONFIRMED, target=person, offboarding=locked.pk)
        # Imported here: the tasks module imports this one (tasks call domain code, not the reverse).
        from registries import tasks

        transaction.on_commit(functools.partial(tasks.run_offboarding.delay, locked.pk))
    offboarding.refresh_from_db()


def _refuse_own(offboarding: Offboarding, actor: User | None) -> None:
    # An admin being offboarded by another must not be able to cancel (or confirm) it themselves.
    if actor is not None and actor.pk == offboarding.person_id:
        raise OffboardingRefused("you cannot decide your own offboarding")


def cancel(offboarding: Offboarding, *, actor: User | None) -> None:
    """Drop a plan that was never confirmed. Nothing was changed, so nothing needs undoing."""
    with transaction.atomic():
        locked = Offboarding.objects.select_for_update().get(pk=offboarding.pk)
        _refuse_own(locked, actor)
        if locked.state != Offboarding.State.PLANNED:
            raise OffboardingRefused(
                f"this offboarding is {locked.get_state_display().lower()}: only a plan can be cancelled"
            )
        locked.state, locked.finished_at = Offboarding.State.CANCELLED, timezone.now()
        locked.save(update_fields=["state", "finished_at"])
        audit.record(actor, AuditAction.OFFBOARDING_CANCELLED, target=locked.person, offboarding=locked.pk)
    offboarding.refresh_from_db()


def run(offboarding: Offboarding) -> Offboarding:
    """Do every pending step once. Safe to call again: done steps are skipped, and each step is
    idempotent (a credential already disabled, a membership already gone, is success).

    A transient failure (timeout, 429, 5xx) leaves the step pending and, once every other step has
    had its turn, is raised for the task's retry with back-off: one registry being down holds back
    nothing elsewhere. A permanent one (refused, not found) fails that step and the rest go on.
    """
    if offboarding.state != Offboarding.State.RUNNING:
        return offboarding
    pending = offboarding.steps.filter(state=OffboardingStep.State.PENDING).order_by("position")
    retry: TransientError | None = None
    for step_id in list(pending.values_list("pk", flat=True)):
        try:
            _run_step(offboarding, step_id)
        except TransientError as exc:
            retry = retry or exc
    if retry is not None:
        raise retry
    left = offboarding.steps.exclude(state__in=[OffboardingStep.State.DONE, OffboardingStep.State.MANUAL])
    offboarding.state = Offboarding.State.INCOMPLETE if left.exists() else Offboarding.State.COMPLETED
    offboarding.finished_at = timezone.now()
    offboarding.save(update_fields=["state", "finished_at"])
    audit.record(None, AuditAction.OFFBOARDING_FINISHED, target=offboarding.person, state=offboarding.state)
    return offboarding


def _run_step(offboarding: Offboarding, step_id: int) -> None:
    retry: TransientError | None = None
    with transaction.atomic():
        # Two workers on the same offboarding (a retry overlapping a redelivery) never run one step twice.
        step = OffboardingStep.objects.select_for_update(skip_locked=True).filter(pk=step_id).first()
        if step is None or step.state != OffboardingStep.State.PENDING:
            return
        step.attempts += 1
        try:
            step.result = _execute(offboarding, step)[:1000]
        except TransientError as exc:
            # Recorded, then raised once this transaction has kept the attempt: the task retries.
            retry, step.result = exc, f"will retry: {exc}"[:1000]
        except ConnectorError as exc:
            step.state, step.result = OffboardingStep.State.FAILED, str(exc)[:1000]
        else:
            step.state, step.done_at = OffboardingStep.State.DONE, timezone.now()
        step.save(update_fields=["attempts", "result", "state", "done_at", "action"])
        if retry is None:
            audit.record(
                None,
                AuditAction.OFFBOARDING_STEP,
                target=offboarding.person,
                step=step.key,
                step_action=step.action,
                state=step.state,
                result=step.result,
            )
    if retry is not None:
        raise retry


def _execute(offboarding: Offboarding, step: OffboardingStep) -> str:
    """Carry out one step; returns what was done. Raises ConnectorError when a registry refuses.

    Sessions and Customs tokens never come here: confirm() ends them with the status change.
    """
    place, _, subject = step.key.partition("/")
    kind, _, pk = subject.rpartition("-")
    person = offboarding.person
    if step.action == Action.REMOVE_MEMBERSHIP:
        removed, _ = GroupMembership.objects.filter(user=person, group_id=int(pk)).delete()
        return "removed" if removed else "already gone"
    if kind == "robot":
        return _reassign_robot(offboarding, step, int(pk))
    if kind == "credential":
        return _credential_step(offboarding, step, int(pk))
    if kind == "grant":
        return remove_grant(int(place.removeprefix("registry-")), step.evidence)
    if kind == "member":
        return _remove_member(int(place.removeprefix("registry-")), step)
    raise PermanentError(f"no way to carry out {step.action} on {step.key}")


def _reassign_robot(offboarding: Offboarding, step: OffboardingStep, robot_id: int) -> str:
    robot = RobotToken.objects.filter(pk=robot_id).select_related("group").first()
    if robot is None or robot.revoked_at is not None:
        return "already revoked"
    steward = steward_for(offboarding, robot.group)
    if steward is None:
        account_services.revoke_robot_token(robot, actor=None)
        step.action = Action.DISABLE  # the record says what was done, and verification checks that
        return f"revoked: {_nobody_takes_over()}"
    RobotToken.objects.filter(pk=robot.pk).update(created_by=steward)
    return f"now sponsored by {steward}"


def _credential_step(offboarding: Offboarding, step: OffboardingStep, credential_id: int) -> str:
    credential = Credential.objects.filter(pk=credential_id).select_related("registry").first()
    if credential is None or credential.gone_at is not None:
        return "already gone from the registry"
    if step.action == Action.REASSIGN:
        steward = steward_for(offboarding, None)
        if steward is not None:
            # Sync never writes the steward: it stays until someone changes the credential's owner.
            Credential.objects.filter(pk=credential.pk).update(steward=steward)
            return f"kept: {steward} answers for it now"
        step.action = Action.DISABLE
        return f"{disable_credential(credential)}: {_nobody_takes_over()}"
    return disable_credential(credential)


def disable_credential(credential: Credential) -> str:
    """Disable a registry credential through its connector (idempotent), and record it disabled."""
    registry = credential.registry
    assert registry is not None
    connector = sync.connector_for(registry)
    if not can_disable_credentials(connector):
        raise PermanentError(f"{registry.kind} cannot disable credentials through its API")
    connector.disable_credential(credential.native_id)
    Credential.objects.filter(pk=credential.pk).update(enabled=False)
    return "disabled"


def steward_for(offboarding: Offboarding, group: DirectoryGroup | None) -> User | None:
    """Who takes over what the person made that automation still uses; None means stop it.

    The admin's choice first; for a departure from the directory, the policy: the group's owner,
    else the configured steward, else nobody. Someone who has left since is passed over.
    """
    candidates: list[User | None]
    if offboarding.reassign_to is not None:
        candidates = [offboarding.reassign_to]
    elif settings.OFFBOARDING_ROBOT_POLICY == "disable":
        return None
    else:
        candidates = [group.owner if group is not None else None, _configured_steward()]
    for candidate in candidates:
        if candidate is not None and candidate.pk != offboarding.person_id and candidate.may_sign_in:
            return candidate
    return None


def _configured_steward() -> User | None:
    username = settings.OFFBOARDING_STEWARD
    return User.objects.filter(username=username).first() if username else None


def _nobody_takes_over() -> str:
    if settings.OFFBOARDING_ROBOT_POLICY == "disable":
        return "the policy for departures is to disable what they made"
    return "no one was named, the group has no owner and no steward is configured"


def remove_grant(registry_id: int, evidence: dict[str, Any], *, reason: str = "offboarding") -> str:
    """Remove one grant, as a plan recorded it (principal, scope, actions, source), through the connector."""
    registry = Registry.objects.filter(pk=registry_id).first()
    if registry is None:
        return "the registry is no longer connected"
    connector = sync.connector_for(registry)
    if not can_write_grants(connector):
        raise PermanentError(f"{registry.kind} cannot change grants through its API")
    removal = _grant_change(evidence, reason=reason)
    # Idempotent by the connector's contract: a grant already gone is success.
    list(connector.apply_access_plan(AccessPlan(registry=registry.name, removals=(removal,))))
    return f"removed {', '.join(removal.actions)} on {removal.scope}"


def _remove_member(registry_id: int, step: OffboardingStep) -> str:
    registry = Registry.objects.filter(pk=registry_id).first()
    if registry is None:
        return "the registry is no longer connected"
    connector = sync.connector_for(registry)
    if not can_remove_members(connector):
        raise PermanentError(f"{registry.kind} cannot remove members through its API")
    where = connector.remove_person(str(step.evidence["principal_id"]))
    return f"removed from {', '.join(where)}" if where else "not a member any more"


def _grant_change(evidence: dict[str, Any], *, reason: str = "offboarding") -> GrantChange:
    return GrantChange(
        op=ChangeOp.REMOVE,
        principal=Principal(
            kind=PrincipalKind(evidence["principal_kind"]),
            id=str(evidence["principal_id"]),
            name=str(evidence.get("principal_name", "")),
        ),
        scope=str(evidence["scope"]),
        actions=tuple(evidence["actions"]),
        source=str(evidence["source"]),
        reason=reason,
    )


# --- verification: re-reading the registries after the run ---------------------------------------------


@dataclass
class _Reading:
    """One registry as re-read for verification; None where its connector cannot list that."""

    credentials: dict[str, bool] | None = None  # native id → enabled
    grants: list[RemoteGrant] | None = None
    memberships: dict[str, list[str]] | None = None  # principal id → where they are still a member
    error: str = ""


def verify(offboarding: Offboarding) -> Offboarding:
    """Re-read every registry the offboarding touched and record, step by step, whether what it
    removed is gone. Reads only. A registry that cannot be read leaves its steps "could not check";
    anything still present turns a completed offboarding into one with steps left.
    """
    if offboarding.state not in (Offboarding.State.COMPLETED, Offboarding.State.INCOMPLETE):
        return offboarding
    steps = list(offboarding.steps.order_by("position"))
    readings = _read_registries(steps)
    for step in steps:
        verdict, note = _verdict(offboarding, step, readings)
        step.verification, step.verification_note = verdict, note[:500]
    OffboardingStep.objects.bulk_update(steps, ["verification", "verification_note"])
    present = [step.key for step in steps if step.verification == OffboardingStep.Verification.STILL_PRESENT]
    if present:
        offboarding.state = Offboarding.State.INCOMPLETE
    offboarding.verified_at = timezone.now()
    offboarding.save(update_fields=["state", "verified_at"])
    audit.record(
        None,
        AuditAction.OFFBOARDING_VERIFIED,
        target=offboarding.person,
        offboarding=offboarding.pk,
        still_present=present,
        unreadable=sorted({reading.error for reading in readings.values() if reading.error}),
    )
    return offboarding


def _read_registries(steps: list[OffboardingStep]) -> dict[int, _Reading]:
    # Every registry step, the ones left to a person too: the reviewer wants to know what is left.
    wanted: dict[int, list[OffboardingStep]] = {}
    for step in steps:
        place = step.key.partition("/")[0]
        if place.startswith("registry-"):
            wanted.setdefault(int(place.removeprefix("registry-")), []).append(step)
    readings: dict[int, _Reading] = {}
    for registry in Registry.objects.filter(pk__in=wanted):
        readings[registry.pk] = _read(registry, wanted[registry.pk])
    return readings


def _read(registry: Registry, steps: list[OffboardingStep]) -> _Reading:
    kinds = {step.key.partition("/")[2].rpartition("-")[0] for step in steps}
    reading = _Reading()
    try:
        connector = sync.connector_for(registry)
        if "credential" in kinds and (listed := sync.read_credentials(connector)) is not None:
            reading.credentials = {credential.id: credential.enabled for credential in listed}
        if "grant" in kinds:
            reading.grants = sync.read_grants(connector)
        if "member" in kinds and can_remove_members(connector):
            people = {str(step.evidence["principal_id"]) for step in steps if "/member-" in step.key}
            reading.memberships = {person: connector.memberships_of(person) for person in people}
    except ConnectorError as exc:
        reading.error = f"{registry.name}: {exc}"
    return reading


Verdict = tuple[str, str]
GONE, PRESENT, KEPT, UNCHECKED, UNVERIFIABLE = (
    OffboardingStep.Verification.GONE,
    OffboardingStep.Verification.STILL_PRESENT,
    OffboardingStep.Verification.KEPT,
    OffboardingStep.Verification.NOT_CHECKED,
    OffboardingStep.Verification.UNVERIFIABLE,
)


def _verdict(offboarding: Offboarding, step: OffboardingStep, readings: dict[int, _Reading]) -> Verdict:
    place, _, subject = step.key.partition("/")
    kind, _, pk = subject.rpartition("-")
    if place == "customs":
        return _customs_verdict(offboarding, step, kind, pk)
    reading = readings.get(int(place.removeprefix("registry-")))
    if reading is None:
        return UNCHECKED, "left to a person"
    if reading.error:
        return UNVERIFIABLE, reading.error
    if kind == "credential":
        return _credential_verdict(step, int(pk), reading)
    if kind == "grant":
        return _grant_verdict(step, reading)
    if kind == "member":
        return _member_verdict(step, reading)
    return UNCHECKED, ""


def _customs_verdict(offboarding: Offboarding, step: OffboardingStep, kind: str, pk: str) -> Verdict:
    from allauth.usersessions.models import UserSession

    person = offboarding.person
    if step.action == Action.END_SESSIONS:
        open_sessions = UserSession.objects.filter(user=person).count()
        return (PRESENT, f"{open_sessions} sessions open") if open_sessions else (GONE, "no session open")
    if kind == "token":
        live = PersonalToken.objects.filter(pk=pk).active().exists()
        return (PRESENT, "the token still works") if live else (GONE, "revoked")
    if kind == "membership":
        member = GroupMembership.objects.filter(user=person, group_id=int(pk)).exists()
        return (PRESENT, "still a member") if member else (GONE, "no longer a member")
    if kind == "robot":
        robot = RobotToken.objects.filter(pk=pk).active().first()
        if robot is None:
            return GONE, "revoked"
        if robot.created_by_id == person.pk:
            return PRESENT, "still sponsored by them"
        return KEPT, f"sponsored by {robot.created_by or 'no one'}"
    return UNCHECKED, "left to a person"


def _credential_verdict(step: OffboardingStep, credential_id: int, reading: _Reading) -> Verdict:
    if reading.credentials is None:
        return UNVERIFIABLE, "the registry's connector cannot list credentials"
    native_id = Credential.objects.filter(pk=credential_id).values_list("native_id", flat=True).first()
    enabled = reading.credentials.get(native_id or "")
    if enabled is None:
        return GONE, "no longer listed by the registry"
    if not enabled:
        return GONE, "listed, disabled"
    if step.action == Action.REASSIGN:
        return KEPT, "listed and enabled, re-assigned on purpose"
    return PRESENT, "listed and still enabled"


def _grant_verdict(step: OffboardingStep, reading: _Reading) -> Verdict:
    if reading.grants is None:
        return UNVERIFIABLE, "the registry's connector cannot list grants"
    removed = _grant_change(step.evidence)
    left = [
        grant
        for grant in reading.grants
        if (grant.principal.kind, grant.principal.id, grant.scope)
        == (removed.principal.kind, removed.principal.id, removed.scope)
        and grant.actions & set(removed.actions)
    ]
    if not left:
        return GONE, "the registry no longer grants it"
    actions = sorted(set().union(*(grant.actions for grant in left)) & set(removed.actions))
    return PRESENT, f"still granted: {', '.join(actions)} on {removed.scope} ({left[0].source})"


def _member_verdict(step: OffboardingStep, reading: _Reading) -> Verdict:
    if reading.memberships is None:
        return UNVERIFIABLE, "the registry's connector cannot list members"
    where = reading.memberships.get(str(step.evidence["principal_id"]), [])
    return (PRESENT, f"still in {', '.join(where)}") if where else (GONE, "a member nowhere")
