"""The evidence bundle: what each file holds, the period's edges, the chain's verdict, the same bytes
for the same period, and who may download it (the statuses per role are also in the URL matrix)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.db.backends.utils import CursorWrapper
from django.http import FileResponse, HttpResponseBase
from django.test import Client
from django.utils import timezone

from accounts.models import User
from portal import audit, findings
from portal.api.serializers import AuditEventSerializer
from portal.audit import AuditAction
from portal.errors import RequestRejected
from portal.models import AuditChainHead, AuditEvent, Finding
from registries import effective, evidence, offboarding, offboarding_report, reviews
from registries.models import AccessReviewCampaign, AccessReviewItem, AccessRule, Offboarding
from tests import factories

# The PDF tests' fixtures: without pdftotext, `readable` sets text in the built-in font, readable in the file.
from tests.portal.test_pdf import builtin_font, pdf_text, readable  # noqa: F401

pytestmark = pytest.mark.django_db

START, END = date(2025, 3, 1), date(2025, 4, 1)
PERIOD = evidence.Period(START, END)
SINCE, UNTIL = datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC)
EXPORT = evidence.Export(at=datetime(2025, 6, 1, 9, 30, tzinfo=UTC), by="auditor-alice")
US = timedelta(microseconds=1)
PAGE, PAGE_BUNDLE, API_BUNDLE = "/evidence/", "/evidence/bundle.zip", "/api/v1/evidence/bundle.zip"
QUERY = {"start": "2025-03-01", "end": "2025-04-01"}
VOLATILE = {"summary.pdf", "manifest.json"}
FILES = [
    "access.csv",
    "findings.csv",
    "finding-history.csv",
    "offboardings.csv",
    "offboarding-steps.csv",
    "campaigns.csv",
    "campaign-decisions.csv",
    "audit-events.jsonl",
    "audit-chain.json",
    "summary.pdf",
    "manifest.json",
]


def _zip(period: evidence.Period = PERIOD, export: evidence.Export = EXPORT) -> bytes:
    out = io.BytesIO()
    evidence.write(out, period, export)
    return out.getvalue()


def _files(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _rows(content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode())))


def _chain(files: dict[str, bytes]) -> dict[str, Any]:
    return dict(json.loads(files["audit-chain.json"]))


def _event_at(
    when: datetime, *, target: Any = None, action: str = AuditAction.FINDING_ASSIGNED
) -> AuditEvent:
    """An event appended as record() appends one, but at a chosen time: the chain stays intact."""
    head = AuditChainHead.objects.get(pk=1)
    subject = audit.Target.of(target) if target is not None else None
    event = AuditEvent(
        sequence=head.last_sequence + 1,
        at=when,
        actor_label="bob",
        action=action,
        target_type=subject.type if subject else "",
        target_id=subject.id if subject else "",
        target_label=subject.label if subject else "",
        detail={"note": f"at {when.isoformat()}"},
        prev_hash=head.last_hash,
    )
    event.hash = audit.event_hash(event)
    event.save()
    AuditChainHead.objects.filter(pk=1).update(last_sequence=event.sequence, last_hash=event.hash)
    return event


@contextmanager
def tampering() -> Iterator[CursorWrapper]:
    """A cursor that can rewrite the trail, as someone holding the table owner's rights could."""
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            yield cursor  # SQLite has no trigger
            return
        # Inside the test's transaction: the trigger is back on for everyone else whatever happens.
        cursor.execute("ALTER TABLE portal_auditevent DISABLE TRIGGER portal_auditevent_append_only")
        yield cursor
        cursor.execute("ALTER TABLE portal_auditevent ENABLE TRIGGER portal_auditevent_append_only")


def _body(response: HttpResponseBase) -> bytes:
    assert isinstance(response, FileResponse), response
    # Reading to the end closes the response and its file: the test client wraps the stream.
    return b"".join(response.streaming_content)  # type: ignore[arg-type]


# --- The period ---------------------------------------------------------------------------------


