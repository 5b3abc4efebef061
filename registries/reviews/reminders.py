"""Reminders: reviewers with undecided items hear from Customs as a campaign's due date nears."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from portal import notify
from registries.reviews.base import Campaign, Item

logger = logging.getLogger(__name__)


REMINDER_DAYS = (7, 1)  # reviewers with items left hear from Customs this many days before the due date


def reminder_stage(campaign: Campaign, now: datetime) -> int | None:
    """The reminder due now (days before the due date), the most urgent one that has come."""
    left = campaign.due_at - now
    if left <= timedelta(0):
        return None
    stages = [days for days in REMINDER_DAYS if left <= timedelta(days=days)]
    return min(stages) if stages else None


def send_reminders(now: datetime | None = None) -> int:
    """E-mail each reviewer with undecided items in a campaign nearing its due date, once per stage.

    A mail server that refuses leaves nothing recorded: the next run tries again.
    """
    now = now or timezone.now()
    sent = 0
    for campaign in Campaign.objects.filter(state=Campaign.State.OPEN, due_at__gt=now).order_by("due_at"):
        stage = reminder_stage(campaign, now)
        if stage is not None:
            sent += _remind(campaign, stage)
    return sent


def _remind(campaign: Campaign, stage: int) -> int:
    waiting = Counter(
        Item.reviewers.through._default_manager.filter(
            accessreviewitem__campaign=campaign, accessreviewitem__decision=""
        ).values_list("user_id", flat=True)
    )
    sent = 0
    reviewers = User.objects.filter(pk__in=waiting, status=User.Status.ACTIVE, is_active=True).exclude(
        email=""
    )
    for reviewer in reviewers.order_by("pk"):
        context = {
            "campaign": campaign,
            "reviewer": reviewer,
            "count": waiting[reviewer.pk],
            "link": f"{settings.SITE_URL}{reverse('registries:review', args=[campaign.pk])}?mine=1",
            "site_url": settings.SITE_URL,
            "stages": " and ".join(str(days) for days in REMINDER_DAYS),
        }
        try:
            sent += notify.send_email_once(
                f"review:{campaign.pk}:{stage}d:{reviewer.pk}",
                to=reviewer.email,
                subject=f"[Customs] {waiting[reviewer.pk]} access reviews due {campaign.due_at:%Y-%m-%d}",
                template="registries/reviews/reminder_email",
                context=context,
            )
        except notify.DeliveryFailed as failure:
            logger.warning("access review %s: reminder to %s not sent: %s", campaign.pk, reviewer.pk, failure)
    return sent
