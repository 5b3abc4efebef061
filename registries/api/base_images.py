"""The base-image catalog over the API: everyone signed in reads it (developers look up what to build
on), admins create, change and remove entries with their regional mirrors, and set where the mirror
job reads an entry upstream (PUT base-images/<id>/upstream/; the password goes in, never out).

Writes go through registries/policy/catalog_io.py, as the pages and import_base_images do: the same
checks (a normalised name, tag globs, digests, one mirror per registry) and the same audit trail.
A refusal there is a RequestRejected, a 400 in the usual error shape.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.access import signed_in_user
from accounts.models import DirectoryGroup
from accounts.roles import Role
from registries import base_image_views
from registries.base_image_views import BaseImageFilter
from registries.models import BaseImage, BaseImageMirror, Registry
from registries.policy import catalog_io
from registries.policy.catalog_io import EntrySpec, InvalidValue, MirrorSpec

# Plain strings with their values in the help text, not enums: "status" already names other choice
# sets in the schema, and a second one under that name makes drf-spectacular guess.
STATUS_HELP = "approved, deprecated (a warning, with the replacement) or banned. Omitted on create: approved."


def _checked(value: Any, check: Any) -> Any:
    try:
        return check(value)
    except InvalidValue as exc:
        raise serializers.ValidationError(str(exc)) from None


class BaseImageMirrorSerializer(serializers.ModelSerializer[BaseImageMirror]):
    registry_name = serializers.CharField(source="registry.name", read_only=True)

    class Meta:
        model = BaseImageMirror
        fields = ["id", "registry", "registry_name", "repository", "region"]
        read_only_fields = fields


class BaseImageSerializer(serializers.ModelSerializer[BaseImage]):
    """A catalog entry as stored, with its regional mirrors."""

    tags = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="Allowed tag globs; empty: any tag."
    )
    digests = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="Pinned digests; empty: any digest."
    )
    owner_group_name = serializers.CharField(source="owner_group.display_name", default=None, read_only=True)
    owner_group_external_id = serializers.CharField(
        source="owner_group.external_id", default=None, read_only=True
    )
    status = serializers.CharField(read_only=True, help_text=STATUS_HELP)
    mirrors = BaseImageMirrorSerializer(many=True, read_only=True)
    extra = serializers.DictField(
        read_only=True, help_text="Keys from the catalog file Customs does not read."
    )
    updated_by = serializers.CharField(source="updated_by.username", default=None, read_only=True)

    class Meta:
        model = BaseImage
        fields = [
            "id",
            "name",
            "status",
            "tags",
            "digests",
            "replacement",
            "max_age_days",
            "description",
            "notes",
            "owner_group",
            "owner_group_name",
            "owner_group_external_id",
            "mirrors",
            "extra",
            "created_at",
            "updated_at",
            "updated_by",
        ]
        read_only_fields = fields


class BaseImageMirrorWriteSerializer(serializers.Serializer[Any]):
    registry = serializers.PrimaryKeyRelatedField(queryset=Registry.objects.all())
    repository = serializers.CharField(
        max_length=255, help_text="Its path in that registry, e.g. base/python."
    )
    region = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")

    def validate_repository(self, repository: str) -> str:
        return str(_checked(repository, catalog_io.check_mirror_repository))


class BaseImageWriteSerializer(serializers.Serializer[Any]):
    """Admins' input. PUT sets the whole entry (left out: the default); PATCH changes what it names."""

    name = serializers.CharField(
        max_length=500, help_text="The normalised repository: docker.io/library/python."
    )
    status = serializers.CharField(default=catalog_io.APPROVED, help_text=STATUS_HELP)
    tags = serializers.ListField(child=serializers.CharField(max_length=128), default=list)
    digests = serializers.ListField(child=serializers.CharField(max_length=200), default=list)
    replacement = serializers.CharField(max_length=600, allow_blank=True, default="")
    max_age_days = serializers.IntegerField(
        min_value=1, max_value=catalog_io.MAX_AGE_LIMIT, allow_null=True, default=None
    )
    description = serializers.CharField(allow_blank=True, default="")
    notes = serializers.CharField(allow_blank=True, default="")
    owner_group = serializers.PrimaryKeyRelatedField(
        queryset=DirectoryGroup.objects.all(), allow_null=True, default=None
    )
    mirrors = BaseImageMirrorWriteSerializer(many=True, default=list)
    extra = serializers.DictField(default=dict, help_text="Other keys, kept and exported with the entry.")

    def validate_name(self, name: str) -> str:
        return str(_checked(name, catalog_io.check_name))

    def validate_status(self, status: str) -> str:
        return str(_checked(status, catalog_io.check_status))

    def validate_tags(self, tags: list[str]) -> list[str]:
        return [_checked(tag, catalog_io.check_tag_pattern) for tag in tags]

    def validate_digests(self, digests: list[str]) -> list[str]:
        return [_checked(digest, catalog_io.check_digest) for digest in digests]

    def validate_replacement(self, replacement: str) -> str:
        return str(_checked(replacement, catalog_io.check_replacement))

    def validate_extra(self, extra: dict[str, Any]) -> dict[str, Any]:
        return dict(_checked(extra, catalog_io.check_extra))