def test_a_period_is_whole_days_up_to_but_not_including_the_end() -> None:
    period = evidence.period_from("2025-03-01", "2025-04-01")
    assert (period.since, period.until) == (SINCE, UNTIL)


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2025-04-01", "2025-03-01", "end must be after start"),
        ("2025-03-01", "2025-03-01", "end must be after start"),
        ("yesterday", "2025-03-01", "start: 'yesterday' is not a date as YYYY-MM-DD"),
        ("2025-03-01", "2025-13-01", "end: '2025-13-01' is not a date"),
        ("20250301", "2025-04-01", "start: '20250301' is not a date"),
        (None, "2025-04-01", "start is required"),
        ("2025-03-01", "", "end is required"),
        ("2024-01-01", "2025-02-05", f"at most {evidence.MAX_DAYS} fit"),
    ],
)
def test_a_period_that_cannot_be_exported_says_why(start: str | None, end: str | None, message: str) -> None:
    with pytest.raises(RequestRejected, match=message.replace("(", r"\(")):
        evidence.period_from(start, end)


def test_the_longest_period_is_accepted() -> None:
    start = date(2024, 1, 1)
    last = (start + timedelta(days=evidence.MAX_DAYS)).isoformat()
    assert evidence.period_from(start.isoformat(), last).end == start + timedelta(days=evidence.MAX_DAYS)


# --- What each file holds -----------------------------------------------------------------------


def test_the_bundle_holds_each_file_and_the_manifest_hashes_every_other() -> None:
    files = _files(_zip())
    assert list(files) == FILES
    manifest = json.loads(files["manifest.json"])
    assert [entry["name"] for entry in manifest["files"]] == FILES[:-1]
    for entry in manifest["files"]:
        assert entry["sha256"] == hashlib.sha256(files[entry["name"]]).hexdigest()
        assert entry["bytes"] == len(files[entry["name"]])
    assert manifest["period"] == {
        "start": "2025-03-01",
        "end": "2025-04-01",
        "end_included": False,
        "since": "2025-03-01T00:00:00+00:00",
        "until": "2025-04-01T00:00:00+00:00",
    }
    assert manifest["export"]["at"] == "2025-06-01T09:30:00+00:00"
    assert manifest["export"]["by"] == "auditor-alice"


def test_access_lists_the_rules_in_force_at_the_end_of_the_period() -> None:
    team = factories.group(display_name="=HYPERLINK(evil)")  # a directory name, made inert for spreadsheets
    person = factories.user(username="carol")
    factories.member(person, team)
    kept = factories.access_rule(team, "prod/**", "pull", "push")
    expired = factories.access_rule(team, "old/**")
    later = factories.access_rule(team, "new/**")
    AccessRule.objects.filter(pk__in=[kept.pk, expired.pk]).update(created_at=SINCE - timedelta(days=40))
    AccessRule.objects.filter(pk=expired.pk).update(expires_at=UNTIL - US)  # over before the period ended
    AccessRule.objects.filter(pk=later.pk).update(created_at=UNTIL + timedelta(days=1))  # made after it

    rows = _rows(_files(_zip())["access.csv"])

    assert [(row["username"], row["pattern"], row["actions"]) for row in rows] == [
        ("carol", "prod/**", "pull,push")
    ]
    assert rows[0]["group"] == "'=HYPERLINK(evil)"
    assert list(rows[0]) == list(effective.REPORT_COLUMNS)


def test_findings_are_those_alive_in_the_period_or_touched_in_it() -> None:
    alive = factories.finding(summary="open through", first_seen=SINCE - timedelta(days=5))
    resolved_inside = factories.finding(first_seen=SINCE - timedelta(days=5), resolved_at=SINCE)
    factories.finding(summary="gone before", first_seen=SINCE - timedelta(days=9), resolved_at=SINCE - US)
    factories.finding(summary="came after", first_seen=UNTIL)
    touched = factories.finding(first_seen=SINCE - timedelta(days=9), resolved_at=SINCE - timedelta(days=8))
    event = _event_at(SINCE + timedelta(days=3), target=touched)
    _event_at(UNTIL, target=alive)  # after the period: not its history

    files = _files(_zip())

    rows = _rows(files["findings.csv"])
    assert [int(row["id"]) for row in rows] == sorted([alive.pk, resolved_inside.pk, touched.pk])
    first = next(row for row in rows if int(row["id"]) == alive.pk)
    assert first["summary"] == "open through"
    assert first["first_seen"] == alive.first_seen.isoformat()
    history = _rows(files["finding-history.csv"])
    assert history == [
        {
            "finding_id": str(touched.pk),
            "sequence": str(event.sequence),
            "at": event.at.isoformat(),
            "actor": "bob",
            "action": AuditAction.FINDING_ASSIGNED,
            "detail": json.dumps(event.detail, sort_keys=True),
        }
    ]


