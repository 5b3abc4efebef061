"""Creating, opening and repeating campaigns: opening builds the items and picks their reviewers."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from portal import audit
from portal.audit import AuditAction
from registries.models import Registry
from registries.patterns import InvalidPattern, compile_pattern
from registries.reviews.base import ACTIONS, Campaign, CampaignRefused, Decision, Item
from registries.reviews.reviewers import Reviewers, answers_for, managers_of, reviewers_for
from registries.reviews.scope import Scope
from registries.reviews.subjects import Subject, subjects_in_scope


@dataclass(frozen=True)
class CampaignRequest:
    name: str
    pattern: str
    actions: frozenset[str]
    due_at: datetime
    registries: tuple[Registry, ...] = ()
    reviewer_rule: str = Campaign.ReviewerRule.GROUP_OWNER
    reviewers: tuple[User, ...] = ()
    default_decision: str = Decision.CERTIFY
    recurrence: str = Campaign.Recurrence.NONE
    start_at: datetime | None = None  # None: open at once
    description: str = ""


MONTHS = {
    Campaign.Recurrence.MONTHLY: 1,
    Campaign.Recurrence.QUARTERLY: 3,
    Campaign.Recurrence.YEARLY: 12,
}


def after_period(moment: datetime, recurrence: str) -> datetime | None:
    """The next start of a recurring campaign; None for one that runs once."""
    months = MONTHS.get(Campaign.Recurrence(recurrence))
    if months is None:
        return None
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    # 31 January plus a month is the last day of February, not an error.
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def create_campaign(request: CampaignRequest, *, actor: User | None) -> Campaign:
    """Record a campaign and open it, or schedule its opening (request.start_at)."""
    now = timezone.now()
    _check(request, now)
    with transaction.atomic():
        campaign = Campaign.objects.create(
            name=request.name.strip(),
            description=request.description.strip(),
            pattern=compile_pattern(request.pattern).text,
            actions=[action for action in ACTIONS if action in request.actions],
            reviewer_rule=request.reviewer_rule,
            owner=actor,
            due_at=request.due_at,
            default_decision=request.default_decision,
            recurrence=request.recurrence,
            next_start_at=request.start_at,
        )
        campaign.registries.set(request.registries)
        campaign.reviewers.set(request.reviewers)
        audit.record(actor, AuditAction.ACCESS_REVIEW_CREATED, target=campaign, scope=_scope_detail(campaign))
        if request.start_at is None or request.start_at <= now:
            open_campaign(campaign, actor=actor, now=now)
    return campaign


def _check(request: CampaignRequest, now: datetime) -> None:
    if not request.name.strip():
        raise CampaignRefused("give the campaign a name")
    try:
        compile_pattern(request.pattern)
    except InvalidPattern as exc:
        raise CampaignRefused(f"pattern: {exc}") from None
    if not request.actions or not request.actions <= set(ACTIONS):
        raise CampaignRefused(f"choose actions among {', '.join(ACTIONS)}")
    if request.reviewer_rule == Campaign.ReviewerRule.NAMED and not request.reviewers:
        raise CampaignRefused("name at least one reviewer")
    start = max(request.start_at or now, now)
    if request.due_at <= start:
        raise CampaignRefused("the due date must come after the start")
    following = after_period(start, request.recurrence)
    if following is not None and request.due_at > following:
        raise CampaignRefused("a recurring campaign must be due before its next one starts")


def _scope_detail(campaign: Campaign) -> dict[str, Any]:
    return {
        "pattern": campaign.pattern,
        "actions": campaign.actions,
        "registries": sorted(campaign.registries.values_list("name", flat=True)) or ["*"],
        "reviewer_rule": campaign.reviewer_rule,
        "default_decision": campaign.default_decision,
        "due_at": campaign.due_at,
        "recurrence": campaign.recurrence,
    }


def open_campaign(campaign: Campaign, *, actor: User | None, now: datetime | None = None) -> int:
    """Build the items from effective access now and open the campaign for review. Returns the count."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = Campaign.objects.select_for_update(of=("self",)).select_related("owner").get(pk=campaign.pk)
        if locked.state != Campaign.State.DRAFT:
            raise CampaignRefused(
                f"this campaign is {locked.get_state_display().lower()}: only a draft opens"
            )
        count = _make_items(locked, now)
        locked.state, locked.opened_at = Campaign.State.OPEN, now
        locked.next_start_at = after_period(now, locked.recurrence)
        locked.save(update_fields=["state", "opened_at", "next_start_at"])
        audit.record(
            actor, AuditAction.ACCESS_REVIEW_OPENED, target=locked, items=count, due_at=locked.due_at
        )
    campaign.refresh_from_db()
    return count


