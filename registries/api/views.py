"""Inventory API: everyone signed in reads (developers look up what to pull); admins change registries.

Access API: reviewers read rules and ask who may do what, with evidence; admins change rules; everyone
reads their own access.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from django.db.models import QuerySet, prefetch_related_objects
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import generics, renderers, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.access import signed_in_user
from accounts.models import DirectoryGroup, GroupMembership, User
from accounts.roles import Role
from registries import access, effective, services
from registries.access_views import reach_rows, report_response
from registries.api.serializers import (
    AccessRuleSerializer,
    AccessRuleWriteSerializer,
    ArtifactSerializer,
    ConnectionResultSerializer,
    CredentialSerializer,
    GrantSerializer,
    MyAccessSerializer,
    PersonWithEvidenceSerializer,
    RegistrySerializer,
    RegistryWriteSerializer,
    ReplicationLinkSerializer,
    ReportQuerySerializer,
    RepositorySerializer,
    RobotWithEvidenceSerializer,
    RuleReachSerializer,
    SyncQueuedSerializer,
    SyncRunSerializer,
    TagSerializer,
    UserAccessQuerySerializer,
    UserAccessSerializer,
    WhoCanQuerySerializer,
)
from registries.credential_filters import CredentialFilter, GrantFilter, open_finding_counts
from registries.credential_views import ExportFormat, export_response
from registries.forms import RepositoryFilter, RuleFilter
from registries.models import (
    AccessRule,
    Artifact,
    Credential,
    Grant,
    Registry,
    ReplicationLink,
    Repository,
    SyncRun,
    Tag,
)


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
        return Response(ConnectionResultSerializer(result).data)

    @extend_schema(request=None, responses={202: SyncQueuedSerializer})
    @action(detail=True, methods=["post"])
    def sync(self, request: Request, pk: str) -> Response:
        """Queue a sync now; follow it through /sync-runs/?registry=<id>."""
        registry = access.get_registry_for_user(signed_in_user(request), int(pk), write=True)
        services.request_sync(registry, actor=signed_in_user(request))
        return Response({"queued": True}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=ReplicationLinkSerializer(many=True))
    @action(detail=True, methods=["get"])
    def replication(self, request: Request, pk: str) -> Response:
        """Regions and replication links as the registry reported them at its last complete read."""
        registry = access.get_registry_for_user(signed_in_user(request), int(pk))
        page = self.paginate_queryset(ReplicationLink.objects.filter(registry=registry))  # type: ignore[arg-type]
        return self.get_paginated_response(ReplicationLinkSerializer(page, many=True).data)


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


# --- Access rules and effective access --------------------------------------------------------------


class AccessRuleViewSet(viewsets.ModelViewSet[AccessRule]):
    """Access rules. Reviewers and admins read them (expired ones too, marked `expired`); admins create,
    change and remove them, audited with the rule before and after."""

    serializer_class = AccessRuleSerializer
    read_role = Role.REVIEWER
    write_role = Role.ADMIN
    filterset_class = RuleFilter
    ordering_fields = ["pattern", "expires_at", "updated_at", "created_at"]

    def get_queryset(self) -> QuerySet[AccessRule]:
        return AccessRule.objects.select_related("group", "registry", "created_by").order_by("pattern", "pk")

    def get_serializer_class(self) -> type[Any]:
        if self.action in ("create", "update", "partial_update"):
            return AccessRuleWriteSerializer
        return AccessRuleSerializer

    @extend_schema(responses={201: AccessRuleSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        form = AccessRuleWriteSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        request_ = _rule_request(None, form.validated_data)
        rule = services.save_access_rule(None, request_, actor=signed_in_user(request))
        return Response(AccessRuleSerializer(rule).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: AccessRuleSerializer})
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        rule = self.get_object()
        form = AccessRuleWriteSerializer(data=request.data, partial=kwargs.get("partial", False))
        form.is_valid(raise_exception=True)
        rule = services.save_access_rule(
            rule, _rule_request(rule, form.validated_data), actor=signed_in_user(request)
        )
        return Response(AccessRuleSerializer(rule).data)

    def perform_destroy(self, instance: AccessRule) -> None:
        services.delete_access_rule(instance, actor=signed_in_user(self.request))


def _rule_request(rule: AccessRule | None, data: dict[str, Any]) -> services.RuleRequest:
    """The request to save: the stored rule's values (when changing one) overlaid with what was sent."""
    stored: dict[str, Any] = {}
    if rule is not None:
        stored = {
            "group": rule.group,
            "registry": rule.registry,
            "pattern": rule.pattern,
            "actions": rule.actions,
            "expires_at": rule.expires_at,
            "justification": rule.justification,
        }
    merged = stored | data
    return services.RuleRequest(
        group=merged["group"],
        pattern=merged["pattern"],
        actions=frozenset(merged["actions"]),
        justification=merged["justification"],
        registry=merged.get("registry"),
        expires_at=merged.get("expires_at"),
    )


