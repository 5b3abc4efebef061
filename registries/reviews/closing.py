"""Closing: undecided items take the default, and each revocation becomes a plan of steps."""

from __future__ import annotations

import enum
import functools
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import GroupMembership, RobotToken, Source, User
from portal import audit
from portal.audit import AuditAction
from registries import sync
from registries.connectors.base import Capability
from registries.models import AccessRule, Registry
from registries.reviews.base import Campaign, CampaignRefused, Decision, Item


class Step(enum.StrEnum):
    END_RULE = "end_rule"
    REMOVE_MEMBERSHIP = "remove_membership"
    REMOVE_GRANT = "remove_grant"
    REVOKE_TOKEN = "revoke_token"
    DISABLE_CREDENTIAL = "disable_credential"


class StepState(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    MANUAL = "manual"  # Customs cannot do it: the step says who can


STEP_LABELS = {
    Step.END_RULE: "End the rule",
    Step.REMOVE_MEMBERSHIP: "Remove from the group",
    Step.REMOVE_GRANT: "Remove the registry's grant",
    Step.REVOKE_TOKEN: "Revoke the robot token",
    Step.DISABLE_CREDENTIAL: "Disable the credential",
}


def _step(key: str, action: Step, subject: str, why: str, *, automated: bool = True) -> dict[str, Any]:
    state = StepState.PENDING if automated else StepState.MANUAL
    return {
        "key": key,
        "action": str(action),
        "subject": subject,
        "why": why,
        "automated": automated,
        "state": str(state),
        "result": "",
        "done_at": None,
    }


def effective_decision(item: Item, campaign: Campaign) -> str:
    return item.decision or campaign.default_decision


def plan(campaign: Campaign, *, now: datetime | None = None) -> dict[int, list[dict[str, Any]]]:
    """What closing now would do, item by item (undecided items taking the default). Reads only."""
    now = now or timezone.now()
    items = list(campaign.items.select_related("person", "robot", "credential__registry"))
    revoked = [item for item in items if effective_decision(item, campaign) == Decision.REVOKE]
    ending = _rules_ending(revoked, now)
    capabilities = _Capabilities()
    return {item.pk: _steps_for(item, ending, capabilities) for item in revoked}


def _rules_ending(revoked: list[Item], now: datetime) -> dict[int, AccessRule]:
    """The rules every subject of which is revoked: nobody certified that the group still needs them.

    Counted against the group as it is now, so someone who joined after the opening (and was never
    reviewed) keeps the rule in force.
    """
    people = {item.person_id for item in revoked if item.person_id is not None}
    robots = {item.robot_id for item in revoked if item.robot_id is not None}
    rule_ids = {entry["rule"] for item in revoked for entry in item.access.get("rules", [])}
    rules = {
        rule.pk: rule
        for rule in AccessRule.objects.in_force(now=now).filter(pk__in=rule_ids).select_related("group")
    }
    groups = {rule.group_id for rule in rules.values()}
    members: dict[int, set[int]] = {group: set() for group in groups}
    active = GroupMembership.objects.filter(
        group_id__in=groups, user__status=User.Status.ACTIVE, user__is_active=True
    )
    for group, user in active.values_list("group_id", "user_id"):
        members[group].add(user)
    machines: dict[int, set[int]] = {group: set() for group in groups}
    for group, robot in (
        RobotToken.objects.active(now=now).filter(group_id__in=groups).values_list("group_id", "pk")
    ):
        if group is not None:
            machines[group].add(robot)
    return {
        pk: rule
        for pk, rule in rules.items()
        if members[rule.group_id] <= people and machines[rule.group_id] <= robots
    }


class _Capabilities:
    """What each registry's connector can do, asked once per plan (asking decrypts its secrets)."""

    def __init__(self) -> None:
        self._known: dict[int, frozenset[Capability]] = {}

    def of(self, registry: Registry) -> frozenset[Capability]:
        if registry.pk not in self._known:
            connector = sync.connector_class_for(registry)
            self._known[registry.pk] = connector.capabilities if connector is not None else frozenset()
        return self._known[registry.pk]


def _steps_for(
    item: Item, ending: dict[int, AccessRule], capabilities: _Capabilities
) -> list[dict[str, Any]]:
    steps = [_end_rule_step(rule) for rule in _item_rules(item, ending)]
    if item.kind == Item.Kind.PERSON:
        steps += _membership_steps(item, ending)
        steps += [_grant_step(grant, capabilities) for grant in item.access.get("grants", [])]
    elif item.kind == Item.Kind.ROBOT:
        steps.append(
            _step(f"robot-{item.robot_id}", Step.REVOKE_TOKEN, item.subject, "revoked in the review")
        )
    elif item.credential is not None and item.credential.registry is not None:
        can = Capability.DISABLE_CREDENTIALS in capabilities.of(item.credential.registry)
        kind = item.credential.registry.kind
        why = "revoked in the review" if can else f"{kind} cannot disable credentials through its API"
        steps.append(
            _step(
                f"credential-{item.credential_id}", Step.DISABLE_CREDENTIAL, item.subject, why, automated=can
            )
        )
    return steps


def _item_rules(item: Item, ending: dict[int, AccessRule]) -> list[AccessRule]:
    ids = dict.fromkeys(entry["rule"] for entry in item.access.get("rules", []))
    return [ending[pk] for pk in ids if pk in ending]


def _end_rule_step(rule: AccessRule) -> dict[str, Any]:
    subject = f"rule #{rule.pk}: {rule.group} may {', '.join(rule.actions)} {rule.pattern}"
    return _step(f"rule-{rule.pk}", Step.END_RULE, subject, "everyone it reaches was revoked")


def _membership_steps(item: Item, ending: dict[int, AccessRule]) -> Iterator[dict[str, Any]]:
    """Out of each group whose rules in scope do not all end, where Customs owns the membership."""
    by_group: dict[int, list[dict[str, Any]]] = {}
    for entry in item.access.get("rules", []):
        by_group.setdefault(entry["group_pk"], []).append(entry)
    for group_pk, entries in by_group.items():
        if all(entry["rule"] in ending for entry in entries):
            continue  # the group's access ends with its rules
        group, source = entries[0]["group"], entries[0]["membership_source"]
        subject = f"{item.subject} in {group}"
        if source == Source.LOCAL:
            yield _step(f"membership-{group_pk}", Step.REMOVE_MEMBERSHIP, subject, "revoked in the review")
            continue
        why = (
            f"the membership comes from the directory ({source}): remove them from {group} there; "
            "Customs cannot change it, and would be given it again at the next sync"
        )
        yield _step(f"membership-{group_pk}", Step.REMOVE_MEMBERSHIP, subject, why, automated=False)


def _grant_step(grant: dict[str, Any], capabilities: _Capabilities) -> dict[str, Any]:
    registry = Registry.objects.filter(pk=grant["registry_pk"]).first()
    can = registry is not None and Capability.WRITE_GRANTS in capabilities.of(registry)
    subject = f"{', '.join(grant['actions'])} on {grant['scope']} in {grant['registry']} ({grant['source']})"
    why = (
        "revoked in the review"
        if can
        else f"{grant['registry']} cannot change grants through Customs: remove it there"
    )
    step = _step(
        f"registry-{grant['registry_pk']}/grant-{grant['grant']}",
        Step.REMOVE_GRANT,
        subject,
        why,
        automated=can,
    )
    step["grant"] = grant
    return step


def close(campaign: Campaign, *, actor: User | None, now: datetime | None = None) -> Campaign:
    """Give undecided items the default, record the plan for every revocation, and hand it to a worker.

    Certified items are settled at once; revoked ones are applied by apply() after this commits.
    """
    now = now or timezone.now()
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if locked.state != Campaign.State.OPEN:
            raise CampaignRefused(
                f"this campaign is {locked.get_state_display().lower()}: only an open one closes"
            )
        defaulted = locked.items.undecided().update(
            decision=locked.default_decision, by_default=True, decided_at=now
        )
        steps = plan(locked, now=now)
        items = list(locked.items.all())
        for item in items:
            if item.decision == Decision.CERTIFY:
                item.outcome, item.applied_at, item.result = Item.Outcome.KEPT, now, "kept"
            else:
                item.steps, item.outcome = steps.get(item.pk, []), Item.Outcome.PENDING
        Item.objects.bulk_update(items, ["outcome", "applied_at", "result", "steps"], batch_size=500)
        locked.state, locked.closed_at, locked.closed_by = Campaign.State.CLOSED, now, actor
        locked.save(update_fields=["state", "closed_at", "closed_by"])
        decisions = Counter(item.decision for item in items)
        audit.record(
            actor,
            AuditAction.ACCESS_REVIEW_CLOSED,
            target=locked,
            defaulted=defaulted,
            default_decision=locked.default_decision,
            certified=decisions[Decision.CERTIFY],
            revoked=decisions[Decision.REVOKE],
        )
        # Imported here: the tasks module imports this one (tasks call domain code, not the reverse).
        from registries import review_tasks

        transaction.on_commit(functools.partial(review_tasks.apply_campaign.delay, locked.pk))
    campaign.refresh_from_db()
    return campaign
