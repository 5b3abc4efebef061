"""Applying a closed campaign's plan: each pending step once, through offboarding's executors."""

from __future__ import annotations

import functools
from collections import Counter
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts import services as account_services
from accounts.models import GroupMembership, RobotToken, Source, User
from portal import audit
from portal.audit import AuditAction
from registries import offboarding
from registries.connectors.errors import ConnectorError, PermanentError, TransientError
from registries.models import AccessRule, Credential
from registries.reviews.base import Campaign, Item
from registries.reviews.closing import STEP_LABELS, Step, StepState


def apply(campaign: Campaign) -> Campaign:
    """Carry out every pending step once. Safe to call again: done steps are skipped, and each step
    is idempotent (a membership already gone, a rule already ended, a token already revoked).

    A registry's transient failure leaves its step pending; the others go on, then the first such
    failure is raised for the task's retry. A permanent one fails that step only.
    """
    if campaign.state != Campaign.State.CLOSED:
        return campaign
    retry: TransientError | None = None
    pending = campaign.items.filter(outcome=Item.Outcome.PENDING).order_by("pk")
    for item_id in list(pending.values_list("pk", flat=True)):
        retry = _apply_item(campaign, item_id) or retry
    if not campaign.items.filter(outcome=Item.Outcome.PENDING).exists():
        _finish(campaign)
    if retry is not None:
        raise retry
    return campaign


def _finish(campaign: Campaign) -> None:
    with transaction.atomic():
        won = Campaign.objects.filter(pk=campaign.pk, state=Campaign.State.CLOSED).update(
            state=Campaign.State.APPLIED, applied_at=timezone.now()
        )
        if won:
            outcomes = Counter(campaign.items.values_list("outcome", flat=True))
            audit.record(
                campaign.closed_by,
                AuditAction.ACCESS_REVIEW_APPLIED,
                target=campaign,
                outcomes=dict(outcomes),
            )
    campaign.refresh_from_db()


def _apply_item(campaign: Campaign, item_id: int) -> TransientError | None:
    retry: TransientError | None = None
    with transaction.atomic():
        # Two workers on one campaign (a retry overlapping a redelivery) never run one item twice.
        item = (
            Item.objects.select_for_update(skip_locked=True)
            .filter(pk=item_id, outcome=Item.Outcome.PENDING)
            .first()
        )
        if item is None:
            return None
        now = timezone.now()
        for step in item.steps:
            if step["state"] != StepState.PENDING:
                continue
            try:
                step["result"] = _execute(campaign, item, step, now)[:500]
            except TransientError as exc:
                retry, step["result"] = exc, f"will retry: {exc}"[:500]
            except ConnectorError as exc:
                step["state"], step["result"] = str(StepState.FAILED), str(exc)[:500]
            else:
                step["state"], step["done_at"] = str(StepState.DONE), now.isoformat()
        item.outcome = _outcome(item.steps)
        item.result = (
            "; ".join(f"{STEP_LABELS[Step(s['action'])]}: {s['result'] or s['why']}" for s in item.steps)
            or "nothing left to revoke"
        )
        item.applied_at = now if item.outcome != Item.Outcome.PENDING else None
        item.save(update_fields=["steps", "outcome", "result", "applied_at"])
        if retry is None:
            audit.record(
                campaign.closed_by,
                AuditAction.ACCESS_REVIEW_ITEM_APPLIED,
                target=_target(item),
                campaign=campaign.pk,
                item=item.pk,
                outcome=item.outcome,
                steps=[{"key": s["key"], "state": s["state"], "result": s["result"]} for s in item.steps],
            )
    return retry


def _target(item: Item) -> Any:
    return item.person or item.robot or item.credential or item


def _outcome(steps: list[dict[str, Any]]) -> str:
    states = {step["state"] for step in steps}
    if StepState.PENDING in states:
        return Item.Outcome.PENDING
    if StepState.FAILED in states:
        return Item.Outcome.FAILED
    if StepState.MANUAL in states:
        return Item.Outcome.MANUAL
    return Item.Outcome.REVOKED


def _execute(campaign: Campaign, item: Item, step: dict[str, Any], now: datetime) -> str:
    """Carry out one step; returns what was done. Raises ConnectorError when a registry refuses."""
    kind, _, pk = step["key"].rpartition("-")
    action = Step(step["action"])
    if action == Step.END_RULE:
        reason = f"access review: {campaign.name}"
        return end_rule(int(pk), actor=campaign.closed_by, reason=reason, now=now, campaign=campaign.pk)
    if action == Step.REMOVE_MEMBERSHIP:
        return _remove_membership(item, int(pk))
    if action == Step.REVOKE_TOKEN:
        robot = RobotToken.objects.filter(pk=int(pk)).first()
        if robot is None:
            return "already deleted"
        revoked = account_services.revoke_robot_token(robot, actor=campaign.closed_by)
        return "revoked" if revoked else "already revoked"
    if action == Step.DISABLE_CREDENTIAL:
        credential = Credential.objects.filter(pk=int(pk)).select_related("registry").first()
        if credential is None or credential.gone_at is not None or credential.registry is None:
            return "already gone from the registry"
        return offboarding.disable_credential(credential)
    if action == Step.REMOVE_GRANT:
        grant = step["grant"]
        return offboarding.remove_grant(grant["registry_pk"], grant, reason=f"access review: {campaign.name}")
    raise PermanentError(f"no way to carry out {step['action']} on {step['key']}")


def end_rule(
    rule_id: int, *, actor: User | None, reason: str, now: datetime | None = None, **detail: Any
) -> str:
    """End a rule now (its expiry set to now), audited as any change to a rule is."""
    now = now or timezone.now()
    rule = AccessRule.objects.select_related("group", "registry").filter(pk=rule_id).first()
    if rule is None:
        return "already deleted"
    if rule.expires_at is not None and rule.expires_at <= now:
        return "already ended"
    before = rule.expires_at
    AccessRule.objects.filter(pk=rule.pk).update(expires_at=now, updated_at=now)
    audit.record(
        actor,
        AuditAction.ACCESS_RULE_UPDATED,
        target=rule,
        before={"expires_at": before},
        after={"expires_at": now},
        reason=reason,
        **detail,
    )
    # Drift follows a rule change at once (registries/services.py does the same for edits).
    from registries import tasks

    transaction.on_commit(functools.partial(tasks.check_access_drift.delay, rule.registry_id))
    return "ended"


def _remove_membership(item: Item, group_pk: int) -> str:
    if item.person_id is None:
        return "the person's account was deleted"
    membership = GroupMembership.objects.filter(user_id=item.person_id, group_id=group_pk).first()
    if membership is None:
        return "already gone"
    if membership.source != Source.LOCAL:
        # Planned as Customs' own; the directory has taken it over since.
        raise PermanentError(
            f"the membership now comes from the directory ({membership.source}): remove it there"
        )
    membership.delete()
    return "removed"
