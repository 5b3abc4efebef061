from __future__ import annotations

from typing import Any

from celery import shared_task
from django.contrib.auth import get_user_model

from portal import audit, findings, notify


@shared_task(acks_late=True)
def verify_audit_chain() -> int:
    """Hourly: check the audit trail and open (or resolve) the tamper finding. Returns events checked."""
    checked, _ = findings.check_audit_chain()
    notify.send_pending()
    return checked


@shared_task(acks_late=True)
def append_audit_event(
    actor_id: int | None, action: str, target: dict[str, str] | None, detail: dict[str, Any]
) -> None:
    """An event queued by audit.record_soon, appended to the chain by the worker.

    Acknowledged late: a worker dying between the append and the acknowledgement makes the event
    appear twice, which a reviewer can see; acknowledging early could lose it, which nobody could.
    """
    actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id is not None else None
    subject = audit.Target(**target) if target else None
    audit.record(actor, audit.AuditAction(action), target=subject, **detail)
