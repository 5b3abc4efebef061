"""Findings: the kinds rules can raise, and the engine that opens, refreshes and resolves them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from portal import audit
from portal.audit import AuditAction
from portal.errors import RequestRejected
from portal.models import Finding

Severity = Finding.Severity


@dataclass(frozen=True)
class FindingKind:
    slug: str
    severity: str
    title: str
    explanation: str


KINDS: dict[str, FindingKind] = {}


def register(kind: FindingKind) -> FindingKind:
    """Make a kind known; rules call this at import. Kinds are code, so adding one needs no migration."""
    if kind.slug in KINDS and KINDS[kind.slug] != kind:
        raise ValueError(f"finding kind {kind.slug!r} is registered twice with different meanings")
    KINDS[kind.slug] = kind
    return kind


AUDIT_CHAIN_BROKEN = register(
    FindingKind(
        slug="audit_chain_broken",
        severity=Severity.CRITICAL,
        title="Audit trail tampered with",
        explanation=(
            "An audit event no longer matches its hash or the event before it: rows were changed or removed."
        ),
    )
)


# Access drift (registries/drift.py), for registries whose connector reads grants; one registry's
# findings are scoped "registry-<pk>". A registry behind Customs' token server never has any.
ACCESS_WITHOUT_RULE = register(
    FindingKind(
        slug="access_without_rule",
        severity=Severity.HIGH,
        title="Registry access without a rule",
        explanation=(
            "A registry grants a principal actions that no access rule in Customs gives it: access "
            "outside the directory's control, e.g. a robot, a person who left, or a hand-made grant."
        ),
    )
)
RULE_NOT_REFLECTED = register(
    FindingKind(
        slug="rule_not_reflected",
        severity=Severity.LOW,
        title="Access rule not reflected in the registry",
        explanation=(
            "An access rule gives a group actions on repositories that the registry does not grant "
            "that group: its members are refused what Customs says they may do."
        ),
    )
)


@dataclass(frozen=True)
class Observation:
    """One subject for which a rule's condition holds right now, with the evidence for it."""

    subject_key: str
    summary: str
    subject_type: str = ""
    subject_id: str = ""
    subject_label: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReconcileResult:
    opened: int = 0
    refreshed: int = 0
    reopened: int = 0
    resolved: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.opened or self.reopened or self.resolved)


def finding_key(kind: FindingKind, subject_key: str) -> str:
    return f"{kind.slug}:{subject_key}"[:255]


def reconcile(
    kind: FindingKind, observations: Iterable[Observation], *, scope: str = "", now: datetime | None = None
) -> ReconcileResult:
    """Make the findings of one kind match what a rule observed.

    Observed subjects get a finding opened (or reopened, or refreshed); unresolved findings of
    this kind under `scope` (see _in_scope) that were not observed are resolved. A rule that
    only looked at part of the estate (one registry) passes that part as `scope`, so findings
    elsewhere are left alone.
    """
    now = now or timezone.now()
    result = ReconcileResult()
    seen_keys: set[str] = set()
    with transaction.atomic():
        for observation in observations:
            key = finding_key(kind, observation.subject_key)
            seen_keys.add(key)
            _upsert(kind, key, observation, now, result)
        stale = Finding.objects.unresolved().filter(kind=kind.slug).filter(_in_scope(kind, scope))
        result.resolved = stale.exclude(key__in=seen_keys).update(resolved_at=now)
        if result.changed:
            audit.record(
                None,
                AuditAction.FINDINGS_RECONCILED,
                kind=kind.slug,
                scope=scope,
                opened=result.opened,
                reopened=result.reopened,
                resolved=result.resolved,
            )
    return result


def _in_scope(kind: FindingKind, scope: str) -> Q:
    """Subject keys are "/"-separated paths; a scope covers itself and what lies beneath it.

    Whole segments only: scope "registry-1" covers "registry-1/repo" but not "registry-10/repo".
    """
    if not scope:
        return Q(key__startswith=finding_key(kind, ""))
    prefix = finding_key(kind, scope.rstrip("/"))
    return Q(key=prefix) | Q(key__startswith=prefix + "/")


def _upsert(
    kind: FindingKind, key: str, observation: Observation, now: datetime, result: ReconcileResult
) -> None:
    values = {
        "kind": kind.slug,
        "severity": kind.severity,
        "summary": observation.summary[:500],
        "subject_type": observation.subject_type,
        "subject_id": observation.subject_id,
        "subject_label": observation.subject_label[:255],
        "detail": observation.detail,
        "last_seen": now,
    }
    finding = Finding.objects.select_for_update().filter(key=key).first()
    if finding is None:
        Finding.objects.create(key=key, first_seen=now, **values)
        result.opened += 1
        return
    if finding.resolved_at is not None:
        # The condition came back: same finding, so its history and any suppression stay with it.
        values["resolved_at"] = None
        result.reopened += 1
    else:
        result.refreshed += 1
    Finding.objects.filter(pk=finding.pk).update(**values)


class SuppressionError(RequestRejected):
    """A suppression request that cannot be accepted, with a message for the person asking."""


def suppress(finding: Finding, *, actor: Any, until: datetime, justification: str) -> None:
    """Accept the risk until a date. The finding resurfaces by itself when that date passes."""
    justification = justification.strip()
    if not justification:
        raise SuppressionError("a justification is required to suppress a finding")
    if until <= timezone.now():
        raise SuppressionError("the suppression must end in the future")
    if finding.resolved_at is not None:
        raise SuppressionError("this finding is resolved; there is nothing to suppress")
    with transaction.atomic():
        finding.suppressed_until, finding.suppression_justification = until, justification
        finding.suppressed_by = actor
        finding.save(update_fields=["suppressed_until", "suppression_justification", "suppressed_by"])
        audit.record(
            actor, AuditAction.FINDING_SUPPRESSED, target=finding, until=until, justification=justification
        )


def unsuppress(finding: Finding, *, actor: Any) -> None:
    if finding.suppressed_until is None:
        return
    with transaction.atomic():
        finding.suppressed_until, finding.suppression_justification, finding.suppressed_by = None, "", None
        finding.save(update_fields=["suppressed_until", "suppression_justification", "suppressed_by"])
        audit.record(actor, AuditAction.FINDING_UNSUPPRESSED, target=finding)


def check_audit_chain() -> tuple[int, audit.ChainBreak | None]:
    """Verify the audit trail and keep the tamper finding in step with the result."""
    checked, broken = audit.verify_chain()
    observations = []
    if broken:
        observations.append(
            Observation(
                subject_key="trail",
                summary=f"Audit event #{broken.sequence}: {broken.reason}",
                subject_type="portal.auditevent",
                subject_id=str(broken.sequence),
                detail={
                    "first_broken_sequence": broken.sequence,
                    "reason": broken.reason,
                    "events_checked": checked,
                },
            )
        )
    reconcile(AUDIT_CHAIN_BROKEN, observations)
    return checked, broken