def _make_items(campaign: Campaign, now: datetime) -> int:
    subjects = subjects_in_scope(Scope.of(campaign), now=now)
    named = list(campaign.reviewers.all())
    people = [subject.person for subject in subjects if subject.person is not None]
    people += [
        answering
        for subject in subjects
        if subject.credential is not None and (answering := answers_for(subject.credential))
    ]
    managers = managers_of(people)
    items, chosen = [], []
    for subject in subjects:
        reviewers = reviewers_for(campaign, subject, named=named, managers=managers)
        items.append(_item(campaign, subject, reviewers))
        chosen.append(reviewers.people)
    created = Item.objects.bulk_create(items)
    Through = Item.reviewers.through
    Through._default_manager.bulk_create(
        Through(accessreviewitem_id=item.pk, user_id=person.pk)
        for item, people in zip(created, chosen, strict=True)
        for person in people
    )
    return len(created)


def _item(campaign: Campaign, subject: Subject, reviewers: Reviewers) -> Item:
    return Item(
        campaign=campaign,
        kind=subject.kind,
        person=subject.person,
        robot=subject.robot,
        credential=subject.credential,
        subject=subject.label[:255],
        actions=subject.actions,
        access={"rules": subject.rules, "grants": subject.grants},
        last_used_at=subject.last_used_at,
        last_used_source=subject.last_used_source[:100],
        reviewers_why=reviewers.why[:255],
    )


_DATED = re.compile(r" · \d{4}-\d{2}-\d{2}$")


def start_due_campaigns(now: datetime | None = None) -> list[Campaign]:
    """Open the scheduled drafts whose start has come, and start the next occurrence of each recurring
    campaign whose period has passed. Safe to run from several workers: each start is claimed once."""
    now = now or timezone.now()
    due = Campaign.objects.filter(next_start_at__lte=now).order_by("next_start_at", "pk")
    started = []
    for campaign_id in list(due.values_list("pk", flat=True)):
        if (campaign := _start_due(campaign_id, now)) is not None:
            started.append(campaign)
    return started


def _start_due(campaign_id: int, now: datetime) -> Campaign | None:
    with transaction.atomic():
        claimed = (
            Campaign.objects.select_for_update(skip_locked=True)
            .filter(pk=campaign_id, next_start_at__lte=now)
            .first()
        )
        if claimed is None:
            return None  # another worker has it, or started it already
        if claimed.state == Campaign.State.DRAFT:
            open_campaign(claimed, actor=None, now=now)
            return claimed
        following = _next_occurrence(claimed, now)
        claimed.next_start_at = None  # the new occurrence carries the schedule from here
        claimed.save(update_fields=["next_start_at"])
        open_campaign(following, actor=None, now=now)
        return following


def _next_occurrence(campaign: Campaign, now: datetime) -> Campaign:
    assert campaign.opened_at is not None  # only a campaign that has opened has a next occurrence
    following = Campaign.objects.create(
        name=f"{_DATED.sub('', campaign.name)} · {now:%Y-%m-%d}"[:200],
        description=campaign.description,
        pattern=campaign.pattern,
        actions=campaign.actions,
        reviewer_rule=campaign.reviewer_rule,
        owner=campaign.owner,
        due_at=now + (campaign.due_at - campaign.opened_at),
        default_decision=campaign.default_decision,
        recurrence=campaign.recurrence,
        recurs_from=campaign,
    )
    following.registries.set(campaign.registries.all())
    following.reviewers.set(campaign.reviewers.all())
    audit.record(
        None,
        AuditAction.ACCESS_REVIEW_CREATED,
        target=following,
        recurs_from=campaign.pk,
        scope=_scope_detail(following),
    )
    return following
