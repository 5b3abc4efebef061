"""Offboarding pages: find a person, see their plan (a dry run), start, confirm or cancel it, watch
the steps run, and the reviewer's report with its CSV.

Admins offboard; reviewers read the history, each offboarding and its report (they audit what was
done), but start, confirm and cancel nothing. Every change goes through registries/offboarding.py,
whose refusals come back as form errors or messages, never as a server error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import signed_in_user
from accounts.models import User
from accounts.permissions import role_required
from accounts.roles import Role
from portal.audit import AuditAction
from portal.models import AuditEvent
from portal.querystring import query_without
from registries import offboarding, offboarding_report
from registries.models import Offboarding, OffboardingStep
from registries.offboarding import OPEN_STATES, Action, Item, OffboardingRefused

PAGE_SIZE = 50
PEOPLE_SHOWN = 20  # search results; a longer list means the search should be narrower
POLL_SECONDS = 3
# How long a finished offboarding's page waits for the worker's verification before it stops asking.
VERIFICATION_WAIT = timedelta(minutes=10)

# The plan's actions in words; the steps store the bare value.
ACTION_LABELS: dict[str, str] = {
    Action.END_SESSIONS: "End their sessions",
    Action.REVOKE: "Revoke",
    Action.REMOVE_MEMBERSHIP: "Remove from group",
    Action.DISABLE: "Disable",
    Action.REASSIGN: "Re-assign",
    Action.REMOVE_ACCESS: "Remove access",
    Action.REVIEW: "Review",
}


def _action_label(action: str) -> str:
    return ACTION_LABELS.get(action, action)


def _evidence(evidence: dict[str, Any]) -> list[tuple[str, Any]]:
    """Evidence as (name, value) pairs to show, without the empty ones."""
    return [(name.replace("_", " "), value) for name, value in evidence.items() if value not in (None, "")]


def _htmx_target(request: HttpRequest) -> str | None:
    details = getattr(request, "htmx", None)
    return details.target if details else None


# --- Forms --------------------------------------------------------------------------------------


class HistoryFilter(forms.Form):
    state = forms.ChoiceField(choices=[("", "Any state"), *Offboarding.State.choices], required=False)


class StartForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=2000,
        help_text="Kept with the offboarding and in the audit trail: the reviewer reads it.",
    )
    reassign_to = forms.CharField(
        label="Re-assign to",
        required=False,
        max_length=150,
        help_text="Username of an active person who takes over what they created that automation still uses.",
    )

    def clean_reassign_to(self) -> User | None:
        username = self.cleaned_data["reassign_to"].strip()
        if not username:
            return None
        heir = User.objects.filter(username=username).first()
        if heir is None:
            raise ValidationError(f"nobody has the username {username!r}")
        return heir


# --- The start page: search and history -------------------------------------------------------------


@require_GET
@role_required(Role.REVIEWER)
def offboarding_index(request: HttpRequest) -> HttpResponse:
    """Admins search a person to offboard; admins and reviewers read the history."""
    may_start = signed_in_user(request).has_role(Role.ADMIN)
    search = request.GET.get("person", "").strip() if may_start else ""
    filters = HistoryFilter(request.GET)
    history = _history(filters.cleaned_data["state"] if filters.is_valid() else "")
    context = {
        "may_start": may_start,
        "search": search,
        "people": _find_people(search) if search else None,
        "people_shown": PEOPLE_SHOWN,
        "filters": filters,
        "page": Paginator(history, PAGE_SIZE).get_page(request.GET.get("page")),
        "query": query_without(request, "page"),
    }
    # htmx asks for one part alone: the search results as someone types, or the filtered history.
    partials = {
        "people-results": "registries/offboarding/_people.html",
        "offboarding-history": "registries/offboarding/_history.html",
    }
    template = partials.get(_htmx_target(request) or "", "registries/offboarding/index.html")
    return render(request, template, context)


def _find_people(text: str) -> list[User]:
    """People by username, name or e-mail, with whether an offboarding of theirs is still open."""
    matching = Q(username__icontains=text) | Q(display_name__icontains=text) | Q(email__icontains=text)
    for word in text.split():
        matching |= Q(first_name__icontains=word) | Q(last_name__icontains=word)
    open_offboarding = Offboarding.objects.filter(person=OuterRef("pk"), state__in=OPEN_STATES)
    people = User.objects.filter(matching).annotate(offboarding_open=Exists(open_offboarding))
    return list(people.order_by("username")[:PEOPLE_SHOWN])


def _history(state: str) -> QuerySet[Offboarding]:
    steps = OffboardingStep.State
    history = Offboarding.objects.select_related("person", "started_by").order_by("-created_at", "-pk")
    history = history.annotate(
        step_count=Count("steps"),
        done_count=Count("steps", filter=Q(steps__state=steps.DONE)),
        failed_count=Count("steps", filter=Q(steps__state=steps.FAILED)),
        manual_count=Count("steps", filter=Q(steps__state=steps.MANUAL)),
        present_count=Count(
            "steps", filter=Q(steps__verification=OffboardingStep.Verification.STILL_PRESENT)
        ),
    )
    return history.filter(state=state) if state else history


# --- The plan, and starting from it ------------------------------------------------------------------


@dataclass(frozen=True)
class PlanRow:
    item: Item
    action: str
    evidence: list[tuple[str, Any]]


@require_http_methods(["GET", "POST"])
@role_required(Role.REVIEWER)
def offboarding_plan(request: HttpRequest, user_id: int) -> HttpResponse:
    """Everything the person still holds and what offboarding would do (nothing changes), and for
    admins the form that records it as an offboarding to confirm. Reviewers read the plan, as the
    API lets them."""
    may_start = signed_in_user(request).has_role(Role.ADMIN)
    if request.method == "POST" and not may_start:
        raise PermissionDenied
    person = get_object_or_404(User, pk=user_id)
    form = StartForm(request.POST or None)
    refusal = ""
    if request.method == "POST" and form.is_valid():
        try:
            started = offboarding.start(
                person,
                actor=signed_in_user(request),
                reason=form.cleaned_data["reason"].strip(),
                reassign_to=form.cleaned_data["reassign_to"],
            )
        except OffboardingRefused as exc:
            refusal = str(exc)
        else:
            messages.success(
                request, f"Offboarding of {person} planned. Nothing has changed yet: confirm it."
            )
            return redirect("registries:offboarding", offboarding_id=started.pk)
    plan = offboarding.plan_for(person)
    if refusal:
        # The refusal for a missing heir belongs next to the field that supplies one.
        about_heir = bool(plan.reassigned) and form.cleaned_data.get("reassign_to") is None
        form.add_error("reassign_to" if about_heir else None, refusal)
    context = {
        "person": person,
        "plan": plan,
        "places": [
            (place, [PlanRow(item, _action_label(item.action), _evidence(item.evidence)) for item in items])
            for place, items in plan.by_place().items()
        ],
        "left_to_people": sum(not item.automated for item in plan.items),
        "form": form,
        "may_start": may_start,
        "open_offboarding": Offboarding.objects.filter(person=person, state__in=OPEN_STATES).first(),
    }
    return render(request, "registries/offboarding/plan.html", context)


# --- One offboarding: detail, live progress, confirm, cancel ---------------------------------------


@dataclass(frozen=True)
class StepRow:
    step: OffboardingStep
    action: str
    evidence: list[tuple[str, Any]]


def _get_offboarding(offboarding_id: int) -> Offboarding:
    # Every offboarding is visible to whoever may open these pages (reviewers and admins).
    related = Offboarding.objects.select_related("person", "started_by", "reassign_to")
    return get_object_or_404(related, pk=offboarding_id)


def _step_rows(found: Offboarding) -> list[StepRow]:
    return [
        StepRow(step, _action_label(step.action), _evidence(step.evidence))
        for step in found.steps.order_by("position")
    ]


def _verifying(found: Offboarding) -> bool:
    """Finished, and the worker is re-reading the registries now (it does right after the steps).
    A verification that never came (the worker died) stops the polling after a while."""
    return (
        found.state in (Offboarding.State.COMPLETED, Offboarding.State.INCOMPLETE)
        and found.verified_at is None
        and found.finished_at is not None
        and timezone.now() - found.finished_at < VERIFICATION_WAIT
    )


def _progress_context(found: Offboarding) -> dict[str, Any]:
    summary = offboarding_report.summary(found)
    states = OffboardingStep.State
    return {
        "offboarding": found,
        "summary": summary,
        "steps": _step_rows(found),
        # Steps left to a person never run; progress counts the ones the worker carries out.
        "automated": summary.steps - summary.by_state[states.MANUAL],
        "settled": summary.by_state[states.DONE] + summary.by_state[states.FAILED],
        "polling": found.state == Offboarding.State.RUNNING or _verifying(found),
        "poll_seconds": POLL_SECONDS,
    }


@require_GET
@role_required(Role.REVIEWER)
def offboarding_detail(request: HttpRequest, offboarding_id: int) -> HttpResponse:
    found = _get_offboarding(offboarding_id)
    context = _progress_context(found) | {
        "may_decide": signed_in_user(request).has_role(Role.ADMIN)
        and found.state == Offboarding.State.PLANNED,
    }
    return render(request, "registries/offboarding/detail.html", context)


@require_GET
@role_required(Role.REVIEWER)
def offboarding_progress(request: HttpRequest, offboarding_id: int) -> HttpResponse:
    """The steps fragment; htmx polls it while the offboarding runs and stops once it has finished."""
    return render(
        request, "registries/offboarding/_progress.html", _progress_context(_get_offboarding(offboarding_id))
    )


@require_POST
@role_required(Role.ADMIN)
def offboarding_confirm(request: HttpRequest, offboarding_id: int) -> HttpResponse:
    found = _get_offboarding(offboarding_id)
    try:
        offboarding.confirm(found, actor=signed_in_user(request))
    except OffboardingRefused as exc:
        messages.error(request, f"Not confirmed: {exc}.")
    else:
        messages.success(
            request, f"Confirmed: {found.person} can no longer use Customs; the registry steps are running."
        )
    return redirect("registries:offboarding", offboarding_id=found.pk)


@require_POST
@role_required(Role.ADMIN)
def offboarding_cancel(request: HttpRequest, offboarding_id: int) -> HttpResponse:
    found = _get_offboarding(offboarding_id)
    try:
        offboarding.cancel(found, actor=signed_in_user(request))
    except OffboardingRefused as exc:
        messages.error(request, f"Not cancelled: {exc}.")
    else:
        messages.success(request, f"Offboarding of {found.person} cancelled; nothing was changed.")
    return redirect("registries:offboarding", offboarding_id=found.pk)


# --- The reviewer's report ---------------------------------------------------------------------------


def audit_events(found: Offboarding) -> QuerySet[AuditEvent]:
    """The trail's offboarding events about this person while this offboarding was theirs.

    Events name the person, not the offboarding, so they are bounded in time: from its creation
    up to the creation of the person's next offboarding (only one is ever open at a time).
    """
    events = AuditEvent.objects.filter(
        target_type=User._meta.label_lower,
        target_id=str(found.person_id),
        action__startswith="offboarding.",
        at__gte=found.created_at,
    )
    following = (
        Offboarding.objects.filter(person=found.person_id, created_at__gt=found.created_at)
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    if following is not None:
        events = events.filter(at__lt=following)
    return events.order_by("sequence")


def _confirmed_by(found: Offboarding, events: list[AuditEvent]) -> str:
    for event in events:
        if event.action == AuditAction.OFFBOARDING_CONFIRMED and event.detail.get("offboarding") == found.pk:
            return event.actor_label
    return ""


@require_GET
@role_required(Role.REVIEWER)
def offboarding_report_page(request: HttpRequest, offboarding_id: int) -> HttpResponse:
    """What was found, done and failed, by whom and when, and what re-reading the registries showed."""
    found = _get_offboarding(offboarding_id)
    summary = offboarding_report.summary(found)
    events = list(audit_events(found))
    steps = _step_rows(found)
    troubled = {OffboardingStep.Verification.STILL_PRESENT, OffboardingStep.Verification.UNVERIFIABLE}
    context = {
        "offboarding": found,
        "summary": summary,
        "by_state": [(label, summary.by_state[value]) for value, label in OffboardingStep.State.choices],
        "by_verification": [
            (label, summary.by_verification[value]) for value, label in OffboardingStep.Verification.choices
        ],
        "steps": steps,
        "problems": [
            row
            for row in steps
            if row.step.state == OffboardingStep.State.FAILED or row.step.verification in troubled
        ],
        "events": events,
        "confirmed_by": _confirmed_by(found, events),
    }
    return render(request, "registries/offboarding/report.html", context)


@require_GET
@role_required(Role.REVIEWER)
def offboarding_report_csv(request: HttpRequest, offboarding_id: int) -> StreamingHttpResponse:
    return offboarding_report.csv_response(_get_offboarding(offboarding_id))
