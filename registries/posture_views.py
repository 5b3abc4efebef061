"""Posture pages: every registry's score over time and what fails where, and one registry's checks.

Reviewers and admins only, like the findings they link to. Each failing fact links to its evidence
(the vendor's API resource or console page) and to its finding; the scores come from the daily
snapshots registries/posture.py records. Query counts do not grow with registries, facts or days.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta

from django.db.models import Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from accounts.access import signed_in_user
from accounts.permissions import role_required
from accounts.roles import Role
from portal import charts
from portal.findings import finding_key
from portal.models import Finding
from registries import posture, sync
from registries.access import get_registry_for_user
from registries.connectors.base import PostureCheck, PostureState, can_read_posture
from registries.models import PostureFact, PostureSnapshot, Registry, SyncRun

TREND_DAYS = 90
CHARTED = 12  # registries charted one by one on the overview: the lowest scores
FAILING_SHOWN = 200  # failing facts listed on the overview; the findings list has them all


@dataclass(frozen=True)
class FactRow:
    fact: PostureFact
    title: str
    severity: str
    finding_url: str  # the open finding, or the findings list the fact belongs to; "" for none


@dataclass(frozen=True)
class CheckRow:
    check: str
    title: str
    severity: str
    tally: posture.Tally
    findings_url: str


@dataclass(frozen=True)
class RegistryRow:
    registry: Registry
    score: int | None
    month_ago: int | None
    failing: int
    url: str


# --- score series ---------------------------------------------------------------------------------


def _series(
    snapshots: list[tuple[int, date, int | None]], first: date, today: date
) -> dict[int, list[tuple[date, int]]]:
    """Registry → (day, score) for each day from its first known score in the window to today; a day
    without a snapshot (no sync, no daily evaluation) carries the last score forward."""
    known: dict[int, dict[date, int | None]] = defaultdict(dict)
    for registry_id, day, value in snapshots:
        known[registry_id][day] = value
    series: dict[int, list[tuple[date, int]]] = {}
    for registry_id, days in known.items():
        points, last = [], None
        for offset in range((today - first).days + 1):
            day = first + timedelta(days=offset)
            if days.get(day) is not None:
                last = days[day]
            if last is not None:
                points.append((day, last))
        series[registry_id] = points
    return series


def _estate(series: dict[int, list[tuple[date, int]]]) -> list[tuple[date, int]]:
    """Each day's mean over the registries with a score by then."""
    by_day: dict[date, list[int]] = defaultdict(list)
    for points in series.values():
        for day, value in points:
            by_day[day].append(value)
    return [(day, round(sum(values) / len(values))) for day, values in sorted(by_day.items())]


def _chart(points: list[tuple[date, int]], caption: str, url: str = "") -> charts.LineChart:
    data = [
        charts.Datum(label=day.strftime("%d %b"), value=value, url=url, title=f"{day.isoformat()}: {value}")
        for day, value in points
    ]
    return charts.line_chart(data, caption=caption, label_heading="Day", value_heading="Score (0-100)")


def _snapshots(first: date, registry: Registry | None = None) -> list[tuple[int, date, int | None]]:
    rows = PostureSnapshot.objects.filter(day__gte=first)
    if registry is not None:
        rows = rows.filter(registry=registry)
    return list(rows.order_by("day").values_list("registry_id", "day", "score"))


# --- links to findings ----------------------------------------------------------------------------


def _finding_key(fact: PostureFact) -> str:
    """The key of the finding a failing fact opens; "" for facts that open none of posture's."""
    kind = posture.KINDS.get(PostureCheck(fact.check_name))
    if kind is None or fact.state != PostureState.FAILING:
        return ""
    return finding_key(kind, posture.finding_subject_key(fact.registry_id, fact.subject))


def _open_findings(facts: list[PostureFact]) -> dict[str, int]:
    """Finding key → id of the unresolved findings of these facts (one query), not of every one."""
    keys = {key for fact in facts if (key := _finding_key(fact))}
    return dict(Finding.objects.unresolved().filter(key__in=keys).values_list("key", "pk"))


