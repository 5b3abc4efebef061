"""Filters for credentials (registry-native and Customs' own) and the grants that syncs read.

Each FilterSet serves a page and an API endpoint alike, so their parameters cannot drift apart:
CredentialFilter backs the credential list, its CSV/JSON exports, /api/v1/registry-credentials/ and
its export; GrantFilter backs /api/v1/registry-grants/.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time
from typing import Any

import django_filters
from django import forms
from django.db.models import CharField, Count, Exists, F, OuterRef, Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from accounts.models import DirectoryGroup, User
from portal.models import Finding
from registries.models import Credential, Grant, Registry

# What findings about a credential name as their subject (subject_id is the credential's pk).
CREDENTIAL_SUBJECT = "registries.credential"
# The registry filter's value for Customs' own tokens, which belong to no registry.
CUSTOMS = "customs"

# The page's one "State" select; the API also takes the two booleans it is made of.
CREDENTIAL_STATES = [("enabled", "Enabled"), ("disabled", "Disabled"), ("gone", "Gone")]
OWNER_STATUSES = [
    *User.Status.choices,
    ("unresolved", "Not linked to a person"),
    ("none", "No owner"),
]
CREATION_STATES = [("unknown", "Creation unknown")]
EXPIRY_STATES = [("never", "Never expires"), ("unknown", "Expiry unknown")]
USAGE_STATES = [("never", "Never used"), ("unknown", "Use unknown")]
GRANTED_ACTIONS = [*((action, action) for action in Credential.ACTIONS), ("unknown", "not known")]
SEEN_ACTIONS = [*((action, action) for action in Credential.ACTIONS), ("unknown", "not recorded")]

# Rows without the date sort last either way (then by pk): "never" and "unknown" are not points in time.
CREDENTIAL_ORDERINGS: dict[str, tuple[str, list[Any]]] = {
    "name": ("Name", ["name", "pk"]),
    "-name": ("Name, Z to A", [F("name").desc(), "-pk"]),
    "created_at": ("Created, oldest first", [F("created_at").asc(nulls_last=True), "pk"]),
    "-created_at": ("Created, newest first", [F("created_at").desc(nulls_last=True), "pk"]),
    "expires_at": ("Expires, soonest first", [F("expires_at").asc(nulls_last=True), "pk"]),
    "-expires_at": ("Expires, latest first", [F("expires_at").desc(nulls_last=True), "pk"]),
    "last_used_at": ("Last used, longest ago first", [F("last_used_at").asc(nulls_last=True), "pk"]),
    "-last_used_at": ("Last used, most recent first", [F("last_used_at").desc(nulls_last=True), "pk"]),
    "observed_at": ("Last read, oldest first", ["observed_at", "pk"]),
    "-observed_at": ("Last read, newest first", [F("observed_at").desc(), "-pk"]),
}

DATE_HELP = "A date (YYYY-MM-DD) in the portal's time zone."


def open_credential_findings() -> QuerySet[Finding]:
    """Open findings whose subject is a credential."""
    return Finding.objects.open().filter(subject_type=CREDENTIAL_SUBJECT)


def open_finding_counts(credential_ids: Iterable[int]) -> dict[int, int]:
    """Open findings per credential, for a page or chunk of rows in one query (none for no rows)."""
    keys = [str(pk) for pk in credential_ids]
    if not keys:
        return {}
    counts = (
        open_credential_findings()
        .filter(subject_id__in=keys)
        .values_list("subject_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return {int(subject_id): n for subject_id, n in counts}


def _registry_choices() -> list[tuple[str, str]]:
    # Only reviewers and admins reach these filters, and they see every registry.
    names = Registry.objects.order_by("name").values_list("pk", "name")
    return [(CUSTOMS, "Customs"), *((str(pk), name) for pk, name in names)]


class RegistryOrCustomsField(django_filters.fields.ChoiceField):
    """A registry's id or "customs". Checked by shape, not against the list: the API then never reads
    every registry to validate one parameter, and an id that names no registry simply matches nothing."""

    def valid_value(self, value: Any) -> bool:
        return value == CUSTOMS or (isinstance(value, str) and value.isdigit())


class RegistryOrCustomsFilter(django_filters.ChoiceFilter):
    field_class = RegistryOrCustomsField


def _start_of(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def _date_filter(field_name: str, lookup: str, label: str, help_text: str) -> django_filters.DateFilter:
    # "after" takes the day itself, "before" stops short of it: after=X&before=Y is the span [X, Y).
    return django_filters.DateFilter(
        method=f"filter_{lookup}",
        field_name=field_name,
        label=label,
        help_text=f"{help_text} {DATE_HELP}",
        widget=forms.DateInput(attrs={"type": "date"}),
    )


class YesNoField(forms.NullBooleanField):
    """true or false (1 or 0); empty for either. Anything else is an error: Django's NullBooleanField
    reads a typo as "either", which would widen a filter, and an export, to rows nobody asked for."""

    widget = forms.Select(choices=[("", "Any"), ("true", "Yes"), ("false", "No")])
    default_error_messages = {"invalid": "Enter true or false."}

    # The stubs type BooleanField.to_python as bool; NullBooleanField's own stub ignores it the same way.
    def to_python(self, value: Any) -> bool | None:  # type: ignore[override]
        text = str(value).strip().lower() if value is not None else ""
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        if text:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return None


class YesNoFilter(django_filters.BooleanFilter):
    field_class = YesNoField


class CredentialFilter(django_filters.FilterSet):
    """Credentials by any column the list shows: registry, kind, name, shared admin, state, owner,
    creator, steward and the owner's status, dates, last-use source, scopes, actions granted and
    seen, and open findings."""

    registry = RegistryOrCustomsFilter(
        choices=_registry_choices,
        method="filter_registry",
        help_text="A registry's id, or \"customs\" for Customs' own tokens.",
    )
    kind = django_filters.ChoiceFilter(choices=Credential.KINDS)
    name = django_filters.CharFilter(
        lookup_expr="icontains", label="Name", help_text="Part of the name, in any case."
    )
    shared_admin = YesNoFilter(
        label="Shared admin",
        help_text="One admin login shared by whoever knows it (ACR admin user, Harbor's local admin).",
    )
    state = django_filters.ChoiceFilter(
        choices=CREDENTIAL_STATES,
        method="filter_state",
        label="State",
        help_text="enabled and disabled are still held by the registry; gone ones no longer are.",
    )
    enabled = YesNoFilter(help_text="As the registry last reported it.")
    gone = YesNoFilter(
        field_name="gone_at", lookup_expr="isnull", exclude=True, help_text="No longer in the registry."
    )
    owner = django_filters.CharFilter(
        method="filter_owner", label="Owner", help_text="Part of the owner's name, id or username."
    )
    created_by = django_filters.CharFilter(
        method="filter_created_by",
        label="Created by",
        help_text="Part of the creator's name, id or username.",
    )
    steward = django_filters.CharFilter(
        method="filter_steward",
        label="Steward",
        help_text="Part of the username or name of who took it over at an offboarding.",
    )
    owner_status = django_filters.ChoiceFilter(
        choices=OWNER_STATUSES,
        method="filter_owner_status",
        label="Owner status",
        help_text="The linked person's status; unresolved: an owner no person was linked to; none: no owner.",
    )
    created = django_filters.ChoiceFilter(
        choices=CREATION_STATES,
        method="filter_created",
        label="Creation",
        help_text="unknown: the registry does not say when it was made.",
    )
    created_after = _date_filter("created_at", "on_or_after", "Created from", "Created on or after.")
    created_before = _date_filter("created_at", "before", "Created before", "Created before.")
    expires = django_filters.ChoiceFilter(
        choices=EXPIRY_STATES, method="filter_expires", label="Expiry", help_text="never or unknown."
    )
    expires_after = _date_filter("expires_at", "on_or_after", "Expires from", "Expires on or after.")
    expires_before = _date_filter(
        "expires_at", "before", "Expires before", "Expires before (never and unknown are not included)."
    )
    last_used = django_filters.ChoiceFilter(
        choices=USAGE_STATES, method="filter_last_used", label="Use", help_text="never or unknown."
    )
    last_used_after = _date_filter("last_used_at", "on_or_after", "Used from", "Last used on or after.")
    last_used_before = _date_filter(
        "last_used_at",
        "before",
        "Last used before",
        "Last used before (never used and unknown are not included: ask for last_used=never).",
    )
    last_used_source = django_filters.CharFilter(
        lookup_expr="icontains",
        label="Last-use source",
        help_text="Part of where its last use was read, in any case: audit log, Customs.",
    )
    scope = django_filters.CharFilter(
        method="filter_scope", label="Scope", help_text="Part of any scope, as the registry wrote it."
    )
    action = django_filters.ChoiceFilter(
        choices=GRANTED_ACTIONS,
        method="filter_action",
        label="Action granted",
        help_text="Credentials that may do this; unknown: the registry does not say what they may do.",
    )
    action_seen = django_filters.ChoiceFilter(
        choices=SEEN_ACTIONS,
        method="filter_action_seen",
        label="Action seen",
        help_text="Credentials the registry's usage records show doing this; unknown: no such record.",
    )
    has_open_findings = YesNoFilter(
        method="filter_has_open_findings",
        label="Open findings",
        help_text="Whether any finding about the credential is open (unresolved and not suppressed).",
    )
    ordering = django_filters.ChoiceFilter(
        choices=[(key, label) for key, (label, _) in CREDENTIAL_ORDERINGS.items()],
        method="filter_ordering",
        label="Sort by",
        empty_label="Registry, kind, name",
    )

    class Meta:
        model = Credential
        fields: list[str] = []  # every filter is declared above

    def filter_registry(self, queryset: QuerySet[Credential], name: str, value: str) -> QuerySet[Credential]:
        if value == CUSTOMS:
            return queryset.filter(registry=None)
        return queryset.filter(registry_id=int(value))

    def filter_state(self, queryset: QuerySet[Credential], name: str, value: str) -> QuerySet[Credential]:
        if value == "gone":
            return queryset.exclude(gone_at=None)
        return queryset.filter(gone_at=None, enabled=value == "enabled")

    def filter_owner(self, queryset: QuerySet[Credential], name: str, value: str) -> QuerySet[Credential]:
        text = value.strip()
        if not text:
            return queryset
        # The raw reference covers owners Customs could not link to a person; the linked
        # person's username and name cover the rest.
        return queryset.filter(
            Q(owner_name__icontains=text)
            | Q(owner_id__icontains=text)
            | Q(owner_user__username__icontains=text)
            | Q(owner_user__display_name__icontains=text)
        )

    def filter_created_by(
        self, queryset: QuerySet[Credential], name: str, value: str
    ) -> QuerySet[Credential]:
        text = value.strip()
        if not text:
            return queryset
        return queryset.filter(
            Q(created_by_name__icontains=text)
            | Q(created_by_id__icontains=text)
            | Q(created_by_user__username__icontains=text)
            | Q(created_by_user__display_name__icontains=text)
        )

    def filter_steward(self, queryset: QuerySet[Credential], name: str, value: str) -> QuerySet[Credential]:
        text = value.strip()
        if not text:
            return queryset
        return queryset.filter(
            Q(steward__username__icontains=text) | Q(steward__display_name__icontains=text)
        )

    def filter_owner_status(
        self, queryset: QuerySet[Credential], name: str, value: str
    ) -> QuerySet[Credential]:
        raw_reference = ~Q(owner_id="") | ~Q(owner_name="")
        if value == "unresolved":
            return queryset.filter(raw_reference, owner_user=None)
        if value == "none":
            return queryset.filter(owner_user=None, owner_id="", owner_name="")
        return queryset.filter(owner_user__status=value)

    def filter_on_or_after(
        self, queryset: QuerySet[Credential], name: str, value: date
    ) -> QuerySet[Credential]:
        return queryset.filter(**{f"{name}__gte": _start_of(value)})

    def filter_before(self, queryset: QuerySet[Credential], name: str, value: date) -> QuerySet[Credential]:
        return queryset.filter(**{f"{name}__lt": _start_of(value)})

    def filter_created(self, queryset: QuerySet[Credential], name: str, value: str) -> QuerySet[Credential]:
        return queryset.filter(created_at=None)

    def filter_expires(self, queryset: QuerySet[Credential], name: str, value: str) -> QuerySet[Credential]:
        if value == "never":
            return queryset.filter(expiry_known=True, expires_at=None)
        return queryset.filter(expiry_known=False)

    def filter_last_used(self, queryset: QuerySet[Credential], name: str, value: str) -> QuerySet[Credential]:
        if value == "never":
            return queryset.filter(usage_known=True, last_used_at=None)
        return queryset.filter(usage_known=False)

    def filter_scope(self, queryset: QuerySet[Credential], name: str, value: str) -> QuerySet[Credential]:
        text = value.strip()
        if not text:
            return queryset
        # JSON containment of a substring is not a lookup SQLite (the local run) has: search the
        # list's text instead, which both databases can.
        return queryset.alias(scopes_text=Cast("scopes", TextField())).filter(scopes_text__icontains=text)

    def filter_action(self, queryset: QuerySet[Credential], name: str, value: str) -> QuerySet[Credential]:
        if value == "unknown":
            return queryset.filter(actions=[])
        # Actions are a closed vocabulary, so the quoted word in the list's text is that element.
        return queryset.alias(actions_text=Cast("actions", TextField())).filter(
            actions_text__contains=f'"{value}"'
        )

    def filter_action_seen(
        self, queryset: QuerySet[Credential], name: str, value: str
    ) -> QuerySet[Credential]:
        if value == "unknown":
            return queryset.filter(actions_seen_source="")
        # actions_seen maps each action to when it was last seen.
        return queryset.filter(actions_seen__has_key=value)

    def filter_has_open_findings(
        self, queryset: QuerySet[Credential], name: str, value: bool
    ) -> QuerySet[Credential]:
        # The credential's pk as text, not subject_id as a number: other subjects' ids need not be numbers.
        about_it = open_credential_findings().filter(subject_id=Cast(OuterRef("pk"), CharField()))
        return queryset.filter(Exists(about_it)) if value else queryset.exclude(Exists(about_it))

    def filter_ordering(self, queryset: QuerySet[Credential], name: str, value: str) -> QuerySet[Credential]:
        return queryset.order_by(*CREDENTIAL_ORDERINGS[value][1])


def _registries(request: Any) -> QuerySet[Registry]:
    # Only reviewers and admins reach these filters, and they see every registry.
    return Registry.objects.only("pk", "name")


class GrantFilter(django_filters.FilterSet):
    """Grants by registry, principal kind, linked group or person, and scope."""

    # django-filter calls a callable queryset with the request; the stubs only know querysets.
    registry = django_filters.ModelChoiceFilter(queryset=_registries)  # type: ignore[arg-type]
    principal_kind = django_filters.ChoiceFilter(choices=Grant.PRINCIPAL_KINDS)
    group = django_filters.ModelChoiceFilter(
        queryset=DirectoryGroup.objects.all(), help_text="The directory group the principal was linked to."
    )
    user = django_filters.ModelChoiceFilter(
        queryset=User.objects.all(), help_text="The person the principal was linked to."
    )
    scope = django_filters.CharFilter(
        help_text="Exactly as stored, in the access-rule pattern language: payments/api, team/**, **."
    )

    class Meta:
        model = Grant
        fields = ["registry", "principal_kind", "group", "user", "scope"]
