"""Inventory and access rules over the API. Registry secrets are write-only: no serializer here can read
them back."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import DirectoryGroup, GroupMembership, User
from registries.forms import ACTION_CHOICES, PATTERN_HELP
from registries.inventory import platforms_of, pull_reference, region_states
from registries.models import (
    AccessRule,
    Artifact,
    Credential,
    Grant,
    Registry,
    Replica,
    ReplicationLink,
    Repository,
    SyncRun,
    Tag,
)
from registries.patterns import MAX_LENGTH, InvalidPattern, compile_pattern, is_valid_repository_name


class ReplicaSerializer(serializers.ModelSerializer[Replica]):
    class Meta:
        model = Replica
        fields = ["id", "region", "endpoint", "last_sync_at"]
        read_only_fields = fields


class RegistrySerializer(serializers.ModelSerializer[Registry]):
    """What anyone signed in may read: the public config only, and whether a webhook secret is set."""

    replicas = ReplicaSerializer(many=True, read_only=True)
    config = serializers.DictField(read_only=True, help_text="The kind's public settings; never secrets.")
    webhook_secret_set = serializers.SerializerMethodField()

    class Meta:
        model = Registry
        fields = [
            "id",
            "name",
            "kind",
            "endpoint",
            "region",
            "config",
            "sync_enabled",
            "sync_interval_minutes",
            "sync_concurrency",
            "token_service",
            "syncing_since",
            "last_sync_started_at",
            "created_at",
            "replicas",
            "webhook_secret_set",
        ]
        read_only_fields = fields

    def get_webhook_secret_set(self, registry: Registry) -> bool:
        return bool(registry.webhook_secret_digest)


class RegistryWriteSerializer(serializers.ModelSerializer[Registry]):
    """Admins' input. `secrets` is write-only; on update an omitted secret keeps its stored value."""

    config = serializers.DictField(required=False, help_text="The kind's public settings, e.g. username.")
    secrets = serializers.DictField(
        child=serializers.CharField(trim_whitespace=False),
        required=False,
        write_only=True,
        help_text="The kind's secret settings, e.g. password. Never returned.",
    )

    class Meta:
        model = Registry
        fields = [
            "name",
            "kind",
            "endpoint",
            "region",
            "config",
            "secrets",
            "sync_enabled",
            "sync_interval_minutes",
            "sync_concurrency",
            "token_service",
        ]

    def validate_kind(self, kind: str) -> str:
        if self.instance is not None and kind != self.instance.kind:
            raise serializers.ValidationError("a registry's kind cannot change; add a new registry instead")
        return kind

    def validate_endpoint(self, endpoint: str) -> str:
        return endpoint.strip().rstrip("/")


class PermissionCheckSerializer(serializers.Serializer[Any]):
    permission = serializers.CharField()
    ok = serializers.BooleanField(help_text="Meaningless when `tried` is false.")
    detail = serializers.CharField()
    # Not `required`: a serializer's own attribute of that name says whether it must be present.
    is_required = serializers.BooleanField(
        source="required", help_text="False: only reconcile plans and offboarding need it."
    )
    tried = serializers.BooleanField(help_text="False: no harmless request could prove it.")


class ConnectionResultSerializer(serializers.Serializer[Any]):
    ok = serializers.BooleanField()
    reason = serializers.CharField()
    steps = PermissionCheckSerializer(many=True, help_text="Each permission the account needs, checked.")


class SyncQueuedSerializer(serializers.Serializer[Any]):
    queued = serializers.BooleanField()


class SyncRunSerializer(serializers.ModelSerializer[SyncRun]):
    """Counts are updated while a run runs: poll a running one to follow its progress."""

    replica_region = serializers.CharField(source="replica.region", default=None, read_only=True)
    duration_seconds = serializers.SerializerMethodField()

    class Meta:
        model = SyncRun
        fields = [
            "id",
            "registry",
            "replica_region",
            "status",
            "trigger",
            "started_at",
            "finished_at",
            "duration_seconds",
            "repositories_seen",
            "tags_seen",
            "manifests_fetched",
            "artifacts_added",
            "artifacts_removed",
            "repositories_added",
            "repositories_removed",
            "grants_seen",
            "credentials_seen",
            "replication_seen",
            "not_read",
            "error",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "not_read": {"help_text": "Aspects beyond the inventory this run could not read, with why."}
        }

    def get_duration_seconds(self, run: SyncRun) -> float | None:
        return (run.finished_at - run.started_at).total_seconds() if run.finished_at else None