def _fact_row(fact: PostureFact, open_findings: dict[str, int]) -> FactRow:
    shown = posture.kind_of(fact.check_name)
    url = ""
    if fact.state == PostureState.FAILING:
        # Posture's own open finding for the fact, else the list of its kind (hygiene's, one finding
        # per credential, for the checks hygiene judges: _finding_key is "" for those).
        found = open_findings.get(_finding_key(fact))
        url = (
            reverse("portal:finding_detail", args=[found])
            if found
            else posture.findings_url(shown.slug, fact.registry_id)
        )
    return FactRow(fact, shown.title, shown.severity, url)


# --- the pages ------------------------------------------------------------------------------------


@require_GET
@role_required(Role.REVIEWER)
def posture_overview(request: HttpRequest) -> HttpResponse:
    today = timezone.localdate()
    first = today - timedelta(days=TREND_DAYS - 1)
    registries = {r.pk: r for r in Registry.objects.order_by("name")}
    series = _series(_snapshots(first), first, today)
    failing_counts: dict[int, int] = dict(
        PostureFact.objects.filter(state=PostureState.FAILING)
        .values_list("registry_id")
        .annotate(n=Sum("count"))
        .order_by()
    )
    rows = [
        _registry_row(r, series.get(pk, []), failing_counts.get(pk, 0), today) for pk, r in registries.items()
    ]
    worst = sorted(
        (row for row in rows if row.score is not None), key=lambda row: (row.score, row.registry.name)
    )
    failing = list(
        PostureFact.objects.filter(state=PostureState.FAILING)
        .select_related("registry")
        .order_by("registry__name", "check_name", "subject")[:FAILING_SHOWN]
    )
    open_findings = _open_findings(failing)
    estate = _estate(series)
    context = {
        "rows": rows,
        "estate": _chart(estate, f"Mean posture score of every registry, last {TREND_DAYS} days")
        if estate
        else None,
        "charts": [
            (row, _chart(series[row.registry.pk], f"{row.registry.name}: posture score", row.url))
            for row in worst[:CHARTED]
        ],
        "charted": CHARTED,
        "failing": [_fact_row(fact, open_findings) for fact in failing],
        "failing_total": sum(failing_counts.values()),
        "failing_shown": FAILING_SHOWN,
        "production": [p.text for p in posture.production_patterns()],
    }
    return render(request, "registries/posture/overview.html", context)


def _registry_row(
    registry: Registry, points: list[tuple[date, int]], failing: int, today: date
) -> RegistryRow:
    by_day = dict(points)
    month_ago = by_day.get(today - timedelta(days=30))
    url = reverse("registries:registry_posture", args=[registry.pk])
    return RegistryRow(registry, by_day.get(today), month_ago, failing, url)


@require_GET
@role_required(Role.REVIEWER)
def registry_posture(request: HttpRequest, registry_id: int) -> HttpResponse:
    registry = get_registry_for_user(signed_in_user(request), registry_id)
    today = timezone.localdate()
    first = today - timedelta(days=TREND_DAYS - 1)
    facts = list(registry.posture_facts.order_by("check_name", "state", "subject", "pk"))
    by_check = posture.tallies(facts)
    points = _series(_snapshots(first, registry), first, today).get(registry.pk, [])
    order = {check.value: index for index, check in enumerate(posture.ORDER)}
    shown = sorted(
        (f for f in facts if f.state != PostureState.OK),
        key=lambda f: (order[f.check_name], f.state != PostureState.FAILING, f.subject),
    )
    open_findings = _open_findings(shown)
    latest_run = SyncRun.objects.filter(registry=registry, replica=None).order_by("-started_at").first()
    context = {
        "registry": registry,
        "score": posture.score(by_check),
        "checks": [_check_row(registry, check, tally) for check, tally in by_check.items()],
        "facts": [_fact_row(fact, open_findings) for fact in shown],
        "chart": _chart(points, f"{registry.name}: posture score, last {TREND_DAYS} days")
        if points
        else None,
        "observed_at": max(
            (f.observed_at for f in facts if f.source == PostureFact.Source.REGISTRY), default=None
        ),
        "reads_posture": can_read_posture(sync.connector_class_for(registry)),
        "not_read": (latest_run.not_read or {}).get("posture", "") if latest_run else "",
        "production": [p.text for p in posture.production_patterns()],
    }
    return render(request, "registries/posture/registry.html", context)


def _check_row(registry: Registry, check: str, tally: posture.Tally) -> CheckRow:
    kind = posture.kind_of(check)
    return CheckRow(check, kind.title, kind.severity, tally, posture.findings_url(kind.slug, registry.pk))