def test_a_suppression_made_through_the_service_is_part_of_the_history(reviewer: User) -> None:
    finding = factories.finding()
    findings.suppress(finding, actor=reviewer, until=factories.days_from_now(3), justification="risk taken")
    today = timezone.localdate()
    files = _files(_zip(evidence.Period(today, today + timedelta(days=1))))
    [row] = _rows(files["finding-history.csv"])
    assert (row["finding_id"], row["action"], row["actor"]) == (
        str(finding.pk),
        AuditAction.FINDING_SUPPRESSED,
        reviewer.username,
    )
    assert json.loads(row["detail"])["justification"] == "risk taken"


def _offboarding(created: datetime, *, finished: datetime | None = None) -> Offboarding:
    run = offboarding.start(factories.user(), actor=None, reason="left the company")
    state = Offboarding.State.COMPLETED if finished else Offboarding.State.RUNNING
    Offboarding.objects.filter(pk=run.pk).update(created_at=created, finished_at=finished, state=state)
    run.refresh_from_db()
    return run


def test_offboardings_under_way_in_the_period_come_with_their_report_rows() -> None:
    inside = _offboarding(SINCE + timedelta(days=2), finished=SINCE + timedelta(days=3))
    running = _offboarding(SINCE - timedelta(days=3))
    _offboarding(SINCE - timedelta(days=9), finished=SINCE - US)
    _offboarding(UNTIL)
    stale = offboarding.start(factories.user(), actor=None, reason="planned, never confirmed")
    Offboarding.objects.filter(pk=stale.pk).update(created_at=SINCE - timedelta(days=5))
    inside.steps.create(position=1, key="k1", place="hub", action="remove", subject="member x", why="member")

    files = _files(_zip())

    rows = _rows(files["offboardings.csv"])
    assert [int(row["offboarding"]) for row in rows] == [running.pk, inside.pk]
    assert rows[1]["person"] == inside.person.username
    assert rows[1]["finished_at"] == (SINCE + timedelta(days=3)).isoformat()
    steps = list(csv.reader(io.StringIO(files["offboarding-steps.csv"].decode())))
    expected = [offboarding_report.rows(run) for run in (running, inside)]
    assert steps[0] == list(offboarding_report.CSV_COLUMNS)
    assert steps[1:] == [[str(cell) for cell in row] for rows in expected for row in rows]
    assert len(steps) == 2


def test_campaigns_open_in_the_period_come_with_every_decision(reviewer: User) -> None:
    person = factories.user(username="dave")
    campaign = AccessReviewCampaign.objects.create(
        name="Q1 push to prod",
        pattern="prod/**",
        actions=["push"],
        due_at=SINCE + timedelta(days=20),
        opened_at=SINCE + timedelta(days=1),
        state=AccessReviewCampaign.State.OPEN,
    )
    AccessReviewCampaign.objects.create(
        name="last year", due_at=SINCE, opened_at=SINCE - timedelta(days=90), applied_at=SINCE - US
    )
    AccessReviewCampaign.objects.create(name="draft", due_at=UNTIL)  # never opened
    item = AccessReviewItem.objects.create(
        campaign=campaign,
        kind=AccessReviewItem.Kind.PERSON,
        person=person,
        subject="dave",
        actions=["push"],
        decision=AccessReviewCampaign.Decision.REVOKE,
        comment="moved to another team",
        decided_by=reviewer,
        decided_at=SINCE + timedelta(days=5),
    )
    item.reviewers.add(reviewer)

    files = _files(_zip())

    [row] = _rows(files["campaigns.csv"])
    assert (row["name"], row["pattern"], row["actions"], row["state"]) == (
        "Q1 push to prod",
        "prod/**",
        "push",
        "open",
    )
    [decision] = _rows(files["campaign-decisions.csv"])
    assert decision["campaign_id"] == str(campaign.pk)
    assert decision["subject"] == "dave"
    assert decision["decision"] == "revoke"
    assert decision["comment"] == "moved to another team"
    assert decision["reviewers"] == decision["decided_by"] == reviewer.username
    # The campaign report's own rows: the bundle says what the report says.
    [report_row] = reviews.report_rows(campaign)
    assert list(decision.values())[1:] == [str(cell) for cell in report_row]