class BaseImageUpstreamSerializer(serializers.Serializer[Any]):
    """Where the mirror job reads an entry, and as whom. A PUT sets it all; the password is write-only."""

    endpoint = serializers.CharField(
        max_length=base_image_views.ENDPOINT_LIMIT,
        allow_blank=True,
        default="",
        help_text="Another address to read the image from, e.g. a pull-through cache. "
        "Empty: the entry's own registry.",
    )
    username = serializers.CharField(
        max_length=base_image_views.USERNAME_LIMIT,
        allow_blank=True,
        default="",
        help_text="Empty: the connected registry's login at that host, if there is one, else anonymous.",
    )
    password = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        style={"input_type": "password"},
        help_text="Omitted or empty: the stored password is kept. Never returned.",
    )
    clear_password = serializers.BooleanField(
        write_only=True, default=False, help_text="Remove the stored password."
    )
    password_set = serializers.BooleanField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True)

    def __init__(self, *args: Any, password_set: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stored_password = password_set  # whether one is stored now, for the username check

    def validate_endpoint(self, endpoint: str) -> str:
        return str(_checked(endpoint, base_image_views.check_upstream_endpoint))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        typed, clear = bool(attrs.get("password")), attrs["clear_password"]
        if typed and clear:
            raise serializers.ValidationError("send a new password or clear_password, not both")
        keeps = self.stored_password and not clear
        try:
            base_image_views.check_upstream_login(attrs["username"].strip(), has_password=typed or keeps)
        except InvalidValue as exc:
            raise serializers.ValidationError({"username": str(exc)}) from None
        return attrs


def _upstream_view(entry: BaseImage) -> dict[str, Any]:
    stored = base_image_views.stored_upstream(entry)
    if stored is None:
        return {"endpoint": "", "username": "", "password_set": False, "updated_at": None}
    return {
        "endpoint": stored.endpoint,
        "username": stored.username,
        "password_set": bool(stored.password),
        "updated_at": stored.updated_at,
    }


def _spec(stored: EntrySpec | None, data: dict[str, Any]) -> EntrySpec:
    """The entry to save: what was sent, over the stored entry for a PATCH."""
    if "mirrors" in data:
        data = data | {"mirrors": tuple(MirrorSpec(**mirror) for mirror in data["mirrors"])}
    for listed in ("tags", "digests"):
        if listed in data:
            data = data | {listed: tuple(data[listed])}
    if stored is None:
        return EntrySpec(**data)
    return dataclasses.replace(stored, **data)


class BaseImageViewSet(viewsets.ModelViewSet[BaseImage]):
    """The base-image catalog. Filter with `status`; `search` matches the name and description."""

    serializer_class = BaseImageSerializer
    read_role = Role.DEVELOPER
    write_role = Role.ADMIN
    filterset_class = BaseImageFilter
    ordering_fields = ["name", "status", "updated_at"]
    # Numbers only: base-images/check-dockerfile sits next to these routes.
    lookup_value_regex = r"\d+"

    def get_queryset(self) -> QuerySet[BaseImage]:
        return catalog_io.entries().select_related("updated_by").order_by("name")

    def get_serializer_class(self) -> type[Any]:
        if self.action in ("create", "update", "partial_update"):
            return BaseImageWriteSerializer
        return BaseImageSerializer

    @extend_schema(responses={201: BaseImageSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        form = BaseImageWriteSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        entry = catalog_io.save_base_image(
            None, _spec(None, form.validated_data), actor=signed_in_user(request)
        )
        return Response(BaseImageSerializer(self._fresh(entry)).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: BaseImageSerializer})
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        entry = self.get_object()
        partial = kwargs.get("partial", False)
        form = BaseImageWriteSerializer(data=request.data, partial=partial)
        form.is_valid(raise_exception=True)
        # A PUT's validated data holds every field (left out: its default), as a catalog file's entry does;
        # a PATCH's only what was sent, laid over the stored entry.
        spec = _spec(EntrySpec.of(entry), form.validated_data)
        entry = catalog_io.save_base_image(entry, spec, actor=signed_in_user(request))
        return Response(BaseImageSerializer(self._fresh(entry)).data)

    @extend_schema(request=BaseImageUpstreamSerializer, responses={200: BaseImageUpstreamSerializer})
    @action(detail=True, methods=["put"])
    def upstream(self, request: Request, pk: str | None = None) -> Response:
        """Set where the mirror job reads this entry and as whom (admins). Left out: the default."""
        entry = self.get_object()
        stored = base_image_views.stored_upstream(entry)
        form = BaseImageUpstreamSerializer(data=request.data, password_set=bool(stored and stored.password))
        form.is_valid(raise_exception=True)
        data = form.validated_data
        base_image_views.save_upstream(
            entry,
            stored,
            actor=signed_in_user(request),
            endpoint=data["endpoint"],
            username=data["username"].strip(),
            password="" if data["clear_password"] else (data.get("password") or None),
        )
        return Response(BaseImageUpstreamSerializer(_upstream_view(entry)).data)

    def perform_destroy(self, instance: BaseImage) -> None:
        catalog_io.delete_base_image(instance, actor=signed_in_user(self.request))

    def _fresh(self, entry: BaseImage) -> BaseImage:
        return self.get_queryset().get(pk=entry.pk)
