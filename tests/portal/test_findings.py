"""Findings: reconcile() keeps them in step with what rules observe; suppression hides them for a while."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import User
from portal import audit, findings
from portal.audit import AuditAction, ChainBreak
from portal.findings import FindingKind, Observation, ReconcileResult, Severity, SuppressionError
from portal.models import AuditEvent, Finding
from tests import factories

pytestmark = pytest.mark.django_db

# Not registered: reconcile() takes the kind itself, and the suite's KINDS stays as the code defines it.
STALE_ROBOT = FindingKind("test_stale_robot", Severity.MEDIUM, "Stale robot account", "Unused for 90 days.")
PUBLIC_REPO = FindingKind("test_public_repo", Severity.HIGH, "Public repository", "Anyone can pull it.")


def _seen(*subjects: str) -> list[Observation]:
    return [Observation(subject_key=s, summary=f"{s} is stale", subject_label=s) for s in subjects]


def _reconcile_events() -> int:
    return AuditEvent.objects.filter(action=AuditAction.FINDINGS_RECONCILED).count()


def _finding(kind: FindingKind, subject: str) -> Finding:
    return Finding.objects.get(key=findings.finding_key(kind, subject))


# --- reconcile() -------------------------------------------------------------------------------


def test_observed_subjects_get_a_finding_each() -> None:
    now = timezone.now() - timedelta(hours=1)
    observation = Observation(
        subject_key="reg-1/robot$ci",
        summary="robot$ci unused since March",
        subject_type="registries.credential",
        subject_id="17",
        subject_label="robot$ci",
        detail={"last_used": "2024-03-01"},
    )
    result = findings.reconcile(STALE_ROBOT, [observation, *_seen("reg-1/robot$old")], now=now)
    assert result == ReconcileResult(opened=2)
    finding = _finding(STALE_ROBOT, "reg-1/robot$ci")
    assert finding.key == "test_stale_robot:reg-1/robot$ci"
    assert (finding.kind, finding.severity, finding.summary) == (
        "test_stale_robot",
        "medium",
        "robot$ci unused since March",
    )
    assert (finding.subject_type, finding.subject_id, finding.subject_label) == (
        "registries.credential",
        "17",
        "robot$ci",
    )
    assert finding.detail == {"last_used": "2024-03-01"}
    assert finding.first_seen == finding.last_seen == now
    assert finding.state == "open"


def test_a_finding_seen_again_is_refreshed_not_duplicated() -> None:
    first_run = timezone.now() - timedelta(hours=2)
    second_run = first_run + timedelta(hours=1)
    findings.reconcile(STALE_ROBOT, _seen("robot-a"), now=first_run)
    original = _finding(STALE_ROBOT, "robot-a")
    updated = Observation(subject_key="robot-a", summary="robot-a unused for 120 days", detail={"days": 120})
    result = findings.reconcile(STALE_ROBOT, [updated], now=second_run)
    assert result == ReconcileResult(refreshed=1)
    finding = _finding(STALE_ROBOT, "robot-a")
    assert finding.pk == original.pk
    assert (finding.first_seen, finding.last_seen) == (first_run, second_run)
    assert (finding.summary, finding.detail) == ("robot-a unused for 120 days", {"days": 120})
    assert Finding.objects.filter(kind=STALE_ROBOT.slug).count() == 1


def test_a_finding_no_longer_observed_is_resolved() -> None:
    findings.reconcile(STALE_ROBOT, _seen("robot-a", "robot-b"))
    later = timezone.now() + timedelta(minutes=5)
    result = findings.reconcile(STALE_ROBOT, _seen("robot-a"), now=later)
    assert result == ReconcileResult(refreshed=1, resolved=1)
    assert _finding(STALE_ROBOT, "robot-b").resolved_at == later
    assert _finding(STALE_ROBOT, "robot-b").state == "resolved"
    assert _finding(STALE_ROBOT, "robot-a").resolved_at is None


def test_a_resolved_finding_that_comes_back_is_reopened() -> None:
    opened_at = timezone.now() - timedelta(days=2)
    findings.reconcile(STALE_ROBOT, _seen("robot-a"), now=opened_at)
    findings.reconcile(STALE_ROBOT, [], now=opened_at + timedelta(days=1))
    result = findings.reconcile(STALE_ROBOT, _seen("robot-a"), now=opened_at + timedelta(days=2))
    assert result == ReconcileResult(reopened=1)
    finding = _finding(STALE_ROBOT, "robot-a")
    assert finding.resolved_at is None
    assert (finding.first_seen, finding.last_seen) == (opened_at, opened_at + timedelta(days=2))
    assert Finding.objects.filter(kind=STALE_ROBOT.slug).count() == 1


def test_a_reopened_finding_keeps_its_suppression(reviewer: User) -> None:
    findings.reconcile(STALE_ROBOT, _seen("robot-a"))
    findings.suppress(
        _finding(STALE_ROBOT, "robot-a"),
        actor=reviewer,
        until=factories.days_from_now(30),
        justification="known",
    )
    findings.reconcile(STALE_ROBOT, [])
    findings.reconcile(STALE_ROBOT, _seen("robot-a"))
    finding = _finding(STALE_ROBOT, "robot-a")
    assert (finding.state, finding.suppression_justification) == ("suppressed", "known")


def test_a_scoped_run_leaves_other_scopes_alone() -> None:
    findings.reconcile(STALE_ROBOT, _seen("reg-1/robot-a", "reg-2/robot-b"))
    result = findings.reconcile(STALE_ROBOT, [], scope="reg-1/")
    assert result == ReconcileResult(resolved=1)
    assert _finding(STALE_ROBOT, "reg-1/robot-a").resolved_at is not None
    assert _finding(STALE_ROBOT, "reg-2/robot-b").resolved_at is None


def test_a_scope_covers_whole_path_segments_only() -> None:
    findings.reconcile(STALE_ROBOT, _seen("reg-1", "reg-1/robot-a", "reg-10/robot-b"))
    result = findings.reconcile(STALE_ROBOT, [], scope="reg-1")
    assert result == ReconcileResult(resolved=2)
    assert _finding(STALE_ROBOT, "reg-1").resolved_at is not None
    assert _finding(STALE_ROBOT, "reg-1/robot-a").resolved_at is not None
    assert _finding(STALE_ROBOT, "reg-10/robot-b").resolved_at is None


def test_a_run_leaves_other_kinds_alone() -> None:
    findings.reconcile(PUBLIC_REPO, _seen("robot-a"))
    findings.reconcile(STALE_ROBOT, _seen("robot-a"))
    findings.reconcile(STALE_ROBOT, [])
    assert _finding(PUBLIC_REPO, "robot-a").resolved_at is None
    assert _finding(STALE_ROBOT, "robot-a").resolved_at is not None


def test_one_summary_event_per_run_that_changed_something() -> None:
    before = _reconcile_events()
    findings.reconcile(STALE_ROBOT, _seen("reg-1/a", "reg-1/b", "reg-1/c"), scope="reg-1/")
    assert _reconcile_events() == before + 1
    event = AuditEvent.objects.filter(action=AuditAction.FINDINGS_RECONCILED).latest("sequence")
    assert (event.actor_id, event.actor_label) == (None, "system")
    assert event.detail == {
        "kind": "test_stale_robot",
        "scope": "reg-1/",
        "opened": 3,
        "reopened": 0,
        "resolved": 0,
    }


def test_a_run_that_only_refreshes_is_not_audited() -> None:
    findings.reconcile(STALE_ROBOT, _seen("robot-a"))
    before = _reconcile_events()
    assert findings.reconcile(STALE_ROBOT, _seen("robot-a")) == ReconcileResult(refreshed=1)
    assert findings.reconcile(PUBLIC_REPO, []) == ReconcileResult()
    assert _reconcile_events() == before


def test_resolving_and_reopening_are_audited() -> None:
    findings.reconcile(STALE_ROBOT, _seen("robot-a"))
    findings.reconcile(STALE_ROBOT, [])
    findings.reconcile(STALE_ROBOT, _seen("robot-a"))
    resolved, reopened = AuditEvent.objects.filter(action=AuditAction.FINDINGS_RECONCILED).order_by(
        "-sequence"
    )[:2][::-1]
    assert (resolved.detail["resolved"], reopened.detail["reopened"]) == (1, 1)


def test_kinds_register_once_per_meaning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(findings, "KINDS", {})
    assert findings.register(STALE_ROBOT) is STALE_ROBOT
    findings.register(FindingKind(**vars(STALE_ROBOT)))  # an equal kind again, e.g. a module reloaded
    with pytest.raises(ValueError, match="registered twice"):
        findings.register(FindingKind("test_stale_robot", Severity.LOW, "Something else", "Else."))
    assert findings.KINDS == {"test_stale_robot": STALE_ROBOT}


# --- suppression -------------------------------------------------------------------------------


@pytest.mark.parametrize("justification", ["", "   \n"])
def test_suppressing_needs_a_justification(reviewer: User, justification: str) -> None:
    finding = factories.finding()
    with pytest.raises(SuppressionError, match="justification is required"):
        findings.suppress(
            finding, actor=reviewer, until=factories.days_from_now(7), justification=justification
        )
    _assert_not_suppressed(finding)


@pytest.mark.parametrize("days", [-1, 0])
def test_suppressing_needs_an_end_in_the_future(reviewer: User, days: int) -> None:
    finding = factories.finding()
    with pytest.raises(SuppressionError, match="must end in the future"):
        findings.suppress(finding, actor=reviewer, until=factories.days_from_now(days), justification="ok")
    _assert_not_suppressed(finding)


def test_a_resolved_finding_cannot_be_suppressed(reviewer: User) -> None:
    finding = factories.finding(resolved_at=timezone.now())
    with pytest.raises(SuppressionError, match="resolved"):
        findings.suppress(finding, actor=reviewer, until=factories.days_from_now(7), justification="ok")
    _assert_not_suppressed(finding)


def _assert_not_suppressed(finding: Finding) -> None:
    finding.refresh_from_db()
    assert (finding.suppressed_until, finding.suppression_justification, finding.suppressed_by) == (
        None,
        "",
        None,
    )
    assert not AuditEvent.objects.filter(action=AuditAction.FINDING_SUPPRESSED).exists()


def test_suppressing_records_who_why_and_until_when(reviewer: User) -> None:
    finding = factories.finding()
    until = factories.days_from_now(30).replace(microsecond=0)
    findings.suppress(finding, actor=reviewer, until=until, justification="  Vendor fix due in May.\n")
    finding.refresh_from_db()
    assert (finding.suppressed_until, finding.suppressed_by) == (until, reviewer)
    assert finding.suppression_justification == "Vendor fix due in May."
    event = AuditEvent.objects.get(action=AuditAction.FINDING_SUPPRESSED)
    assert (event.actor_id, event.target_type, event.target_id) == (
        reviewer.pk,
        "portal.finding",
        str(finding.pk),
    )
    assert event.detail == {
        "until": until.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "justification": "Vendor fix due in May.",
    }


def test_a_suppressed_finding_leaves_the_open_list_until_its_date(reviewer: User) -> None:
    finding = factories.finding()
    until = factories.days_from_now(30)
    findings.suppress(finding, actor=reviewer, until=until, justification="accepted")
    assert finding not in Finding.objects.open()
    assert finding in Finding.objects.suppressed()
    assert finding in Finding.objects.unresolved()
    after = until + timedelta(seconds=1)
    assert finding in Finding.objects.open(now=after)
    assert finding not in Finding.objects.suppressed(now=after)


def test_a_lapsed_suppression_shows_the_finding_open_again(reviewer: User) -> None:
    finding = factories.finding()
    findings.suppress(finding, actor=reviewer, until=factories.days_from_now(1), justification="accepted")
    Finding.objects.filter(pk=finding.pk).update(suppressed_until=factories.days_from_now(-1))  # a day later
    finding.refresh_from_db()
    assert finding.state == "open"
    assert finding in Finding.objects.open()


def test_unsuppressing_brings_the_finding_back(reviewer: User, admin: User) -> None:
    finding = factories.finding()
    findings.suppress(finding, actor=reviewer, until=factories.days_from_now(30), justification="accepted")
    findings.unsuppress(finding, actor=admin)
    finding.refresh_from_db()
    assert (finding.suppressed_until, finding.suppression_justification, finding.suppressed_by) == (
        None,
        "",
        None,
    )
    assert finding in Finding.objects.open()
    event = AuditEvent.objects.get(action=AuditAction.FINDING_UNSUPPRESSED)
    assert (event.actor_id, event.target_id) == (admin.pk, str(finding.pk))


def test_unsuppressing_an_unsuppressed_finding_does_nothing(admin: User) -> None:
    finding = factories.finding()
    findings.unsuppress(finding, actor=admin)
    assert not AuditEvent.objects.filter(action=AuditAction.FINDING_UNSUPPRESSED).exists()


# --- the audit-chain finding ---------------------------------------------------------------------


@contextmanager
def _rewriting_the_trail() -> Iterator[None]:
    """Let the test edit audit rows, as someone with the table owner's rights could."""
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            yield  # no trigger on SQLite
            return
        # Inside the test's transaction: the trigger is back for everyone else whatever happens.
        cursor.execute("ALTER TABLE portal_auditevent DISABLE TRIGGER portal_auditevent_append_only")
        yield
        cursor.execute("ALTER TABLE portal_auditevent ENABLE TRIGGER portal_auditevent_append_only")


