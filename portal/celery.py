"""The Celery app, the retry policy for outbound work, and the beat schedule (one dict)."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from celery import Celery

from portal.http import TransientError

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("customs")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The one retry policy for tasks that talk to the outside: only transient failures are retried,
# with capped, jittered exponential back-off. Outbound sessions never retry themselves, so
# retries do not multiply across layers; the one exception is a sync's short wait on a 429
# (portal.http.waiting_out_rate_limits), which resends the page it was on.
TRANSIENT_RETRY: dict[str, Any] = {
    "autoretry_for": (TransientError,),
    "retry_backoff": 5,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": 6,
}

app.conf.beat_schedule = {
    "verify-audit-chain": {"task": "portal.tasks.verify_audit_chain", "schedule": timedelta(hours=1)},
    "schedule-registry-syncs": {"task": "registries.tasks.schedule_syncs", "schedule": timedelta(minutes=5)},
    "free-stuck-syncs": {"task": "registries.tasks.free_stuck_syncs", "schedule": timedelta(minutes=15)},
    # Rules expire without an event, and an expired rule can turn a registry's grant into drift.
    "check-access-drift": {"task": "registries.tasks.check_access_drift", "schedule": timedelta(hours=1)},
    # Credentials go stale and near their expiry by time alone; each sync also scans its registry.
    "scan-findings": {"task": "registries.tasks.scan_findings", "schedule": timedelta(hours=1)},
    # Base images age by time alone too; each sync also refreshes its registry's lineage.
    "refresh-lineage": {"task": "registries.tasks.refresh_lineage", "schedule": timedelta(hours=1)},
    # Access reviews: scheduled and recurring campaigns start by themselves; reviewers are reminded.
    "start-access-reviews": {
        "task": "registries.review_tasks.start_due_campaigns",
        "schedule": timedelta(hours=1),
    },
    "remind-access-reviewers": {
        "task": "registries.review_tasks.send_review_reminders",
        "schedule": timedelta(hours=1),
    },
    # Base images' regional mirrors: queue entries whose interval passed; retry undelivered arrival events.
    "schedule-mirrors": {
        "task": "registries.mirror.tasks.schedule_mirrors",
        "schedule": timedelta(minutes=5),
    },
    # One posture point a day per registry, synced or not, for the score chart.
    "evaluate-posture": {"task": "registries.tasks.evaluate_posture", "schedule": timedelta(days=1)},
    # An offboarding whose retries ran out (a registry down for long) is taken up again.
    "resume-offboardings": {
        "task": "registries.tasks.resume_offboardings",
        "schedule": timedelta(minutes=30),
    },
}
