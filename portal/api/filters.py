from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Any

import django_filters
from django import forms
from django.db.models import BigIntegerField, Q, QuerySet
from django.db.models.functions import Cast
from django.http import QueryDict
from django.utils import timezone

from portal import findings
from portal.audit import AuditAction
from portal.models import AuditEvent, Finding


class AuditEventFilter(django_filters.FilterSet):
    actor = django_filters.CharFilter(field_name="actor_label", lookup_expr="icontains")
    action = django_filters.CharFilter(field_name="action", lookup_expr="startswith")
    target = django_filters.CharFilter(method="filter_target")
    since = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="lt")
    request_id = django_filters.CharFilter()

    class Meta:
        model = AuditEvent
        fields = ["actor", "action", "target", "since", "until", "request_id", "target_type"]

    def filter_target(self, queryset: object, name: str, value: str) -> object:
        return AuditEvent.objects.matching(target=value) & queryset  # type: ignore[operator]


# The page's default is "open"; "all" is every state (the API's default when state is not given).
FINDING_STATES = [("open", "Open"), ("suppressed", "Suppressed"), ("resolved", "Resolved"), ("all", "All")]
_KIND_SLUG = re.compile(r"[a-z0-9_]{1,64}")


def kind_choices() -> list[tuple[str, str]]:
    return sorted(((slug, kind.title) for slug, kind in findings.KINDS.items()), key=lambda c: c[1])


class KindField(django_filters.fields.ChoiceField):
    """Any kind's slug. The select offers the kinds this process has registered, but a finding of a
    kind whose rule is not loaded here (or no longer exists) must still be found by its kind."""

    def valid_value(self, value: Any) -> bool:
        return isinstance(value, str) and bool(_KIND_SLUG.fullmatch(value))


class KindFilter(django_filters.ChoiceFilter):
    field_class = KindField


def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


# The changes to a finding that people make, which leave no time on the finding itself.
PEOPLES_CHANGES = [
    AuditAction.FINDING_SUPPRESSED,
    AuditAction.FINDING_UNSUPPRESSED,
    AuditAction.FINDING_ASSIGNED,
]


class FindingFilter(django_filters.FilterSet):
    """Findings by kind, severity, state, scope, owner, assignee, subject, text, day and change.

    Serves the findings page, /api/v1/findings/, the JSON-lines export and bulk changes alike, so
    a link copied from one means the same in the others.
    """

    kind = KindFilter(choices=kind_choices, empty_label="Any", label="Kind")
    severity = django_filters.ChoiceFilter(
        choices=Finding.Severity.choices, empty_label="Any", label="Severity"
    )
    state = django_filters.ChoiceFilter(
        choices=FINDING_STATES,
        method="filter_state",
        empty_label=None,
        label="State",
        help_text="open: to act on; suppressed: risk accepted until a date; all: every state.",
    )
    scope = django_filters.CharFilter(
        label="Scope", help_text='The part of the estate a rule looked at, exactly: "registry-3", "customs".'
    )
    owner = django_filters.CharFilter(
        method="filter_owner",
        label="Owner",
        help_text="The owner's username; for an owner no person was linked to, the registry's name for them.",
    )
    assignee = django_filters.CharFilter(
        field_name="assignee__username", label="Assignee", help_text="The assignee's username."
    )
    assigned = django_filters.BooleanFilter(
        field_name="assignee",
        lookup_expr="isnull",
        exclude=True,
        label="Assigned",
        help_text="true: someone is working on it; false: nobody is.",
        widget=forms.Select(choices=[("", "Any"), ("true", "Yes"), ("false", "No")]),
    )
    subject_type = django_filters.CharFilter(label="Subject type", help_text='e.g. "registries.credential".')
    subject_id = django_filters.CharFilter(label="Subject id")
    q = django_filters.CharFilter(
        method="filter_text", label="Search", help_text="Part of the summary, subject, owner or key."
    )
    open_on = django_filters.DateFilter(
        method="filter_open_on",
        label="Open on",
        help_text=(
            "Open at the end of this day (YYYY-MM-DD, server time), as the dashboard's trend counts it: "
            "from the start of the current episode to the finding's resolution."
        ),
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    changed_since = django_filters.IsoDateTimeFilter(
        method="filter_changed_since",
        label="Changed since",
        help_text=(
            "Changed at or after this moment (ISO 8601, e.g. 2025-05-01T08:00:00Z): seen again by a scan, "
            "opened, resolved, suppressed, unsuppressed, assigned, or back from an ended suppression. "
            "For pulling the export incrementally: pass the time the previous pull started."
        ),
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )

    class Meta:
        model = Finding
        fields: list[str] = []  # every filter is declared above

    def filter_state(self, queryset: QuerySet[Finding], name: str, value: str) -> QuerySet[Finding]:
        by_state = {
            "open": Finding.objects.open(),
            "suppressed": Finding.objects.suppressed(),
            "resolved": Finding.objects.exclude(resolved_at=None),
            "all": Finding.objects.all(),
        }
        return queryset & by_state[value]

    def filter_owner(self, queryset: QuerySet[Finding], name: str, value: str) -> QuerySet[Finding]:
        # The same person the dashboard's "top owners" counts: the linked one, else the label.
        return queryset.filter(Q(owner__username=value) | Q(owner=None, owner_label=value))

    def filter_text(self, queryset: QuerySet[Finding], name: str, value: str) -> QuerySet[Finding]:
        text = value.strip()
        if not text:
            return queryset
        return queryset.filter(
            Q(summary__icontains=text)
            | Q(subject_label__icontains=text)
            | Q(owner_label__icontains=text)
            | Q(key__icontains=text)
        )

    def filter_open_on(self, queryset: QuerySet[Finding], name: str, value: date) -> QuerySet[Finding]:
        end = _start_of(value + timedelta(days=1))
        return queryset.filter(opened_at__lt=end).exclude(resolved_at__lt=end)

    def filter_changed_since(
        self, queryset: QuerySet[Finding], name: str, value: datetime
    ) -> QuerySet[Finding]:
        # A finding keeps no time of its last suppression or assignment: their audit events say when.
        changed_by_people = (
            AuditEvent.objects.filter(
                at__gte=value, action__in=PEOPLES_CHANGES, target_type=Finding._meta.label_lower
            )
            .annotate(finding=Cast("target_id", BigIntegerField()))
            .values("finding")
        )
        return queryset.filter(
            Q(last_seen__gte=value)  # opened, reopened or seen again: the scan sets last_seen
            | Q(resolved_at__gte=value)
            | Q(suppressed_until__gte=value, suppressed_until__lte=timezone.now())
            | Q(pk__in=changed_by_people)
        )


def chosen_findings(
    *, ids: list[int] | None = None, filters: QueryDict | dict[str, Any] | None = None
) -> QuerySet[Finding]:
    """The findings a bulk change is about: listed by id, or every one matching the list's filters."""
    if ids is not None:
        return Finding.objects.filter(pk__in=ids)
    chosen = FindingFilter(filters or {}, queryset=Finding.objects.all())
    if not chosen.is_valid():
        problems = "; ".join(f"{name}: {' '.join(errors)}" for name, errors in chosen.errors.items())
        raise findings.BulkChangeError(f"the filters are not valid ({problems}); nothing was changed")
    return chosen.qs
