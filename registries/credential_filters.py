"""Filters for the registry-native credentials and grants that syncs read.

Each FilterSet serves a page and an API endpoint alike, so their parameters cannot drift apart:
CredentialFilter backs the Credentials page's "Registry credentials" table and
/api/v1/registry-credentials/, GrantFilter backs /api/v1/registry-grants/.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import Q, QuerySet

from accounts.models import DirectoryGroup, User
from registries.models import Credential, Grant, Registry

# The page's one "State" select; the API also takes the two booleans it is made of.
CREDENTIAL_STATES = [("enabled", "Enabled"), ("disabled", "Disabled"), ("gone", "Gone")]


def _registries(request: Any) -> QuerySet[Registry]:
    # Only reviewers and admins reach these filters, and they see every registry.
    return Registry.objects.only("pk", "name")


class CredentialFilter(django_filters.FilterSet):
    """Registry credentials by registry, kind, state and owner."""

    # django-filter calls a callable queryset with the request; the stubs only know querysets.
    registry = django_filters.ModelChoiceFilter(queryset=_registries)  # type: ignore[arg-type]
    kind = django_filters.ChoiceFilter(choices=Credential.KINDS)
    state = django_filters.ChoiceFilter(
        choices=CREDENTIAL_STATES,
        method="filter_state",
        label="State",
        help_text="enabled and disabled are still held by the registry; gone ones no longer are.",
    )
    enabled = django_filters.BooleanFilter(help_text="As the registry last reported it.")
    gone = django_filters.BooleanFilter(
        field_name="gone_at", lookup_expr="isnull", exclude=True, help_text="No longer in the registry."
    )
    owner = django_filters.CharFilter(
        method="filter_owner", label="Owner", help_text="Part of the owner's name, id or username."
    )

    class Meta:
        model = Credential
        fields = ["registry", "kind", "state", "enabled", "gone", "owner"]

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


class GrantFilter(django_filters.FilterSet):
    """Grants by registry, principal kind, linked group or person, and scope."""

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
