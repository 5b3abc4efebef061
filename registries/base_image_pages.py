"""The base-image catalog for developers: browse and search it, one entry with what is built on it, and
the box where a Dockerfile gets its verdict.

Developers come here for what to build on: each entry's allowed tags as the inventory holds them
(digest and age), and the pull command by digest for the region they pick, remembered in their
session. The catalog's own repositories and regional mirrors are catalog information, shown to every
developer; the images built on an entry name other teams' repositories, so that list starts from
what the person may see. Nothing here writes: admins change the catalog elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from django import forms
from django.core.paginator import Paginator
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery, Window
from django.db.models.functions import Coalesce, RowNumber
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods
from rest_framework.request import Request

from accounts.access import signed_in_user
from accounts.models import User
from accounts.permissions import role_required
from accounts.roles import Role
from portal.querystring import query_without
from registries.inventory import pull_host
from registries.mirror import jobs
from registries.mirror.status import entry_status
from registries.models import ArtifactLineage, BaseImage, Registry, Tag
from registries.policy import catalog_io
from registries.policy.catalog import Catalog
from registries.policy.dockerfile import DockerfileError, check
from registries.policy.references import registry_host

PAGE_SIZE = 20  # entries a page: each shows its tags, so fewer than the inventory's 50
BUILT_ON_PAGE_SIZE = 50
LIST_TAGS_SHOWN = 5  # newest allowed tags per entry on the list; the entry's page shows them all
DETAIL_TAGS_READ = 200  # per repository on the entry's page; a mirror rarely keeps more
SESSION_REGION = "base_images.region"
# A Dockerfile is a few kilobytes; past this the box refuses before reading the body.
MAX_CHECK_BYTES = 1_000_000
TOO_LARGE = "The Dockerfile and build args are over 1 MB; a Dockerfile is rarely over a few kilobytes."
EPOCH_YEAR = 1970  # reproducible builds stamp `created` with the epoch: that says nothing about age


STATUS_FILTERS = {
    # Banned entries are listed only when asked for: they are there to say "not this", and the
    # Dockerfile check already names them with their replacement.
    "": ("Approved and deprecated", (BaseImage.Status.APPROVED, BaseImage.Status.DEPRECATED)),
    "approved": ("Approved", (BaseImage.Status.APPROVED,)),
    "deprecated": ("Deprecated", (BaseImage.Status.DEPRECATED,)),
    "banned": ("Banned", (BaseImage.Status.BANNED,)),
    "all": ("All", tuple(BaseImage.Status)),
}

VERDICT_STYLE = {
    "approved": "sev-low",
    "deprecated": "sev-medium",
    "unapproved": "sev-high",
    "invalid": "sev-high",
    "banned": "sev-critical",
}


# --- Where an entry's content is, and what the inventory holds there ------------------------------


@dataclass(frozen=True)
class Location:
    """A place to pull an entry from: one of its regional mirrors, or its own repository."""

    region: str  # "" for the entry's own repository
    host: str
    repository: str
    registry_ids: tuple[int, ...]  # inventory registries holding it (none: not in the inventory)
    mirror: bool

    @property
    def prefix(self) -> str:
        return f"{self.host}/{self.repository}"


@dataclass(frozen=True)
class TagRow:
    name: str
    digest: str
    built: datetime | None
    age_days: int | None
    too_old: bool
    pull: str
    location: Location
    elsewhere: bool  # not held where the chosen region pulls from


@dataclass
class EntryView:
    entry: BaseImage
    locations: list[Location]
    chosen: Location
    tags: list[TagRow]
    built_on: int
    replacement_id: int | None = None

    @property
    def shown_tags(self) -> list[TagRow]:
        return self.tags[:LIST_TAGS_SHOWN]

    @property
    def pinned(self) -> list[tuple[str, str]]:
        """Pinned digests with the pull command where the chosen region pulls from."""
        return [(digest, f"{self.chosen.prefix}@{digest}") for digest in self.entry.digests]


def endpoint_host(endpoint: str) -> str:
    """The host catalog entries name a registry by: Docker Hub's endpoint (hub.docker.com) is docker.io."""
    return registry_host(pull_host(endpoint))


