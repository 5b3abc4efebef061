"""Inventory API: everyone signed in reads (developers look up what to pull); admins change registries."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.access import signed_in_user
from accounts.models import User
from accounts.roles import Role
from registries import access, services
from registries.api.serializers import (
    ArtifactSerializer,
    ConnectionResultSerializer,
    RegistrySerializer,
    RegistryWriteSerializer,
    RepositorySerializer,
    SyncQueuedSerializer,
    SyncRunSerializer,
    TagSerializer,
)
from registries.forms import RepositoryFilter
from registries.models import Artifact, Registry, Repository, SyncRun, Tag


class InventoryReader:
    """Developers and up read; only admins write (and only where a viewset allows writing at all)."""

    read_role = Role.DEVELOPER
    write_role = Role.ADMIN


def viewer(view: viewsets.GenericViewSet[Any]) -> User | None:
    """The signed-in person; None while drf-spectacular builds the schema (there is no request user)."""
    if getattr(view, "swagger_fake_view", False):
        return None
    return signed_in_user(view.request)


class RegistryViewSet(InventoryReader, viewsets.ModelViewSet[Registry]):
    """Registries. Responses carry the public config only; secrets are write-only."""

    serializer_class = RegistrySerializer
    filterset_fields = ["kind", "region"]
    ordering_fields = ["name", "created_at"]

    def get_queryset(self) -> QuerySet[Registry]:
        return Registry.objects.visible_to(viewer(self)).prefetch_related("replicas")

    def get_serializer_class(self) -> type[Any]:
        if self.action in ("create", "update", "partial_update"):
            return RegistryWriteSerializer
        return RegistrySerializer

    @extend_schema(responses={201: RegistrySerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        form = RegistryWriteSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        registry = self._save(Registry(), form.validated_data)
        return Response(RegistrySerializer(registry).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: RegistrySerializer})
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        registry = self.get_object()
        partial = kwargs.get("partial", False)
        form = RegistryWriteSerializer(registry, data=request.data, partial=partial)
        form.is_valid(raise_exception=True)
        registry = self._save(registry, form.validated_data)
        return Response(RegistrySerializer(registry).data)

    def _save(self, registry: Registry, data: dict[str, Any]) -> Registry:
        data = dict(data)
        public = data.pop("config", registry.config)
        secrets = data.pop("secrets", {})
        for name, value in data.items():
            setattr(registry, name, value)
        return services.save_registry(
            registry, actor=signed_in_user(self.request), public=public, secrets=secrets
        )

    def perform_destroy(self, instance: Registry) -> None:
        services.delete_registry(instance, actor=signed_in_user(self.request))

    @extend_schema(request=None, responses={200: ConnectionResultSerializer})
    @action(detail=True, methods=["post"], url_path="test-connection")
    def test_connection(self, request: Request, pk: str) -> Response:
        """Ask the registry whether it answers with the stored settings; the reason says why not."""
        registry = access.get_registry_for_user(signed_in_user(request), int(pk), write=True)
        result = services.check_connection(registry)
        return Response({"ok": result.ok, "reason": result.reason})

    @extend_schema(request=None, responses={202: SyncQueuedSerializer})
    @action(detail=True, methods=["post"])
    def sync(self, request: Request, pk: str) -> Response:
        """Queue a sync now; follow it through /sync-runs/?registry=<id>."""
        registry = access.get_registry_for_user(signed_in_user(request), int(pk), write=True)
        services.request_sync(registry, actor=signed_in_user(request))
        return Response({"queued": True}, status=status.HTTP_202_ACCEPTED)


class SyncRunViewSet(InventoryReader, viewsets.ReadOnlyModelViewSet[SyncRun]):
    """Sync runs, newest first, with counts that grow while a run is running."""

    serializer_class = SyncRunSerializer
    filterset_fields = ["registry", "status", "trigger"]
    ordering_fields = ["started_at", "finished_at"]

    def get_queryset(self) -> QuerySet[SyncRun]:
        return SyncRun.objects.visible_to(viewer(self)).select_related("replica")


class RepositoryViewSet(InventoryReader, viewsets.ReadOnlyModelViewSet[Repository]):
    """Repositories across registries, with the browser's filters: search, registry, namespace,
    region, ordering."""

    serializer_class = RepositorySerializer
    filterset_class = RepositoryFilter
    filter_backends = [DjangoFilterBackend]  # ordering is one of RepositoryFilter's own parameters

    def get_queryset(self) -> QuerySet[Repository]:
        return Repository.objects.visible_to(viewer(self)).select_related("registry").sorted_by("name")


class ArtifactViewSet(InventoryReader, viewsets.ReadOnlyModelViewSet[Artifact]):
    """Artifacts by digest, with tags, platform manifests, layers and the regions holding them."""

    serializer_class = ArtifactSerializer
    filterset_fields = ["repository", "digest", "media_type", "index"]
    filter_backends = [DjangoFilterBackend, OrderingFilter]
    ordering_fields = ["first_seen", "pushed_at", "size"]

    def get_queryset(self) -> QuerySet[Artifact]:
        return (
            Artifact.objects.visible_to(viewer(self))
            .select_related("repository__registry", "index")
            .prefetch_related("platforms", "tags", "presences", "repository__registry__replicas")
            .order_by("-first_seen", "-pk")
        )


class TagViewSet(InventoryReader, viewsets.ReadOnlyModelViewSet[Tag]):
    serializer_class = TagSerializer
    filterset_fields = ["repository", "name"]
    ordering_fields = ["name", "updated_at"]

    def get_queryset(self) -> QuerySet[Tag]:
        return Tag.objects.visible_to(viewer(self)).select_related("artifact").order_by("repository", "name")
