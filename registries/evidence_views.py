"""The evidence page: a period, and one download holding what an auditor asks for (registries/evidence.py)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django import forms
from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from accounts.access import signed_in_user
from accounts.permissions import role_required
from accounts.roles import Role
from portal.errors import RequestRejected
from registries import evidence

# The date input takes and gives ISO dates whatever the locale: the value must be written that way.
DATE = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")


class PeriodForm(forms.Form):
    """Shows the period and its errors; the checking itself is evidence.period_from, as for the API."""

    start = forms.DateField(widget=DATE, help_text="Included.")
    end = forms.DateField(
        widget=DATE,
        help_text=f"Not included: the period runs up to this day. At most {evidence.MAX_DAYS} days.",
    )


def _last_month() -> dict[str, date]:
    """The usual question: the last whole calendar month."""
    this_month = timezone.localdate().replace(day=1)
    return {"start": (this_month - timedelta(days=1)).replace(day=1), "end": this_month}


def _page(request: HttpRequest, form: PeriodForm, *, problem: str = "", status: int = 200) -> HttpResponse:
    context: dict[str, Any] = {"form": form, "problem": problem, "max_days": evidence.MAX_DAYS}
    return render(request, "registries/evidence.html", context, status=status)


@require_GET
@role_required(Role.REVIEWER)
def evidence_page(request: HttpRequest) -> HttpResponse:
    return _page(request, PeriodForm(initial=_last_month()))


@require_GET
@role_required(Role.REVIEWER)
def evidence_bundle(request: HttpRequest) -> HttpResponseBase:
    """The zip for ?start=&end=; a period that cannot be exported shows the page again, with why, as a 400."""
    try:
        period = evidence.period_from(request.GET.get("start"), request.GET.get("end"))
    except RequestRejected as exc:
        return _page(request, PeriodForm(request.GET), problem=str(exc), status=400)
    bundle = evidence.export_bundle(period, actor=signed_in_user(request), via="page")
    return bundle_response(bundle, period)


def bundle_response(bundle: Any, period: evidence.Period) -> FileResponse:
    """The zip, read from its temporary file in blocks and closed once sent."""
    response = FileResponse(
        bundle, as_attachment=True, filename=evidence.filename(period), content_type="application/zip"
    )
    # Names of people and of their access: no shared cache keeps a copy.
    response["Cache-Control"] = "no-store"
    return response
