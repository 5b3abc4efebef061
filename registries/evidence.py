"""Evidence for auditors: one zip for a period [start, end) of whole days.

What it holds (the manifest describes each file): who can reach what, the findings with their
history, the offboardings, the access-review campaigns and their decisions, the audit trail with the
chain's verification, a summary PDF, and manifest.json with the SHA-256 of every other file.

The same period over the same records gives the same bytes: rows come in a fixed order, zip
entries carry a fixed date and the PDF no creation time. What differs from one export to the next
is when and by whom (an `Export`) and how many events the chain check walked (each export adds
one): they show only in summary.pdf and under "export" in manifest.json.

It reads registries and portal alike, so it lives here: portal imports no app.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import IO, Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Q
from django.utils import timezone

from portal import audit, exports, pdf
from portal.api.serializers import audit_json_line
from portal.audit import AuditAction
from portal.errors import RequestRejected
from portal.models import AuditEvent, Finding
from registries import effective, offboarding_report, reviews
from registries.access_views import report_lines
from registries.models import AccessReviewCampaign, Offboarding

MAX_DAYS = 400  # a year and some: an audit period, not the whole history in one request
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say: entries must not carry the export time
CHUNK = 2000
WRITE_BUFFER = 1 << 16


# --- The period ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """Whole days from `start` up to, not including, `end`, in the server's time zone."""

    start: date
    end: date

    @property
    def since(self) -> datetime:
        return _midnight(self.start)

    @property
    def until(self) -> datetime:
        return _midnight(self.end)

    def holds(self, field_name: str) -> Q:
        """The lookup for a time field inside the period."""
        return Q(**{f"{field_name}__gte": self.since, f"{field_name}__lt": self.until})


def _midnight(day: date) -> datetime:
    # The default zone, not the request's: the same dates must mean the same instants for everyone.
    return timezone.make_aware(datetime.combine(day, time.min), timezone.get_default_timezone())


def period_from(start: str | None, end: str | None) -> Period:
    """The period two YYYY-MM-DD strings name, or RequestRejected saying what is wrong with them."""
    first, last = _day("start", start), _day("end", end)
    if last <= first:
        raise RequestRejected("end must be after start (the period runs up to, not including, end)")
    if (last - first).days > MAX_DAYS:
        raise RequestRejected(
            f"the period is {(last - first).days} days; at most {MAX_DAYS} fit in one bundle"
        )
    return Period(first, last)


def _day(name: str, text: str | None) -> date:
    text = (text or "").strip()
    if not text:
        raise RequestRejected(f"{name} is required, as YYYY-MM-DD")
    try:
        # fromisoformat alone also takes 20260101 and week dates; one spelling keeps links unambiguous.
        if len(text) != 10:
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise RequestRejected(f"{name}: {text[:40]!r} is not a date as YYYY-MM-DD") from None


# --- The one part that differs between exports ------------------------------------------------------


@dataclass(frozen=True)
class Export:
    """Who asked for the bundle, and when."""

    at: datetime
    by: str


# --- Writing files into the zip -----------------------------------------------------------------


@dataclass(frozen=True)
class Written:
    name: str
    description: str
    rows: int
    size: int
    sha256: str


@dataclass
class Bundle:
    """The zip being written, what went in so far, and the facts the summary reports."""

    archive: zipfile.ZipFile
    period: Period
    export: Export
    files: list[Written] = field(default_factory=list)
    counts: list[tuple[str, str, int]] = field(default_factory=list)  # (section, what, how many)
    audit_actions: Counter[str] = field(default_factory=Counter)
    chain: dict[str, Any] = field(default_factory=dict)
    chain_events_checked: int = 0

    def lines(self, name: str, description: str, lines: Iterable[str], *, header: bool) -> int:
        """Write text lines to one file; the number of data rows (lines, less a header)."""
        digest, size, count, buffer = hashlib.sha256(), 0, 0, bytearray()
        # force_zip64: an entry's size is unknown until it is written, and the access report can be large.
        with self.archive.open(_entry(name), "w", force_zip64=True) as out:
            for line in lines:
                buffer += line.encode()
                count += 1
                if len(buffer) >= WRITE_BUFFER:
                    digest.update(buffer)
                    out.write(buffer)
                    size, buffer = size + len(buffer), bytearray()
            digest.update(buffer)
            out.write(buffer)
            size += len(buffer)
        rows = max(count - 1, 0) if header else count
        self.files.append(Written(name, description, rows, size, digest.hexdigest()))
        return rows

    def data(self, name: str, description: str, content: bytes) -> None:
        self.archive.writestr(_entry(name), content)
        self.files.append(Written(name, description, 0, len(content), hashlib.sha256(content).hexdigest()))

    def count(self, section: str, what: str, how_many: int) -> None:
        self.counts.append((section, what, how_many))


