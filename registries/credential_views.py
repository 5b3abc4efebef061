"""Credentials (registry-native, and Customs' own tokens as the hygiene scan copies them in) and the
grants syncs read: the registry page's two sections, the credential list and its CSV/JSON exports.

Reviewers and admins only: these rows name other people's keys and the registry's real access.
The list is its own page (and an htmx fragment the Credentials page embeds), because `accounts`
never imports `registries`. The exports stream the same filtered rows the list shows, all of them;
/api/v1/registry-credentials/export/ serves the same streams to API clients.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from django.core.paginator import Paginator
from django.db.models import F, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from accounts.models import User
from accounts.permissions import role_required
from accounts.roles import Role
from portal import exports
from portal.querystring import query_without
from registries import sync
from registries.api.serializers import CredentialSerializer
from registries.connectors.base import Connector, can_read_credentials, can_read_grants
from registries.credential_filters import CredentialFilter, open_finding_counts
from registries.models import Credential, Grant, Registry, SyncRun

PAGE_SIZE = 50
# The registry page shows this many of each; the rest are one link away.
SECTION_ROWS = 50
# Rows read per database round trip while exporting, and per open-findings count query.
EXPORT_CHUNK = 1000

ExportFormat = Literal["csv", "json"]

# The page's filter form, in column order; `enabled` and `gone` are the API's spelling of State.
PAGE_FILTERS = [
    "registry",
    "kind",
    "name",
    "shared_admin",
    "state",
    "owner",
    "owner_status",
    "steward",
    "created",
    "created_by",
    "created_after",
    "created_before",
    "expires",
    "expires_after",
    "expires_before",
    "last_used",
    "last_used_after",
    "last_used_before",
    "last_used_source",
    "scope",
    "action",
    "action_seen",
    "has_open_findings",
    "ordering",
]

CSV_COLUMNS = [
    "id",
    "registry",
    "registry_name",
    "kind",
    "name",
    "native_id",
    "state",
    "owner_kind",
    "owner_id",
    "owner_name",
    "owner_username",
    "owner_status",
    "created_at",
    "created_by_name",
    "created_by_username",
    "expires_at",
    "expiry_known",
    "never_expires",
    "last_used_at",
    "usage_known",
    "last_used_source",
    "scopes",
    "actions",
    "actions_seen",
    "actions_seen_source",
    "shared_admin",
    "open_findings",
    "first_seen_at",
    "observed_at",
    "gone_at",
]


@dataclass(frozen=True)
class CredentialRow:
    """A credential and how many open findings are about it."""

    credential: Credential
    open_findings: int


@dataclass(frozen=True)
class Capped:
    """The first rows of a list and how many there are in all."""

    rows: list[Any]
    total: int

    @property
    def more(self) -> int:
        return self.total - len(self.rows)


def with_open_findings(credentials: Iterable[Credential]) -> list[CredentialRow]:
    """The credentials, each with its count of open findings (one query for all of them)."""
    credentials = list(credentials)
    counts = open_finding_counts(credential.pk for credential in credentials)
    return [CredentialRow(credential, counts.get(credential.pk, 0)) for credential in credentials]


def _capped(queryset: QuerySet[Any]) -> Capped:
    # One row past the cap says whether counting is needed at all: most registries hold fewer.
    rows = list(queryset[: SECTION_ROWS + 1])
    if len(rows) <= SECTION_ROWS:
        return Capped(rows, len(rows))
    return Capped(rows[:SECTION_ROWS], queryset.count())


def registry_sections(user: User, registry: Registry) -> dict[str, Capped | WhyEmpty | None]:
    """The registry page's credentials and grants; None for anyone below reviewer, who must not see them."""
    if not user.has_role(Role.REVIEWER):
        return {"held_credentials": None, "reported_grants": None}
    # Held ones first, then the most recently gone.
    credentials = (
        Credential.objects.filter(registry=registry)
        .select_related("owner_user", "steward")
        .order_by(F("gone_at").desc(nulls_first=True), "kind", "name", "pk")
    )
    held = _capped(credentials)
    held = Capped(with_open_findings(held.rows), held.total)
    grants = Grant.objects.filter(registry=registry).select_related("group", "user")
    return {"held_credentials": held, "reported_grants": _capped(grants), "empty": WhyEmpty(registry)}


