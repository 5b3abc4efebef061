from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers

from accounts.models import DirectoryGroup, GroupMembership, PersonalToken, RobotToken, RoleBinding, User
from accounts.roles import Role


class MeSerializer(serializers.ModelSerializer[User]):
    role = serializers.CharField(read_only=True)

    class Meta:
        model = User
        fields = ["id", "username", "display_name", "email", "status", "source", "role"]
        read_only_fields = fields


class TokenSerializer(serializers.ModelSerializer[PersonalToken]):
    owner = serializers.CharField(source="owner.username", read_only=True)
    state = serializers.CharField(read_only=True)

    class Meta:
        model = PersonalToken
        fields = [
            "id",
            "name",
            "kind",
            "scopes",
            "owner",
            "lookup",
            "state",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
        ]
        read_only_fields = fields


class TokenCreateSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=100)
    kind = serializers.ChoiceField(choices=PersonalToken.Kind.choices, default=PersonalToken.Kind.API)
    scopes = serializers.ListField(child=serializers.CharField(max_length=32), required=False)
    days = serializers.IntegerField(
        min_value=1, required=False, help_text=f"Lifetime in days; default {settings.TOKEN_DEFAULT_DAYS}."
    )


class IssuedTokenSerializer(TokenSerializer):
    secret = serializers.CharField(read_only=True, help_text="Shown once. Customs keeps only a digest.")

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class RobotTokenSerializer(serializers.ModelSerializer[RobotToken]):
    username = serializers.CharField(read_only=True, help_text="The registry username: robot$<name>.")
    group_name = serializers.CharField(source="group.display_name", read_only=True, default=None)
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    state = serializers.CharField(read_only=True, help_text="active, expired, revoked or orphaned.")

    class Meta:
        model = RobotToken
        fields = [
            "id",
            "name",
            "username",
            "description",
            "group",
            "group_name",
            "lookup",
            "state",
            "created_by",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
        ]
        read_only_fields = fields


class RobotTokenCreateSerializer(serializers.Serializer[Any]):
    group = serializers.PrimaryKeyRelatedField(queryset=DirectoryGroup.objects.all())
    name = serializers.CharField(max_length=64, help_text="Lowercase letters and digits joined by - _ or .")
    description = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")
    days = serializers.IntegerField(
        min_value=1, required=False, help_text=f"Lifetime in days; default {settings.TOKEN_DEFAULT_DAYS}."
    )


class IssuedRobotTokenSerializer(RobotTokenSerializer):
    secret = serializers.CharField(read_only=True, help_text="Shown once. Customs keeps only a digest.")

    class Meta(RobotTokenSerializer.Meta):
        fields = [*RobotTokenSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class GroupSerializer(serializers.ModelSerializer[DirectoryGroup]):
    members = serializers.IntegerField(source="member_count", read_only=True)
    roles = serializers.SerializerMethodField()

    class Meta:
        model = DirectoryGroup
        fields = ["id", "external_id", "display_name", "source", "synced_at", "members", "roles"]
        read_only_fields = fields

    def get_roles(self, group: DirectoryGroup) -> list[str]:
        return [binding.role for binding in group.role_bindings.all()]


class MembershipSerializer(serializers.ModelSerializer[GroupMembership]):
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = GroupMembership
        fields = ["username", "source", "synced_at"]


class RoleBindingSerializer(serializers.ModelSerializer[RoleBinding]):
    group = serializers.PrimaryKeyRelatedField(queryset=DirectoryGroup.objects.all())
    group_name = serializers.CharField(source="group.display_name", read_only=True)
    role = serializers.ChoiceField(choices=Role.choices)
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)

    class Meta:
        model = RoleBinding
        fields = ["id", "group", "group_name", "role", "created_at", "created_by"]
        read_only_fields = ["id", "group_name", "created_at", "created_by"]
        # No generated unique-together validator: services.bind_role rejects a duplicate with a
        # message naming the group and role, the same one the access page shows.
        validators: list[Any] = []