def _entry(name: str) -> zipfile.ZipInfo:
    """A zip entry that says nothing about when or where it was made."""
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    info.create_system = 3  # Unix, wherever the server runs: the same bytes from every host
    return info


def _csv(bundle: Bundle, name: str, description: str, header: Iterable[str], rows: Iterable[Any]) -> int:
    return bundle.lines(name, description, exports.csv_lines(header, rows), header=True)


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def _json(value: Any) -> str:
    return json.dumps(value, cls=DjangoJSONEncoder, sort_keys=True, ensure_ascii=False)


# --- Sections: each writes its files and counts what it wrote -------------------------------------


def access(bundle: Bundle) -> None:
    """Who can reach what at the end of the period, as far as Customs' records tell at export."""
    # Customs keeps no history of memberships: the rows pair today's memberships with the rules that
    # existed at the period's end (or now, for a period still running) and were in force then.
    as_of = min(bundle.period.until, bundle.export.at)
    username = effective.REPORT_COLUMNS.index("username")
    people: set[str] = set()

    def rows() -> Iterator[tuple[Any, ...]]:
        for row in effective.access_report(now=as_of, chunk_size=CHUNK):
            people.add(row[username])
            yield row

    written = bundle.lines(
        "access.csv",
        "One row per person, group membership and access rule in force at the end of the period.",
        report_lines(rows()),
        header=True,
    )
    bundle.count("Access", "rows (person, membership, rule)", written)
    bundle.count("Access", "people reached by a rule", len(people))


FINDING_COLUMNS = (
    "id",
    "key",
    "kind",
    "severity",
    "summary",
    "scope",
    "subject_type",
    "subject_id",
    "subject_label",
    "owner",
    "owner_label",
    "assignee",
    "first_seen",
    "opened_at",
    "last_seen",
    "resolved_at",
    "suppressed_until",
    "suppression_justification",
    "suppressed_by",
    "detail",
)
HISTORY_COLUMNS = ("finding_id", "sequence", "at", "actor", "action", "detail")


def findings(bundle: Bundle) -> None:
    """Findings alive at some point of the period, and what people did to them in it."""
    period = bundle.period
    history = AuditEvent.objects.filter(period.holds("at"), target_type=Finding._meta.label_lower)
    touched = {int(i) for i in history.values_list("target_id", flat=True) if i.isdigit()}
    alive = Q(first_seen__lt=period.until) & (Q(resolved_at=None) | Q(resolved_at__gte=period.since))
    chosen = (
        Finding.objects.filter(alive | Q(pk__in=touched))
        .select_related("owner", "assignee", "suppressed_by")
        .order_by("pk")
    )
    severities: Counter[str] = Counter()

    def rows() -> Iterator[list[Any]]:
        for finding in chosen.iterator(chunk_size=CHUNK):
            severities[finding.severity] += 1
            yield _finding_row(finding)

    total = _csv(bundle, "findings.csv", "Findings open at any time in the period.", FINDING_COLUMNS, rows())
    events = _csv(
        bundle,
        "finding-history.csv",
        "What people did to findings in the period (suppress, assign, ...), from the audit trail.",
        HISTORY_COLUMNS,
        (
            [e.target_id, e.sequence, _iso(e.at), e.actor_label, e.action, _json(e.detail)]
            for e in history.order_by("sequence").iterator(chunk_size=CHUNK)
        ),
    )
    bundle.count("Findings", "open at any time in the period", total)
    for severity, label in reversed(Finding.Severity.choices):
        bundle.count("Findings", f"of which {label.lower()}", severities[severity])
    bundle.count(
        "Findings", "opened in the period", Finding.objects.filter(period.holds("opened_at")).count()
    )
    bundle.count(
        "Findings", "resolved in the period", Finding.objects.filter(period.holds("resolved_at")).count()
    )
    bundle.count("Findings", "changes by people in the period", events)


