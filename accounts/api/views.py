from __future__ import annotations

from typing import Any

from django.db.models import Count, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import access, services
from accounts.access import signed_in_user
from accounts.api import schema  # noqa: F401  (registers the bearer scheme with drf-spectacular)
from accounts.api.serializers import (
    GroupSerializer,
    IssuedRobotTokenSerializer,
    IssuedTokenSerializer,
    MeSerializer,
    RobotTokenCreateSerializer,
    RobotTokenSerializer,
    RoleBindingSerializer,
    TokenCreateSerializer,
    TokenSerializer,
)
from accounts.models import DirectoryGroup, PersonalToken, RobotToken, RoleBinding, User
from accounts.roles import Role


class MeView(generics.RetrieveAPIView[User]):
    """The signed-in person, with the portal role Customs derived for them."""

    serializer_class = MeSerializer
    read_role = Role.DEVELOPER

    def get_object(self) -> User:
        return signed_in_user(self.request)


class TokenViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[PersonalToken]):
    """Personal tokens. Everyone manages their own; reviewers and admins see all, admins revoke any."""

    serializer_class = TokenSerializer
    read_role = write_role = Role.DEVELOPER
    filterset_fields = ["kind"]
    ordering_fields = ["created_at", "expires_at", "last_used_at"]

    def get_queryset(self) -> QuerySet[PersonalToken]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: there is no user
            return PersonalToken.objects.none()
        return PersonalToken.objects.visible_to(signed_in_user(self.request)).select_related("owner")

    @extend_schema(request=TokenCreateSerializer, responses={201: IssuedTokenSerializer})
    def create(self, request: Request) -> Response:
        """Issue a token for yourself. The response carries the secret; it is never shown again."""
        form = TokenCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        issued = services.create_token(
            signed_in_user(request), actor=signed_in_user(request), **form.validated_data
        )
        body = IssuedTokenSerializer(issued.token).data | {"secret": issued.secret}
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: TokenSerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str) -> Response:
        token = access.get_token_for_user(signed_in_user(request), int(pk), write=True)
        services.revoke_token(token, actor=signed_in_user(request))
        token.refresh_from_db()
        return Response(TokenSerializer(token).data)


class RobotTokenViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[RobotToken]
):
    """Robot tokens, owned by directory groups. Reviewers and admins read; admins create and revoke."""

    serializer_class = RobotTokenSerializer
    read_role = Role.REVIEWER
    write_role = Role.ADMIN
    filterset_fields = ["group"]
    ordering_fields = ["name", "created_at", "expires_at", "last_used_at"]

    def get_queryset(self) -> QuerySet[RobotToken]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: there is no user
            return RobotToken.objects.none()
        user = signed_in_user(self.request)
        return RobotToken.objects.visible_to(user).select_related("group", "created_by")

    @extend_schema(request=RobotTokenCreateSerializer, responses={201: IssuedRobotTokenSerializer})
    def create(self, request: Request) -> Response:
        """Issue a robot token for a group. The response carries the secret; it is never shown again."""
        form = RobotTokenCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        issued = services.create_robot_token(
            data["group"],
            actor=signed_in_user(request),
            name=data["name"],
            description=data["description"],
            days=data.get("days"),
        )
        body = IssuedRobotTokenSerializer(issued.robot).data | {"secret": issued.secret}
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: RobotTokenSerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str) -> Response:
        robot = self.get_object()
        services.revoke_robot_token(robot, actor=signed_in_user(request))
        robot.refresh_from_db()
        return Response(RobotTokenSerializer(robot).data)


class GroupViewSet(viewsets.ReadOnlyModelViewSet[DirectoryGroup]):
    """Directory groups as the identity provider and SCIM reported them."""

    serializer_class = GroupSerializer
    read_role = Role.REVIEWER
    filterset_fields = ["source"]
    ordering_fields = ["display_name", "synced_at"]

    def get_queryset(self) -> QuerySet[DirectoryGroup]:
        search = self.request.query_params.get("search", "")
        # Explicit order: counting members adds a GROUP BY, and Django then drops Meta.ordering,
        # so pages would come back in whatever order PostgreSQL's hash aggregate produced.
        return (
            DirectoryGroup.objects.search(search)
            .annotate(member_count=Count("memberships"))
            .order_by("display_name", "pk")
            .prefetch_related("role_bindings")
        )


class RoleBindingViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[RoleBinding],
):
    """Which directory groups hold the reviewer and admin roles. Admins change them."""

    serializer_class = RoleBindingSerializer
    read_role = Role.REVIEWER
    write_role = Role.ADMIN
    filterset_fields = ["role"]

    def get_queryset(self) -> QuerySet[RoleBinding]:
        return RoleBinding.objects.select_related("group", "created_by")

    def perform_create(self, serializer: Any) -> None:
        data = serializer.validated_data
        serializer.instance = services.bind_role(
            data["group"], data["role"], actor=signed_in_user(self.request)
        )

    def perform_destroy(self, instance: RoleBinding) -> None:
        services.unbind_role(instance, actor=signed_in_user(self.request))
