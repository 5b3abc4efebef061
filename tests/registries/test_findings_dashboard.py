"""The findings dashboard: each chart's numbers, and that each links to a list holding exactly them;
the same numbers at /api/v1/findings/summary/.

Who may open either is tests/portal/test_url_matrix.py's job.
"""

from __future__ import annotations

import html
import re
from datetime import date, datetime, time, timedelta

import pytest
import yaml
from django.test import Client
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries

from accounts.models import User
from portal import findings
from portal.models import Finding
from registries import hygiene_views
from tests import factories

pytestmark = pytest.mark.django_db

DASHBOARD = "/findings/dashboard/"


@pytest.fixture
def signed_in(client: Client, reviewer: User) -> Client:
    client.force_login(reviewer)
    return client


def _at(day: date, hour: int = 12) -> datetime:
    return timezone.make_aware(datetime.combine(day, time(hour)))


def _listed(client: Client, url: str) -> int:
    """How many rows the list behind a link holds."""
    response = client.get(url)
    assert response.status_code == 200, url
    return int(response.context["page"].paginator.count)


def _links(page: str) -> set[str]:
    return {html.unescape(href) for href in re.findall(r'href="([^"]+)"', page)}


# --- counts by kind and severity -------------------------------------------------------------------


def test_open_findings_are_counted_by_kind_and_severity(signed_in: Client, reviewer: User) -> None:
    for _ in range(3):
        factories.finding(kind="credential_stale", severity=Finding.Severity.MEDIUM)
    factories.finding(kind="credential_stale", severity=Finding.Severity.HIGH)
    factories.finding(kind="credential_orphaned", severity=Finding.Severity.HIGH)
    factories.finding(kind="credential_stale", resolved_at=timezone.now())  # not open
    hidden = factories.finding(kind="credential_orphaned", severity=Finding.Severity.HIGH)
    findings.suppress(hidden, actor=reviewer, until=factories.days_from_now(5), justification="accepted")

    rows = {row.kind: row for row in hygiene_views.kind_severity_counts()}
    assert list(rows) == ["credential_stale", "credential_orphaned"]  # most first
    severities = [value for value, _ in hygiene_views.SEVERITIES]
    stale = dict(zip(severities, (cell.count for cell in rows["credential_stale"].cells), strict=True))
    assert stale == {"critical": 0, "high": 1, "medium": 3, "low": 0, "info": 0}
    assert rows["credential_stale"].total.count == 4
    assert rows["credential_stale"].title == findings.KINDS["credential_stale"].title
    assert rows["credential_orphaned"].total.count == 1
    for row in rows.values():
        for cell in [*row.cells, row.total]:
            assert _listed(signed_in, cell.url) == cell.count, cell.url


def test_the_matrix_links_every_non_zero_count(signed_in: Client) -> None:
    factories.finding(kind="credential_expired", severity=Finding.Severity.CRITICAL)
    page = signed_in.get(DASHBOARD).content.decode()
    assert "/findings/?state=open&kind=credential_expired&severity=critical" in _links(page)
    assert "/findings/?state=open&kind=credential_expired" in _links(page)


# --- trend -----------------------------------------------------------------------------------------


def test_the_trend_counts_findings_open_at_the_end_of_each_day(signed_in: Client) -> None:
    today = timezone.localdate()

    def ago(days: int) -> date:
        return today - timedelta(days=days)

    factories.finding(opened_at=_at(ago(200)))  # open all along
    factories.finding(opened_at=_at(ago(200)), resolved_at=_at(ago(50)))  # resolved inside the window
    factories.finding(opened_at=_at(ago(30)))  # opened inside the window
    factories.finding(opened_at=_at(ago(10)), resolved_at=_at(ago(10), 18))  # open for a few hours only
    factories.finding(opened_at=_at(ago(200)), resolved_at=_at(ago(120)))  # before the window

    series = dict(hygiene_views.open_per_day(today=today))
    assert len(series) == hygiene_views.TREND_DAYS
    assert min(series) == ago(89)
    assert max(series) == today
    assert series[ago(89)] == 2
    assert series[ago(51)] == 2
    assert series[ago(50)] == 1
    assert series[ago(31)] == 1
    assert series[ago(30)] == 2
    assert series[ago(10)] == 2  # the finding opened and resolved that day was not open at its end
    assert series[today] == 2