def locations_of(entry: BaseImage, hosts: dict[str, tuple[int, ...]], region: str) -> list[Location]:
    """The entry's places as pulls prefer them: the region's mirror, other mirrors, its own repository."""
    mirrors = [
        Location(m.serving_region, endpoint_host(m.registry.endpoint), m.repository, (m.registry_id,), True)
        for m in entry.mirrors.all()
    ]
    mirrors.sort(key=lambda place: place.region != region)  # stable: the rest keep the mirrors' order
    host, _, path = entry.name.partition("/")
    return [*mirrors, Location("", host, path, hosts.get(host, ()), False)]


def _glob_regex(pattern: str) -> str:
    """A regex both PostgreSQL and SQLite (Python's re) read, matching at least what the glob matches.

    It only narrows what the database returns; fnmatchcase decides. A [class] becomes any character.
    """
    out, i = ["^"], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "[" and (end := _class_end(pattern, i)) > i:
            out.append(".")
            i = end + 1
            continue
        out.append(".*" if char == "*" else "." if char == "?" else _literal(char))
        i += 1
    return "".join([*out, "$"])


def _class_end(pattern: str, start: int) -> int:
    """Where fnmatch's [class] opened at `start` closes, or `start` when it never does (a literal "[")."""
    j = start + 1
    if j < len(pattern) and pattern[j] == "!":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    end = pattern.find("]", j)
    return end if end != -1 else start


def _literal(char: str) -> str:
    # A backslash before a letter or digit is a class escape in both dialects; before punctuation, literal.
    return char if char.isalnum() or char == "_" else "\\" + char


def _entry_filter(entry: BaseImage, location: Location) -> Q:
    where = Q(repository__registry_id__in=location.registry_ids, repository__name=location.repository)
    if entry.tags:
        names = Q()
        for pattern in entry.tags:
            names |= Q(name__regex=_glob_regex(pattern))
        where &= names
    if entry.digests:
        where &= Q(artifact__digest__in=entry.digests)
    return where


def inventory_tags(entries: list[EntryView], per_repository: int) -> list[Tag]:
    """The newest tags each entry may use, in every place it is kept, in one query."""
    where = Q()
    for view in entries:
        for location in view.locations:
            if location.registry_ids:
                where |= _entry_filter(view.entry, location)
    if not where:
        return []
    # Newest first per repository, capped: a mirror of a popular image may keep thousands of tags.
    newest = Window(
        RowNumber(),
        partition_by=[F("repository_id")],
        order_by=[Coalesce("artifact__created", "artifact__pushed_at", "updated_at").desc(), "name"],
    )
    rows = (
        Tag.objects.filter(where)
        .annotate(rank=newest)
        .filter(rank__lte=per_repository)
        .select_related("artifact", "repository")
    )
    return list(rows)


def _built(tag: Tag) -> datetime | None:
    created = tag.artifact.created
    if created is not None and created.year > EPOCH_YEAR:
        return created
    return tag.artifact.pushed_at


def _allowed(entry: BaseImage, tag: Tag) -> bool:
    if entry.digests and tag.artifact.digest not in entry.digests:
        return False
    return not entry.tags or any(fnmatchcase(tag.name, pattern) for pattern in entry.tags)


def _tag_row(entry: BaseImage, tag: Tag, location: Location, chosen: Location, now: datetime) -> TagRow:
    built = _built(tag)
    age = (now - built).days if built else None
    return TagRow(
        name=tag.name,
        digest=tag.artifact.digest,
        built=built,
        age_days=age,
        too_old=age is not None and entry.max_age_days is not None and age > entry.max_age_days,
        pull=f"{location.prefix}@{tag.artifact.digest}",
        location=location,
        elsewhere=location != chosen,
    )


def attach_tags(views: list[EntryView], tags: list[Tag]) -> None:
    """Each entry's allowed tags, once per name, from the first place (in pull preference) holding it."""
    by_place: dict[tuple[int, str], list[Tag]] = {}
    for tag in tags:
        by_place.setdefault((tag.repository.registry_id, tag.repository.name), []).append(tag)
    now = timezone.now()
    for view in views:
        rows: dict[str, TagRow] = {}
        for location in view.locations:
            for registry_id in location.registry_ids:
                for tag in by_place.get((registry_id, location.repository), []):
                    if tag.name not in rows and _allowed(view.entry, tag):
                        rows[tag.name] = _tag_row(view.entry, tag, location, view.chosen, now)
        view.tags = sorted(rows.values(), key=_newest_first)