def _finding_row(finding: Finding) -> list[Any]:
    return [
        finding.pk,
        finding.key,
        finding.kind,
        finding.severity,
        finding.summary,
        finding.scope,
        finding.subject_type,
        finding.subject_id,
        finding.subject_label,
        finding.owner.get_username() if finding.owner else "",
        finding.owner_label,
        finding.assignee.get_username() if finding.assignee else "",
        _iso(finding.first_seen),
        _iso(finding.opened_at),
        _iso(finding.last_seen),
        _iso(finding.resolved_at),
        _iso(finding.suppressed_until),
        finding.suppression_justification,
        finding.suppressed_by.get_username() if finding.suppressed_by else "",
        _json(finding.detail),
    ]


OFFBOARDING_COLUMNS = (
    "offboarding",
    "person",
    "state",
    "trigger",
    "reason",
    "started_by",
    "reassign_to",
    "created_at",
    "confirmed_at",
    "finished_at",
    "verified_at",
)


def offboardings(bundle: Bundle) -> None:
    """Offboardings under way at some point of the period, and each one's steps as its report lists them."""
    period = bundle.period
    chosen = list(
        Offboarding.objects.filter(created_at__lt=period.until)
        .filter(Q(finished_at=None) | Q(finished_at__gte=period.since))
        .exclude(state=Offboarding.State.PLANNED, created_at__lt=period.since)  # stale, never-confirmed plans
        .select_related("person", "started_by", "reassign_to")
        .order_by("created_at", "pk")
    )
    total = _csv(
        bundle,
        "offboardings.csv",
        "Offboardings under way at any time in the period.",
        OFFBOARDING_COLUMNS,
        (_offboarding_row(run) for run in chosen),
    )
    # One query per offboarding: the report's own row builder, so the bundle says what its page says.
    steps = _csv(
        bundle,
        "offboarding-steps.csv",
        "Each offboarding's steps: what was found, done and verified, as its report lists them.",
        offboarding_report.CSV_COLUMNS,
        (row for run in chosen for row in offboarding_report.rows(run)),
    )
    states = Counter(run.state for run in chosen)
    bundle.count("Offboardings", "under way in the period", total)
    for state, label in Offboarding.State.choices:
        bundle.count("Offboardings", f"now {label.lower()}", states[state])
    bundle.count("Offboardings", "steps", steps)


def _offboarding_row(run: Offboarding) -> list[Any]:
    return [
        run.pk,
        run.person.get_username(),
        run.state,
        run.trigger,
        run.reason,
        run.started_by.get_username() if run.started_by else "",
        run.reassign_to.get_username() if run.reassign_to else "",
        _iso(run.created_at),
        _iso(run.confirmed_at),
        _iso(run.finished_at),
        _iso(run.verified_at),
    ]


CAMPAIGN_COLUMNS = (
    "campaign",
    "name",
    "state",
    "pattern",
    "actions",
    "registries",
    "reviewer_rule",
    "default_decision",
    "owner",
    "created_at",
    "opened_at",
    "due_at",
    "closed_at",
    "closed_by",
    "applied_at",
)


def campaigns(bundle: Bundle) -> None:
    """Access-review campaigns open at some point of the period, and every item's decision."""
    period = bundle.period
    chosen = list(
        AccessReviewCampaign.objects.filter(opened_at__lt=period.until)
        .filter(Q(applied_at=None) | Q(applied_at__gte=period.since))
        .select_related("owner", "closed_by")
        .prefetch_related("registries")
        .order_by("opened_at", "pk")
    )
    total = _csv(
        bundle,
        "campaigns.csv",
        "Access-review campaigns open at any time in the period.",
        CAMPAIGN_COLUMNS,
        (_campaign_row(campaign) for campaign in chosen),
    )
    decision, by_default = (
        reviews.REPORT_COLUMNS.index("decision"),
        reviews.REPORT_COLUMNS.index("by_default"),
    )
    decisions: Counter[str] = Counter()

    def rows() -> Iterator[list[Any]]:
        # The campaign report's own rows (one query per campaign), so the bundle says what the report
        # says; led by the campaign's id, since a recurring campaign's occurrences share its name.
        for campaign in chosen:
            for row in reviews.report_rows(campaign):
                decisions["by default" if row[by_default] == "true" else row[decision] or "undecided"] += 1
                yield [campaign.pk, *row]

    written = _csv(
        bundle,
        "campaign-decisions.csv",
        "Every item of those campaigns: its access, reviewers, decision and what applying it did.",
        ("campaign_id", *reviews.REPORT_COLUMNS),
        rows(),
    )
    bundle.count("Access reviews", "campaigns open in the period", total)
    bundle.count("Access reviews", "items", written)
    for label, key in (
        ("certified", "certify"),
        ("revoked", "revoke"),
        ("left to the default", "by default"),
    ):
        bundle.count("Access reviews", label, decisions[key])
    bundle.count("Access reviews", "undecided", decisions["undecided"])


