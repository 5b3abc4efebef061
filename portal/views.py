"""Pages that cut across apps: the dashboard, findings and the audit trail."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import datetime, time, timedelta

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, QuerySet
from django.db.models.functions import TruncDate
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from accounts.access import signed_in_user
from accounts.permissions import role_required
from accounts.roles import Role
from portal import findings
from portal.api.serializers import AuditEventSerializer
from portal.audit import AuditAction
from portal.forms import AuditSearchForm, SuppressForm
from portal.models import AuditEvent, Finding
from portal.querystring import query_without

PAGE_SIZE = 50


@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    context: dict[str, object] = {}
    if signed_in_user(request).has_role(Role.REVIEWER):
        context["severity_bars"] = _severity_bars()
        context["activity"] = _audit_activity(days=14)
        context["recent_events"] = AuditEvent.objects.all()[:8]
        since = timezone.now() - timedelta(days=30)
        context["break_glass_sign_ins"] = AuditEvent.objects.filter(
            action=AuditAction.SIGNED_IN, detail__break_glass=True, at__gte=since
        )[:10]
    return render(request, "portal/dashboard.html", context)


def _severity_bars() -> list[dict[str, object]]:
    counts = dict(Finding.objects.open().values_list("severity").annotate(n=Count("id")).order_by())
    peak = max(counts.values(), default=0) or 1
    return [
        {
            "severity": value,
            "label": label,
            "count": counts.get(value, 0),
            "percent": 100 * counts.get(value, 0) // peak,
        }
        for value, label in reversed(Finding.Severity.choices)
    ]


def _audit_activity(*, days: int) -> list[dict[str, object]]:
    start = timezone.localdate() - timedelta(days=days - 1)
    rows = (
        AuditEvent.objects.filter(at__date__gte=start)
        .annotate(day=TruncDate("at"))
        .values("day")
        .annotate(n=Count("id"))
        .order_by()
    )
    per_day = {row["day"]: row["n"] for row in rows}
    peak = max(per_day.values(), default=0) or 1
    series = [start + timedelta(days=offset) for offset in range(days)]
    return [
        {"day": day, "count": per_day.get(day, 0), "height": 100 * per_day.get(day, 0) // peak}
        for day in series
    ]


@require_GET
@role_required(Role.REVIEWER)
def finding_list(request: HttpRequest) -> HttpResponse:
    state = request.GET.get("state", "open")
    by_state: dict[str, QuerySet[Finding]] = {
        "open": Finding.objects.open(),
        "suppressed": Finding.objects.suppressed(),
        "resolved": Finding.objects.exclude(resolved_at=None),
        "all": Finding.objects.all(),
    }
    queryset = by_state.get(state, by_state["open"])
    if severity := request.GET.get("severity"):
        queryset = queryset.filter(severity=severity)
    page = Paginator(queryset.select_related("suppressed_by"), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "portal/findings.html",
        {
            "page": page,
            "query": query_without(request, "page"),
            "state": state,
            "severity": severity,
            "severities": Finding.Severity.choices,
            "kinds": findings.KINDS,
        },
    )


@require_http_methods(["GET", "POST"])
@role_required(Role.REVIEWER)
def finding_detail(request: HttpRequest, finding_id: int) -> HttpResponse:
    finding = get_object_or_404(Finding.objects.select_related("suppressed_by"), pk=finding_id)
    form = SuppressForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        until = timezone.make_aware(datetime.combine(form.cleaned_data["until"], time.min))
        try:
            findings.suppress(
                finding, actor=request.user, until=until, justification=form.cleaned_data["justification"]
            )
        except findings.SuppressionError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "Finding suppressed.")
            return redirect("portal:finding_detail", finding_id=finding.pk)
    kind = findings.KINDS.get(finding.kind)
    return render(request, "portal/finding_detail.html", {"finding": finding, "form": form, "kind": kind})


@require_http_methods(["POST"])
@role_required(Role.REVIEWER)
def finding_unsuppress(request: HttpRequest, finding_id: int) -> HttpResponse:
    finding = get_object_or_404(Finding, pk=finding_id)
    findings.unsuppress(finding, actor=request.user)
    messages.success(request, "Suppression ended; the finding is open again.")
    return redirect("portal:finding_detail", finding_id=finding.pk)


def _searched_events(request: HttpRequest) -> tuple[AuditSearchForm, QuerySet[AuditEvent]]:
    form = AuditSearchForm(request.GET or None)
    events = AuditEvent.objects.all()
    if not form.is_bound:
        return form, events
    if not form.is_valid():
        # Nothing rather than the whole trail: an export of one person's events must not hand over everyone's.
        return form, events.none()
    data = form.cleaned_data
    events = events.matching(actor=data["actor"], action=data["action"], target=data["target"])
    if data["since"]:
        events = events.filter(at__gte=timezone.make_aware(datetime.combine(data["since"], time.min)))
    if data["until"]:
        end = timezone.make_aware(datetime.combine(data["until"] + timedelta(days=1), time.min))
        events = events.filter(at__lt=end)
    return form, events


@require_GET
@role_required(Role.REVIEWER)
def audit_list(request: HttpRequest) -> HttpResponse:
    form, events = _searched_events(request)
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"form": form, "page": page, "query": query_without(request, "page")}
    # htmx asks for the results alone while someone types in the search form.
    template = "portal/_audit_results.html" if getattr(request, "htmx", False) else "portal/audit.html"
    return render(request, template, context)


CSV_COLUMNS = [
    "sequence",
    "at",
    "actor_label",
    "action",
    "target_type",
    "target_id",
    "target_label",
    "detail",
    "request_id",
    "prev_hash",
    "hash",
]


@require_GET
@role_required(Role.REVIEWER)
def audit_export(request: HttpRequest, fmt: str) -> StreamingHttpResponse:
    """The searched events as CSV or JSON lines, streamed so a long trail never sits in memory."""
    _, events = _searched_events(request)
    rows = events.order_by("sequence").iterator(chunk_size=1000)
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    if fmt == "csv":
        response = StreamingHttpResponse(_csv_lines(rows), content_type="text/csv; charset=utf-8")
    else:
        response = StreamingHttpResponse(_json_lines(rows), content_type="application/x-ndjson")
    response["Content-Disposition"] = f'attachment; filename="customs-audit-{stamp}.{fmt}"'
    return response


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_lines(events: Iterator[AuditEvent]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for event in events:
        row = AuditEventSerializer(event).data
        row["detail"] = json.dumps(row["detail"], sort_keys=True)
        yield writer.writerow([_inert(row[column]) for column in CSV_COLUMNS])


def _inert(value: object) -> object:
    # Display names and labels come from outside; a leading = + - @ would run as a spreadsheet formula.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _json_lines(events: Iterator[AuditEvent]) -> Iterator[str]:
    for event in events:
        yield json.dumps(AuditEventSerializer(event).data, sort_keys=True) + "\n"