class WhyEmpty:
    """Why a section of the registry page has no rows: the kind reports none, no sync has read them,
    or the last read found none (SyncRun's counts are None for "not read", 0 for "read, nothing").
    Worked out only when the page shows an empty section: it decrypts secrets and reads a run."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    @functools.cached_property
    def _served_by(self) -> type[Connector] | None:
        return sync.connector_class_for(self.registry)

    @functools.cached_property
    def _last(self) -> SyncRun | None:
        runs = SyncRun.objects.filter(registry=self.registry, replica=None, status=SyncRun.Status.SUCCEEDED)
        return runs.first()

    @property
    def credentials(self) -> str:
        seen = self._last.credentials_seen if self._last else None
        return _why_empty("credentials", can_read_credentials(self._served_by), seen)

    @property
    def grants(self) -> str:
        return _why_empty(
            "grants", can_read_grants(self._served_by), self._last.grants_seen if self._last else None
        )


def _why_empty(what: str, reported: bool, last_seen: int | None) -> str:
    if not reported:
        return f"This kind of registry does not report its {what}: Customs has no API to read them."
    if last_seen is None:
        return f"No sync has read this registry's {what} yet (see the sync history for why)."
    return f"The last sync read this registry's {what}: there are none."


def filtered_credentials(request: HttpRequest) -> CredentialFilter:
    """The list's filters applied to every credential; held ones only unless a state is chosen."""
    credentials = Credential.objects.select_related("registry", "owner_user", "created_by_user", "steward")
    data = request.GET.copy()
    # Gone credentials are history, asked for by name: the page and its exports start from held ones.
    if not data.get("state") and not data.get("gone"):
        data["gone"] = "false"
    return CredentialFilter(data, queryset=credentials, request=request)


@require_GET
@role_required(Role.REVIEWER)
def credential_list(request: HttpRequest) -> HttpResponse:
    """Credentials across registries and Customs; htmx requests (Credentials page, filters) get the table."""
    filters = filtered_credentials(request)
    # A mistyped filter shows its error and no rows, rather than rows it did not ask for.
    credentials = filters.qs if filters.is_valid() else Credential.objects.none()
    page = Paginator(credentials, PAGE_SIZE).get_page(request.GET.get("page"))
    query = query_without(request, "page")
    context = {
        "filters": filters,
        "fields": [filters.form[name] for name in PAGE_FILTERS],
        "page": page,
        "rows": with_open_findings(page.object_list),
        "query": query,
    }
    htmx = getattr(request, "htmx", False)
    template = "registries/_credential_table.html" if htmx else "registries/credentials.html"
    return render(request, template, context)


@require_GET
@role_required(Role.REVIEWER)
def credential_export(request: HttpRequest, fmt: ExportFormat) -> HttpResponseBase:
    """Every credential the list's filters select (not one page), as CSV or a JSON array, streamed."""
    filters = filtered_credentials(request)
    if not filters.is_valid():
        # Nothing rather than everything: an export of one owner's keys must not hand over everyone's.
        return HttpResponseBadRequest(_problems(filters), content_type="text/plain; charset=utf-8")
    return export_response(filters.qs, fmt)


def _problems(filters: CredentialFilter) -> str:
    return "\n".join(f"{name}: {' '.join(errors)}" for name, errors in filters.errors.items())


def export_response(credentials: QuerySet[Credential], fmt: ExportFormat) -> StreamingHttpResponse:
    """The credentials as a streamed download; the page's exports and the API's share it."""
    rows = export_rows(credentials)
    if fmt == "csv":
        response = StreamingHttpResponse(csv_lines(rows), content_type="text/csv; charset=utf-8")
    else:
        response = StreamingHttpResponse(json_array(rows), content_type="application/json")
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="customs-credentials-{stamp}.{fmt}"'
    # Other people's keys: no shared cache keeps a copy.
    response["Cache-Control"] = "no-store"
    return response


def export_rows(credentials: QuerySet[Credential]) -> Iterator[dict[str, Any]]:
    """Each credential as the API shows it, read in chunks so no export holds the whole list."""
    for chunk in _chunks(credentials.iterator(chunk_size=EXPORT_CHUNK), EXPORT_CHUNK):
        counts = open_finding_counts(credential.pk for credential in chunk)
        yield from CredentialSerializer(chunk, many=True, context={"open_findings": counts}).data


def _chunks(credentials: Iterator[Credential], size: int) -> Iterator[list[Credential]]:
    chunk: list[Credential] = []
    for credential in credentials:
        chunk.append(credential)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def csv_lines(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """A header, then one line per row: lists and maps as JSON, every cell safe to open in a spreadsheet."""
    return exports.csv_lines(CSV_COLUMNS, ([_cell(row[column]) for column in CSV_COLUMNS] for row in rows))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def json_array(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """One JSON array, written a row at a time.

    An array rather than JSON lines (the audit export's form): this is a list people open and
    tools load whole, as any JSON reader can; and a download cut short leaves the array unclosed, so
    it fails to parse instead of passing for a complete export.
    """
    yield "["
    separator = "\n"
    for row in rows:
        yield separator + json.dumps(row)
        separator = ",\n"
    yield "\n]\n"