def test_the_audit_trail_holds_exactly_the_events_of_the_period() -> None:
    _event_at(SINCE - US)  # just before: not in the file
    first = _event_at(SINCE)
    last = _event_at(UNTIL - US)
    _event_at(UNTIL)

    files = _files(_zip())

    lines = files["audit-events.jsonl"].decode().splitlines()
    assert [json.loads(line)["sequence"] for line in lines] == [first.sequence, last.sequence]
    assert lines[0] == json.dumps(AuditEventSerializer(first).data, sort_keys=True)
    chain = _chain(files)
    assert chain["intact"] is True
    assert chain["message"] == "audit chain intact"
    assert (chain["period_events"], chain["period_first_sequence"], chain["period_last_sequence"]) == (
        2,
        first.sequence,
        last.sequence,
    )
    assert chain["period_verified"] is True


@pytest.mark.usefixtures("readable")
def test_a_tampered_event_shows_as_a_broken_chain_in_the_file_and_the_summary(tmp_path: Path) -> None:
    _event_at(SINCE - US)
    tampered = _event_at(SINCE + timedelta(days=1))
    _event_at(SINCE + timedelta(days=2))
    with tampering() as cursor:
        cursor.execute(
            "UPDATE portal_auditevent SET actor_label = 'mallory' WHERE sequence = %s", [tampered.sequence]
        )

    files = _files(_zip())

    chain = _chain(files)
    assert chain["intact"] is False
    assert chain["broken_at_sequence"] == tampered.sequence
    assert chain["message"] == (
        f"audit chain broken at sequence {tampered.sequence}: its content does not match its hash"
    )
    assert chain["period_verified"] is False
    summary = " ".join(pdf_text(files["summary.pdf"], tmp_path).split())
    assert f"broken at sequence {tampered.sequence}" in summary
    assert "are NOT covered" in summary
    assert json.loads(files["manifest.json"])["audit_chain"] == chain["message"]


def test_a_break_after_the_period_leaves_the_periods_events_verified() -> None:
    _event_at(SINCE + timedelta(days=1))
    later = _event_at(UNTIL + timedelta(days=1))
    with tampering() as cursor:
        cursor.execute("UPDATE portal_auditevent SET detail = '{}' WHERE sequence = %s", [later.sequence])

    chain = _chain(_files(_zip()))

    assert (chain["intact"], chain["broken_at_sequence"], chain["period_verified"]) == (
        False,
        later.sequence,
        True,
    )


@pytest.mark.usefixtures("readable")
def test_the_summary_gives_the_period_the_export_and_the_counts(tmp_path: Path) -> None:
    factories.finding(first_seen=SINCE, severity=Finding.Severity.CRITICAL)
    _event_at(SINCE + timedelta(hours=1))
    text = " ".join(pdf_text(_files(_zip())["summary.pdf"], tmp_path).split())
    for expected in (
        "Customs evidence bundle",
        "Period 2025-03-01 to 2025-04-01 (not included)",
        "Exported by auditor-alice at 2025-06-01T09:30:00+00:00",
        "audit chain intact",
        "open at any time in the period 1",
        "of which critical 1",
        "events in the period 1",
        AuditAction.FINDING_ASSIGNED,
        "findings.csv",
    ):
        assert expected in text


# --- The same period, the same bytes ------------------------------------------------------------


def _estate() -> None:
    team = factories.group()
    factories.member(factories.user(), team)
    rule = factories.access_rule(team, "prod/**")
    AccessRule.objects.filter(pk=rule.pk).update(created_at=SINCE)
    factories.finding(first_seen=SINCE)
    _offboarding(SINCE + timedelta(days=1))
    _event_at(SINCE + timedelta(days=1))


def test_the_same_period_and_export_give_the_same_bytes() -> None:
    _estate()
    data = _zip()
    assert data == _zip()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        # Nothing in an entry's header tells when it was written.
        assert {info.date_time for info in archive.infolist()} == {evidence.ZIP_DATE}


