"""Access review pages: the campaigns, starting one, a campaign's items with filters and bulk
decisions, "my reviews", closing (with its plan shown first) and the report as HTML, CSV and PDF.

Reviewers and admins see every campaign and start them. Anyone may be asked to review items (a
group's owner, a manager) and sees those campaigns and items only; others get 404. Closing and
applying is for admins and the campaign's owner. Every change goes through registries/reviews/,
whose refusals come back as messages or form errors.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import django_filters
from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import signed_in_user
from accounts.models import User
from accounts.permissions import role_required
from accounts.roles import Role
from portal import exports, pdf
from portal.models import AuditEvent
from portal.querystring import query_without
from registries import reviews
from registries.models import (
    AccessReviewCampaign,
    AccessReviewItem,
    AccessReviewItemQuerySet,
    AccessRule,
    Registry,
)
from registries.patterns import MAX_LENGTH, InvalidPattern, compile_pattern

Campaign = AccessReviewCampaign
Item = AccessReviewItem
PAGE_SIZE = 50
MINE_SHOWN = 100  # items per campaign on "my reviews"; the campaign's page lists the rest
ACTION_CHOICES = [(action, action) for action in AccessRule.ACTIONS]
DATETIME_INPUT = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")


# --- Fetching ------------------------------------------------------------------------------------------


def _campaign_for(user: User, campaign_id: int, *, manage: bool = False) -> Campaign:
    """404 when they cannot see it; 403 when they can but may not open, close or apply it."""
    visible = Campaign.objects.visible_to(user).select_related("owner", "closed_by")
    campaign = get_object_or_404(visible, pk=campaign_id)
    if manage and not reviews.may_manage(user, campaign):
        raise PermissionDenied
    return campaign


def _visible_items(user: User, campaign: Campaign) -> AccessReviewItemQuerySet:
    return Item.objects.visible_to(user).filter(campaign=campaign)


# --- Forms --------------------------------------------------------------------------------------------


class CampaignForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    registries = forms.ModelMultipleChoiceField(
        queryset=Registry.objects.all(), required=False, help_text="None chosen: every registry."
    )
    pattern = forms.CharField(
        max_length=MAX_LENGTH,
        initial="**",
        help_text="Repositories, as access rules write them: prod/** is everything under prod/.",
    )
    actions = forms.MultipleChoiceField(
        choices=ACTION_CHOICES,
        widget=forms.CheckboxSelectMultiple,
        initial=["push"],
        help_text="Access to review: whoever may do any of these.",
    )
    reviewer_rule = forms.ChoiceField(
        choices=Campaign.ReviewerRule.choices,
        label="Who reviews",
        help_text="When the rule finds nobody for an item, the named reviewers do, then you.",
    )
    reviewers = forms.CharField(
        required=False, label="Named reviewers", help_text="Usernames, separated by spaces or commas."
    )
    due_at = forms.DateTimeField(widget=DATETIME_INPUT, label="Due")
    default_decision = forms.ChoiceField(
        choices=Campaign.Decision.choices, label="When nobody answers", initial=Campaign.Decision.CERTIFY
    )
    recurrence = forms.ChoiceField(choices=Campaign.Recurrence.choices, label="Repeat")
    start_at = forms.DateTimeField(
        widget=DATETIME_INPUT, required=False, label="Start", help_text="Empty: open it now."
    )

    def clean_pattern(self) -> str:
        try:
            return compile_pattern(str(self.cleaned_data["pattern"])).text
        except InvalidPattern as exc:
            raise ValidationError(str(exc)) from None

    def clean_reviewers(self) -> list[User]:
        names = self.cleaned_data["reviewers"].replace(",", " ").split()
        found = {person.username: person for person in User.objects.filter(username__in=names)}
        if missing := [name for name in names if name not in found]:
            raise ValidationError(f"nobody has the username {', '.join(missing)}")
        return [found[name] for name in dict.fromkeys(names)]

    def campaign_request(self) -> reviews.CampaignRequest:
        data = self.cleaned_data
        return reviews.CampaignRequest(
            name=data["name"],
            description=data["description"],
            registries=tuple(data["registries"]),
            pattern=data["pattern"],
            actions=frozenset(data["actions"]),
            reviewer_rule=data["reviewer_rule"],
            reviewers=tuple(data["reviewers"]),
            due_at=data["due_at"],
            default_decision=data["default_decision"],
            recurrence=data["recurrence"],
            start_at=data["start_at"],
        )


class ItemFilter(django_filters.FilterSet):
    """A campaign's items: what reviewers narrow down before deciding many at once."""

    search = django_filters.CharFilter(method="filter_search", label="Subject contains")
    decision = django_filters.ChoiceFilter(
        choices=[("undecided", "Undecided"), *Campaign.Decision.choices], method="filter_decision"
    )
    kind = django_filters.ChoiceFilter(choices=Item.Kind.choices)
    action = django_filters.ChoiceFilter(choices=ACTION_CHOICES, method="filter_action", label="Can")
    unused_days = django_filters.NumberFilter(
        method="filter_unused", label="Unused for days", min_value=1, help_text="Includes never used."
    )
    outcome = django_filters.ChoiceFilter(choices=[c for c in Item.Outcome.choices if c[0]])
    mine = django_filters.BooleanFilter(method="filter_mine", label="Only mine", widget=forms.CheckboxInput)

    class Meta:
        model = Item
        fields = ["search", "decision", "kind", "action", "unused_days", "outcome", "mine"]

    def filter_search(self, queryset: QuerySet[Item], name: str, value: str) -> QuerySet[Item]:
        return queryset.filter(subject__icontains=value.strip()) if value.strip() else queryset

    def filter_decision(self, queryset: QuerySet[Item], name: str, value: str) -> QuerySet[Item]:
        return queryset.filter(decision="" if value == "undecided" else value)

    def filter_action(self, queryset: QuerySet[Item], name: str, value: str) -> QuerySet[Item]:
        # By list position: JSON `contains` does not exist on SQLite (the local run). Lists are
        # at most the three actions long.
        found = Q()
        for position in range(len(AccessRule.ACTIONS)):
            found |= Q(**{f"actions__{position}": value})
        return queryset.filter(found)

    def filter_unused(self, queryset: QuerySet[Item], name: str, value: Any) -> QuerySet[Item]:
        since = timezone.now() - timedelta(days=int(value))
        return queryset.filter(Q(last_used_at=None) | Q(last_used_at__lt=since))

    def filter_mine(
        self, queryset: AccessReviewItemQuerySet, name: str, value: bool
    ) -> AccessReviewItemQuerySet:
        user = getattr(self.request, "user", None)
        return queryset.for_reviewer(user) if value and isinstance(user, User) else queryset


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=Campaign.Decision.choices)
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False, max_length=2000)
    everything = forms.BooleanField(required=False, label="Every item matching the filter")
    query = forms.CharField(required=False)  # the filter the list was showing, for `everything`