def _newest_first(row: TagRow) -> tuple[float, str]:
    return (-row.built.timestamp() if row.built else 0.0, row.name)


# --- Regions, replacements, counts ---------------------------------------------------------------


def chosen_region(request: HttpRequest, choices: list[str]) -> str:
    """`?region=` when it names a region (and remember it), else the remembered one, else the first."""
    asked = request.GET.get("region", "")
    if asked in choices:
        if request.session.get(SESSION_REGION) != asked:
            request.session[SESSION_REGION] = asked
        return asked
    remembered = request.session.get(SESSION_REGION, "")
    if remembered in choices:
        return str(remembered)
    return choices[0] if choices else ""


def registry_hosts() -> dict[str, tuple[int, ...]]:
    """Inventory registries by host, to find an entry's own repository among them."""
    hosts: dict[str, tuple[int, ...]] = {}
    for registry_id, endpoint in Registry.objects.values_list("pk", "endpoint"):
        host = endpoint_host(endpoint)
        hosts[host] = (*hosts.get(host, ()), registry_id)
    return hosts


def replacement_repository(reference: str) -> str:
    """`docker.io/library/python` from `docker.io/library/python:3.13-slim` (or `…@sha256:…`)."""
    name = reference.partition("@")[0]
    head, slash, last = name.rpartition("/")
    return f"{head}{slash}{last.partition(':')[0]}"


def attach_replacements(views: list[EntryView]) -> None:
    wanted = {replacement_repository(v.entry.replacement) for v in views if v.entry.replacement}
    ids = dict(BaseImage.objects.filter(name__in=wanted).values_list("name", "pk")) if wanted else {}
    for view in views:
        if view.entry.replacement:
            view.replacement_id = ids.get(replacement_repository(view.entry.replacement))


def _visible_lineage(user: User) -> QuerySet[ArtifactLineage]:
    # Images, not manifests: a multi-platform image counts once, by its index's own lineage (the
    # base its platforms agree on), not once more for each platform.
    return ArtifactLineage.objects.filter(
        artifact__repository__registry__in=Registry.objects.visible_to(user), artifact__index=None
    )


def catalog_entries(user: User) -> QuerySet[BaseImage]:
    """Entries with their owner, mirrors and the count of visible images built on them, in two queries."""
    built_on = (
        _visible_lineage(user)
        .filter(base_image=OuterRef("pk"))
        .order_by()
        .values("base_image")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return catalog_io.entries().annotate(built_on_count=Coalesce(Subquery(built_on), 0))


def entry_views(entries: list[BaseImage], region: str, *, tags_per_repository: int) -> list[EntryView]:
    hosts = registry_hosts()
    views = []
    for entry in entries:
        places = locations_of(entry, hosts, region)
        views.append(EntryView(entry, places, places[0], [], entry.built_on_count))  # type: ignore[attr-defined]
    attach_tags(views, inventory_tags(views, tags_per_repository))
    attach_replacements(views)
    return views


# --- Pages ---------------------------------------------------------------------------------------


def _is_htmx(request: HttpRequest) -> bool:
    return bool(getattr(request, "htmx", False))


def _searched(entries: QuerySet[BaseImage], text: str, status: str) -> QuerySet[BaseImage]:
    entries = entries.filter(status__in=STATUS_FILTERS[status][1])
    if text:
        entries = entries.filter(Q(name__icontains=text) | Q(description__icontains=text))
    return entries


@require_GET
@role_required(Role.DEVELOPER)
def base_image_list(request: HttpRequest) -> HttpResponse:
    """The catalog, searchable, with each entry's newest allowed tags and their pull commands."""
    text = request.GET.get("q", "").strip()
    status = request.GET.get("status", "")
    status = status if status in STATUS_FILTERS else ""
    choices = jobs.regions()
    region = chosen_region(request, choices)
    entries = _searched(catalog_entries(signed_in_user(request)), text, status)
    page = Paginator(entries, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "views": entry_views(list(page), region, tags_per_repository=LIST_TAGS_SHOWN + 1),
        "q": text,
        "status": status,
        "statuses": [(key, label) for key, (label, _) in STATUS_FILTERS.items()],
        "regions": choices,
        "region": region,
        "query": query_without(request, "page"),
        "check_form": DockerfileForm(),
    }
    template = "registries/base_images/_results.html" if _is_htmx(request) else "registries/base_images.html"
    return render(request, template, context)


@require_GET
@role_required(Role.DEVELOPER)
def base_image_detail(request: HttpRequest, base_image_id: int) -> HttpResponse:
    """One entry: every allowed tag the inventory holds, its mirrors, pins and what is built on it."""
    user = signed_in_user(request)
    entry = get_object_or_404(catalog_entries(user), pk=base_image_id)
    choices = jobs.regions()
    region = chosen_region(request, choices)
    (view,) = entry_views([entry], region, tags_per_repository=DETAIL_TAGS_READ)
    built_on = (
        _visible_lineage(user)
        .filter(base_image=entry)
        .select_related("artifact__repository__registry")
        .order_by("artifact__repository__registry__name", "artifact__repository__name", "artifact__digest")
    )
    context = {
        "view": view,
        "entry": entry,
        "regions": choices,
        "region": region,
        "built_on": Paginator(built_on, BUILT_ON_PAGE_SIZE).get_page(request.GET.get("page")),
        "query": query_without(request, "page"),
        "tags_capped": DETAIL_TAGS_READ,
        "mirror_status": entry_status(entry),
    }
    return render(request, "registries/base_images/detail.html", context)


# --- The Dockerfile box --------------------------------------------------------------------------


class DockerfileForm(forms.Form):
    dockerfile = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false", "class": "mono wide"}),
        strip=False,
        max_length=MAX_CHECK_BYTES,
        error_messages={"required": "Paste a Dockerfile to check."},
    )
    build_args = forms.CharField(
        label="Build args",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "class": "mono wide"}),
        help_text="One NAME=VALUE a line, as docker build --build-arg takes them.",
    )

    def clean_build_args(self) -> dict[str, str]:
        return parse_build_args(self.cleaned_data["build_args"])


