"""Keeping the base-image catalog: admins list, add, edit and remove entries and their regional mirrors,
set how the mirror job reads an entry upstream, and download the catalog as the YAML file
import_base_images reads.

Developers browse the catalog on its own pages (base_image_pages.base_image_list); these are the
keepers' pages.
Every change goes through registries/policy/catalog_io.py, which checks and audits it exactly as it does
an imported file. The upstream (endpoint and login, registries.models.MirrorSource) is not part of the
catalog file, since a file kept in version control must hold no password: it is saved, and audited
without the secret, by registries/mirror/jobs.py's save_mirror_source.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any
from urllib.parse import urlsplit

import django_filters
import yaml
from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import signed_in_user
from accounts.models import DirectoryGroup
from accounts.permissions import role_required
from accounts.roles import Role
from portal.errors import RequestRejected
from portal.querystring import query_without
from registries.connectors.base import http_url
from registries.mirror import jobs
from registries.models import BaseImage, MirrorSource, Registry
from registries.policy import catalog_io
from registries.policy.catalog_io import EntrySpec, InvalidValue, MirrorSpec

PAGE_SIZE = 50
EXPORT_FILENAME = "base-images.yaml"
ENDPOINT_LIMIT, USERNAME_LIMIT = 500, 255  # MirrorSource's columns


# --- Filters (the page and /api/v1/base-images/ alike) --------------------------------------------


class BaseImageFilter(django_filters.FilterSet):
    search = django_filters.CharFilter(method="filter_search", label="Name contains")
    status = django_filters.ChoiceFilter(choices=BaseImage.Status.choices)

    class Meta:
        model = BaseImage
        fields = ["search", "status"]

    def filter_search(self, queryset: QuerySet[BaseImage], name: str, value: str) -> QuerySet[BaseImage]:
        text = value.strip()
        return queryset.filter(Q(name__icontains=text) | Q(description__icontains=text)) if text else queryset


# --- Forms ----------------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    """One value per line; commas separate too, since tag lists are often pasted as `a, b`."""
    return [value for value in re.split(r"[\s,]+", text.strip()) if value]


def _checked_list(text: str, check: Any) -> list[str]:
    values = _lines(text)
    try:
        for value in values:
            check(value)
        if len(set(values)) != len(values):
            raise InvalidValue("a value is listed twice")
    except InvalidValue as exc:
        raise forms.ValidationError(str(exc)) from None
    return values


def _checked(value: Any, check: Any) -> Any:
    try:
        return check(value)
    except InvalidValue as exc:
        raise forms.ValidationError(str(exc)) from None


class BaseImageForm(forms.Form):
    name = forms.CharField(
        max_length=500, help_text="The normalised repository, e.g. docker.io/library/python (no tag)."
    )
    status = forms.ChoiceField(
        choices=BaseImage.Status.choices,
        help_text="Deprecated still passes, with a warning and the replacement; banned fails.",
    )
    tags = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "class": "mono"}),
        help_text="Allowed tag patterns, one per line: globs such as 3.12-*. Empty: any tag.",
    )
    digests = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "class": "mono"}),
        help_text="Pinned digests (sha256:…), one per line. Empty: any digest.",
    )
    replacement = forms.CharField(
        required=False,
        max_length=600,
        help_text="What to build on instead, as a full reference: docker.io/library/python:3.13-slim.",
    )
    max_age_days = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=catalog_io.MAX_AGE_LIMIT,
        label="Maximum age in days",
        help_text="Images built on a base older than this are flagged. Empty: no limit.",
    )
    description = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), help_text="Shown to developers."
    )
    notes = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), help_text="For the catalog's keepers."
    )
    owner_group = forms.ModelChoiceField(
        queryset=DirectoryGroup.objects.all(),
        required=False,
        label="Owning team",
        empty_label="No owning team",
    )

    def __init__(self, data: Any = None, *, entry: BaseImage | None = None) -> None:
        self.entry = entry
        initial: dict[str, Any] = {"status": BaseImage.Status.APPROVED}
        if entry is not None:
            initial = {
                "name": entry.name,
                "status": entry.status,
                "tags": "\n".join(entry.tags),
                "digests": "\n".join(entry.digests),
                "replacement": entry.replacement,
                "max_age_days": entry.max_age_days,
                "description": entry.description,
                "notes": entry.notes,
                "owner_group": entry.owner_group_id,
            }
        super().__init__(data, initial=initial)

    def clean_name(self) -> str:
        return str(_checked(self.cleaned_data["name"].strip(), catalog_io.check_name))

    def clean_tags(self) -> list[str]:
        return _checked_list(self.cleaned_data["tags"], catalog_io.check_tag_pattern)

    def clean_digests(self) -> list[str]:
        return _checked_list(self.cleaned_data["digests"], catalog_io.check_digest)

    def clean_replacement(self) -> str:
        return str(_checked(self.cleaned_data["replacement"].strip(), catalog_io.check_replacement))

    def spec(self) -> EntrySpec:
        """The entry to save; mirrors and extra keys are not on this form, so they stay as stored."""
        data = self.cleaned_data
        stored = EntrySpec.of(self.entry) if self.entry else None
        return EntrySpec(
            name=data["name"],
            tags=tuple(data["tags"]),
            digests=tuple(data["digests"]),
            status=data["status"],
            replacement=data["replacement"],
            max_age_days=data["max_age_days"],
            description=data["description"],
            notes=data["notes"],
            owner_group=data["owner_group"],
            mirrors=stored.mirrors if stored else (),
            extra=stored.extra if stored else {},
        )


class MirrorForm(forms.Form):
    registry = forms.ModelChoiceField(queryset=Registry.objects.all(), help_text="Where the copy is kept.")
    repository = forms.CharField(max_length=255, help_text="Its path in that registry, e.g. base/python.")
    region = forms.CharField(max_length=64, required=False, help_text="Where it serves, e.g. westeurope.")

    def clean_repository(self) -> str:
        return str(_checked(self.cleaned_data["repository"].strip(), catalog_io.check_mirror_repository))

    def mirror(self) -> MirrorSpec:
        data = self.cleaned_data
        return MirrorSpec(
            registry=data["registry"], repository=data["repository"], region=data["region"].strip()
        )


# --- The upstream: where the mirror job reads an entry, and as whom (the page and the API alike) -----


def check_upstream_endpoint(text: str) -> str:
    """Empty (the entry's own registry), or an http(s) base URL with a host and no credentials in it."""
    text = text.strip()
    if not text:
        return ""
    try:
        url = http_url(text)
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError as exc:  # http_url's reasons, or urlsplit's on a malformed host such as "[::1"
        raise InvalidValue(str(exc)) from None
    if not hostname:
        raise InvalidValue(f"{text!r} names no host")
    if parts.query or parts.fragment:
        # The job appends /v2/<repository>/... to it: anything after ? or # would swallow that.
        raise InvalidValue(f"{text!r}: an endpoint has no ?query or #fragment")
    if len(url) > ENDPOINT_LIMIT:
        raise InvalidValue(f"an endpoint is at most {ENDPOINT_LIMIT} characters")
    return url


def check_upstream_login(username: str, *, has_password: bool) -> None:
    """A password (typed now, or stored and kept) comes with a username."""
    # The job signs in only when there is a username; a password alone would be kept and never used.
    if has_password and not username:
        raise InvalidValue("a password needs a username: enter the username, or clear the password")


def save_upstream(
    entry: BaseImage,
    stored: MirrorSource | None,
    *,
    actor: Any,
    endpoint: str,
    username: str,
    password: str | None,
) -> bool:
    """Save the entry's upstream unless nothing changes (no audit event then); True when saved.

    `password` None keeps the stored one, "" removes it.
    """
    if password == "" and not (stored and stored.password):
        password = None  # clearing what is not there changes nothing
    before = (stored.endpoint, stored.username) if stored else ("", "")
    if password is None and (endpoint, username) == before:
        return False
    jobs.save_mirror_source(entry, actor=actor, endpoint=endpoint, username=username, password=password)
    return True


def stored_upstream(entry: BaseImage) -> MirrorSource | None:
    return MirrorSource.objects.filter(base_image=entry).first()


class UpstreamForm(forms.Form):
    """How the mirror job reads the entry upstream. The password is written here, never shown again."""

    endpoint = forms.CharField(
        required=False,
        max_length=ENDPOINT_LIMIT,
        label="Read from",
        help_text="Another address to read the image from, e.g. a pull-through cache: "
        "https://cache.example.com. Empty: the entry's own registry.",
    )
    username = forms.CharField(
        required=False,
        max_length=USERNAME_LIMIT,
        help_text="Empty: the connected registry's login at that host, if there is one, else anonymous.",
    )
    # render_value=False: neither the stored password nor a just-typed one is ever sent back.
    password = forms.CharField(
        required=False,
        strip=False,
        label="Password or token",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave blank to keep the stored one.",
    )
    clear_password = forms.BooleanField(required=False, label="Clear the stored password")

    def __init__(self, data: Any = None, *, stored: MirrorSource | None) -> None:
        self.stored = stored
        self.password_set = bool(stored and stored.password)
        initial = {"endpoint": stored.endpoint, "username": stored.username} if stored else {}
        super().__init__(data, initial=initial)
        if not self.password_set:
            del self.fields["clear_password"]  # nothing to clear
            self.fields["password"].help_text = "For a private image, or to avoid anonymous rate limits."

    def clean_endpoint(self) -> str:
        return str(_checked(self.cleaned_data["endpoint"], check_upstream_endpoint))

    def clean(self) -> dict[str, Any] | None:
        data = super().clean() or {}
        typed, clear = bool(data.get("password")), bool(data.get("clear_password"))
        if typed and clear:
            raise forms.ValidationError("Type a new password or clear the stored one, not both.")
        try:
            check_upstream_login(
                data.get("username", ""), has_password=typed or (self.password_set and not clear)
            )
        except InvalidValue as exc:
            self.add_error("username", str(exc))
        return data

    def new_password(self) -> str | None:
        """The password to store, "" to remove the stored one, None to keep it."""
        if self.cleaned_data.get("clear_password"):
            return ""
        return self.cleaned_data["password"] or None


# --- Pages ----------------------------------------------------------------------------------------


def _entry(base_image_id: int) -> BaseImage:
    return get_object_or_404(catalog_io.entries(), pk=base_image_id)


@require_GET
@role_required(Role.ADMIN)
def base_image_manage(request: HttpRequest) -> HttpResponse:
    """The whole catalog, deprecated and banned entries included, with who changed each last."""
    listed = (
        BaseImage.objects.select_related("owner_group", "updated_by")
        .annotate(mirror_count=Count("mirrors"))
        .order_by("name")
    )
    filters = BaseImageFilter(request.GET or None, queryset=listed)
    page = Paginator(filters.qs, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {"filters": filters, "page": page, "query": query_without(request, "page")}
    return render(request, "registries/base_images/admin_list.html", context)


@require_http_methods(["GET", "POST"])
@role_required(Role.ADMIN)
def base_image_add(request: HttpRequest) -> HttpResponse:
    form = BaseImageForm(request.POST or None)
    if request.method == "POST" and form.is_valid() and (entry := _save(request, form, None, form.spec())):
        messages.success(request, f"{entry.name} added to the catalog. Add its regional mirrors here.")
        return redirect("registries:base_image_edit", base_image_id=entry.pk)
    return render(request, "registries/base_images/admin_form.html", {"form": form, "entry": None})


@require_http_methods(["GET", "POST"])
@role_required(Role.ADMIN)
def base_image_edit(request: HttpRequest, base_image_id: int) -> HttpResponse:
    entry = _entry(base_image_id)
    form = BaseImageForm(request.POST or None, entry=entry)
    if request.method == "POST" and form.is_valid() and _save(request, form, entry, form.spec()):
        messages.success(request, f"{entry.name} saved.")
        return redirect("registries:base_image_manage")
    return _edit_page(request, entry, form, MirrorForm())


def _edit_page(
    request: HttpRequest,
    entry: BaseImage,
    form: BaseImageForm,
    mirror_form: MirrorForm,
    upstream_form: UpstreamForm | None = None,
) -> HttpResponse:
    context = {
        "form": form,
        "entry": entry,
        "mirror_form": mirror_form,
        "upstream_form": upstream_form or UpstreamForm(stored=stored_upstream(entry)),
        # Keys from the catalog file Customs does not read: kept as they are, shown so nobody is surprised.
        "extra": yaml.safe_dump(entry.extra, sort_keys=True, allow_unicode=True) if entry.extra else "",
    }
    return render(request, "registries/base_images/admin_form.html", context)


def _save(
    request: HttpRequest, form: forms.Form, entry: BaseImage | None, spec: EntrySpec
) -> BaseImage | None:
    """Save through catalog_io; a refusal becomes a form error, next to the field it names."""
    try:
        return catalog_io.save_base_image(entry, spec, actor=signed_in_user(request))
    except RequestRejected as exc:
        field_name, _, message = str(exc).partition(": ")
        if field_name in form.fields:
            form.add_error(field_name, message)
        else:
            form.add_error(None, str(exc))
        return None


@require_POST
@role_required(Role.ADMIN)
def base_image_delete(request: HttpRequest, base_image_id: int) -> HttpResponse:
    entry = _entry(base_image_id)
    catalog_io.delete_base_image(entry, actor=signed_in_user(request))
    messages.success(request, f"{entry.name} removed from the catalog.")
    return redirect("registries:base_image_manage")


@require_POST
@role_required(Role.ADMIN)
def base_image_mirror_add(request: HttpRequest, base_image_id: int) -> HttpResponse:
    entry = _entry(base_image_id)
    mirror_form = MirrorForm(request.POST)
    if mirror_form.is_valid():
        stored = EntrySpec.of(entry)
        others = tuple(m for m in stored.mirrors if m.registry.pk != mirror_form.cleaned_data["registry"].pk)
        if len(others) < len(stored.mirrors):
            mirror_form.add_error("registry", "This entry already has a mirror there; remove it first.")
        elif _save(request, mirror_form, entry, _with_mirrors(stored, (*others, mirror_form.mirror()))):
            messages.success(request, f"Mirror in {mirror_form.cleaned_data['registry'].name} added.")
            return redirect("registries:base_image_edit", base_image_id=entry.pk)
    return _edit_page(request, entry, BaseImageForm(entry=entry), mirror_form)


@require_POST
@role_required(Role.ADMIN)
def base_image_mirror_delete(request: HttpRequest, base_image_id: int, mirror_id: int) -> HttpResponse:
    entry = _entry(base_image_id)
    mirror = get_object_or_404(entry.mirrors.select_related("registry"), pk=mirror_id)
    stored = EntrySpec.of(entry)
    kept = tuple(m for m in stored.mirrors if m.registry.pk != mirror.registry_id)
    catalog_io.save_base_image(entry, _with_mirrors(stored, kept), actor=signed_in_user(request))
    messages.success(request, f"Mirror in {mirror.registry.name} removed.")
    return redirect("registries:base_image_edit", base_image_id=entry.pk)


@require_POST
@role_required(Role.ADMIN)
def base_image_upstream(request: HttpRequest, base_image_id: int) -> HttpResponse:
    """Set where the mirror job reads the entry and as whom; a bad value saves nothing."""
    entry = _entry(base_image_id)
    upstream_form = UpstreamForm(request.POST, stored=stored_upstream(entry))
    if not upstream_form.is_valid():
        return _edit_page(request, entry, BaseImageForm(entry=entry), MirrorForm(), upstream_form)
    data = upstream_form.cleaned_data
    saved = save_upstream(
        entry,
        upstream_form.stored,
        actor=signed_in_user(request),
        endpoint=data["endpoint"],
        username=data["username"],
        password=upstream_form.new_password(),
    )
    if saved:
        messages.success(request, f"Upstream of {entry.name} saved.")
    else:
        messages.info(request, f"Upstream of {entry.name} unchanged.")
    return redirect("registries:base_image_edit", base_image_id=entry.pk)


def _with_mirrors(spec: EntrySpec, mirrors: tuple[MirrorSpec, ...]) -> EntrySpec:
    return dataclasses.replace(spec, mirrors=mirrors)


@require_GET
@role_required(Role.ADMIN)
def base_image_export(request: HttpRequest) -> HttpResponse:
    """The catalog as a file: keep it in version control and load it back with import_base_images."""
    response = HttpResponse(catalog_io.export_catalog(), content_type="application/yaml; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{EXPORT_FILENAME}"'
    return response
