"""Celery tasks of the mirror job: thin, by id; the work is in registries/mirror/jobs.py and status.py.

Celery's autodiscovery imports `<app>.tasks` only; registries/tasks.py imports this module so the
worker registers these tasks.
"""

from __future__ import annotations

import random
from datetime import timedelta

from celery import current_app, shared_task
from django.conf import settings

from registries.mirror import jobs, status
from registries.models import BaseImage, MirrorRun, Registry


def _interval() -> timedelta:
    return timedelta(minutes=settings.MIRROR_INTERVAL_MINUTES)


@shared_task(acks_late=True)
def mirror_entry(base_image_id: int, trigger: str = MirrorRun.Trigger.SCHEDULE) -> None:
    """Mirror one catalog entry into all its regions, then send the arrivals that run found."""
    if entry := BaseImage.objects.filter(pk=base_image_id).first():
        try:
            outcome = jobs.mirror_entry(entry, trigger=trigger)
        except jobs.AlreadyMirroring:
            return  # the run that holds it covers this one
        status.deliver_arrivals()
        if outcome.run and outcome.run.copies:
            # The developer catalog reads pull references from the inventory: let it see the copies now.
            synced = Registry.objects.filter(base_image_mirrors__base_image=entry, sync_enabled=True)
            for registry_id in synced.values_list("pk", flat=True).distinct():
                current_app.signature("registries.tasks.sync_registry", args=[registry_id]).apply_async()


@shared_task(acks_late=True)
def schedule_mirrors() -> int:
    """Every few minutes: free dead runs, queue the entries whose interval has passed, resend due events."""
    jobs.free_stuck_runs(older_than=timedelta(minutes=settings.MIRROR_STUCK_AFTER_MINUTES))
    due = jobs.due_entries(interval=_interval())
    spread = min(300.0, _interval().total_seconds() / 10)
    for entry in due:
        # Jitter: a catalog of a hundred entries must not hit one upstream in the same second.
        mirror_entry.apply_async((entry.pk,), countdown=random.uniform(0, spread))  # noqa: S311
    status.deliver_arrivals()
    return len(due)


def mirror_after_catalog_change(base_image_id: int) -> None:
    """Queue a run of an entry whose catalog record (tags, mirrors) changed; call after commit."""
    mirror_entry.delay(base_image_id, MirrorRun.Trigger.CATALOG)