def test_each_trend_point_links_to_a_list_of_exactly_its_findings(signed_in: Client) -> None:
    today = timezone.localdate()
    factories.finding(opened_at=_at(today - timedelta(days=40)), resolved_at=_at(today - timedelta(days=5)))
    factories.finding(opened_at=_at(today - timedelta(days=3)))
    chart = hygiene_views.trend_chart(today)
    assert len(chart.points) == hygiene_views.TREND_DAYS
    for point in chart.points[-45:]:
        assert point.datum.url.startswith("/findings/?state=all&open_on=")
        assert _listed(signed_in, point.datum.url) == point.datum.value, point.datum.label
    # The first resolved at noon five days ago, so it was not open at that day's end.
    assert [p.datum.value for p in chart.points[-7:]] == [1, 0, 0, 1, 1, 1, 1]


# --- credential ages -------------------------------------------------------------------------------


def test_credentials_still_held_are_counted_by_age(signed_in: Client) -> None:
    registry = factories.registry()
    now = timezone.now()
    for days in (0, 29, 45, 100, 200, 364, 366, 2000):
        factories.registry_credential(registry, created_at=now - timedelta(days=days))
    factories.registry_credential(registry, created_at=None)
    factories.registry_credential(
        registry, created_at=now - timedelta(days=10), gone_at=now
    )  # gone: not held

    bars = hygiene_views.credential_ages(timezone.localdate())
    counts = {bar.label: bar.value for bar in bars}
    assert counts == {
        "under 30 days": 2,
        "30–90 days": 1,
        "90–180 days": 1,
        "180–365 days": 2,
        "over a year": 2,
        "unknown": 1,
    }


def test_each_age_bar_links_to_the_credentials_it_counts(signed_in: Client) -> None:
    registry = factories.registry()
    now = timezone.now()
    for days in (1, 30, 31, 89, 90, 91, 179, 180, 365, 366, 900):
        factories.registry_credential(registry, created_at=now - timedelta(days=days))
    today = timezone.localdate()
    bars = hygiene_views.credential_ages(today)
    assert bars[0].url == f"/registries/credentials/?created_after={(today - timedelta(days=30)).isoformat()}"
    assert (
        bars[-2].url == f"/registries/credentials/?created_before={(today - timedelta(days=365)).isoformat()}"
    )
    assert bars[-1].url == "/registries/credentials/?created=unknown"
    for bar in bars[:-1]:
        assert _listed(signed_in, bar.url) == bar.value, bar.label
    assert sum(bar.value for bar in bars) == 11


# --- owners ----------------------------------------------------------------------------------------


def test_the_top_owners_are_the_ten_with_most_open_findings(signed_in: Client) -> None:
    people = [factories.user(username=f"owner-{n:02}") for n in range(12)]
    for n, person in enumerate(people):
        for _ in range(n + 1):
            factories.finding(owner=person, owner_label=f"label of {n}")
    for _ in range(5):
        factories.finding(owner_label="ghost@old.example")  # no person linked: the registry's name counts
    factories.finding(owner=people[0], resolved_at=timezone.now())  # not open: not counted
    factories.finding()  # no owner at all: not an owner

    top = hygiene_views.top_owners()
    assert top[:3] == [("owner-11", 12), ("owner-10", 11), ("owner-09", 10)]
    assert ("ghost@old.example", 5) in top
    assert len(top) == 10
    assert "owner-00" not in dict(top)
    chart = hygiene_views.owners_chart()
    for bar in chart.bars:
        assert _listed(signed_in, bar.datum.url) == bar.datum.value, bar.datum.label


# --- the page --------------------------------------------------------------------------------------


def test_the_page_draws_the_charts_as_inline_svg_with_links(signed_in: Client) -> None:
    owner = factories.user(username="nora")
    factories.finding(kind="credential_stale", owner=owner, opened_at=timezone.now() - timedelta(days=2))
    factories.registry_credential(factories.registry(), created_at=timezone.now() - timedelta(days=3))
    page = signed_in.get(DASHBOARD).content.decode()
    assert page.count('<svg class="chart-svg"') == 3
    assert page.count('<table class="visually-hidden chart-data">') == 3
    links = _links(page)
    assert "/findings/?state=open&owner=nora" in links
    assert f"/findings/?state=all&open_on={timezone.localdate().isoformat()}" in links
    created_after = (timezone.localdate() - timedelta(days=30)).isoformat()
    assert f"/registries/credentials/?created_after={created_after}" in links
    assert "<script" not in page.split("<main", 1)[1]  # no chart library