class RepositorySerializer(serializers.ModelSerializer[Repository]):
    registry_name = serializers.CharField(source="registry.name", read_only=True)

    class Meta:
        model = Repository
        fields = [
            "id",
            "registry",
            "registry_name",
            "name",
            "namespace",
            "tag_count",
            "artifact_count",
            "size",
            "last_pushed_at",
            "last_pulled_at",
            "first_seen",
            "synced_at",
        ]
        read_only_fields = fields


class PlatformManifestSerializer(serializers.ModelSerializer[Artifact]):
    class Meta:
        model = Artifact
        fields = ["id", "digest", "platform", "media_type", "size"]
        read_only_fields = fields


class PresenceSerializer(serializers.Serializer[Any]):
    region = serializers.CharField()
    endpoint = serializers.CharField()
    primary = serializers.BooleanField()
    state = serializers.ChoiceField(choices=["holds", "missing", "unknown"])


class ArtifactSerializer(serializers.ModelSerializer[Artifact]):
    index = serializers.CharField(source="index.digest", default=None, read_only=True)
    tags = serializers.SerializerMethodField()
    platforms = PlatformManifestSerializer(many=True, read_only=True)
    platform_names = serializers.SerializerMethodField()
    presence = serializers.SerializerMethodField()
    pull_reference = serializers.SerializerMethodField()

    class Meta:
        model = Artifact
        fields = [
            "id",
            "repository",
            "digest",
            "media_type",
            "size",
            "index",
            "platform",
            "platform_names",
            "platforms",
            "tags",
            "config_digest",
            "layer_digests",
            "labels",
            "annotations",
            "base_name",
            "base_digest",
            "created",
            "pushed_at",
            "last_pulled_at",
            "first_seen",
            "presence",
            "pull_reference",
        ]
        read_only_fields = fields

    def get_tags(self, artifact: Artifact) -> list[str]:
        return [tag.name for tag in artifact.tags.all()]  # prefetched: .values_list would query per row

    def get_platform_names(self, artifact: Artifact) -> list[str]:
        return platforms_of(artifact)

    @extend_schema_field(PresenceSerializer(many=True))
    def get_presence(self, artifact: Artifact) -> list[dict[str, Any]]:
        registry = artifact.repository.registry
        held = {p.replica_id for p in artifact.presences.all()}
        return [vars(state) for state in region_states(registry, list(registry.replicas.all()), held)]

    def get_pull_reference(self, artifact: Artifact) -> str:
        return pull_reference(artifact)


class TagSerializer(serializers.ModelSerializer[Tag]):
    digest = serializers.CharField(source="artifact.digest", read_only=True)

    class Meta:
        model = Tag
        fields = ["id", "repository", "name", "artifact", "digest", "updated_at"]
        read_only_fields = fields


# --- Access rules and effective access --------------------------------------------------------------


