"""Registry-native credentials and grants, as syncs read them: the registry page's two sections and the
cross-registry credential list.

Reviewers and admins only: these rows name other people's keys and the registry's real access.
The list is its own page (and an htmx fragment the Credentials page embeds), because `accounts`
never imports `registries`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.paginator import Paginator
from django.db.models import F, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.models import User
from accounts.permissions import role_required
from accounts.roles import Role
from portal.querystring import query_without
from registries.credential_filters import CredentialFilter
from registries.models import Credential, Grant, Registry

PAGE_SIZE = 50
# The registry page shows this many of each; the rest are one link away.
SECTION_ROWS = 50


@dataclass(frozen=True)
class Capped:
    """The first rows of a list and how many there are in all."""

    rows: list[Any]
    total: int

    @property
    def more(self) -> int:
        return self.total - len(self.rows)


def _capped(queryset: QuerySet[Any]) -> Capped:
    # One row past the cap says whether counting is needed at all: most registries hold fewer.
    rows = list(queryset[: SECTION_ROWS + 1])
    if len(rows) <= SECTION_ROWS:
        return Capped(rows, len(rows))
    return Capped(rows[:SECTION_ROWS], queryset.count())


def registry_sections(user: User, registry: Registry) -> dict[str, Capped | None]:
    """The registry page's credentials and grants; None for anyone below reviewer, who must not see them."""
    if not user.has_role(Role.REVIEWER):
        return {"held_credentials": None, "reported_grants": None}
    # Held ones first, then the most recently gone.
    credentials = (
        Credential.objects.filter(registry=registry)
        .select_related("owner_user")
        .order_by(F("gone_at").desc(nulls_first=True), "kind", "name", "pk")
    )
    grants = Grant.objects.filter(registry=registry).select_related("group", "user")
    return {"held_credentials": _capped(credentials), "reported_grants": _capped(grants)}


@require_GET
@role_required(Role.REVIEWER)
def credential_list(request: HttpRequest) -> HttpResponse:
    """Registry credentials across registries; htmx requests (Credentials page, filters) get the table."""
    credentials = Credential.objects.select_related("registry", "owner_user")
    data = request.GET.copy()
    # Held ones unless a state is chosen: gone credentials are history, asked for by name.
    if not data.get("state") and not data.get("gone"):
        data["gone"] = "false"
    filters = CredentialFilter(data, queryset=credentials, request=request)
    page = Paginator(filters.qs, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "filters": filters,
        # The page offers one State select; `enabled` and `gone` are there for the API.
        "fields": [filters.form[name] for name in ("registry", "kind", "state", "owner")],
        "page": page,
        "query": query_without(request, "page"),
    }
    htmx = getattr(request, "htmx", False)
    template = "registries/_credential_table.html" if htmx else "registries/credentials.html"
    return render(request, template, context)