def test_an_empty_estate_draws_empty_charts(signed_in: Client) -> None:
    page = signed_in.get(DASHBOARD).content.decode()
    assert "No open findings." in page
    assert "No open finding names an owner." in page


def test_developers_are_refused(client: Client, developer: User) -> None:
    client.force_login(developer)
    assert client.get(DASHBOARD).status_code == 403


# --- the API ---------------------------------------------------------------------------------------

SUMMARY = "/api/v1/findings/summary/"


def test_the_api_summary_holds_the_dashboards_numbers(signed_in: Client) -> None:
    now, today = timezone.now(), timezone.localdate()
    owner = factories.user(username="omar")
    factories.finding(
        kind="credential_stale",
        severity=Finding.Severity.MEDIUM,
        owner=owner,
        opened_at=now - timedelta(days=3),
    )
    factories.finding(
        kind="credential_stale", severity=Finding.Severity.HIGH, owner_label="ghost@old.example"
    )
    factories.finding(kind="credential_expired", severity=Finding.Severity.CRITICAL, owner=owner)
    factories.finding(kind="credential_stale", resolved_at=now)  # not open
    registry = factories.registry()
    factories.registry_credential(registry, created_at=now - timedelta(days=40))
    factories.registry_credential(registry, created_at=None)

    response = signed_in.get(SUMMARY)
    assert response.status_code == 200
    body = response.json()
    none: dict[str, int] = {"critical": 0, "high": 0, "medium": 0, "low": 0, "info": 0}
    assert body["by_kind"] == [
        {
            "kind": "credential_stale",
            "title": findings.KINDS["credential_stale"].title,
            "total": 2,
            "by_severity": none | {"high": 1, "medium": 1},
        },
        {
            "kind": "credential_expired",
            "title": findings.KINDS["credential_expired"].title,
            "total": 1,
            "by_severity": none | {"critical": 1},
        },
    ]
    trend = body["open_per_day"]
    assert len(trend) == hygiene_views.TREND_DAYS
    assert trend[-1] == {"date": today.isoformat(), "open": 3}
    assert [day["open"] for day in trend[-5:]] == [0, 1, 1, 1, 3]
    assert body["credential_ages"] == [
        {"label": "under 30 days", "count": 0, "min_days": 0, "max_days": 30},
        {"label": "30–90 days", "count": 1, "min_days": 30, "max_days": 90},
        {"label": "90–180 days", "count": 0, "min_days": 90, "max_days": 180},
        {"label": "180–365 days", "count": 0, "min_days": 180, "max_days": 365},
        {"label": "over a year", "count": 0, "min_days": 365, "max_days": None},
        {"label": "unknown", "count": 1, "min_days": None, "max_days": None},
    ]
    assert body["top_owners"] == [{"owner": "omar", "open": 2}, {"owner": "ghost@old.example", "open": 1}]


def test_the_api_summary_is_in_the_openapi_schema(signed_in: Client) -> None:
    schema = yaml.safe_load(signed_in.get("/api/schema/").content)
    response = schema["paths"][SUMMARY]["get"]["responses"]["200"]
    reference = response["content"]["application/json"]["schema"]["$ref"]
    summary = schema["components"]["schemas"][reference.rsplit("/", 1)[1]]
    assert set(summary["properties"]) == {"by_kind", "open_per_day", "credential_ages", "top_owners"}


# session, user, role; matrix; trend: before the window, opened, resolved; ages; owners; (page) notices
@pytest.mark.parametrize(("url", "expected"), [(DASHBOARD, 10), (SUMMARY, 9)])
def test_the_dashboard_and_its_api_cost_the_same_queries_however_many_rows(
    signed_in: Client, django_assert_num_queries: DjangoAssertNumQueries, url: str, expected: int
) -> None:
    with django_assert_num_queries(expected):
        signed_in.get(url)
    registry = factories.registry()
    for n in range(30):
        person = factories.user()
        factories.finding(kind="credential_stale", owner=person, opened_at=timezone.now() - timedelta(days=n))
        factories.registry_credential(registry, created_at=timezone.now() - timedelta(days=20 * n))
    with django_assert_num_queries(expected):
        signed_in.get(url)