def _ticked(request: HttpRequest) -> list[int]:
    # Which of them the person may decide is the service's question, not the form's.
    return [int(value) for value in request.POST.getlist("item") if value.isdigit()]


# --- The campaigns -------------------------------------------------------------------------------------


@require_GET
def campaign_list(request: HttpRequest) -> HttpResponse:
    """Every campaign a person may see, with its progress; reviewers and admins may start one."""
    user = signed_in_user(request)
    campaigns = (
        Campaign.objects.visible_to(user)
        .select_related("owner")
        .annotate(
            item_count=Count("items", distinct=True),
            decided_count=Count("items", filter=~Q(items__decision=""), distinct=True),
        )
        .order_by("-created_at", "-pk")
    )
    context = {
        "page": Paginator(campaigns, PAGE_SIZE).get_page(request.GET.get("page")),
        "query": query_without(request, "page"),
        "may_start": user.has_role(Role.REVIEWER),
        "waiting": Item.objects.for_reviewer(user)
        .filter(campaign__state=Campaign.State.OPEN)
        .undecided()
        .count(),
    }
    return render(request, "registries/reviews/list.html", context)


@require_http_methods(["GET", "POST"])
@role_required(Role.REVIEWER)
def campaign_add(request: HttpRequest) -> HttpResponse:
    form = CampaignForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            campaign = reviews.create_campaign(form.campaign_request(), actor=signed_in_user(request))
        except reviews.CampaignRefused as exc:
            message = str(exc)
            form.add_error(
                "pattern" if message.startswith("pattern: ") else None, message.removeprefix("pattern: ")
            )
        else:
            if campaign.state == Campaign.State.OPEN:
                messages.success(request, f"Campaign opened with {campaign.items.count()} items to review.")
            else:
                messages.success(request, "Campaign saved; it opens by itself at its start.")
            return redirect("registries:review", campaign_id=campaign.pk)
    return render(request, "registries/reviews/form.html", {"form": form})


