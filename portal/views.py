"""Pages that cut across apps: the dashboard, findings and the audit trail."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, QuerySet
from django.db.models.functions import TruncDate
from django.http import HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from accounts.access import signed_in_user
from accounts.permissions import role_required
from accounts.roles import Role
from portal import exports, findings
from portal.api.filters import FINDING_STATES, FindingFilter, chosen_findings
from portal.api.serializers import AuditEventSerializer, audit_json_line
from portal.audit import AuditAction
from portal.errors import RequestRejected
from portal.forms import AssignForm, AuditSearchForm, BulkFindingsForm, SuppressForm, start_of
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


PAGE_STATES = {value for value, _ in FINDING_STATES}
BULK_DONE = {
    "suppress": "Suppressed",
    "unsuppress": "Ended the suppression of",
    "assign": "Assigned",
    "unassign": "Unassigned",
}


def _page_filters(params: QueryDict) -> QueryDict:
    """The list's filters as the page applies them: open findings unless another state is chosen."""
    data = params.copy()
    data.pop("page", None)
    if data.get("state") not in PAGE_STATES:
        data["state"] = "open"
    return data


@require_http_methods(["GET", "POST"])
@role_required(Role.REVIEWER)
def finding_list(request: HttpRequest) -> HttpResponse:
    """The filtered findings; a POST applies one action to the ticked rows or to all that match."""
    params = _page_filters(request.GET)
    bulk = BulkFindingsForm(request.POST or None, auto_id="bulk_%s")
    if request.method == "POST" and bulk.is_valid():
        try:
            result = _apply_bulk(request, bulk.cleaned_data, params)
        except RequestRejected as exc:
            bulk.add_error(None, str(exc))
        else:
            action = bulk.cleaned_data["action"]
            messages.success(request, f"{BULK_DONE[action]} {result.changed} of {result.chosen} findings.")
            return redirect(f"{reverse('portal:findings')}?{params.urlencode()}")
    return _finding_list_page(request, params, bulk)


def _apply_bulk(request: HttpRequest, data: dict[str, Any], params: QueryDict) -> findings.BulkResult:
    if data["choice"] == "matching":
        chosen, expected = chosen_findings(filters=params), data["matching"]
    else:
        chosen, expected = chosen_findings(ids=data["ids"]), len(set(data["ids"]))
    return findings.bulk_change(
        data["action"],
        chosen,
        actor=request.user,
        expected=expected,
        until=start_of(data["until"]) if data["until"] else None,
        justification=data["justification"],
        assignee=data["assignee"] if data["action"] == "assign" else None,
    )


def _finding_list_page(request: HttpRequest, params: QueryDict, bulk: BulkFindingsForm) -> HttpResponse:
    filters = FindingFilter(
        params, queryset=Finding.objects.select_related("suppressed_by", "owner", "assignee")
    )
    # Invalid filters list nothing rather than everything: "all matching" must never mean more than shown.
    chosen = filters.qs if filters.is_valid() else Finding.objects.none()
    page = Paginator(chosen, PAGE_SIZE).get_page(request.GET.get("page"))
    query = params.urlencode()
    context = {
        "page": page,
        "rows": [(finding, findings.KINDS.get(finding.kind)) for finding in page.object_list],
        "filters": filters,
        "bulk": bulk,
        "query": query,
        "selected": set(request.POST.getlist("ids")),
        "export_url": f"{reverse('api:finding-export')}?{query}",
    }
    return render(request, "portal/findings.html", context)


def _finding_page(
    request: HttpRequest,
    finding: Finding,
    *,
    form: SuppressForm | None = None,
    assign_form: AssignForm | None = None,
) -> HttpResponse:
    assignee = finding.assignee.get_username() if finding.assignee else ""
    context = {
        "finding": finding,
        "form": form or SuppressForm(),
        "assign_form": assign_form or AssignForm(initial={"assignee": assignee}),
        "kind": findings.KINDS.get(finding.kind),
        # A new episode starts when a resolved finding comes back; at creation both are "now".
        "reopened": finding.opened_at - finding.first_seen > timedelta(seconds=1),
    }
    return render(request, "portal/finding_detail.html", context)


def _get_finding(finding_id: int) -> Finding:
    return get_object_or_404(
        Finding.objects.select_related("suppressed_by", "owner", "assignee"), pk=finding_id
    )


@require_http_methods(["GET", "POST"])
@role_required(Role.REVIEWER)
def finding_detail(request: HttpRequest, finding_id: int) -> HttpResponse:
    finding = _get_finding(finding_id)
    form = SuppressForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            findings.suppress(
                finding,
                actor=request.user,
                until=start_of(form.cleaned_data["until"]),
                justification=form.cleaned_data["justification"],
            )
        except findings.SuppressionError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "Finding suppressed.")
            return redirect("portal:finding_detail", finding_id=finding.pk)
    return _finding_page(request, finding, form=form)


@require_http_methods(["POST"])
@role_required(Role.REVIEWER)
def finding_unsuppress(request: HttpRequest, finding_id: int) -> HttpResponse:
    finding = get_object_or_404(Finding, pk=finding_id)
    findings.unsuppress(finding, actor=request.user)
    messages.success(request, "Suppression ended; the finding is open again.")
    return redirect("portal:finding_detail", finding_id=finding.pk)


@require_http_methods(["POST"])
@role_required(Role.REVIEWER)
def finding_assign(request: HttpRequest, finding_id: int) -> HttpResponse:
    finding = _get_finding(finding_id)
    form = AssignForm(request.POST)
    if not form.is_valid():
        return _finding_page(request, finding, assign_form=form)
    assignee = form.cleaned_data["assignee"]
    if findings.assign(finding, request.user, assignee):
        messages.success(request, f"Assigned to {assignee}." if assignee else "Unassigned.")
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


def _csv_lines(events: Iterator[AuditEvent]) -> Iterator[str]:
    return exports.csv_lines(CSV_COLUMNS, (_audit_row(event) for event in events))


def _audit_row(event: AuditEvent) -> list[object]:
    row = AuditEventSerializer(event).data
    row["detail"] = json.dumps(row["detail"], sort_keys=True)
    return [row[column] for column in CSV_COLUMNS]


def _json_lines(events: Iterator[AuditEvent]) -> Iterator[str]:
    return map(audit_json_line, events)
