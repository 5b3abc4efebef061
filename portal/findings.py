"""Findings: the kinds rules can raise, and the engine that opens, refreshes and resolves them."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Field, QuerySet
from django.utils import timezone

from portal import audit
from portal.audit import AuditAction
from portal.errors import RequestRejected
from portal.locks import transaction_lock
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
    """One subject for which a rule's condition holds right now, with the evidence for it.

    `subject_key` is a "/"-separated path whose first segment is the part of the estate it lies in
    ("registry-3/credential-17"): the finding's scope. `severity` overrides the kind's where one
    kind covers causes of different weight (an owner who left weighs more than an unknown one).
    """

    subject_key: str
    summary: str
    subject_type: str = ""
    subject_id: str = ""
    subject_label: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    severity: str = ""
    owner_id: int | None = None  # the person the subject belongs to, when Customs knows them
    owner_label: str = ""  # how the registry names its owner, resolved or not


@dataclass
class ReconcileResult:
    opened: int = 0
    refreshed: int = 0
    reopened: int = 0
    resolved: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.opened or self.reopened or self.resolved)


def open_by_kind(by_kind: Mapping[str, ReconcileResult]) -> dict[str, int]:
    """Findings a reconcile saw hold, by kind; kinds with none are left out."""
    counts = {slug: r.opened + r.reopened + r.refreshed for slug, r in by_kind.items()}
    return {slug: count for slug, count in counts.items() if count}


def finding_key(kind: FindingKind, subject_key: str) -> str:
    return f"{kind.slug}:{subject_key}"[:255]


def scope_of(subject_key: str) -> str:
    return subject_key.split("/", 1)[0][:100]


def reconcile(
    kind: FindingKind, observations: Iterable[Observation], *, scope: str = "", now: datetime | None = None
) -> ReconcileResult:
    """Make the findings of one kind match what a rule observed.

    Observed subjects get a finding opened (or reopened, or refreshed); unresolved findings of
    this kind under `scope` that were not observed are resolved. A rule that only looked at part
    of the estate (one registry) passes that part as `scope`, so findings elsewhere are left
    alone. A finding that comes back is the same row, so its history, suppression and assignee
    stay with it; its `opened_at` starts a new episode.

    Set-based: the observations are loaded into a temporary table (COPY on PostgreSQL) and four
    statements refresh, reopen, open and resolve against it. Row-at-a-time ORM writes took
    minutes at 100,000 credentials.
    """
    now = now or timezone.now()
    result = ReconcileResult()
    with transaction.atomic(), connection.cursor() as cursor:
        # Two scans at once would both open the same new finding: one kind reconciles at a time.
        transaction_lock(f"customs.findings.{kind.slug}")
        if _stage(cursor, kind, observations):
            result.refreshed = _refresh(cursor, now, reopening=False)
            result.reopened = _refresh(cursor, now, reopening=True)
            result.opened = _open(cursor, kind, now)
        result.resolved = _resolve(cursor, kind, scope, now)
        cursor.execute(f"DROP TABLE {_STAGE}")
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


_STAGE = "customs_observed_findings"
# The columns an observation fills, in the order they are staged.
_OBSERVED = (
    "key",
    "scope",
    "severity",
    "summary",
    "subject_type",
    "subject_id",
    "subject_label",
    "detail",
    "owner_id",
    "owner_label",
)


def _column(name: str) -> str:
    field = Finding._meta.get_field(name)
    assert isinstance(field, Field)
    assert field.column
    return connection.ops.quote_name(field.column)


def _table() -> str:
    return connection.ops.quote_name(Finding._meta.db_table)


def _stage(cursor: Any, kind: FindingKind, observations: Iterable[Observation]) -> int:
    """Load the observations into a temporary table; returns how many distinct subjects there were."""
    json_type = "jsonb" if connection.vendor == "postgresql" else "text"
    cursor.execute(
        f"CREATE TEMPORARY TABLE {_STAGE} (key varchar(255) PRIMARY KEY, scope varchar(100), "
        "severity varchar(16), summary varchar(500), subject_type varchar(100), subject_id varchar(100), "
        f"subject_label varchar(255), detail {json_type}, owner_id bigint, owner_label varchar(255))"
    )
    rows = {}
    for observation in observations:
        key = finding_key(kind, observation.subject_key)
        rows[key] = (
            key,
            scope_of(observation.subject_key),
            observation.severity or kind.severity,
            observation.summary[:500],
            observation.subject_type[:100],
            observation.subject_id[:100],
            observation.subject_label[:255],
            json.dumps(observation.detail),  # evidence is plain JSON: strings, numbers, lists
            observation.owner_id,
            observation.owner_label[:255],
        )
    names = ", ".join(_OBSERVED)
    if connection.vendor == "postgresql":
        with cursor.cursor.copy(f"COPY {_STAGE} ({names}) FROM STDIN") as copy:
            for row in rows.values():
                copy.write_row(row)

    else:
        marks = ", ".join(["%s"] * len(_OBSERVED))
        cursor.executemany(f"INSERT INTO {_STAGE} ({names}) VALUES ({marks})", list(rows.values()))  # noqa: S608
    return len(rows)


def _refresh(cursor: Any, now: datetime, *, reopening: bool) -> int:
    """Copy the evidence onto findings observed again: unresolved ones, or (reopening) resolved ones."""
    assignments = [f"{_column(name)} = s.{name}" for name in _OBSERVED if name != "key"]
    assignments.append(f"{_column('last_seen')} = %s")
    params: list[Any] = [now]
    if reopening:
        assignments += [f"{_column('resolved_at')} = NULL", f"{_column('opened_at')} = %s"]
        params.append(now)
    state = "IS NOT NULL" if reopening else "IS NULL"
    table = _table()
    cursor.execute(
        f"UPDATE {table} SET {', '.join(assignments)} FROM {_STAGE} s "  # noqa: S608 (names from _meta)
        f"WHERE {table}.{_column('key')} = s.key AND {table}.{_column('resolved_at')} {state}",
        params,
    )
    return int(cursor.rowcount)


def _open(cursor: Any, kind: FindingKind, now: datetime) -> int:
    fixed = {
        "kind": kind.slug,
        "first_seen": now,
        "opened_at": now,
        "last_seen": now,
        "suppression_justification": "",
    }
    columns = ", ".join(_column(name) for name in (*_OBSERVED, *fixed))
    sources = ", ".join([f"s.{name}" for name in _OBSERVED] + ["%s"] * len(fixed))
    cursor.execute(
        f"INSERT INTO {_table()} ({columns}) SELECT {sources} FROM {_STAGE} s "  # noqa: S608
        f"WHERE NOT EXISTS (SELECT 1 FROM {_table()} f WHERE f.{_column('key')} = s.key)",
        list(fixed.values()),
    )
    return int(cursor.rowcount)


def _resolve(cursor: Any, kind: FindingKind, scope: str, now: datetime) -> int:
    """Resolve the kind's unresolved findings in scope that were not observed this time.

    Subject keys are "/"-separated paths; a scope covers itself and what lies beneath it, whole
    segments only: scope "registry-1" covers "registry-1/x" but not "registry-10/x".
    """
    key, table = _column("key"), _table()
    prefix = finding_key(kind, scope.rstrip("/"))
    if scope:
        within, params = f"({key} = %s OR substr({key}, 1, %s) = %s)", [prefix, len(prefix) + 1, prefix + "/"]
    else:
        within, params = f"substr({key}, 1, %s) = %s", [len(prefix), prefix]
    cursor.execute(
        f"UPDATE {table} SET {_column('resolved_at')} = %s WHERE {_column('kind')} = %s "  # noqa: S608
        f"AND {_column('resolved_at')} IS NULL AND {within} "
        f"AND NOT EXISTS (SELECT 1 FROM {_STAGE} s WHERE s.key = {table}.{key})",
        [now, kind.slug, *params],
    )
    return int(cursor.rowcount)


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


def unsuppress(finding: Finding, *, actor: Any) -> bool:
    """Take a suppression back. Whether there was one."""
    if finding.suppressed_until is None:
        return False
    with transaction.atomic():
        finding.suppressed_until, finding.suppression_justification, finding.suppressed_by = None, "", None
        finding.save(update_fields=["suppressed_until", "suppression_justification", "suppressed_by"])
        audit.record(actor, AuditAction.FINDING_UNSUPPRESSED, target=finding)
    return True


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


# --- Assignment and bulk changes (reviewers and admins, from the findings pages and the API) ---------

# Each finding changed in bulk gets its own audit event, and each event waits for the chain head's
# lock: past this many, one request would hold that lock (and the findings' row locks) long enough
# to stall everyone else's changes.
BULK_LIMIT = 1000
BULK_ACTIONS = ("suppress", "unsuppress", "assign", "unassign")


class AssignmentError(RequestRejected):
    """An assignee that cannot be accepted."""


class BulkChangeError(RequestRejected):
    """A bulk change refused as a whole; nothing was changed."""


@dataclass(frozen=True)
class BulkResult:
    chosen: int
    changed: int


def assignee_named(username: str) -> Any | None:
    """The active person with this username; None for no name, which means "unassign"."""
    username = username.strip()
    if not username:
        return None
    person = get_user_model().objects.filter(username=username, is_active=True).first()
    if person is None:
        raise AssignmentError(f"no active person has the username {username!r}")
    return person


def assign(finding: Finding, actor: Any, assignee: Any | None) -> bool:
    """Hand the finding to someone to work on (None: to nobody). Whether anything changed."""
    if finding.assignee_id == (assignee.pk if assignee else None):
        return False
    previous = finding.assignee
    with transaction.atomic():
        finding.assignee = assignee
        finding.save(update_fields=["assignee"])
        audit.record(
            actor,
            AuditAction.FINDING_ASSIGNED,
            target=finding,
            assignee=assignee.get_username() if assignee else None,
            previous=previous.get_username() if previous else None,
        )
    return True


def bulk_change(
    action: str,
    chosen: QuerySet[Finding],
    *,
    actor: Any,
    expected: int | None = None,
    until: datetime | None = None,
    justification: str = "",
    assignee: Any | None = None,
) -> BulkResult:
    """Apply one action to every chosen finding, or to none of them.

    `expected` is how many findings the person saw when choosing: if the choice now holds a
    different number (findings opened, resolved or deleted since), nothing is changed.
    Every changed finding gets the audit event it would get if changed alone, so its own
    history shows it; the events of one request share its request id.
    """
    if action not in BULK_ACTIONS:
        raise BulkChangeError(f"unknown action {action!r}")
    with transaction.atomic():
        rows = _locked_choice(chosen, expected)
        if action == "suppress":
            changed = _suppress_all(rows, actor=actor, until=until, justification=justification)
        elif action == "unsuppress":
            changed = sum(unsuppress(row, actor=actor) for row in rows)
        else:
            person = assignee if action == "assign" else None
            changed = sum(assign(row, actor, person) for row in rows)
    return BulkResult(chosen=len(rows), changed=changed)


def _locked_choice(chosen: QuerySet[Finding], expected: int | None) -> list[Finding]:
    # Locked in primary-key order, so two bulk changes over overlapping findings queue, not deadlock.
    # of=("self",): the assignee is an outer join, and PostgreSQL will not lock a nullable side.
    locked = chosen.select_related("assignee").select_for_update(of=("self",)).order_by("pk")
    rows = list(locked[: BULK_LIMIT + 1])
    if not rows:
        raise BulkChangeError("no findings were chosen")
    if len(rows) > BULK_LIMIT:
        raise BulkChangeError(f"at most {BULK_LIMIT} findings can be changed at once: narrow the filters")
    if expected is not None and len(rows) != expected:
        raise BulkChangeError(
            f"the choice changed since it was made ({expected} findings then, {len(rows)} now); "
            "nothing was changed: look at the list again"
        )
    return rows


def _suppress_all(rows: list[Finding], *, actor: Any, until: datetime | None, justification: str) -> int:
    if until is None:
        raise SuppressionError("an end date is required to suppress findings")
    resolved = sum(row.resolved_at is not None for row in rows)
    if resolved:
        raise SuppressionError(
            f"{resolved} of the {len(rows)} chosen findings are resolved and cannot be suppressed; "
            "nothing was changed"
        )
    for row in rows:
        suppress(row, actor=actor, until=until, justification=justification)
    return len(rows)
