"""The findings dashboard: where open findings are, how their number moves, how old credentials are,
and whose they are. Every number links to the list behind it.

It lives in `registries` because the credential-age histogram reads `Credential`, which `portal`
must not import; everything else here reads only `portal.models.Finding`. For the same reason
its JSON twin, /api/v1/findings/summary/, is here and routed by registries/api/urls.py.
Reviewers and admins only, like the findings list.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from urllib.parse import urlencode

from django.db.models import CharField, Count, Q
from django.db.models.functions import Coalesce, TruncDate
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import role_required
from accounts.roles import Role
from portal import charts, findings, notify
from portal.api.serializers import FindingSummarySerializer
from portal.models import Finding
from registries import hygiene  # noqa: F401  (registers the credential finding kinds, for their titles)
from registries.models import Credential
from registries.policy import lineage  # noqa: F401  (registers the base-image finding kinds)

TREND_DAYS = 90
TOP_OWNERS = 10
# Credential ages, in days: [from, to); None is open-ended. Bars in this order, "unknown" last.
AGE_BUCKETS: list[tuple[str, int, int | None]] = [
    ("under 30 days", 0, 30),
    ("30–90 days", 30, 90),
    ("90–180 days", 90, 180),
    ("180–365 days", 180, 365),
    ("over a year", 365, None),
]
SEVERITIES = list(reversed(Finding.Severity.choices))  # critical first


def _findings_url(**params: str) -> str:
    return f"{reverse('portal:findings')}?{urlencode(params)}"


def _start_of(day: date) -> datetime:
    # The same day boundaries as the list filters (open_on, created_after/created_before).
    return timezone.make_aware(datetime.combine(day, time.min))


# --- counts by kind and severity -------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    count: int
    url: str


@dataclass(frozen=True)
class KindRow:
    kind: str
    title: str
    cells: list[Cell]  # one per severity, in SEVERITIES order
    total: Cell


def kind_severity_counts() -> list[KindRow]:
    """Open findings per kind and severity, the kinds with most first; each count links to its list."""
    counts: dict[str, dict[str, int]] = {}
    for kind, severity, n in (
        Finding.objects.open().values_list("kind", "severity").annotate(n=Count("pk")).order_by()
    ):
        counts.setdefault(kind, {})[severity] = n
    rows = []
    for kind, by_severity in counts.items():
        known = findings.KINDS.get(kind)
        cells = [
            Cell(by_severity.get(sev, 0), _findings_url(state="open", kind=kind, severity=sev))
            for sev, _ in SEVERITIES
        ]
        total = Cell(sum(by_severity.values()), _findings_url(state="open", kind=kind))
        rows.append(KindRow(kind, known.title if known else kind, cells, total))
    return sorted(rows, key=lambda row: (-row.total.count, row.title))


# --- open findings per day -------------------------------------------------------------------------


def open_per_day(*, today: date, days: int = TREND_DAYS) -> list[tuple[date, int]]:
    """How many findings were open at the end of each of the last `days` days, oldest first.

    Three aggregate queries (open before the window, opened per day, resolved per day) and a running
    sum, so the cost does not grow with the number of findings. It is an approximation built from
    what a finding keeps, its current episode (opened_at until resolved_at):
    - earlier episodes of a finding that resolved and came back are lost: it counts only from its
      latest opened_at (first_seen says when it was first seen, not when it was resolved in between);
    - suppression has no history, so a finding counts as open while it was suppressed;
    - deleted findings are gone from every day.
    The list's `open_on` filter applies the same rule, so each day's link lists exactly its count.
    """
    first = today - timedelta(days=days - 1)
    start = _start_of(first)
    running = Finding.objects.filter(opened_at__lt=start).exclude(resolved_at__lt=start).count()
    opened = _per_day("opened_at", start)
    resolved = _per_day("resolved_at", start)
    series = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        running += opened.get(day, 0) - resolved.get(day, 0)
        series.append((day, running))
    return series


def _per_day(field: str, start: datetime) -> dict[date, int]:
    rows = (
        Finding.objects.filter(**{f"{field}__gte": start})
        .annotate(day=TruncDate(field))
        .values_list("day")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return dict(rows)


def trend_chart(today: date) -> charts.LineChart:
    data = [
        charts.Datum(
            label=day.strftime("%d %b"),
            value=count,
            url=_findings_url(state="all", open_on=day.isoformat()),
            title=f"{day.isoformat()}: {count} open",
        )
        for day, count in open_per_day(today=today)
    ]
    return charts.line_chart(
        data,
        caption=f"Open findings at the end of each day, last {TREND_DAYS} days",
        label_heading="Day",
        value_heading="Open findings",
    )


# --- credential ages -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgeCount:
    label: str
    count: int
    min_days: int | None  # both None: the creation date is unknown
    max_days: int | None  # None: open-ended
    created_after: date | None  # the credentials list's filters selecting exactly these
    created_before: date | None


def age_counts(today: date) -> list[AgeCount]:
    """Credentials still held, by age since creation, "unknown" last; one query."""
    spans = [_age_span(today, low, high) for _, low, high in AGE_BUCKETS]
    counts = Credential.objects.filter(gone_at=None).aggregate(
        unknown=Count("pk", filter=Q(created_at=None)),
        **{f"bucket{i}": Count("pk", filter=_created_in(*span)) for i, span in enumerate(spans)},
    )
    rows = [
        AgeCount(label, counts[f"bucket{i}"], low, high, *span)
        for i, ((label, low, high), span) in enumerate(zip(AGE_BUCKETS, spans, strict=True))
    ]
    rows.append(AgeCount("unknown", counts["unknown"], None, None, None, None))
    return rows


def credential_ages(today: date) -> list[charts.Datum]:
    """The histogram's bars; each links to the credentials list holding exactly its count."""
    return [_age_bar(row) for row in age_counts(today)]