def _set_actor_label(sequence: int, label: str) -> None:
    with _rewriting_the_trail(), connection.cursor() as cursor:
        cursor.execute("UPDATE portal_auditevent SET actor_label = %s WHERE sequence = %s", [label, sequence])


def _chain_findings() -> list[Finding]:
    return list(Finding.objects.filter(kind=findings.AUDIT_CHAIN_BROKEN.slug))


def test_an_intact_trail_raises_no_finding() -> None:
    for _ in range(3):
        audit.record(None, AuditAction.TOKEN_CREATED)
    assert findings.check_audit_chain() == (3, None)
    assert _chain_findings() == []


def test_a_broken_trail_opens_a_critical_finding_that_resolves_once_repaired() -> None:
    for _ in range(3):
        audit.record(None, AuditAction.TOKEN_CREATED)
    _set_actor_label(2, "mallory")

    assert findings.check_audit_chain() == (1, ChainBreak(2, "its content does not match its hash"))
    (finding,) = _chain_findings()
    assert (finding.key, finding.severity, finding.state) == ("audit_chain_broken:trail", "critical", "open")
    assert finding.summary == "Audit event #2: its content does not match its hash"
    assert (finding.subject_type, finding.subject_id) == ("portal.auditevent", "2")
    assert finding.detail == {
        "first_broken_sequence": 2,
        "reason": "its content does not match its hash",
        "events_checked": 1,
    }

    _set_actor_label(2, "system")  # restored, e.g. from a backup
    # Four: the three events and the reconcile event the first check appended to the broken trail.
    assert findings.check_audit_chain() == (4, None)
    (finding,) = _chain_findings()
    assert finding.state == "resolved"
    assert audit.verify_chain() == (5, None)  # the resolution was audited on an intact chain


def test_a_break_seen_again_is_not_reported_twice() -> None:
    for _ in range(2):
        audit.record(None, AuditAction.TOKEN_CREATED)
    _set_actor_label(1, "mallory")
    findings.check_audit_chain()
    events = AuditEvent.objects.count()
    findings.check_audit_chain()
    assert len(_chain_findings()) == 1
    assert AuditEvent.objects.count() == events  # a refresh alone writes nothing to the trail