def parse_build_args(text: str) -> dict[str, str]:
    """NAME=VALUE lines into a dict; blank lines are skipped, the value is kept exactly (it may be empty)."""
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, equals, value = line.partition("=")
        name = name.strip()
        if not equals or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise forms.ValidationError(f"Line {number}: write NAME=VALUE, e.g. PYTHON_VERSION=3.12.")
        values[name] = value
    return values


def body_too_large(request: HttpRequest | Request) -> bool:
    """Whether the declared body is over the check's limit (the page's form and the API alike)."""
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0) > MAX_CHECK_BYTES
    except ValueError:
        return False  # a malformed length: Django reads the body as it would any other


def verdict(form: DockerfileForm) -> dict[str, Any]:
    """The check's result for the page (each stage with its badge), or {"problem": the one-line reason}."""
    if not form.is_valid():
        return {"problem": " ".join(str(m) for errors in form.errors.values() for m in errors)}
    try:
        result = check(form.cleaned_data["dockerfile"], form.cleaned_data["build_args"], Catalog.load())
    except DockerfileError as exc:
        return {"problem": str(exc)}
    return {
        "result": result,
        "rows": [(stage, VERDICT_STYLE.get(stage.verdict, "sev-info")) for stage in result.stages],
        "deprecated": sum(stage.verdict == "deprecated" for stage in result.stages),
    }


@require_http_methods(["GET", "POST"])
@role_required(Role.DEVELOPER)
def base_image_check(request: HttpRequest) -> HttpResponse:
    """The Dockerfile box: htmx swaps the verdict in; without JavaScript this page shows the form and it."""
    if request.method == "GET":
        return render(request, "registries/base_images/check.html", {"check_form": DockerfileForm()})
    if body_too_large(request):
        form, outcome, status = DockerfileForm(), {"problem": TOO_LARGE}, 413
    else:
        form = DockerfileForm(request.POST)
        outcome = verdict(form)
        status = 400 if "problem" in outcome else 200
    if _is_htmx(request):
        # htmx leaves a 4xx unswapped; a problem is part of the answer, shown where the verdict goes.
        return render(request, "registries/base_images/_check_result.html", outcome)
    context = {"check_form": form, **outcome}
    return render(request, "registries/base_images/check.html", context, status=status)
