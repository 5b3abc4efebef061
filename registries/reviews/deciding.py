"""Deciding: who may decide an item, and certifying or revoking items while the campaign is open."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from accounts.roles import Role
from portal import audit
from portal.audit import AuditAction
from registries.reviews.base import Campaign, CampaignRefused, Decision, Item


def may_manage(user: User, campaign: Campaign) -> bool:
    """Open, close and apply: admins, and the reviewer who runs the campaign."""
    return user.has_role(Role.ADMIN) or (campaign.owner_id == user.pk and user.has_role(Role.REVIEWER))


def may_decide(user: User, campaign: Campaign, item: Item, reviewer_ids: set[int]) -> bool:
    """The item's reviewers, the campaign's manager(s); never the person whose access it is."""
    if not user.may_sign_in or item.person_id == user.pk:
        return False
    return user.pk in reviewer_ids or may_manage(user, campaign)


def reviewer_ids(items: Iterable[Item]) -> dict[int, set[int]]:
    """Each item's reviewers' ids, in one query."""
    ids: dict[int, set[int]] = {item.pk: set() for item in items}
    pairs = Item.reviewers.through._default_manager.filter(accessreviewitem_id__in=ids)
    for item_id, user_id in pairs.values_list("accessreviewitem_id", "user_id"):
        ids[item_id].add(user_id)
    return ids


@dataclass(frozen=True)
class Decided:
    decided: int
    skipped: int  # chosen, but not theirs to decide


def decide(
    campaign: Campaign, item_ids: Iterable[int], *, decision: str, comment: str, actor: User
) -> Decided:
    """Certify or revoke the chosen items the actor may decide; the others are counted, not touched.

    A revocation needs a comment: the report says why access went. Decisions can change until the close.
    """
    if decision not in Decision.values:
        raise CampaignRefused("choose certify or revoke")
    if decision == Decision.REVOKE and not comment.strip():
        raise CampaignRefused("say why the access should go: the comment is in the report")
    wanted = set(item_ids)
    with transaction.atomic():
        # Locked so a close cannot slip between reading the state and writing the decisions.
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if locked.state != Campaign.State.OPEN:
            raise CampaignRefused(
                f"this campaign is {locked.get_state_display().lower()}: decisions are final"
            )
        items = list(locked.items.filter(pk__in=wanted))
        reviewers = reviewer_ids(items)
        allowed = [item for item in items if may_decide(actor, locked, item, reviewers[item.pk])]
        Item.objects.filter(pk__in=[item.pk for item in allowed]).update(
            decision=decision,
            comment=comment.strip(),
            decided_by=actor,
            decided_at=timezone.now(),
            by_default=False,
        )
        if allowed:
            audit.record(
                actor,
                AuditAction.ACCESS_REVIEW_DECIDED,
                target=locked,
                decision=decision,
                comment=comment.strip(),
                items=[item.pk for item in allowed],
                subjects=[item.subject for item in allowed],
            )
    return Decided(decided=len(allowed), skipped=len(wanted) - len(allowed))