def _age_bar(row: AgeCount) -> charts.Datum:
    credentials = reverse("registries:credentials")
    if row.min_days is None:
        title = f"{row.count} credentials without a known creation date"
        return charts.Datum(row.label, row.count, f"{credentials}?created=unknown", title)
    bounds = {"created_after": row.created_after, "created_before": row.created_before}
    query = urlencode({name: day.isoformat() for name, day in bounds.items() if day})
    title = f"{row.count} credentials created {row.label} ago"
    return charts.Datum(row.label, row.count, f"{credentials}?{query}", title)


def _age_span(today: date, low: int, high: int | None) -> tuple[date | None, date | None]:
    """Created on or after the first day and before the second: the list's created_after/created_before."""
    return (today - timedelta(days=high) if high else None, today - timedelta(days=low) if low else None)


def _created_in(after: date | None, before: date | None) -> Q:
    span = Q(created_at__isnull=False)
    if after:
        span &= Q(created_at__gte=_start_of(after))
    if before:
        span &= Q(created_at__lt=_start_of(before))
    return span


def age_chart(today: date) -> charts.BarChart:
    return charts.bar_chart(
        credential_ages(today),
        caption="Credentials still held, by age since creation",
        label_heading="Age",
        value_heading="Credentials",
    )


# --- owners ----------------------------------------------------------------------------------------


def top_owners(limit: int = TOP_OWNERS) -> list[tuple[str, int]]:
    """The owners with most open findings: a linked person by username, else the registry's name."""
    who = Coalesce("owner__username", "owner_label", output_field=CharField())
    rows = (
        Finding.objects.open()
        .annotate(who=who)
        .exclude(who="")
        .values_list("who")
        .annotate(n=Count("pk"))
        .order_by("-n", "who")[:limit]
    )
    return [(name, n) for name, n in rows]


def owners_chart() -> charts.BarChart:
    data = [
        charts.Datum(name, n, _findings_url(state="open", owner=name), f"{name}: {n} open findings")
        for name, n in top_owners()
    ]
    return charts.bar_chart(
        data,
        caption=f"Top {TOP_OWNERS} owners with open findings",
        label_heading="Owner",
        value_heading="Open findings",
        horizontal=True,
        height=max(80, 26 * len(data) + 12),
    )


@require_GET
@role_required(Role.REVIEWER)
def findings_dashboard(request: HttpRequest) -> HttpResponse:
    today = timezone.localdate()
    context = {
        "severities": SEVERITIES,
        "kinds": kind_severity_counts(),
        "trend": trend_chart(today),
        "ages": age_chart(today),
        "owners": owners_chart(),
        "notices": notify.recent_notices(10),
    }
    return render(request, "registries/findings_dashboard.html", context)


# --- the same numbers for API clients -----------------------------------------------------------------


def summary(today: date) -> dict[str, object]:
    """Every panel's numbers, without the links: what GET /api/v1/findings/summary/ returns."""
    severities = [severity for severity, _ in SEVERITIES]
    return {
        "by_kind": [
            {
                "kind": row.kind,
                "title": row.title,
                "total": row.total.count,
                "by_severity": {sev: cell.count for sev, cell in zip(severities, row.cells, strict=True)},
            }
            for row in kind_severity_counts()
        ],
        "open_per_day": [{"date": day, "open": count} for day, count in open_per_day(today=today)],
        "credential_ages": age_counts(today),
        "top_owners": [{"owner": name, "open": count} for name, count in top_owners()],
    }


class FindingSummaryView(APIView):
    """The findings dashboard's numbers: open findings by kind and severity, open findings per day,
    credentials by age and the owners with most open findings. Reviewers and admins, as the page."""

    read_role = Role.REVIEWER

    @extend_schema(responses=FindingSummarySerializer)
    def get(self, request: Request) -> Response:
        return Response(FindingSummarySerializer(summary(timezone.localdate())).data)