def test_two_exports_differ_only_in_the_summary_and_the_manifests_export_part(
    client: Client, reviewer: User
) -> None:
    _estate()
    client.force_login(reviewer)
    first = _files(_body(client.get(PAGE_BUNDLE, QUERY)))
    second = _files(_body(client.get(PAGE_BUNDLE, QUERY)))  # a new audit event lies between them

    assert {name for name in FILES if first[name] != second[name]} <= VOLATILE
    assert {name: first[name] for name in FILES if name not in VOLATILE} == {
        name: second[name] for name in FILES if name not in VOLATILE
    }

    def steady(manifest: bytes) -> dict[str, Any]:
        body = json.loads(manifest)
        body.pop("export")
        body["files"] = [entry for entry in body["files"] if entry["name"] != "summary.pdf"]
        return dict(body)

    assert steady(first["manifest.json"]) == steady(second["manifest.json"])
    exports = [json.loads(files["manifest.json"])["export"] for files in (first, second)]
    assert exports[0]["audit_events_checked"] + 1 == exports[1]["audit_events_checked"]


# --- Pages, API, permissions and the audit trail ------------------------------------------------


def test_the_page_offers_last_month(client: Client, reviewer: User) -> None:
    client.force_login(reviewer)
    response = client.get(PAGE)
    assert response.status_code == 200
    this_month = timezone.localdate().replace(day=1)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    assert f'value="{last_month.isoformat()}"' in response.content.decode()
    assert f'value="{this_month.isoformat()}"' in response.content.decode()


@pytest.mark.parametrize("url", [PAGE_BUNDLE, API_BUNDLE])
def test_reviewers_and_admins_download_it_and_the_export_is_audited(
    client: Client, reviewer: User, admin: User, url: str
) -> None:
    for person in (reviewer, admin):
        client.force_login(person)
        response = client.get(url, QUERY)
        assert response.status_code == 200
        assert response["Content-Type"] == "application/zip"
        assert response["Content-Disposition"] == (
            'attachment; filename="customs-evidence-2025-03-01-to-2025-04-01.zip"'
        )
        assert response["Cache-Control"] == "no-store"
        data = _body(response)
        event = AuditEvent.objects.filter(action=AuditAction.EVIDENCE_EXPORTED).order_by("-sequence").first()
        assert event is not None
        assert event.actor_id == person.pk
        assert event.detail == {
            "start": "2025-03-01",
            "end": "2025-04-01",
            "via": "api" if url == API_BUNDLE else "page",
            "sha256": hashlib.sha256(data).hexdigest(),
            "audit_chain": "audit chain intact",
        }
        assert json.loads(_files(data)["manifest.json"])["export"]["by"] == person.username


def test_developers_and_strangers_get_nothing(client: Client, developer: User) -> None:
    assert client.get(PAGE_BUNDLE, QUERY).status_code == 302
    assert client.get(API_BUNDLE, QUERY).status_code == 401
    client.force_login(developer)
    for url in (PAGE, PAGE_BUNDLE, API_BUNDLE):
        assert client.get(url, QUERY).status_code == 403
    assert not AuditEvent.objects.filter(action=AuditAction.EVIDENCE_EXPORTED).exists()


def test_a_bad_period_is_a_400_that_says_why_and_exports_nothing(client: Client, reviewer: User) -> None:
    client.force_login(reviewer)
    bad = {"start": "2025-04-01", "end": "2025-03-01"}
    page = client.get(PAGE_BUNDLE, bad)
    assert page.status_code == 400
    assert "end must be after start" in page.content.decode()
    assert 'value="2025-04-01"' in page.content.decode()  # the form keeps what was typed
    api = client.get(API_BUNDLE, {"start": "soon"}, headers={"Accept": "application/zip"})
    assert api.status_code == 400
    assert api.json()["error"]["message"] == "start: 'soon' is not a date as YYYY-MM-DD"
    assert not AuditEvent.objects.filter(action=AuditAction.EVIDENCE_EXPORTED).exists()


def test_a_read_token_downloads_it_by_api(reviewer: User) -> None:
    _, secret = factories.token(reviewer, scopes=["read"])
    response = Client().get(API_BUNDLE, QUERY, headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200
    assert zipfile.is_zipfile(io.BytesIO(_body(response)))
