"""The findings list's filters and bulk changes, assignment on the detail page, and the functions behind them.

Who may open which page is tests/portal/test_url_matrix.py's job; the state/severity basics and the
query budget are in tests/portal/test_pages.py.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries

from accounts.models import User
from portal import findings
from portal.audit import AuditAction
from portal.models import AuditEvent, Finding
from tests import factories

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

pytestmark = pytest.mark.django_db

LIST = "/findings/"


@pytest.fixture
def signed_in(client: Client, reviewer: User) -> Client:
    client.force_login(reviewer)
    return client


def _summaries(response: Response) -> set[str]:
    assert response.status_code == 200
    return {finding.summary for finding in response.context["page"].object_list}


def _state(finding: Finding) -> str:
    finding.refresh_from_db()
    return finding.state


def _events(action: AuditAction) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("sequence"))


# --- filters -------------------------------------------------------------------------------------


@pytest.fixture
def estate() -> dict[str, Finding]:
    alice = factories.user(username="alice")
    bob = factories.user(username="bob")
    day = timedelta(days=1)
    now = timezone.now()
    return {
        "stale": factories.finding(
            summary="stale robot",
            kind="credential_stale",
            severity=Finding.Severity.MEDIUM,
            scope="registry-1",
            subject_type="registries.credential",
            subject_id="17",
            subject_label="robot$ci",
            owner=alice,
            owner_label="Alice A.",
            assignee=bob,
            opened_at=now - 10 * day,
        ),
        "orphan": factories.finding(
            summary="orphaned key",
            kind="credential_orphaned",
            severity=Finding.Severity.HIGH,
            scope="registry-10",
            subject_type="registries.credential",
            subject_id="170",
            subject_label="AKIAOLD",
            owner_label="carol@old.example",
            opened_at=now - 3 * day,
        ),
        "rule": factories.finding(
            summary="rule expired",
            kind="access_rule_expired",
            severity=Finding.Severity.LOW,
            scope="rules",
            subject_type="registries.accessrule",
            subject_id="17",
            key="access_rule_expired:rules/rule-17",
            opened_at=now - 40 * day,
            resolved_at=now - 20 * day,
        ),
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, {"stale robot", "orphaned key"}),
        ({"state": "all"}, {"stale robot", "orphaned key", "rule expired"}),
        ({"state": "resolved"}, {"rule expired"}),
        ({"kind": "credential_stale"}, {"stale robot"}),
        ({"kind": "no_such_kind"}, set()),
        ({"severity": "high"}, {"orphaned key"}),
        # Whole scopes only: registry-1 is not registry-10.
        ({"scope": "registry-1"}, {"stale robot"}),
        ({"scope": "registry-10"}, {"orphaned key"}),
        # A linked owner by username; an unlinked one by the registry's name for them.
        ({"owner": "alice"}, {"stale robot"}),
        ({"owner": "Alice A."}, set()),
        ({"owner": "carol@old.example"}, {"orphaned key"}),
        ({"assignee": "bob"}, {"stale robot"}),
        ({"assignee": "alice"}, set()),
        ({"assigned": "true"}, {"stale robot"}),
        ({"assigned": "false"}, {"orphaned key"}),
        ({"subject_type": "registries.credential"}, {"stale robot", "orphaned key"}),
        ({"subject_type": "registries.credential", "subject_id": "17"}, {"stale robot"}),
        ({"state": "all", "subject_id": "17"}, {"stale robot", "rule expired"}),
        ({"q": "ROBOT"}, {"stale robot"}),
        ({"q": "akiaold"}, {"orphaned key"}),
        ({"q": "Alice"}, {"stale robot"}),
        ({"state": "all", "q": "rules/rule-17"}, {"rule expired"}),
        (
            {"state": "all", "open_on": (timezone.localdate() - timedelta(days=5)).isoformat()},
            {"stale robot"},
        ),
        (
            {"state": "all", "open_on": (timezone.localdate() - timedelta(days=25)).isoformat()},
            {"rule expired"},
        ),
        ({"kind": "credential_stale", "severity": "high"}, set()),
    ],
)
def test_every_filter_narrows_the_list(
    signed_in: Client, estate: dict[str, Finding], query: dict[str, str], expected: set[str]
) -> None:
    assert _summaries(signed_in.get(LIST, query)) == expected


@pytest.mark.parametrize("query", [{"severity": "urgent"}, {"open_on": "yesterday"}])
def test_an_invalid_filter_lists_nothing_and_says_why(
    signed_in: Client, estate: dict[str, Finding], query: dict[str, str]
) -> None:
    response = signed_in.get(LIST, query)
    assert _summaries(response) == set()
    assert 'class="error" role="alert"' in response.content.decode()


def test_the_filters_stay_in_the_pagination_export_and_bulk_links(signed_in: Client) -> None:
    for n in range(51):
        factories.finding(summary=f"stale {n}", kind="credential_stale", scope="registry-4")
    factories.finding(summary="elsewhere", kind="credential_stale", scope="registry-5")
    page = signed_in.get(LIST, {"kind": "credential_stale", "scope": "registry-4"}).content.decode()
    expected = "kind=credential_stale&amp;scope=registry-4&amp;state=open"
    assert f'href="?{expected}&amp;page=2" rel="next"' in page
    assert f'<form method="post" action="?{expected}"' in page
    assert f'href="/api/v1/findings/export.jsonl?{expected}"' in page
    assert '<input type="hidden" name="matching" value="51">' in page
    assert "All 51 findings matching the filters" in page


def test_the_kind_select_offers_registered_kinds_by_title(signed_in: Client) -> None:
    page = signed_in.get(LIST).content.decode()
    assert f'<option value="audit_chain_broken">{findings.AUDIT_CHAIN_BROKEN.title}</option>' in page


def test_a_suppression_past_its_end_date_is_open_again(signed_in: Client, reviewer: User) -> None:
    finding = factories.finding(summary="accepted for a while")
    findings.suppress(
        finding, actor=reviewer, until=factories.days_from_now(3), justification="vendor fix due"
    )
    assert _summaries(signed_in.get(LIST)) == set()
    assert _summaries(signed_in.get(LIST, {"state": "suppressed"})) == {"accepted for a while"}
    # The end date passes (written directly: suppress() refuses dates in the past).
    Finding.objects.filter(pk=finding.pk).update(suppressed_until=timezone.now() - timedelta(minutes=1))
    assert _summaries(signed_in.get(LIST)) == {"accepted for a while"}
    assert _summaries(signed_in.get(LIST, {"state": "suppressed"})) == set()
    assert _state(finding) == "open"


# --- bulk changes from the list --------------------------------------------------------------------


def _bulk(client: Client, query: str = "", **fields: Any) -> Response:
    fields.setdefault("choice", "selected")
    return client.post(f"{LIST}?{query}", fields)


def _until(days: int) -> str:
    return (timezone.localdate() + timedelta(days=days)).isoformat()


def test_suppressing_the_selected_findings_records_one_event_each(signed_in: Client, reviewer: User) -> None:
    chosen = [factories.finding(summary=f"chosen {n}") for n in range(3)]
    left = factories.finding(summary="left alone")
    response = _bulk(
        signed_in,
        "severity=high",
        action="suppress",
        ids=[f.pk for f in chosen],
        until=_until(30),
        justification="Compensating control: network policy.",
    )
    assert response.status_code == 302
    assert response["Location"] == f"{LIST}?severity=high&state=open"
    assert [_state(f) for f in chosen] == ["suppressed"] * 3
    assert _state(left) == "open"
    events = _events(AuditAction.FINDING_SUPPRESSED)
    assert sorted(int(e.target_id) for e in events) == sorted(f.pk for f in chosen)
    assert {e.actor_id for e in events} == {reviewer.pk}
    assert {e.detail["justification"] for e in events} == {"Compensating control: network policy."}
    assert "Suppressed 3 of 3 findings." in signed_in.get(response["Location"]).content.decode()


def test_suppressing_all_findings_matching_the_filters(signed_in: Client) -> None:
    stale = [factories.finding(kind="credential_stale") for _ in range(4)]
    other = factories.finding(kind="credential_orphaned")
    response = _bulk(
        signed_in,
        "kind=credential_stale&state=open",
        action="suppress",
        choice="matching",
        matching=4,
        until=_until(10),
        justification="Decommissioned next week.",
    )
    assert response.status_code == 302
    assert [_state(f) for f in stale] == ["suppressed"] * 4
    assert _state(other) == "open"


def test_all_matching_is_refused_when_the_list_changed_since_it_was_shown(signed_in: Client) -> None:
    stale = [factories.finding(kind="credential_stale") for _ in range(3)]
    response = _bulk(
        signed_in,
        "kind=credential_stale",
        action="suppress",
        choice="matching",
        matching=2,  # the page showed two; a third opened since
        until=_until(10),
        justification="ok",
    )
    assert response.status_code == 200
    assert "the choice changed since it was made (2 findings then, 3 now)" in response.content.decode()
    assert [_state(f) for f in stale] == ["open"] * 3
    assert not _events(AuditAction.FINDING_SUPPRESSED)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"until": "", "justification": "ok"}, "Choose the date the suppression ends."),
        ({"until": _until(7), "justification": "   "}, "Say why the risk is accepted."),
        ({"until": _until(-1), "justification": "ok"}, "Choose a date after today."),
        ({"until": _until(0), "justification": "ok"}, "Choose a date after today."),
        ({"until": _until(400), "justification": "ok"}, "Suppress for at most a year, then look again."),
    ],
)
def test_a_refused_bulk_suppression_shows_why_and_changes_nothing(
    signed_in: Client, fields: dict[str, str], error: str
) -> None:
    chosen = [factories.finding() for _ in range(2)]
    response = _bulk(signed_in, action="suppress", ids=[f.pk for f in chosen], **fields)
    assert response.status_code == 200
    assert error in response.content.decode()
    assert [_state(f) for f in chosen] == ["open", "open"]
    assert not _events(AuditAction.FINDING_SUPPRESSED)
    # The ticked rows stay ticked, so fixing the form does not mean choosing again.
    for finding in chosen:
        assert re.search(
            rf'value="{finding.pk}" id="select-{finding.pk}"[^>]*checked', response.content.decode()
        )


def test_one_resolved_finding_refuses_the_whole_suppression(signed_in: Client) -> None:
    open_one = factories.finding()
    resolved = factories.finding(resolved_at=timezone.now())
    response = _bulk(
        signed_in,
        "state=all",
        action="suppress",
        ids=[open_one.pk, resolved.pk],
        until=_until(5),
        justification="ok",
    )
    assert response.status_code == 200
    assert "1 of the 2 chosen findings are resolved and cannot be suppressed" in response.content.decode()
    assert _state(open_one) == "open"
    assert not _events(AuditAction.FINDING_SUPPRESSED)


def test_nothing_selected_is_a_form_error(signed_in: Client) -> None:
    factories.finding()
    response = _bulk(signed_in, action="unsuppress")
    assert response.status_code == 200
    assert "Select at least one finding" in response.content.decode()


def test_an_id_that_no_longer_exists_refuses_the_change(signed_in: Client) -> None:
    finding = factories.finding()
    gone = factories.finding()
    gone_pk = gone.pk
    gone.delete()
    response = _bulk(
        signed_in, action="assign", ids=[finding.pk, gone_pk], assignee=factories.user().username
    )
    assert "the choice changed since it was made (2 findings then, 1 now)" in response.content.decode()
    finding.refresh_from_db()
    assert finding.assignee is None


def test_developers_cannot_change_findings_in_bulk(client: Client, developer: User) -> None:
    finding = factories.finding()
    client.force_login(developer)
    response = _bulk(client, action="suppress", ids=[finding.pk], until=_until(5), justification="mine")
    assert response.status_code == 403
    assert _state(finding) == "open"


def test_ending_suppressions_in_bulk_counts_only_those_that_had_one(
    signed_in: Client, reviewer: User
) -> None:
    suppressed = [factories.finding() for _ in range(2)]
    for finding in suppressed:
        findings.suppress(finding, actor=reviewer, until=factories.days_from_now(9), justification="ok")
    plain = factories.finding()
    response = _bulk(signed_in, "state=all", action="unsuppress", ids=[*(f.pk for f in suppressed), plain.pk])
    assert response.status_code == 302
    assert [_state(f) for f in suppressed] == ["open", "open"]
    assert len(_events(AuditAction.FINDING_UNSUPPRESSED)) == 2
    assert "Ended the suppression of 2 of 3 findings." in signed_in.get(response["Location"]).content.decode()


def test_assigning_and_unassigning_in_bulk(signed_in: Client) -> None:
    dana = factories.user(username="dana")
    chosen = [factories.finding() for _ in range(2)]
    assert _bulk(signed_in, action="assign", ids=[f.pk for f in chosen], assignee="dana").status_code == 302
    for finding in chosen:
        finding.refresh_from_db()
        assert finding.assignee == dana
    assert [e.detail["assignee"] for e in _events(AuditAction.FINDING_ASSIGNED)] == ["dana", "dana"]
    assert _bulk(signed_in, action="unassign", ids=[f.pk for f in chosen]).status_code == 302
    for finding in chosen:
        finding.refresh_from_db()
        assert finding.assignee is None
    unassigned = _events(AuditAction.FINDING_ASSIGNED)[2:]
    assert [(e.detail["assignee"], e.detail["previous"]) for e in unassigned] == [
        (None, "dana"),
        (None, "dana"),
    ]


@pytest.mark.parametrize(
    ("assignee", "error"),
    [
        ("", "Name the person to assign to, or choose Unassign."),
        ("nobody-here", "no active person has the username"),
    ],
)
def test_assigning_in_bulk_needs_a_known_person(signed_in: Client, assignee: str, error: str) -> None:
    finding = factories.finding()
    response = _bulk(signed_in, action="assign", ids=[finding.pk], assignee=assignee)
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not _events(AuditAction.FINDING_ASSIGNED)


def test_the_list_with_the_bulk_form_keeps_its_query_budget(
    signed_in: Client, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    owner, assignee = factories.user(), factories.user()
    factories.finding(owner=owner, assignee=assignee)
    with django_assert_num_queries(5):  # session, user, role, count, rows
        signed_in.get(LIST, {"q": "attention"})
    for _ in range(30):
        factories.finding(owner=factories.user(), assignee=factories.user())
    with django_assert_num_queries(5):
        signed_in.get(LIST, {"q": "attention"})


# --- assignment on the detail page -------------------------------------------------------------------


def _assign(client: Client, finding: Finding, assignee: str) -> Response:
    return client.post(
        reverse("portal:finding_assign", kwargs={"finding_id": finding.pk}), {"assignee": assignee}
    )


def test_the_detail_page_assigns_and_unassigns(signed_in: Client, reviewer: User) -> None:
    erin = factories.user(username="erin")
    finding = factories.finding()
    response = _assign(signed_in, finding, "erin")
    assert response.status_code == 302
    finding.refresh_from_db()
    assert finding.assignee == erin
    page = signed_in.get(response["Location"]).content.decode()
    assert "Assigned to erin." in page
    assert '<input type="text" name="assignee" value="erin"' in page
    (event,) = _events(AuditAction.FINDING_ASSIGNED)
    assert (event.actor_id, event.target_id, event.detail) == (
        reviewer.pk,
        str(finding.pk),
        {"assignee": "erin", "previous": None},
    )
    assert _assign(signed_in, finding, "").status_code == 302
    finding.refresh_from_db()
    assert finding.assignee is None


def test_assign_to_me(signed_in: Client, reviewer: User) -> None:
    finding = factories.finding()
    page = signed_in.get(reverse("portal:finding_detail", kwargs={"finding_id": finding.pk})).content.decode()
    # Its own form, so whatever is typed in the text field does not travel with it.
    assert f'form="assign-me" name="assignee" value="{reviewer.username}">Assign to me</button>' in page
    assert '<form id="assign-me" method="post"' in page
    _assign(signed_in, finding, reviewer.username)
    finding.refresh_from_db()
    assert finding.assignee == reviewer


def test_assigning_someone_unknown_or_departed_is_refused(signed_in: Client) -> None:
    gone = factories.user(username="frank", is_active=False)
    finding = factories.finding()
    for name in ("frank", "ghost"):
        response = _assign(signed_in, finding, name)
        assert response.status_code == 200
        assert f"no active person has the username &#x27;{name}&#x27;" in response.content.decode()
    finding.refresh_from_db()
    assert finding.assignee is None
    assert gone.pk is not None
    assert not _events(AuditAction.FINDING_ASSIGNED)


def test_the_detail_page_shows_owner_scope_and_links_to_related_lists(signed_in: Client) -> None:
    owner = factories.user(username="hana", display_name="Hana H.")
    finding = factories.finding(
        owner=owner,
        owner_label="hana@corp",
        scope="registry-2",
        subject_type="registries.credential",
        subject_id="5",
    )
    page = signed_in.get(reverse("portal:finding_detail", kwargs={"finding_id": finding.pk})).content.decode()
    assert '<a href="/findings/?owner=hana">Hana H.</a>' in page
    assert '<a href="/findings/?scope=registry-2">registry-2</a>' in page
    assert "/findings/?state=all&amp;subject_type=registries.credential&amp;subject_id=5" in page


def test_the_detail_page_says_when_a_finding_came_back(signed_in: Client) -> None:
    came_back = factories.finding(first_seen=timezone.now() - timedelta(days=30), opened_at=timezone.now())
    fresh = factories.finding()
    for finding, shown in ((came_back, True), (fresh, False)):
        page = signed_in.get(
            reverse("portal:finding_detail", kwargs={"finding_id": finding.pk})
        ).content.decode()
        assert ("Open again since" in page) is shown


def test_reassigning_to_the_same_person_records_nothing(reviewer: User) -> None:
    finding = factories.finding(assignee=reviewer)
    assert findings.assign(finding, reviewer, reviewer) is False
    assert not _events(AuditAction.FINDING_ASSIGNED)


# --- bulk_change, called directly ----------------------------------------------------------------------


def test_bulk_change_refuses_more_than_the_limit(reviewer: User, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(findings, "BULK_LIMIT", 2)
    chosen = [factories.finding() for _ in range(3)]
    with pytest.raises(findings.BulkChangeError, match="at most 2 findings can be changed at once"):
        findings.bulk_change("unassign", Finding.objects.all(), actor=reviewer)
    assert [_state(f) for f in chosen] == ["open"] * 3


def test_bulk_change_is_all_or_nothing_when_one_suppression_fails(reviewer: User) -> None:
    chosen = [factories.finding() for _ in range(3)]
    with pytest.raises(findings.SuppressionError, match="a justification is required"):
        findings.bulk_change(
            "suppress",
            Finding.objects.all(),
            actor=reviewer,
            until=factories.days_from_now(3),
            justification=" ",
        )
    with pytest.raises(findings.SuppressionError, match="the suppression must end in the future"):
        findings.bulk_change(
            "suppress",
            Finding.objects.all(),
            actor=reviewer,
            until=factories.days_from_now(-1),
            justification="ok",
        )
    assert [_state(f) for f in chosen] == ["open"] * 3
    assert not _events(AuditAction.FINDING_SUPPRESSED)


def test_bulk_change_refuses_an_unknown_action(reviewer: User) -> None:
    factories.finding()
    with pytest.raises(findings.BulkChangeError, match="unknown action 'delete'"):
        findings.bulk_change("delete", Finding.objects.all(), actor=reviewer)
