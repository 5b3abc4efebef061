from __future__ import annotations

import random
from typing import Any

from celery import Task, shared_task
from django.conf import settings
from django.utils import timezone

from accounts.models import User
from portal import notify
from portal.celery import TRANSIENT_RETRY
from registries import (
    drift,
    hygiene,
    offboarding,
    posture,
    review_tasks,  # noqa: F401  (workers register the access-review tasks)
    sync,
)
from registries.connectors.errors import AuthError, ConfigError, NotFoundError
from registries.mirror import tasks as mirror_tasks  # noqa: F401  (workers register the mirror tasks)
from registries.models import Offboarding, Registry, SyncRun, WebhookEvent
from registries.policy import lineage

# A registry that asks for a longer wait than a sync waits gets the sync queued again for the
# moment it named, this many times in a row; after that the schedule takes over.
RATE_LIMIT_REQUEUES = 3
# Redis hands a task held longer than its visibility timeout (an hour) to a second worker. The
# registry claim would make that copy harmless, but a longer wait is left to the schedule.
LONGEST_REQUEUE = 3600.0


@shared_task(bind=True, acks_late=True, **TRANSIENT_RETRY)
def sync_registry(self: Task[Any, Any], registry_id: int, trigger: str = SyncRun.Trigger.SCHEDULE) -> None:
    if registry := Registry.objects.filter(pk=registry_id).first():
        requeue = self.request.retries < RATE_LIMIT_REQUEUES
        try:
            run = sync.sync_inventory(
                registry, trigger=trigger, resume_within=LONGEST_REQUEUE if requeue else 0
            )
        except sync.AlreadySyncing:
            return  # the other run covers it
        except sync.Deferred as deferred:
            # Replicas and findings wait for the sync that reads the registry whole.
            raise self.retry(countdown=deferred.retry_after, max_retries=RATE_LIMIT_REQUEUES) from None
        for replica in registry.replicas.all():
            sync.sync_replica(replica, trigger=trigger)
        if run.status == SyncRun.Status.SUCCEEDED:
            # Findings follow what the sync read at once, not at the next hourly scan.
            scan_findings.delay(registry.pk)
            refresh_lineage.delay(registry.pk)


@shared_task(acks_late=True)
def schedule_syncs() -> int:
    """Every few minutes: queue the registries whose interval has passed, spread out with jitter."""
    now, queued = timezone.now(), 0
    for registry in Registry.objects.filter(sync_enabled=True).idle():
        due = (
            registry.last_sync_started_at is None
            or (now - registry.last_sync_started_at).total_seconds() >= registry.sync_interval_minutes * 60
        )
        if due:
            # Jitter: a hundred registries with the same interval must not all start in the same second.
            countdown = random.uniform(0, min(300, registry.sync_interval_minutes * 6))  # noqa: S311
            sync_registry.apply_async((registry.pk,), countdown=countdown)
            queued += 1
    return queued


@shared_task(acks_late=True)
def free_stuck_syncs() -> int:
    return sync.free_stuck_claims(older_than=settings.SYNC_STUCK_AFTER)


@shared_task(acks_late=True, **TRANSIENT_RETRY)
def apply_webhook_events(event_ids: list[int]) -> None:
    """Apply stored notifications in the order they arrived; each records what it changed."""
    for event in (
        WebhookEvent.objects.filter(pk__in=event_ids, result="").select_related("registry").order_by("pk")
    ):
        try:
            result = sync.apply_event(event.registry, event)
        except (NotFoundError, AuthError, ConfigError) as exc:
            # Permanent: say so on the event; the next full sync puts the inventory right.
            result = f"failed: {exc}"
        WebhookEvent.objects.filter(pk=event.pk).update(result=result[:255])


@shared_task(acks_late=True)
def check_access_drift(registry_id: int | None = None) -> None:
    """Bring the drift findings of one registry (or all) up to date with the stored grants and rules."""
    registries = Registry.objects.all() if registry_id is None else Registry.objects.filter(pk=registry_id)
    drift.reconcile_all(registries)
    notify.send_pending()


@shared_task(acks_late=True)
def scan_findings(registry_id: int | None = None) -> dict[str, int]:
    """Run the hygiene rules over one registry (after its sync) or everything (hourly: thresholds
    are crossed by time passing, with no event), then send what is due. Returns open findings by kind."""
    registry = None
    if registry_id is not None:
        registry = Registry.objects.filter(pk=registry_id).first()
        if registry is None:
            return {}  # deleted since: its credentials and findings went with it at the next full scan
    result = hygiene.scan(registry=registry)
    # After the scan's transactions commit: a message must never go out for a ledger row rolled back.
    notify.send_pending()
    return result.open_by_kind


@shared_task(acks_late=True)
def copy_customs_tokens() -> int:
    """Bring the credential list's Customs rows in step with the tokens (queued as tokens change,
    registries/signals.py). Returns how many there are."""
    return hygiene.copy_customs_tokens()


@shared_task(acks_late=True, **TRANSIENT_RETRY)
def run_offboarding(offboarding_id: int) -> str:
    """Run an offboarding's pending steps, then re-read the registries to prove them.

    A registry's transient failure retries the task with back-off, and the steps already done are
    not done again.
    """
    found = Offboarding.objects.filter(pk=offboarding_id).select_related("person", "reassign_to").first()
    if found is None:
        return "gone"
    return offboarding.verify(offboarding.run(found)).state


@shared_task(acks_late=True)
def evaluate_posture() -> dict[str, int | None]:
    """Score every registry once a day, so the posture chart has a point even for one not synced."""
    return posture.evaluate_all()


@shared_task(acks_late=True)
def resume_offboardings() -> int:
    """Queue again the offboardings still running a while after confirmation: their task gave up
    retrying (a registry down for long). Steps already done are skipped, so this is always safe."""
    stalled = Offboarding.objects.filter(
        state=Offboarding.State.RUNNING, confirmed_at__lt=timezone.now() - settings.OFFBOARDING_RESUME_AFTER
    )
    ids = list(stalled.values_list("pk", flat=True))
    for offboarding_id in ids:
        run_offboarding.delay(offboarding_id)
    return len(ids)


@shared_task(acks_late=True)
def refresh_lineage(registry_id: int | None = None) -> dict[str, int]:
    """Decide what each artifact is built on (one registry after its sync, or everything: hourly and
    after catalog changes) and bring the base-image findings in step. Returns open findings by kind."""
    registry = None
    if registry_id is not None:
        registry = Registry.objects.filter(pk=registry_id).first()
        if registry is None:
            return {}
    result = lineage.refresh_lineage(registry)
    notify.send_pending()
    return result.open_by_kind


@shared_task(acks_late=True, **TRANSIENT_RETRY)
def offboard_from_directory(person_id: int, reason: str) -> str:
    """A person the directory disabled or removed (SCIM, or an admin's departure): offboard them.

    Robots and credentials they made that automation still uses follow the configured policy
    (settings.OFFBOARDING_ROBOT_POLICY): re-assigned to the group's owner or the steward, or
    disabled. Nothing happens when an offboarding of theirs is already under way.
    """
    person = User.objects.filter(pk=person_id).first()
    if person is None or person.may_sign_in:
        return "nothing to do"  # gone, or reactivated since
    try:
        started = offboarding.start(person, actor=None, reason=reason, trigger=Offboarding.Trigger.DIRECTORY)
    except offboarding.OffboardingRefused:
        return "already under way"
    offboarding.confirm(started, actor=None)
    return "started"
