"""/api/v1/findings/: filters, assignment, bulk changes and the JSON-lines export for SIEMs.

Status per role for each endpoint is tests/portal/test_url_matrix.py's job.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import yaml
from django.db import connection
from django.http import StreamingHttpResponse
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import User
from portal import findings
from portal.audit import AuditAction
from portal.models import AuditEvent, Finding
from tests import factories

pytestmark = pytest.mark.django_db

FINDINGS = "/api/v1/findings/"
EXPORT = "/api/v1/findings/export.jsonl"
BULK = "/api/v1/findings/bulk/"


@pytest.fixture
def api(client: Client, reviewer: User) -> Client:
    client.force_login(reviewer)
    return client


def _post(client: Client, url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return client.post(url, json.dumps(body), content_type="application/json", headers=headers)


def _ids(client: Client, **query: str) -> set[int]:
    response = client.get(FINDINGS, query)
    assert response.status_code == 200, response.json()
    return {row["id"] for row in response.json()["results"]}


def _state(finding: Finding) -> str:
    finding.refresh_from_db()
    return finding.state


# --- filters -------------------------------------------------------------------------------------


@pytest.fixture
def estate() -> dict[str, Finding]:
    owner = factories.user(username="ivan")
    helper = factories.user(username="jo")
    now = timezone.now()
    return {
        "stale": factories.finding(
            kind="credential_stale",
            severity=Finding.Severity.MEDIUM,
            scope="registry-2",
            subject_type="registries.credential",
            subject_id="8",
            subject_label="ci-robot",
            summary="Robot unused for 120 days",
            owner=owner,
            assignee=helper,
            opened_at=now - timedelta(days=2),
        ),
        "orphan": factories.finding(
            kind="credential_orphaned",
            severity=Finding.Severity.HIGH,
            scope="registry-20",
            subject_type="registries.credential",
            subject_id="80",
            owner_label="kim@left.example",
            summary="Key of someone who left",
        ),
        "resolved": factories.finding(
            kind="credential_stale", scope="registry-2", resolved_at=now - timedelta(hours=1)
        ),
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, {"stale", "orphan", "resolved"}),  # the API's default is every state
        ({"state": "open"}, {"stale", "orphan"}),
        ({"state": "resolved"}, {"resolved"}),
        ({"state": "all"}, {"stale", "orphan", "resolved"}),
        ({"kind": "credential_stale"}, {"stale", "resolved"}),
        ({"severity": "high"}, {"orphan", "resolved"}),
        ({"scope": "registry-2"}, {"stale", "resolved"}),
        ({"owner": "ivan"}, {"stale"}),
        ({"owner": "kim@left.example"}, {"orphan"}),
        ({"assignee": "jo"}, {"stale"}),
        ({"assigned": "false"}, {"orphan", "resolved"}),
        ({"subject_type": "registries.credential", "subject_id": "80"}, {"orphan"}),
        ({"q": "left"}, {"orphan"}),
        # Only the stale one was open a day ago: the others were opened now.
        ({"open_on": (timezone.localdate() - timedelta(days=1)).isoformat()}, {"stale"}),
    ],
)
def test_the_api_takes_the_same_filters_as_the_list(
    api: Client, estate: dict[str, Finding], query: dict[str, str], expected: set[str]
) -> None:
    assert _ids(api, **query) == {estate[name].pk for name in expected}


@pytest.mark.parametrize(
    "query",
    [{"severity": "urgent"}, {"state": "gone"}, {"open_on": "last week"}, {"changed_since": "last week"}],
)
def test_an_invalid_filter_is_a_400_naming_it(api: Client, query: dict[str, str]) -> None:
    response = api.get(FINDINGS, query)
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == set(query)


def test_a_finding_shows_its_owner_assignee_and_scope(api: Client, estate: dict[str, Finding]) -> None:
    body = api.get(f"{FINDINGS}{estate['stale'].pk}/").json()
    assert (body["owner"], body["assignee"], body["scope"], body["owner_label"]) == (
        "ivan",
        "jo",
        "registry-2",
        "",
    )
    assert body["opened_at"] is not None


# --- assign --------------------------------------------------------------------------------------


def test_assign_and_unassign_through_the_api(api: Client, reviewer: User) -> None:
    factories.user(username="lee")
    finding = factories.finding()
    response = _post(api, f"{FINDINGS}{finding.pk}/assign/", {"assignee": "lee"})
    assert response.status_code == 200
    assert response.json()["assignee"] == "lee"
    response = _post(api, f"{FINDINGS}{finding.pk}/assign/", {"assignee": None})
    assert response.json()["assignee"] is None
    events = AuditEvent.objects.filter(action=AuditAction.FINDING_ASSIGNED).order_by("sequence")
    assert [(e.actor_id, e.detail["assignee"]) for e in events] == [(reviewer.pk, "lee"), (reviewer.pk, None)]


def test_assigning_an_unknown_person_is_a_400_on_the_field(api: Client) -> None:
    finding = factories.finding()
    response = _post(api, f"{FINDINGS}{finding.pk}/assign/", {"assignee": "nobody"})
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"assignee": ["no active person has the username 'nobody'"]}
    finding.refresh_from_db()
    assert finding.assignee is None


# --- bulk ----------------------------------------------------------------------------------------


def _suppress_body(**extra: Any) -> dict[str, Any]:
    return {
        "action": "suppress",
        "until": (timezone.now() + timedelta(days=20)).isoformat(),
        "justification": "Rotating with the next release.",
        **extra,
    }


def test_bulk_suppress_by_ids(api: Client) -> None:
    chosen = [factories.finding() for _ in range(3)]
    response = _post(api, BULK, _suppress_body(ids=[f.pk for f in chosen]))
    assert response.status_code == 200
    assert response.json() == {"action": "suppress", "chosen": 3, "changed": 3}
    assert [_state(f) for f in chosen] == ["suppressed"] * 3
    events = AuditEvent.objects.filter(action=AuditAction.FINDING_SUPPRESSED)
    assert sorted(int(e.target_id) for e in events) == sorted(f.pk for f in chosen)


def test_bulk_by_filters_with_the_expected_count(api: Client, estate: dict[str, Finding]) -> None:
    body = {"action": "assign", "assignee": "ivan", "filters": {"kind": "credential_stale", "state": "open"}}
    refused = _post(api, BULK, {**body, "expected_count": 2})
    assert refused.status_code == 400
    assert (
        "the choice changed since it was made (2 findings then, 1 now)" in refused.json()["error"]["message"]
    )
    response = _post(api, BULK, {**body, "expected_count": 1})
    assert response.json() == {"action": "assign", "chosen": 1, "changed": 1}
    estate["stale"].refresh_from_db()
    assert estate["stale"].assignee is not None
    assert estate["stale"].assignee.username == "ivan"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"action": "suppress", "ids": [1], "justification": "x"}, "until", "required to suppress"),
        (
            {"action": "suppress", "ids": [1], "until": "2999-01-01T00:00:00Z"},
            "justification",
            "required to suppress",
        ),
        ({"action": "assign", "ids": [1]}, "assignee", "required to assign"),
        ({"action": "unsuppress"}, "non_field_errors", "give either ids or filters"),
        (
            {"action": "unsuppress", "ids": [1], "filters": {}},
            "non_field_errors",
            "give either ids or filters",
        ),
        ({"action": "delete", "ids": [1]}, "action", "is not a valid choice"),
        ({"action": "unsuppress", "ids": []}, "ids", "may not be empty"),
    ],
)
def test_a_malformed_bulk_request_is_a_400_naming_the_field(
    api: Client, body: dict[str, Any], field: str, message: str
) -> None:
    response = _post(api, BULK, body)
    assert response.status_code == 400
    assert message in " ".join(response.json()["error"]["fields"][field])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"until": (datetime.now(UTC) - timedelta(days=1)).isoformat()},
            "the suppression must end in the future",
        ),
        ({"justification": "  "}, "justification: This field may not be blank."),
    ],
)
def test_a_refused_bulk_suppression_changes_nothing(api: Client, extra: dict[str, str], message: str) -> None:
    chosen = [factories.finding() for _ in range(2)]
    response = _post(api, BULK, _suppress_body(ids=[f.pk for f in chosen], **extra))
    assert response.status_code == 400
    assert response.json()["error"]["message"] == message
    assert [_state(f) for f in chosen] == ["open", "open"]
    assert not AuditEvent.objects.filter(action=AuditAction.FINDING_SUPPRESSED).exists()


def test_bulk_by_invalid_filters_is_refused(api: Client) -> None:
    factories.finding()
    response = _post(api, BULK, {"action": "unassign", "filters": {"severity": "urgent"}})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("the filters are not valid (severity:")


def test_developers_and_read_only_tokens_cannot_change_findings(
    client: Client, developer: User, reviewer: User
) -> None:
    finding = factories.finding()
    client.force_login(developer)
    assert _post(client, BULK, {"action": "unassign", "ids": [finding.pk]}).status_code == 403
    assert _post(client, f"{FINDINGS}{finding.pk}/assign/", {"assignee": None}).status_code == 403
    client.logout()
    _, secret = factories.token(reviewer, scopes=["read"])
    bearer = {"Authorization": f"Bearer {secret}"}
    assert _post(client, BULK, _suppress_body(ids=[finding.pk]), headers=bearer).status_code == 403
    assert client.get(EXPORT, headers=bearer).status_code == 200  # reading is what a read token is for
    assert _state(finding) == "open"


# --- JSON-lines export -------------------------------------------------------------------------------


def _lines(response: Any) -> list[dict[str, Any]]:
    assert isinstance(response, StreamingHttpResponse)
    body = b"".join(cast(Iterator[bytes], response.streaming_content)).decode()
    assert body.endswith("\n") or body == ""
    return [json.loads(line) for line in body.splitlines()]


def test_the_export_writes_one_finding_per_line_with_stable_fields(api: Client, reviewer: User) -> None:
    owner = factories.user(username="mia")
    seen = datetime(2024, 3, 1, 12, 30, tzinfo=UTC)
    finding = factories.finding(
        kind="credential_stale",
        severity=Finding.Severity.MEDIUM,
        scope="registry-3",
        subject_type="registries.credential",
        subject_id="42",
        subject_label="robot$deploy",
        summary="Unused for 90 days",
        detail={"last_used_at": None, "source": "audit log"},
        owner=owner,
        owner_label="mia@corp",
        first_seen=seen,
        opened_at=seen,
        last_seen=seen + timedelta(days=1),
    )
    findings.suppress(
        finding, actor=reviewer, until=datetime(2999, 1, 1, tzinfo=UTC), justification="accepted"
    )
    response = api.get(EXPORT, HTTP_ACCEPT="application/x-ndjson")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"].startswith('attachment; filename="customs-findings-')
    (line,) = _lines(response)
    assert line == {
        "id": finding.pk,
        "key": finding.key,
        "kind": "credential_stale",
        "title": findings.KINDS["credential_stale"].title,
        "severity": "medium",
        "state": "suppressed",
        "scope": "registry-3",
        "subject": {"type": "registries.credential", "id": "42", "label": "robot$deploy"},
        "summary": "Unused for 90 days",
        "detail": {"last_used_at": None, "source": "audit log"},
        "owner": {"username": "mia", "label": "mia@corp"},
        "assignee": None,
        "first_seen": "2024-03-01T12:30:00Z",
        "opened_at": "2024-03-01T12:30:00Z",
        "last_seen": "2024-03-02T12:30:00Z",
        "resolved_at": None,
        "suppressed_until": "2999-01-01T00:00:00Z",
        "suppressed_by": reviewer.username,
        "suppression_justification": "accepted",
        "url": f"http://testserver/findings/{finding.pk}/",
    }


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/Los_Angeles"])
def test_export_times_are_utc_whatever_the_server_zone(api: Client, settings: Any, zone: str) -> None:
    settings.TIME_ZONE = zone
    factories.finding(first_seen=datetime(2024, 7, 1, 23, 0, tzinfo=UTC))
    (line,) = _lines(api.get(EXPORT))
    assert line["first_seen"] == "2024-07-01T23:00:00Z"


def test_the_export_takes_the_list_filters_oldest_first(api: Client, estate: dict[str, Finding]) -> None:
    lines = _lines(api.get(EXPORT, {"kind": "credential_stale"}))
    assert [line["id"] for line in lines] == sorted([estate["stale"].pk, estate["resolved"].pk])
    assert [line["state"] for line in lines] == ["open", "resolved"]
    assert api.get(EXPORT, {"severity": "urgent"}).status_code == 400


def test_the_export_streams_reading_rows_only_as_it_is_sent(api: Client) -> None:
    for n in range(5):
        factories.finding(summary=f"streamed {n}")
    with CaptureQueriesContext(connection) as before_sending:
        response = api.get(EXPORT)
    # The view returned without reading a single finding: the rows are read while the body is sent.
    assert not [q for q in before_sending.captured_queries if '"portal_finding"' in q["sql"]]
    with CaptureQueriesContext(connection) as while_sending:
        lines = _lines(response)
    assert [line["summary"] for line in lines] == [f"streamed {n}" for n in range(5)]
    finding_reads = [q for q in while_sending.captured_queries if '"portal_finding"' in q["sql"]]
    assert len(finding_reads) == 1  # one chunked read with its joins, not one query per row


def test_the_export_is_in_the_openapi_schema(api: Client) -> None:
    schema = yaml.safe_load(api.get("/api/schema/").content)
    export = schema["paths"]["/api/v1/findings/export.jsonl"]["get"]
    assert "application/x-ndjson" in export["responses"]["200"]["content"]
    assert {p["name"] for p in export["parameters"]} >= {
        "kind",
        "severity",
        "state",
        "owner",
        "q",
        "open_on",
        "changed_since",
    }
    for path in ("/api/v1/findings/bulk/", "/api/v1/findings/{id}/assign/"):
        assert "post" in schema["paths"][path]


# --- incremental pulls: changed_since ------------------------------------------------------------------


@dataclass
class Changes:
    since: datetime
    changed: dict[str, Finding]  # each changed in one way at or after `since`
    unchanged: list[Finding]  # last changed before it


@pytest.fixture
def changes(reviewer: User) -> Changes:
    long_ago = timezone.now() - timedelta(days=30)
    quiet = {"first_seen": long_ago, "opened_at": long_ago, "last_seen": long_ago}

    def suppressed(finding: Finding) -> Finding:
        until = factories.days_from_now(30)
        findings.suppress(finding, actor=reviewer, until=until, justification="accepted")
        return finding

    unchanged = [
        factories.finding(**quiet),
        suppressed(factories.finding(**quiet)),  # still suppressed, since before
        factories.finding(**quiet, resolved_at=long_ago + timedelta(days=1)),
    ]
    to_unsuppress = suppressed(factories.finding(**quiet))
    since = timezone.now()
    findings.unsuppress(to_unsuppress, actor=reviewer)
    to_assign = factories.finding(**quiet)
    findings.assign(to_assign, reviewer, factories.user())
    changed = {
        "seen": factories.finding(first_seen=long_ago, opened_at=long_ago),  # a scan saw it again: now
        "resolved": factories.finding(**quiet, resolved_at=timezone.now()),
        "suppressed": suppressed(factories.finding(**quiet)),
        "unsuppressed": to_unsuppress,
        "assigned": to_assign,
        "resurfaced": factories.finding(**quiet, suppressed_until=timezone.now()),  # its suppression ended
    }
    return Changes(since, changed, unchanged)


def _zulu(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_changed_since_lists_what_changed_at_or_after_it(api: Client, changes: Changes) -> None:
    assert _ids(api, changed_since=changes.since.isoformat()) == {f.pk for f in changes.changed.values()}
    everything = {f.pk for f in [*changes.changed.values(), *changes.unchanged]}
    assert _ids(api, changed_since=_zulu(changes.since - timedelta(days=31))) == everything


def test_the_export_pulls_only_what_changed_since_the_last_pull(
    api: Client, reviewer: User, changes: Changes
) -> None:
    pulled_at = timezone.now()
    lines = _lines(api.get(EXPORT, {"changed_since": _zulu(changes.since)}))
    assert [line["id"] for line in lines] == sorted(f.pk for f in changes.changed.values())
    findings.unsuppress(changes.changed["suppressed"], actor=reviewer)
    (line,) = _lines(api.get(EXPORT, {"changed_since": _zulu(pulled_at)}))
    assert (line["id"], line["state"]) == (changes.changed["suppressed"].pk, "open")