def _campaign_row(campaign: AccessReviewCampaign) -> list[Any]:
    return [
        campaign.pk,
        campaign.name,
        campaign.state,
        campaign.pattern,
        ",".join(campaign.actions),
        ",".join(sorted(r.name for r in campaign.registries.all())) or "*",
        campaign.reviewer_rule,
        campaign.default_decision,
        campaign.owner.get_username() if campaign.owner else "",
        _iso(campaign.created_at),
        _iso(campaign.opened_at),
        _iso(campaign.due_at),
        _iso(campaign.closed_at),
        campaign.closed_by.get_username() if campaign.closed_by else "",
        _iso(campaign.applied_at),
    ]


def audit_trail(bundle: Bundle) -> None:
    """The period's audit events as JSON lines, and the verdict on the whole chain."""
    events = AuditEvent.objects.filter(bundle.period.holds("at")).order_by("sequence")
    # The period's first and last sequence, as written: an event recorded during the export is not
    # named unless it is in the file.
    ends: list[int] = []

    def lines() -> Iterator[str]:
        for event in events.iterator(chunk_size=CHUNK):
            ends[1:] = [event.sequence] if ends else []
            if not ends:
                ends.append(event.sequence)
            bundle.audit_actions[event.action] += 1
            yield audit_json_line(event)  # the audit page's JSONL export, so one parser reads both

    total = bundle.lines(
        "audit-events.jsonl",
        "Every audit event of the period, one JSON object a line, with its hash and the previous one's.",
        lines(),
        header=False,
    )
    checked, broken = audit.verify_chain()
    bundle.chain_events_checked = checked
    first, last = (ends[0], ends[-1]) if ends else (None, None)
    bundle.chain = chain_verdict(broken, first=first, last=last, count=total)
    bundle.data(
        "audit-chain.json",
        "The audit chain's verification (as manage.py verify_audit), and whether it covers the period.",
        (json.dumps(bundle.chain, indent=2, sort_keys=True) + "\n").encode(),
    )
    bundle.count("Audit trail", "events in the period", total)


def chain_verdict(
    broken: audit.ChainBreak | None, *, first: int | None, last: int | None, count: int
) -> dict[str, Any]:
    """The verification as the bundle states it; no count of events checked, which grows with every export."""
    if broken is None:
        message = "audit chain intact"
    else:
        message = f"audit chain broken at sequence {broken.sequence}: {broken.reason}"
    return {
        "intact": broken is None,
        "broken_at_sequence": broken.sequence if broken else None,
        "reason": broken.reason if broken else "",
        "message": message,
        "period_events": count,
        "period_first_sequence": first,
        "period_last_sequence": last,
        # Each event vouches for the ones before it: the period's events hold if the chain breaks later.
        "period_verified": None if last is None else broken is None or broken.sequence > last,
        "method": (
            "SHA-256 over each event's canonical JSON, each event naming the previous event's hash, "
            "walked from the first event to the chain head"
        ),
    }


# In the order the files appear. Another kind of evidence is one more function here.
SECTIONS: tuple[Callable[[Bundle], None], ...] = (access, findings, offboardings, campaigns, audit_trail)


# --- Summary and manifest -----------------------------------------------------------------------