@dataclass(frozen=True)
class Row:
    item: Item
    may_decide: bool
    reviewers: list[str]


def _rows(user: User, campaign: Campaign, items: list[Item]) -> list[Row]:
    rows = []
    for item in items:
        people = list(item.reviewers.all())  # prefetched by _listed()
        may = reviews.may_decide(user, campaign, item, {person.pk for person in people})
        rows.append(Row(item, may, sorted(person.username for person in people)))
    return rows


def _listed(queryset: QuerySet[Item]) -> QuerySet[Item]:
    return queryset.select_related("decided_by").prefetch_related("reviewers").order_by("subject", "pk")


@require_GET
def campaign_detail(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """The campaign and its items (all of them for reviewers and admins, one's own for anyone else)."""
    user = signed_in_user(request)
    campaign = _campaign_for(user, campaign_id)
    filters = ItemFilter(request.GET or None, queryset=_visible_items(user, campaign), request=request)
    page = Paginator(_listed(filters.qs), PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "campaign": campaign,
        "registries": list(campaign.registries.all()),
        "summary": reviews.summary(campaign),
        "filters": filters,
        "page": page,
        "rows": _rows(user, campaign, list(page.object_list)),
        "query": query_without(request, "page"),
        "filter_query": request.GET.urlencode(),
        "may_manage": reviews.may_manage(user, campaign),
        "may_report": user.has_role(Role.REVIEWER),
    }
    return render(request, "registries/reviews/detail.html", context)


@require_POST
def campaign_decide(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """Certify or revoke the ticked items, or every item the filter shows."""
    user = signed_in_user(request)
    campaign = _campaign_for(user, campaign_id)
    visible = _visible_items(user, campaign)
    if not reviews.may_manage(user, campaign) and not visible.for_reviewer(user).exists():
        raise PermissionDenied  # they see the campaign (it names them) but review nothing in it
    form = DecisionForm(request.POST)
    back = _back(request, campaign)
    if not form.is_valid():
        messages.error(request, "Choose certify or revoke.")
        return redirect(back)
    data = form.cleaned_data
    if data["everything"]:
        chosen = ItemFilter(QueryDict(data["query"]), queryset=visible, request=request).qs
        ids = list(chosen.values_list("pk", flat=True))
    else:
        ids = list(visible.filter(pk__in=_ticked(request)).values_list("pk", flat=True))
    if not ids:
        messages.error(request, "Tick the items to decide, or choose every item the filter shows.")
        return redirect(back)
    try:
        done = reviews.decide(campaign, ids, decision=data["decision"], comment=data["comment"], actor=user)
    except reviews.CampaignRefused as exc:
        messages.error(request, f"Not recorded: {exc}.")
        return redirect(back)
    verb = "Certified" if data["decision"] == Campaign.Decision.CERTIFY else "Revoked"
    note = f" {done.skipped} not yours to decide were left as they were." if done.skipped else ""
    messages.success(request, f"{verb} {done.decided} item{'s' if done.decided != 1 else ''}.{note}")
    return redirect(back)


def _back(request: HttpRequest, campaign: Campaign) -> str:
    """Where a decision returns: the page it came from, when that is one of ours."""
    url = reverse("registries:review", args=[campaign.pk])
    nxt = request.POST.get("next", "")
    if nxt == reverse("registries:my_reviews"):
        return nxt
    query = request.POST.get("query", "")
    return f"{url}?{query}" if query else url


@require_GET
def my_reviews(request: HttpRequest) -> HttpResponse:
    """The items waiting for this person, campaign by campaign, undecided first."""
    user = signed_in_user(request)
    mine = _listed(Item.objects.for_reviewer(user).filter(campaign__state=Campaign.State.OPEN))
    by_campaign: dict[int, list[Item]] = defaultdict(list)
    for item in mine.order_by("campaign__due_at", "campaign", "-decision", "subject", "pk"):
        if len(by_campaign[item.campaign_id]) < MINE_SHOWN:
            by_campaign[item.campaign_id].append(item)
    campaigns = Campaign.objects.in_bulk(list(by_campaign))
    groups = [
        (campaigns[pk], _rows(user, campaigns[pk], items), sum(not item.decision for item in items))
        for pk, items in by_campaign.items()
    ]
    return render(request, "registries/reviews/mine.html", {"groups": groups, "shown": MINE_SHOWN})


# --- Opening, closing and applying ---------------------------------------------------------------------


@require_POST
def campaign_open(request: HttpRequest, campaign_id: int) -> HttpResponse:
    user = signed_in_user(request)
    campaign = _campaign_for(user, campaign_id, manage=True)
    try:
        count = reviews.open_campaign(campaign, actor=user)
    except reviews.CampaignRefused as exc:
        messages.error(request, f"Not opened: {exc}.")
    else:
        messages.success(request, f"Campaign opened with {count} items to review.")
    return redirect("registries:review", campaign_id=campaign.pk)


@dataclass(frozen=True)
class PlannedItem:
    item: Item
    by_default: bool
    steps: list[dict[str, Any]]


@require_http_methods(["GET", "POST"])
def campaign_close(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """GET: what closing would do (nothing changes). POST: close, and apply the plan."""
    user = signed_in_user(request)
    campaign = _campaign_for(user, campaign_id, manage=True)
    if request.method == "POST":
        try:
            reviews.close(campaign, actor=user)
        except reviews.CampaignRefused as exc:
            messages.error(request, f"Not closed: {exc}.")
        else:
            messages.success(request, "Closed: the revocations are being applied.")
        return redirect("registries:review", campaign_id=campaign.pk)
    steps = reviews.plan(campaign) if campaign.state == Campaign.State.OPEN else {}
    items = Item.objects.in_bulk(list(steps))
    planned = [PlannedItem(items[pk], not items[pk].decision, item_steps) for pk, item_steps in steps.items()]
    context = {
        "campaign": campaign,
        "summary": reviews.summary(campaign),
        "planned": sorted(planned, key=lambda row: (row.item.subject, row.item.pk)),
        "labels": reviews.STEP_LABELS,
    }
    return render(request, "registries/reviews/close.html", context)


@require_POST
def campaign_apply(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """Try the steps left again (after a registry was unreachable, say); done steps are not redone."""
    user = signed_in_user(request)
    campaign = _campaign_for(user, campaign_id, manage=True)
    if campaign.state != Campaign.State.CLOSED:
        messages.error(request, "Only a closed campaign has steps to apply.")
    else:
        from registries import review_tasks

        review_tasks.apply_campaign.delay(campaign.pk)
        messages.success(request, "The steps left are being applied again.")
    return redirect("registries:review", campaign_id=campaign.pk)


# --- The report -----------------------------------------------------------------------------------------


def _report_campaign(request: HttpRequest, campaign_id: int) -> Campaign:
    """Reviewers and admins read every campaign's report; the people asked to review items do not."""
    user = signed_in_user(request)
    campaign = _campaign_for(user, campaign_id)
    if not user.has_role(Role.REVIEWER):
        raise PermissionDenied
    return campaign


def audit_events(campaign: Campaign) -> QuerySet[AuditEvent]:
    """The trail's events about the campaign: created, opened, decisions, closed, applied."""
    about = Q(target_type=Campaign._meta.label_lower, target_id=str(campaign.pk))
    return AuditEvent.objects.filter(about | Q(detail__campaign=campaign.pk)).order_by("sequence")


@require_GET
def campaign_report(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """Every item, its evidence, decision, reviewers, times and result; the trail's events."""
    campaign = _report_campaign(request, campaign_id)
    context = {
        "campaign": campaign,
        "registries": list(campaign.registries.all()),
        "summary": reviews.summary(campaign),
        "items": [(item, reviews.access_summary(item)) for item in reviews.report_items(campaign)],
        "events": list(audit_events(campaign)),
        "labels": reviews.STEP_LABELS,
    }
    return render(request, "registries/reviews/report.html", context)


def _filename(campaign: Campaign, extension: str) -> str:
    return f"customs-access-review-{campaign.pk}.{extension}"


@require_GET
def campaign_report_csv(request: HttpRequest, campaign_id: int) -> StreamingHttpResponse:
    campaign = _report_campaign(request, campaign_id)
    lines = exports.csv_lines(reviews.REPORT_COLUMNS, reviews.report_rows(campaign))
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{_filename(campaign, "csv")}"'
    response["Cache-Control"] = "no-store"  # who may do what: no shared cache keeps a copy
    return response


@require_GET
def campaign_report_pdf(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = _report_campaign(request, campaign_id)
    response = HttpResponse(report_pdf(campaign), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{_filename(campaign, "pdf")}"'
    response["Cache-Control"] = "no-store"
    return response


PDF_COLUMNS = ("Subject", "Access in scope", "Last used", "Reviewers", "Decision", "By", "At", "Result")


def report_pdf(campaign: Campaign) -> bytes:
    """The report for auditors: the campaign's facts and counts, then one row per item."""
    done = reviews.summary(campaign)
    registries = ", ".join(campaign.registries.values_list("name", flat=True)) or "every registry"
    facts = [
        f"Scope: {', '.join(campaign.actions)} on {campaign.pattern} in {registries}.",
        f"Reviewers: {campaign.get_reviewer_rule_display()}. Nobody's answer means: "
        f"{campaign.get_default_decision_display()}.",
        f"Opened {_when(campaign.opened_at)}, due {_when(campaign.due_at)}, "
        f"closed {_when(campaign.closed_at)} by {campaign.closed_by or '—'}, "
        f"applied {_when(campaign.applied_at)}.",
        f"{done.items} items: {done.by_decision.get('certify', 0)} certified, "
        f"{done.by_decision.get('revoke', 0)} revoked, {done.by_default} by the default, "
        f"{done.by_decision.get('', 0)} undecided.",
    ]
    rows = (
        [
            item.subject,
            reviews.access_summary(item),
            f"{_when(item.last_used_at)} {item.last_used_source}".strip(),
            ", ".join(sorted(p.username for p in item.reviewers.all())),
            (item.get_decision_display() or "undecided") + (" (default)" if item.by_default else ""),
            item.decided_by.username if item.decided_by else "",
            _when(item.decided_at),
            item.result or item.get_outcome_display(),
        ]
        for item in reviews.report_items(campaign)
    )
    return pdf.document(
        f"Access review: {campaign.name}",
        subtitle=f"{campaign.get_state_display()}, as of {_when(campaign.applied_at or campaign.closed_at)}",
        parts=[*(pdf.Paragraph(fact) for fact in facts), pdf.Table("Items", PDF_COLUMNS, rows)],
    )


def _when(moment: Any) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M") if moment else "—"