class _AccessAnswer(generics.GenericAPIView[Any]):
    """Answers computed from rules and memberships: no model list to filter or order."""

    read_role = Role.REVIEWER
    filter_backends: list[Any] = []

    def _query(self, serializer_class: type[serializers.Serializer[Any]]) -> dict[str, Any]:
        query = serializer_class(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return dict(query.validated_data)


def _with_counts(reaching: list[tuple[AccessRule, GroupMembership]]) -> list[dict[str, Any]]:
    counts = effective.reach_counts(rule for rule, _ in reaching)
    return [
        {"rule": rule, "membership": membership, "repository_count": counts.get(rule.pk, 0)}
        for rule, membership in reaching
    ]


def _memberships(person: User) -> QuerySet[GroupMembership]:
    return person.memberships.select_related("group").order_by("group__display_name")


class UserAccessView(_AccessAnswer):
    """What may this person do? With `registry` and `repository`: the actions there and the rules and
    memberships that grant them. Without a repository: the rules in force reaching them, and through
    which group (on `registry` only, when given)."""

    serializer_class = UserAccessSerializer
    pagination_class = None

    @extend_schema(parameters=[UserAccessQuerySerializer], responses=UserAccessSerializer)
    def get(self, request: Request) -> Response:
        query = self._query(UserAccessQuerySerializer)
        person = get_object_or_404(User, username=query["user"])
        registry, repository = query.get("registry"), query.get("repository")
        body: dict[str, Any] = {
            "person": person,
            "registry": registry.pk if registry else None,
            "repository": repository or None,
            "actions": None,
            "evidence": [],
            "memberships": _memberships(person),
            "rules": [],
        }
        if registry is not None and repository:
            access = effective.user_access(person, registry, repository)
            body["actions"] = [action for action in AccessRule.ACTIONS if access.allows(action)]
            body["evidence"] = access.evidence
        else:
            body["rules"] = _with_counts(effective.rules_reaching(person, registry=registry))
        return Response(UserAccessSerializer(body).data)


class WhoCanView(_AccessAnswer):
    """Who may perform `action` on the repository, each person with the rules and memberships why."""

    serializer_class = PersonWithEvidenceSerializer

    @extend_schema(parameters=[WhoCanQuerySerializer], responses=PersonWithEvidenceSerializer(many=True))
    def get(self, request: Request) -> Response:
        query = self._query(WhoCanQuerySerializer)
        people = effective.who_can(query["registry"], query["repository"], query["action"])
        rows = [{"person": person, "evidence": evidence} for person, evidence in people]
        page = self.paginate_queryset(rows)  # type: ignore[arg-type]  # a list pages like a queryset
        return self.get_paginated_response(PersonWithEvidenceSerializer(page, many=True).data)


class RobotsWhoCanView(_AccessAnswer):
    """Which robot tokens may perform `action` on the repository, each with its group's rules why."""

    serializer_class = RobotWithEvidenceSerializer

    @extend_schema(parameters=[WhoCanQuerySerializer], responses=RobotWithEvidenceSerializer(many=True))
    def get(self, request: Request) -> Response:
        query = self._query(WhoCanQuerySerializer)
        robots = effective.robots_who_can(query["registry"], query["repository"], query["action"])
        rows = [{"robot": robot, "evidence": evidence} for robot, evidence in robots]
        page = self.paginate_queryset(rows)  # type: ignore[arg-type]  # a list pages like a queryset
        return self.get_paginated_response(RobotWithEvidenceSerializer(page, many=True).data)


class GroupReachView(_AccessAnswer):
    """Each rule in force for the group, with how many inventoried repositories it matches and a few names."""

    serializer_class = RuleReachSerializer

    @extend_schema(responses=RuleReachSerializer(many=True))
    def get(self, request: Request, group_id: int) -> Response:
        group = get_object_or_404(DirectoryGroup, pk=group_id)
        page = self.paginate_queryset(effective.group_reach(group))  # type: ignore[arg-type]
        rules = [rule for rule, _ in page or []]
        for rule in rules:
            rule.group = group  # every rule here is the group's: no query per rule for its name
        prefetch_related_objects(rules, "created_by")
        rows = [
            {"rule": row.rule, "repository_count": row.count, "sample": row.sample}
            for row in reach_rows(page or [])
        ]
        return self.get_paginated_response(RuleReachSerializer(rows, many=True).data)


class MyAccessView(_AccessAnswer):
    """The signed-in person's own access: their groups, and the rules in force reaching them."""

    serializer_class = MyAccessSerializer
    read_role = Role.DEVELOPER
    pagination_class = None

    @extend_schema(responses=MyAccessSerializer)
    def get(self, request: Request) -> Response:
        person = signed_in_user(request)
        body = {
            "person": person,
            "memberships": _memberships(person),
            "rules": _with_counts(effective.rules_reaching(person)),
        }
        return Response(MyAccessSerializer(body).data)


class CsvRenderer(renderers.BaseRenderer):
    """Lets clients ask for text/csv. The report itself streams past renderers; only errors land here."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        error = data.get("error", {}) if isinstance(data, dict) else {}
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["error", "message"])
        writer.writerow([error.get("code", ""), error.get("message", "")])
        return buffer.getvalue().encode()


class AccessReportView(_AccessAnswer):
    """The full access report as CSV, streamed: one row per (person, membership, rule in force).
    `registry` keeps the rules that apply there (rules for all registries included); `group` one group's."""

    renderer_classes = [renderers.JSONRenderer, CsvRenderer]
    pagination_class = None

    @extend_schema(
        operation_id="v1_access_report_csv",
        parameters=[ReportQuerySerializer],
        responses={(200, "text/csv"): OpenApiTypes.STR},
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        query = self._query(ReportQuerySerializer)
        return report_response(registry=query.get("registry"), group=query.get("group"))


# --- Registry-native credentials and grants ---------------------------------------------------------


class CredentialViewSet(viewsets.ReadOnlyModelViewSet[Credential]):
    """Credentials the registries hold (robots, tokens, keys, admin logins) and Customs' own tokens
    (`registry` null, `registry=customs` to ask for them), gone ones included (`gone=false` keeps the
    held ones). Reviewers and admins: they name other people's keys. Metadata only: no secret is stored.

    The list pages through every filtered row; /export/ streams them all at once."""

    serializer_class = CredentialSerializer
    read_role = Role.REVIEWER
    filterset_class = CredentialFilter
    filter_backends = [DjangoFilterBackend]  # ordering is one of CredentialFilter's own parameters

    def get_queryset(self) -> QuerySet[Credential]:
        return Credential.objects.select_related("registry", "owner_user", "created_by_user").order_by(
            "registry", "kind", "name", "pk"
        )

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        credentials = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(credentials)
        if page is None:
            return Response(self._serialized(list(credentials)))
        return self.get_paginated_response(self._serialized(page))

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(self._serialized([self.get_object()])[0])

    def _serialized(self, credentials: Sequence[Credential]) -> Any:
        # One query counts the open findings of every row on the page.
        counts = open_finding_counts(credential.pk for credential in credentials)
        context = self.get_serializer_context() | {"open_findings": counts}
        return CredentialSerializer(credentials, many=True, context=context).data

    @extend_schema(
        operation_id="v1_registry_credentials_export",
        responses={
            (200, "application/json"): CredentialSerializer(many=True),
            (200, "text/csv"): OpenApiTypes.STR,
        },
    )
    @action(
        detail=False,
        methods=["get"],
        renderer_classes=[renderers.JSONRenderer, CsvRenderer],
        pagination_class=None,
    )
    def export(self, request: Request) -> StreamingHttpResponse:
        """Every filtered credential in one streamed download: a JSON array, or CSV with
        `Accept: text/csv` or `?format=csv`. Takes the list's filters; gone ones are included unless
        `gone=false`, as in the list."""
        credentials = self.filter_queryset(self.get_queryset())
        fmt: ExportFormat = "csv" if request.accepted_renderer.format == "csv" else "json"
        return export_response(credentials, fmt)


class GrantViewSet(viewsets.ReadOnlyModelViewSet[Grant]):
    """Grants the registries report, replaced together by each complete read. Reviewers and admins."""

    serializer_class = GrantSerializer
    read_role = Role.REVIEWER
    filterset_class = GrantFilter
    ordering_fields = ["principal_name", "scope", "observed_at"]

    def get_queryset(self) -> QuerySet[Grant]:
        return Grant.objects.order_by("registry", "principal_kind", "principal_name", "scope", "pk")