def summary_pdf(bundle: Bundle) -> bytes:
    period, export, chain = bundle.period, bundle.export, bundle.chain
    return pdf.document(
        "Customs evidence bundle",
        subtitle=f"Period {period.start} to {period.end} (not included), {_zone()}",
        parts=[
            pdf.Paragraph(f"Exported by {export.by} at {export.at.isoformat()}."),
            pdf.Paragraph(_chain_sentence(chain, bundle.chain_events_checked)),
            pdf.Table("Counts", ["section", "what", "count"], bundle.counts),
            pdf.Table(
                "Audit events in the period by action",
                ["action", "events"],
                sorted(bundle.audit_actions.items()),
            ),
            pdf.Table(
                "Files",
                ["file", "rows", "bytes", "SHA-256", "contents"],
                [(f.name, f.rows, f.size, f.sha256, f.description) for f in bundle.files],
            ),
            pdf.Paragraph(
                "Access pairs the group memberships Customs holds at export with the rules that existed "
                "and were in force at the end of the period: Customs keeps no history of memberships. "
                "Every change to rules, groups and memberships in the period is in audit-events.jsonl. "
                "manifest.json gives the SHA-256 of this file and of every other."
            ),
        ],
    )


def _zone() -> str:
    return timezone.get_default_timezone_name()


def _chain_sentence(chain: dict[str, Any], checked: int) -> str:
    verdict = f"Audit trail: {chain['message']} ({checked} events checked at export)."
    if chain["period_verified"] is None:
        return f"{verdict} The period has no audit events."
    first, last = chain["period_first_sequence"], chain["period_last_sequence"]
    span = f"{chain['period_events']} events, #{first} to #{last}"
    if chain["period_verified"]:
        return f"{verdict} The period's {span}, come before any break and verify."
    return f"{verdict} The period's {span}, are NOT covered: the chain breaks at or before them."


def manifest(bundle: Bundle) -> bytes:
    body = {
        "bundle": "customs-evidence",
        "version": 1,
        "period": {
            "start": bundle.period.start.isoformat(),
            "end": bundle.period.end.isoformat(),
            "end_included": False,
            "since": bundle.period.since.isoformat(),
            "until": bundle.period.until.isoformat(),
        },
        # The one part that differs between two exports of the same period.
        "export": {
            "at": bundle.export.at.isoformat(),
            "by": bundle.export.by,
            "audit_events_checked": bundle.chain_events_checked,
        },
        "audit_chain": bundle.chain["message"],
        "files": [
            {"name": f.name, "sha256": f.sha256, "bytes": f.size, "rows": f.rows, "contents": f.description}
            for f in bundle.files
        ],
    }
    return (json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


# --- Building and exporting ---------------------------------------------------------------------


def write(out: IO[bytes], period: Period, export: Export) -> Bundle:
    """Write the bundle as a zip to `out`."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        bundle = Bundle(archive, period, export)
        for section in SECTIONS:
            section(bundle)
        bundle.data(
            "summary.pdf",
            "This summary: counts, the chain's verdict, the period, the export.",
            summary_pdf(bundle),
        )
        archive.writestr(_entry("manifest.json"), manifest(bundle))
    return bundle


def export_bundle(period: Period, *, actor: Any, via: str) -> IO[bytes]:
    """Build the bundle into a temporary file, audit the export, and return the file at its start.

    A temporary file rather than a zip streamed as it is made: a failure half-way then answers with
    an error rather than a truncated download that looks complete, the response carries its length,
    and the audit event is recorded (with the zip's SHA-256) only for a bundle that was made. The
    rows are written into it as they are read, so memory holds a chunk, not the bundle.
    """
    # Not a with-block: the response reads the file after this returns, and closes it when sent.
    out = tempfile.TemporaryFile(prefix="customs-evidence-")  # noqa: SIM115
    try:
        bundle = write(out, period, Export(at=timezone.now(), by=actor.get_username()))
        digest = _sha256(out)
    except BaseException:
        out.close()
        raise
    audit.record(
        actor,
        AuditAction.EVIDENCE_EXPORTED,
        start=period.start.isoformat(),
        end=period.end.isoformat(),
        via=via,
        sha256=digest,
        audit_chain=bundle.chain["message"],
    )
    out.seek(0)
    return out


def _sha256(out: IO[bytes]) -> str:
    out.seek(0)
    digest = hashlib.sha256()
    while chunk := out.read(WRITE_BUFFER):
        digest.update(chunk)
    return digest.hexdigest()


def filename(period: Period) -> str:
    return f"customs-evidence-{period.start}-to-{period.end}.zip"