class AccessRuleSerializer(serializers.ModelSerializer[AccessRule]):
    """A rule as stored; `expired` rules stay readable but grant nothing."""

    group_name = serializers.CharField(source="group.display_name", read_only=True)
    group_external_id = serializers.CharField(source="group.external_id", read_only=True)
    registry_name = serializers.CharField(source="registry.name", default=None, read_only=True)
    actions = serializers.ListField(child=serializers.ChoiceField(choices=ACTION_CHOICES), read_only=True)
    expired = serializers.BooleanField(read_only=True)
    created_by = serializers.CharField(source="created_by.username", default=None, read_only=True)

    class Meta:
        model = AccessRule
        fields = [
            "id",
            "group",
            "group_name",
            "group_external_id",
            "registry",
            "registry_name",
            "pattern",
            "actions",
            "expires_at",
            "expired",
            "justification",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class AccessRuleWriteSerializer(serializers.Serializer[Any]):
    """Admins' input; saved through services.save_access_rule, which audits it."""

    group = serializers.PrimaryKeyRelatedField(queryset=DirectoryGroup.objects.all())
    registry = serializers.PrimaryKeyRelatedField(
        queryset=Registry.objects.all(), allow_null=True, required=False, help_text="null: every registry."
    )
    pattern = serializers.CharField(max_length=MAX_LENGTH, help_text=PATTERN_HELP)
    actions = serializers.ListField(
        child=serializers.ChoiceField(choices=ACTION_CHOICES), allow_empty=False, max_length=3
    )
    expires_at = serializers.DateTimeField(allow_null=True, required=False)
    justification = serializers.CharField(help_text="Why this access is needed; reviewers read it.")

    def validate_pattern(self, pattern: str) -> str:
        try:
            return compile_pattern(pattern).text
        except InvalidPattern as exc:
            raise serializers.ValidationError(str(exc)) from None


class PersonSerializer(serializers.ModelSerializer[User]):
    # A plain string: the same choices as /me/'s status, and a second enum component for them would
    # make drf-spectacular guess a name.
    status = serializers.CharField(read_only=True, help_text="active, disabled or departed")

    class Meta:
        model = User
        fields = ["id", "username", "display_name", "status"]
        read_only_fields = fields


class GroupMembershipSerializer(serializers.ModelSerializer[GroupMembership]):
    """A membership as evidence: which group, learned from where, last confirmed when."""

    group_name = serializers.CharField(source="group.display_name", read_only=True)
    group_external_id = serializers.CharField(source="group.external_id", read_only=True)

    class Meta:
        model = GroupMembership
        fields = ["group", "group_name", "group_external_id", "source", "synced_at"]
        read_only_fields = fields


class EvidenceSerializer(serializers.Serializer[Any]):
    """One rule that grants, and the membership through which it reaches the person."""

    rule_id = serializers.IntegerField()
    pattern = serializers.CharField()
    actions = serializers.ListField(child=serializers.ChoiceField(choices=ACTION_CHOICES))
    group = serializers.CharField(help_text="The group's display name.")
    group_id = serializers.CharField(help_text="The group's immutable id in the directory.")
    expires_at = serializers.DateTimeField(allow_null=True)
    membership_source = serializers.CharField()
    membership_synced_at = serializers.DateTimeField(allow_null=True)


class RuleThroughMembershipSerializer(serializers.Serializer[Any]):
    rule = AccessRuleSerializer()
    membership = GroupMembershipSerializer()
    repository_count = serializers.IntegerField(
        required=False, help_text="Inventoried repositories the rule matches today."
    )


class UserAccessSerializer(serializers.Serializer[Any]):
    """With a repository: the actions and their evidence. Without: the rules in force reaching the person."""

    person = PersonSerializer()
    registry = serializers.IntegerField(allow_null=True)
    repository = serializers.CharField(allow_null=True)
    actions = serializers.ListField(
        child=serializers.ChoiceField(choices=ACTION_CHOICES),
        allow_null=True,
        help_text="null: no repository asked.",
    )
    evidence = EvidenceSerializer(many=True)
    memberships = GroupMembershipSerializer(many=True)
    rules = RuleThroughMembershipSerializer(many=True)


class UserAccessQuerySerializer(serializers.Serializer[Any]):
    user = serializers.CharField(help_text="Username.")
    registry = serializers.PrimaryKeyRelatedField(queryset=Registry.objects.all(), required=False)
    repository = serializers.CharField(required=False, help_text="Needs registry.")

    def validate_repository(self, name: str) -> str:
        return _repository_name(name)

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("repository") and not data.get("registry"):
            raise serializers.ValidationError({"registry": "choose the registry the repository is on"})
        return data


class WhoCanQuerySerializer(serializers.Serializer[Any]):
    registry = serializers.PrimaryKeyRelatedField(queryset=Registry.objects.all())
    repository = serializers.CharField()
    action = serializers.ChoiceField(choices=ACTION_CHOICES)

    def validate_repository(self, name: str) -> str:
        return _repository_name(name)


def _repository_name(name: str) -> str:
    name = name.strip()
    if not is_valid_repository_name(name):
        raise serializers.ValidationError(
            f"{name!r} is not a repository name (lowercase, segments joined by /)"
        )
    return name


class PersonWithEvidenceSerializer(serializers.Serializer[Any]):
    person = PersonSerializer()
    evidence = EvidenceSerializer(many=True)


class RobotWithEvidenceSerializer(serializers.Serializer[Any]):
    robot = serializers.CharField(source="robot.username", help_text="The registry username, robot$<name>.")
    robot_id = serializers.IntegerField(source="robot.pk")
    expires_at = serializers.DateTimeField(source="robot.expires_at")
    evidence = EvidenceSerializer(many=True)


class RuleReachSerializer(serializers.Serializer[Any]):
    rule = AccessRuleSerializer()
    repository_count = serializers.IntegerField()
    sample = serializers.ListField(child=serializers.CharField(), help_text="A few of the repositories.")


class MyAccessSerializer(serializers.Serializer[Any]):
    person = PersonSerializer()
    memberships = GroupMembershipSerializer(many=True)
    rules = RuleThroughMembershipSerializer(many=True)


class ReportQuerySerializer(serializers.Serializer[Any]):
    registry = serializers.PrimaryKeyRelatedField(queryset=Registry.objects.all(), required=False)
    group = serializers.PrimaryKeyRelatedField(queryset=DirectoryGroup.objects.all(), required=False)


# --- Registry-native credentials and grants ---------------------------------------------------------


class CredentialSerializer(serializers.ModelSerializer[Credential]):
    """A credential as the registry (or Customs, `registry` null) reported it: metadata only, Customs
    never holds its secret, and this model has no field that could carry one.

    `expires_at` null means never when `expiry_known`, and unknown otherwise; `last_used_at` null means
    never used when `usage_known`, and that the registry keeps no record otherwise. `actions` empty
    means the registry does not say what the credential may do.
    """

    registry_name = serializers.SerializerMethodField(help_text='"Customs" for Customs\' own tokens.')
    in_customs = serializers.BooleanField(read_only=True, help_text="One of Customs' own tokens.")
    owner_username = serializers.CharField(source="owner_user.username", read_only=True, default=None)
    owner_status = serializers.SerializerMethodField(
        help_text="active, disabled or departed (the linked person's status); unresolved when the owner "
        "is known only as the registry names them; none when there is no owner."
    )
    created_by_username = serializers.CharField(
        source="created_by_user.username", read_only=True, default=None
    )
    never_expires = serializers.BooleanField(read_only=True)
    scopes = serializers.ListField(child=serializers.CharField(), read_only=True)
    actions = serializers.ListField(child=serializers.ChoiceField(choices=ACTION_CHOICES), read_only=True)
    actions_seen = serializers.DictField(
        child=serializers.CharField(), read_only=True, help_text="Action → ISO time it was last seen."
    )
    state = serializers.SerializerMethodField(help_text="enabled, disabled or gone.")
    open_findings = serializers.SerializerMethodField(help_text="Open findings about this credential.")

    class Meta:
        model = Credential
        fields = [
            "id",
            "registry",
            "registry_name",
            "in_customs",
            "native_id",
            "kind",
            "name",
            "enabled",
            "state",
            "owner_kind",
            "owner_id",
            "owner_name",
            "owner_user",
            "owner_username",
            "owner_status",
            "created_by_id",
            "created_by_name",
            "created_by_user",
            "created_by_username",
            "created_at",
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
        read_only_fields = fields

    def get_registry_name(self, credential: Credential) -> str:
        return credential.registry.name if credential.registry else "Customs"

    def get_owner_status(self, credential: Credential) -> str:
        if credential.owner_user:
            return credential.owner_user.status
        return "unresolved" if credential.owner_id or credential.owner_name else "none"

    def get_state(self, credential: Credential) -> str:
        if credential.gone_at:
            return "gone"
        return "enabled" if credential.enabled else "disabled"

    def get_open_findings(self, credential: Credential) -> int:
        # Counted for all the rows at once by whoever serialises them (credential pk → count): a
        # query per row here would grow with the page.
        counts: dict[int, int] = self.context["open_findings"]
        return counts.get(credential.pk, 0)


class GrantSerializer(serializers.ModelSerializer[Grant]):
    """Access the registry itself gives: principal, scope (access-rule pattern language), actions."""

    actions = serializers.ListField(child=serializers.ChoiceField(choices=ACTION_CHOICES), read_only=True)

    class Meta:
        model = Grant
        fields = [
            "id",
            "registry",
            "principal_kind",
            "principal_id",
            "principal_name",
            "group",
            "user",
            "scope",
            "actions",
            "can_pull",
            "can_push",
            "can_delete",
            "source",
            "observed_at",
        ]
        read_only_fields = fields


class ReplicationLinkSerializer(serializers.ModelSerializer[ReplicationLink]):
    """A region or replication link as the registry last reported it (status: ok, failed, in_progress,
    unknown; status_text: the registry's own words)."""

    class Meta:
        model = ReplicationLink
        fields = [
            "id",
            "native_id",
            "name",
            "kind",
            "location",
            "url",
            "direction",
            "enabled",
            "status",
            "status_text",
            "last_started_at",
            "last_finished_at",
            "next_run_at",
            "filters",
            "trigger",
            "notes",
            "observed_at",
        ]
        read_only_fields = fields
