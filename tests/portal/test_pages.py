"""The dashboard, findings and audit pages: filters, the suppress form, exports and query budgets.

Who may open which page is tests/portal/test_url_matrix.py's job; here the reviewer looks at content.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING

import pytest
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries

from accounts.models import User
from portal import audit, findings
from portal.audit import AuditAction, Target
from portal.models import AuditEvent, Finding
from portal.views import CSV_COLUMNS
from tests import factories

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client: Client, reviewer: User) -> Client:
    client.force_login(reviewer)
    return client


def _summaries(response: Response) -> set[str]:
    return {finding.summary for finding in response.context["page"].object_list}


def _sequences(response: Response) -> list[int]:
    return [event.sequence for event in response.context["page"].object_list]


# --- findings list -----------------------------------------------------------------------------


@pytest.fixture
def assorted(reviewer: User) -> None:
    factories.finding(summary="open high", severity=Finding.Severity.HIGH)
    factories.finding(summary="open low", severity=Finding.Severity.LOW)
    hidden = factories.finding(summary="suppressed high", severity=Finding.Severity.HIGH)
    findings.suppress(hidden, actor=reviewer, until=factories.days_from_now(10), justification="accepted")
    factories.finding(
        summary="resolved critical", severity=Finding.Severity.CRITICAL, resolved_at=timezone.now()
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"open high", "open low"}),
        ("?state=open", {"open high", "open low"}),
        ("?state=suppressed", {"suppressed high"}),
        ("?state=resolved", {"resolved critical"}),
        ("?state=all", {"open high", "open low", "suppressed high", "resolved critical"}),
        ("?severity=high", {"open high"}),
        ("?state=all&severity=high", {"open high", "suppressed high"}),
        ("?state=resolved&severity=low", set()),
        ("?state=nonsense", {"open high", "open low"}),
    ],
)
def test_findings_filter_by_state_and_severity(
    signed_in: Client, assorted: None, query: str, expected: set[str]
) -> None:
    response = signed_in.get(reverse("portal:findings") + query)
    assert response.status_code == 200
    assert _summaries(response) == expected


def test_findings_pages_keep_the_severity_filter(signed_in: Client) -> None:
    for n in range(51):
        factories.finding(summary=f"high {n}", severity=Finding.Severity.HIGH)
    factories.finding(summary="the low one", severity=Finding.Severity.LOW)
    first = signed_in.get(reverse("portal:findings"), {"severity": "high"})
    next_link = re.search(r'href="\?([^"]*)" rel="next"', first.content.decode())
    assert next_link, "a second page was expected"
    second = signed_in.get(reverse("portal:findings") + "?" + next_link.group(1).replace("&amp;", "&"))
    assert _summaries(first) | _summaries(second) == {f"high {n}" for n in range(51)}


# --- suppressing from the detail page ------------------------------------------------------------


def _suppress(
    client: Client, finding: Finding, *, days: int, justification: str = "Fix ships next sprint."
) -> Response:
    until = timezone.localdate() + timedelta(days=days)
    url = reverse("portal:finding_detail", kwargs={"finding_id": finding.pk})
    return client.post(url, {"until": until.isoformat(), "justification": justification})


def test_the_detail_page_suppresses_a_finding(signed_in: Client, reviewer: User) -> None:
    finding = factories.finding()
    response = _suppress(signed_in, finding, days=14)
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:finding_detail", kwargs={"finding_id": finding.pk})
    finding.refresh_from_db()
    midnight = timezone.make_aware(datetime.combine(timezone.localdate() + timedelta(days=14), time.min))
    assert (finding.state, finding.suppressed_until, finding.suppressed_by) == (
        "suppressed",
        midnight,
        reviewer,
    )
    assert finding.suppression_justification == "Fix ships next sprint."
    assert AuditEvent.objects.filter(action=AuditAction.FINDING_SUPPRESSED, actor_id=reviewer.pk).count() == 1
    page = signed_in.get(response["Location"]).content.decode()
    assert "Fix ships next sprint." in page
    assert "End suppression now" in page


@pytest.mark.parametrize(
    ("days", "justification", "error"),
    [
        (-3, "accepted", "Choose a date after today."),
        (0, "accepted", "Choose a date after today."),
        (400, "accepted", "Suppress for at most a year, then look again."),
        (7, "", "This field is required."),
    ],
)
def test_a_refused_suppression_shows_why_and_changes_nothing(
    signed_in: Client, days: int, justification: str, error: str
) -> None:
    finding = factories.finding()
    response = _suppress(signed_in, finding, days=days, justification=justification)
    assert response.status_code == 200
    assert error in response.content.decode()
    finding.refresh_from_db()
    assert (finding.state, finding.suppressed_until) == ("open", None)
    assert not AuditEvent.objects.filter(action=AuditAction.FINDING_SUPPRESSED).exists()


def test_a_resolved_finding_cannot_be_suppressed_from_the_page(signed_in: Client) -> None:
    finding = factories.finding(resolved_at=timezone.now())
    response = _suppress(signed_in, finding, days=7)
    assert response.status_code == 200
    assert "this finding is resolved; there is nothing to suppress" in response.content.decode()
    finding.refresh_from_db()
    assert finding.suppressed_until is None


def test_ending_a_suppression_from_the_page(signed_in: Client) -> None:
    finding = factories.finding()
    _suppress(signed_in, finding, days=7)
    response = signed_in.post(reverse("portal:finding_unsuppress", kwargs={"finding_id": finding.pk}))
    assert response.status_code == 302
    finding.refresh_from_db()
    assert (finding.state, finding.suppressed_until) == ("open", None)
    assert AuditEvent.objects.filter(action=AuditAction.FINDING_UNSUPPRESSED).count() == 1


def test_the_detail_page_explains_the_kind_and_shows_the_evidence(signed_in: Client) -> None:
    finding = factories.finding(detail={"first_broken_sequence": 7})
    page = signed_in.get(reverse("portal:finding_detail", kwargs={"finding_id": finding.pk})).content.decode()
    assert findings.AUDIT_CHAIN_BROKEN.title in page
    assert "first_broken_sequence" in page


# --- audit trail search --------------------------------------------------------------------------


@pytest.fixture
def trail(admin: User, developer: User) -> dict[str, AuditEvent]:
    return {
        "binding": audit.record(
            admin,
            AuditAction.ROLE_BINDING_CREATED,
            target=Target("accounts.rolebinding", "41", "SRE → Admin"),
        ),
        "token": audit.record(
            developer, AuditAction.TOKEN_CREATED, target=Target("accounts.personaltoken", "tok-77", "laptop")
        ),
        "revoke": audit.record(
            developer, AuditAction.TOKEN_REVOKED, target=Target("accounts.personaltoken", "tok-77", "laptop")
        ),
        "system": audit.record(None, AuditAction.FINDINGS_RECONCILED, kind="audit_chain_broken"),
    }


def test_audit_search_by_actor(signed_in: Client, trail: dict[str, AuditEvent], developer: User) -> None:
    response = signed_in.get(reverse("portal:audit"), {"actor": developer.username})
    assert _sequences(response) == [trail["revoke"].sequence, trail["token"].sequence]


def test_audit_search_by_action_prefix(signed_in: Client, trail: dict[str, AuditEvent]) -> None:
    response = signed_in.get(reverse("portal:audit"), {"action": "token."})
    assert _sequences(response) == [trail["revoke"].sequence, trail["token"].sequence]
    response = signed_in.get(reverse("portal:audit"), {"action": "role_binding.create"})
    assert _sequences(response) == [trail["binding"].sequence]


@pytest.mark.parametrize(
    ("target", "keys"), [("sre", ["binding"]), ("tok-77", ["revoke", "token"]), ("tok-7", [])]
)
def test_audit_search_by_target_label_or_id(
    signed_in: Client, trail: dict[str, AuditEvent], target: str, keys: list[str]
) -> None:
    response = signed_in.get(reverse("portal:audit"), {"target": target})
    assert _sequences(response) == [trail[key].sequence for key in keys]


@pytest.mark.parametrize(
    ("since", "until", "found"),
    [(0, None, True), (1, None, False), (None, 0, True), (None, -1, False), (-1, 0, True), (-3, -1, False)],
)
def test_audit_search_by_date(
    signed_in: Client, trail: dict[str, AuditEvent], since: int | None, until: int | None, found: bool
) -> None:
    today = timezone.localdate()
    query = {"action": "token.create"}
    if since is not None:
        query["since"] = (today + timedelta(days=since)).isoformat()
    if until is not None:
        query["until"] = (today + timedelta(days=until)).isoformat()
    response = signed_in.get(reverse("portal:audit"), query)
    assert _sequences(response) == ([trail["token"].sequence] if found else [])


def test_an_invalid_search_shows_the_error_and_no_events(
    signed_in: Client, trail: dict[str, AuditEvent]
) -> None:
    response = signed_in.get(reverse("portal:audit"), {"actor": "nobody-by-this-name", "since": "2024-13-45"})
    assert response.status_code == 200
    assert "Enter a valid date." in response.content.decode()
    assert _sequences(response) == []


# --- audit export ------------------------------------------------------------------------------


def _body(response: Response) -> str:
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(response.streaming_content).decode()


def test_csv_export_lists_the_searched_events_oldest_first(
    signed_in: Client, trail: dict[str, AuditEvent]
) -> None:
    response = signed_in.get(reverse("portal:audit_export_csv"), {"action": "token."})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(
        r'attachment; filename="customs-audit-\d{8}T\d{6}Z\.csv"', response["Content-Disposition"]
    )
    header, *rows = list(csv.reader(io.StringIO(_body(response))))
    assert header == CSV_COLUMNS
    token, revoke = (dict(zip(header, row, strict=True)) for row in rows)
    assert [token["sequence"], revoke["sequence"]] == [
        str(trail["token"].sequence),
        str(trail["revoke"].sequence),
    ]
    assert (token["action"], token["target_label"], token["hash"]) == (
        "token.create",
        "laptop",
        trail["token"].hash,
    )
    assert revoke["prev_hash"] == trail["token"].hash


def test_csv_export_writes_detail_as_json(signed_in: Client, trail: dict[str, AuditEvent]) -> None:
    response = signed_in.get(reverse("portal:audit_export_csv"), {"action": "finding.reconcile"})
    _, row = list(csv.reader(io.StringIO(_body(response))))
    assert json.loads(row[CSV_COLUMNS.index("detail")]) == {"kind": "audit_chain_broken"}


def test_jsonl_export_has_one_event_per_line(signed_in: Client, trail: dict[str, AuditEvent]) -> None:
    response = signed_in.get(reverse("portal:audit_export_jsonl"), {"target": "tok-77"})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    assert re.fullmatch(
        r'attachment; filename="customs-audit-\d{8}T\d{6}Z\.jsonl"', response["Content-Disposition"]
    )
    lines = _body(response).splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["sequence"] for e in events] == [trail["token"].sequence, trail["revoke"].sequence]
    assert set(events[0]) == {"actor_id", *CSV_COLUMNS}
    assert events[1]["hash"] == trail["revoke"].hash
    assert events[1]["actor_id"] == trail["revoke"].actor_id


def test_csv_cells_cannot_become_spreadsheet_formulas(signed_in: Client) -> None:
    formula_actor = factories.user(username='=HYPERLINK("http://evil.test","x")')
    labels = ["+SUM(1,2)", "-2+3", "@cmd", "\tindent", "a=b is fine"]
    for label in labels:
        audit.record(
            formula_actor, AuditAction.TOKEN_CREATED, target=Target("accounts.personaltoken", "-1", label)
        )
    response = signed_in.get(reverse("portal:audit_export_csv"), {"action": "token.create"})
    _, *rows = list(csv.reader(io.StringIO(_body(response))))
    column = CSV_COLUMNS.index
    assert [row[column("target_label")] for row in rows] == [
        "'+SUM(1,2)",
        "'-2+3",
        "'@cmd",
        "'\tindent",
        "a=b is fine",
    ]
    assert {row[column("actor_label")] for row in rows} == {'\'=HYPERLINK("http://evil.test","x")'}
    assert {row[column("target_id")] for row in rows} == {"'-1"}


def test_jsonl_export_keeps_values_as_they_are(signed_in: Client) -> None:
    audit.record(None, AuditAction.TOKEN_CREATED, target=Target("accounts.personaltoken", "1", "=1+1"))
    response = signed_in.get(reverse("portal:audit_export_jsonl"), {"action": "token.create"})
    (line,) = _body(response).splitlines()
    assert json.loads(line)["target_label"] == "=1+1"  # not a spreadsheet: no quoting needed


def test_an_invalid_search_exports_nothing(signed_in: Client, trail: dict[str, AuditEvent]) -> None:
    response = signed_in.get(reverse("portal:audit_export_csv"), {"actor": "nobody", "until": "yesterday"})
    assert list(csv.reader(io.StringIO(_body(response)))) == [CSV_COLUMNS]


# --- query budgets (STYLE section 15) ------------------------------------------------------------


def test_audit_list_queries_do_not_grow_with_rows(
    signed_in: Client, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    with django_assert_num_queries(5):
        signed_in.get(reverse("portal:audit"))
    for n in range(60):
        audit.record(
            None, AuditAction.TOKEN_CREATED, target=Target("accounts.personaltoken", str(n), f"t{n}")
        )
    with django_assert_num_queries(5):  # 61 events, two pages: nothing runs per row
        signed_in.get(reverse("portal:audit"))


def _findings_with_suppressors(count: int, suppressor: User) -> None:
    for n in range(count):
        finding = factories.finding(summary=f"finding {n}")
        findings.suppress(finding, actor=suppressor, until=factories.days_from_now(5), justification="ok")


@pytest.mark.parametrize("state", ["open", "suppressed", "all"])
def test_findings_list_queries_do_not_grow_with_rows(
    signed_in: Client, reviewer: User, django_assert_num_queries: DjangoAssertNumQueries, state: str
) -> None:
    _findings_with_suppressors(2, reviewer)
    factories.finding()
    with django_assert_num_queries(5):
        signed_in.get(reverse("portal:findings"), {"state": state})
    _findings_with_suppressors(60, factories.user())
    for _ in range(60):
        factories.finding()
    with django_assert_num_queries(5):
        signed_in.get(reverse("portal:findings"), {"state": state})


def test_dashboard_queries_do_not_grow_with_rows(
    signed_in: Client, reviewer: User, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    # session, user, role, severities, activity, recent events, break-glass sign-ins
    with django_assert_num_queries(7):
        signed_in.get(reverse("portal:dashboard"))
    _findings_with_suppressors(20, reviewer)
    for severity in Finding.Severity.values * 10:
        factories.finding(severity=severity)
    with django_assert_num_queries(7):
        signed_in.get(reverse("portal:dashboard"))


AUDIT = "/audit/"


def test_htmx_search_gets_only_the_results_fragment(client: Client, reviewer: User) -> None:
    audit.record(reviewer, AuditAction.TOKEN_CREATED)
    client.force_login(reviewer)
    fragment = client.get(AUDIT, {"action": "token."}, headers={"HX-Request": "true"}).content.decode()
    full = client.get(AUDIT, {"action": "token."}).content.decode()
    assert fragment.startswith('<div id="audit-results"')
    assert "<html" not in fragment
    assert "token.create" in fragment
    assert "<html" in full
    assert 'hx-target="#audit-results"' in full


def test_htmx_search_shows_field_errors_in_the_fragment(client: Client, reviewer: User) -> None:
    client.force_login(reviewer)
    fragment = client.get(AUDIT, {"since": "yesterday"}, headers={"HX-Request": "true"}).content.decode()
    assert "Enter a valid date." in fragment
    assert "0 events." in fragment
