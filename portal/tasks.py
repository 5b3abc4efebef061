from __future__ import annotations

from celery import shared_task

from portal import findings


@shared_task(acks_late=True)
def verify_audit_chain() -> int:
    """Hourly: check the audit trail and open (or resolve) the tamper finding. Returns events checked."""
    checked, _ = findings.check_audit_chain()
    return checked
