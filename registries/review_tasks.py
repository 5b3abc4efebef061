"""Celery tasks for access review campaigns (registries/reviews/ holds the work).

Kept apart from registries/tasks.py; that module imports this one so workers register these.
"""

from __future__ import annotations

from celery import shared_task

from portal.celery import TRANSIENT_RETRY
from registries import reviews
from registries.models import AccessReviewCampaign


@shared_task(acks_late=True)
def start_due_campaigns() -> list[int]:
    """Hourly: open scheduled campaigns and start recurring ones whose period has passed."""
    return [campaign.pk for campaign in reviews.start_due_campaigns()]


@shared_task(acks_late=True)
def send_review_reminders() -> int:
    """Hourly: remind reviewers with undecided items as a campaign's due date nears."""
    return reviews.send_reminders()


@shared_task(acks_late=True, **TRANSIENT_RETRY)
def apply_campaign(campaign_id: int) -> str:
    """Carry out a closed campaign's revocations; a registry's transient failure retries the task."""
    if campaign := AccessReviewCampaign.objects.filter(pk=campaign_id).first():
        return reviews.apply(campaign).state
    return "gone"
