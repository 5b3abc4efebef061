"""Registries, their regional replicas, and the inventory: repositories, artifacts by digest, tags."""

from __future__ import annotations

import json
from typing import Any, ClassVar, Self

from django.db import models
from django.db.models import F, Q, Value
from django.db.models.lookups import StartsWith
from django.utils import timezone

from portal.crypto import EncryptedTextField
from registries.connectors import kind_choices
from registries.connectors.base import (
    ACTIONS,
    CredentialKind,
    PostureCheck,
    PostureState,
    PrincipalKind,
    ReplicationDirection,
    ReplicationKind,
    ReplicationStatus,
)
from registries.patterns import InvalidPattern, compile_pattern
from registries.querysets import (
    ArtifactQuerySet,
    RepositoryQuerySet,
    SyncRunQuerySet,
    TagQuerySet,
    WebhookEventQuerySet,
)


class RegistryQuerySet(models.QuerySet["Registry"]):
    def visible_to(self, user: Any) -> Self:
        # Every signed-in person may see which registries exist; what they may do there is access rules'.
        return self

    def idle(self) -> Self:
        """Not being synced right now."""
        return self.filter(syncing_since=None)


class Registry(models.Model):
    """One registry endpoint Customs reads (and, for some kinds, writes to)."""

    name = models.SlugField(max_length=64, unique=True, help_text="A short name, e.g. prod-eu.")
    kind = models.CharField(max_length=32, choices=kind_choices)
    endpoint = models.CharField(
        max_length=500, help_text="The registry's URL, e.g. https://registry.example.com"
    )
    region = models.CharField(max_length=64, blank=True, help_text="Where the primary endpoint serves from.")
    # Validated by the kind's config class on every save and when a connector is built.
    config = models.JSONField(default=dict, blank=True)
    # JSON of the secret fields (passwords, tokens), encrypted; merged into the config only in connectors.
    secret = EncryptedTextField(blank=True, default="")
    webhook_secret_digest = models.CharField(max_length=64, blank=True)
    # The `service` this registry names when it sends clients to Customs' token server; set when
    # Customs owns the registry's authentication (its config's auth.token.service).
    token_service = models.CharField(max_length=100, blank=True)
    sync_enabled = models.BooleanField(default=True)
    sync_interval_minutes = models.PositiveIntegerField(default=60)
    sync_concurrency = models.PositiveSmallIntegerField(
        default=8, help_text="Parallel requests while syncing."
    )
    # Set by the sync that holds the registry, cleared when it ends: one sync per registry at a time.
    syncing_since = models.DateTimeField(null=True, blank=True)
    last_sync_started_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = RegistryQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "registries"
        constraints = [
            models.UniqueConstraint(
                fields=["token_service"],
                condition=~models.Q(token_service=""),
                name="registry_unique_token_service",
            )
        ]

    def __str__(self) -> str:
        return self.name

    def secrets(self) -> dict[str, str]:
        loaded: dict[str, str] = json.loads(self.secret) if self.secret else {}
        return loaded

    def set_secrets(self, values: dict[str, str]) -> None:
        self.secret = json.dumps(values, sort_keys=True) if values else ""


class Replica(models.Model):
    """A regional copy of a registry: another endpoint serving (some of) the same content."""

    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="replicas")
    region = models.CharField(max_length=64)
    endpoint = models.CharField(max_length=500)
    last_sync_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["region"]
        constraints = [models.UniqueConstraint(fields=["registry", "region"], name="replica_unique_region")]

    def __str__(self) -> str:
        return f"{self.registry} ({self.region})"


class Repository(models.Model):
    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="repositories")
    name = models.CharField(max_length=255)
    # The path before the last segment ("team/app" → "team"): for filtering by namespace.
    namespace = models.CharField(max_length=255, blank=True, db_index=True)
    tag_count = models.PositiveIntegerField(default=0)
    artifact_count = models.PositiveIntegerField(default=0)
    size = models.PositiveBigIntegerField(default=0, help_text="Bytes of the artifacts its tags point at.")
    last_pushed_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_pulled_at = models.DateTimeField(null=True, blank=True, db_index=True)
    first_seen = models.DateTimeField(default=timezone.now)
    synced_at = models.DateTimeField(default=timezone.now)

    objects = RepositoryQuerySet.as_manager()

    class Meta:
        ordering = ["registry__name", "name"]
        constraints = [models.UniqueConstraint(fields=["registry", "name"], name="repository_unique_name")]
        indexes = [
            models.Index(fields=["name"]),
            models.Index(fields=["size"]),
            models.Index(fields=["tag_count"]),
        ]

    def __str__(self) -> str:
        return f"{self.registry.name}/{self.name}"

    @staticmethod
    def namespace_of(name: str) -> str:
        return name.rsplit("/", 1)[0] if "/" in name else ""


class Artifact(models.Model):
    """A manifest or index, by digest, within one repository. Platform manifests of an index point to it."""

    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="artifacts")
    index = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="platforms"
    )
    digest = models.CharField(max_length=100)
    media_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField(default=0)
    platform = models.CharField(max_length=64, blank=True)
    config_digest = models.CharField(max_length=100, blank=True)
    layer_digests = models.JSONField(default=list, blank=True)
    diff_ids = models.JSONField(default=list, blank=True)
    labels = models.JSONField(default=dict, blank=True)
    annotations = models.JSONField(default=dict, blank=True)
    base_name = models.CharField(max_length=500, blank=True, help_text="org.opencontainers.image.base.name")
    base_digest = models.CharField(
        max_length=100, blank=True, help_text="org.opencontainers.image.base.digest"
    )
    provenance = models.JSONField(
        default=dict,
        blank=True,
        help_text="SLSA provenance from the index's attestation, as lineage reads it",
    )
    created = models.DateTimeField(null=True, blank=True)
    pushed_at = models.DateTimeField(null=True, blank=True)
    last_pulled_at = models.DateTimeField(null=True, blank=True)
    first_seen = models.DateTimeField(default=timezone.now)

    objects = ArtifactQuerySet.as_manager()

    class Meta:
        ordering = ["-first_seen"]
        constraints = [
            models.UniqueConstraint(fields=["repository", "digest"], name="artifact_unique_digest"),
        ]
        indexes = [models.Index(fields=["digest"])]

    def __str__(self) -> str:
        return f"{self.repository}@{self.digest[:19]}"


class Tag(models.Model):
    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="tags")
    artifact = models.ForeignKey(Artifact, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=128)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = TagQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["repository", "name"], name="tag_unique_name")]

    def __str__(self) -> str:
        return f"{self.repository}:{self.name}"


class ArtifactPresence(models.Model):
    """A replica holds this artifact (same repository name and digest), as of its last complete sync."""

    artifact = models.ForeignKey(Artifact, on_delete=models.CASCADE, related_name="presences")
    replica = models.ForeignKey(Replica, on_delete=models.CASCADE, related_name="presences")
    seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["artifact", "replica"], name="presence_unique")]

    def __str__(self) -> str:
        return f"{self.artifact} in {self.replica.region}"


class SyncRun(models.Model):
    """One sync of one registry (or one replica): progress while it runs, counts and errors after."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        MANUAL = "manual", "Manual"
        COMMAND = "command", "Command"

    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="sync_runs")
    replica = models.ForeignKey(
        Replica, null=True, blank=True, on_delete=models.CASCADE, related_name="sync_runs"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING, db_index=True)
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.SCHEDULE)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    repositories_seen = models.PositiveIntegerField(default=0)
    tags_seen = models.PositiveIntegerField(default=0)
    manifests_fetched = models.PositiveIntegerField(default=0)
    artifacts_added = models.PositiveIntegerField(default=0)
    artifacts_removed = models.PositiveIntegerField(default=0)
    repositories_added = models.PositiveIntegerField(default=0)
    repositories_removed = models.PositiveIntegerField(default=0)
    # None: this run did not read grants (its connector cannot); 0 is "read, and the registry grants nothing".
    grants_seen = models.PositiveIntegerField(null=True, blank=True)
    # The same for credentials: None when this run did not read them.
    credentials_seen = models.PositiveIntegerField(null=True, blank=True)
    # What the registry would not give this run beyond its inventory (grants, credentials,
    # replication), with why: those keep their previous rows; the inventory still applies.
    not_read = models.JSONField(default=dict, blank=True)
    # And for regions and replication links: None when this run did not read them.
    replication_seen = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)

    objects = SyncRunQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"sync of {self.registry} at {self.started_at:%Y-%m-%d %H:%M} ({self.status})"


class StagedTag(models.Model):
    """What a running sync has seen, kept aside until the listing is complete (then applied, then dropped)."""

    run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="staged_tags")
    repository = models.CharField(max_length=255)
    tag = models.CharField(max_length=128)
    digest = models.CharField(max_length=100)

    class Meta:
        indexes = [models.Index(fields=["run", "repository"])]

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag} (staged)"


class StagedArtifact(models.Model):
    """A manifest a running sync fetched because its digest was new; applied with the listing."""

    run = models.ForeignKey(SyncRun, on_delete=models.CASCADE, related_name="staged_artifacts")
    repository = models.CharField(max_length=255)
    digest = models.CharField(max_length=100)
    record = models.JSONField()

    class Meta:
        indexes = [models.Index(fields=["run", "repository"])]

    def __str__(self) -> str:
        return f"{self.repository}@{self.digest} (staged)"


class WebhookEvent(models.Model):
    """A registry notification, kept for the registry page and to ignore redeliveries."""

    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="webhook_events")
    event_id = models.CharField(max_length=100)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    occurred_at = models.DateTimeField(null=True, blank=True, help_text="When the registry says it happened.")
    action = models.CharField(max_length=16)
    repository = models.CharField(max_length=255)
    digest = models.CharField(max_length=100, blank=True)
    tag = models.CharField(max_length=128, blank=True)
    result = models.CharField(max_length=255, blank=True)

    objects = WebhookEventQuerySet.as_manager()

    class Meta:
        ordering = ["-received_at"]
        constraints = [models.UniqueConstraint(fields=["registry", "event_id"], name="webhook_event_unique")]

    def __str__(self) -> str:
        return f"{self.action} {self.repository} ({self.event_id})"


class AccessRuleQuerySet(models.QuerySet["AccessRule"]):
    def in_force(self, *, now: Any = None) -> Self:
        """Rules granting right now: expiry is read at query time, so no job has to end them."""
        return self.filter(models.Q(expires_at=None) | models.Q(expires_at__gt=now or timezone.now()))

    def for_registry(self, registry: Registry) -> Self:
        return self.filter(models.Q(registry=registry) | models.Q(registry=None))

    def granting(self, action: str) -> Self:
        return self.filter(**{f"can_{action}": True})

    def matching(self, repository: str) -> Self:
        """Rules whose pattern matches the name.

        The database narrows by literal prefix; the patterns of what is left are matched here,
        compiled once per process. The pattern itself is the source of truth, never a stored
        derivative: an empty or stale regex column must not widen anyone's access.
        """
        name = Value(repository, output_field=models.CharField())
        candidates = self.filter(StartsWith(name, F("literal_prefix"))).values_list("pk", "pattern")
        return self.filter(pk__in=[pk for pk, pattern in candidates if _matches(pattern, repository)])


def _matches(pattern: str, repository: str) -> bool:
    try:
        return compile_pattern(pattern).matches(repository)
    except InvalidPattern:
        return False  # a rule saved outside the services with a broken pattern grants nothing


class AccessRule(models.Model):
    """Members of a directory group may pull/push/delete in repositories matching a pattern."""

    ACTIONS = ("pull", "push", "delete")

    group = models.ForeignKey(
        "accounts.DirectoryGroup", on_delete=models.CASCADE, related_name="access_rules"
    )
    registry = models.ForeignKey(
        Registry,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="access_rules",
        help_text="Empty: every registry.",
    )
    pattern = models.CharField(max_length=255)
    # The pattern up to its first wildcard, so "which rules could match this name" is an index lookup.
    literal_prefix = models.CharField(max_length=255, db_index=True, editable=False)
    # The compiled, anchored pattern, so the database (not Python) picks the rules that match a name.
    regex = models.CharField(max_length=1000, editable=False, default="")
    can_pull = models.BooleanField(default=True)
    can_push = models.BooleanField(default=False)
    can_delete = models.BooleanField(default=False)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    justification = models.TextField()
    created_by = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = AccessRuleQuerySet.as_manager()

    class Meta:
        ordering = ["pattern", "pk"]
        indexes = [models.Index(fields=["group", "expires_at"])]

    def __str__(self) -> str:
        where = self.registry.name if self.registry_id and self.registry else "all registries"
        return f"{self.group}: {','.join(self.actions)} on {self.pattern} ({where})"

    @property
    def actions(self) -> list[str]:
        return [action for action in self.ACTIONS if getattr(self, f"can_{action}")]

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()


class TokenSigningKey(models.Model):
    """A key the registry token server signs JWTs with; registries trust its certificate.

    One key is active (it signs); older keys stay published in the certificate bundle until retired,
    so tokens signed just before a rotation, and registries not yet given the new bundle, keep working.
    """

    class Algorithm(models.TextChoices):
        ES256 = "ES256", "ES256 (P-256)"
        RS256 = "RS256", "RS256 (RSA-2048)"

    algorithm = models.CharField(max_length=8, choices=Algorithm.choices, default=Algorithm.ES256)
    private_key = EncryptedTextField()  # PKCS#8 PEM
    certificate = models.TextField(help_text="Self-signed PEM certificate registries put in rootcertbundle.")
    # libtrust fingerprint of the public key: the `kid` distribution 2.x looks keys up by.
    kid = models.CharField(max_length=64, unique=True)
    active = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["active"], condition=models.Q(active=True), name="token_signing_key_one_active"
            )
        ]

    def __str__(self) -> str:
        return f"{self.algorithm} {self.kid}"


class Grant(models.Model):
    """Access a registry actually gives, as its connector last read it: principal ▶ scope ▶ actions.

    `scope` is a pattern in the access-rule language (an exact repository, `team/**` for a Harbor
    project or a wildcard scope map, `**` for the whole registry; see registries/connectors/base.py),
    so drift compares grants and rules with one matcher. A registry's rows are replaced together,
    after a complete read: a failed read leaves the previous ones in place.
    """

    ACTIONS = ACTIONS
    PRINCIPAL_KINDS = [(kind.value, kind.value.replace("_", " ")) for kind in PrincipalKind]

    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="grants")
    principal_kind = models.CharField(max_length=32, choices=PRINCIPAL_KINDS)
    principal_id = models.CharField(max_length=500, help_text="As the registry knows it.")
    principal_name = models.CharField(max_length=255, blank=True)
    # Set only when the connector reported the principal's directory id and it names exactly one row.
    group = models.ForeignKey(
        "accounts.DirectoryGroup", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    user = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    scope = models.CharField(max_length=255)
    can_pull = models.BooleanField(default=False)
    can_push = models.BooleanField(default=False)
    can_delete = models.BooleanField(default=False)
    source = models.CharField(max_length=500, help_text="The native object, e.g. scope map ci-push.")
    observed_at = models.DateTimeField(default=timezone.now)
    run = models.ForeignKey(SyncRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="grants")

    class Meta:
        ordering = ["principal_kind", "principal_name", "scope", "pk"]
        indexes = [models.Index(fields=["registry", "principal_kind"])]

    def __str__(self) -> str:
        who = self.principal_name or self.principal_id
        return f"{self.principal_kind} {who}: {','.join(self.actions)} on {self.scope} ({self.source})"

    @property
    def actions(self) -> list[str]:
        return [action for action in self.ACTIONS if getattr(self, f"can_{action}")]


class CredentialQuerySet(models.QuerySet["Credential"]):
    def present(self) -> Self:
        """Still held by the registry as of its last complete read."""
        return self.filter(gone_at=None)


class Credential(models.Model):
    """A registry-native credential (robot, token, access key, admin login) as its connector last read it.

    Rows are kept when a credential disappears (`gone_at` is set): hygiene and offboarding reports
    need to say a key existed and when it went. One row per (registry, native id), updated in place
    by each complete read; a failed read changes nothing.
    """

    # Customs' own tokens are listed beside the registries' (registries/hygiene.py copies them in):
    # one list and one scan for every credential that opens a registry or the portal.
    CUSTOMS_KINDS = [
        ("customs_api_token", "Customs API token"),
        ("customs_registry_token", "Customs registry token"),
        ("customs_robot", "Customs robot token"),
    ]
    KINDS = [(kind.value, kind.value.replace("_", " ")) for kind in CredentialKind] + CUSTOMS_KINDS
    PRINCIPAL_KINDS = Grant.PRINCIPAL_KINDS
    ACTIONS = Grant.ACTIONS
    # What a complete read writes, by a sync or by hygiene copying Customs' own tokens in.
    SYNCED_FIELDS: ClassVar[list[str]] = [
        "kind",
        "name",
        "enabled",
        "owner_kind",
        "owner_id",
        "owner_name",
        "owner_user",
        "created_by_id",
        "created_by_name",
        "created_by_user",
        "created_at",
        "expires_at",
        "expiry_known",
        "last_used_at",
        "usage_known",
        "last_used_source",
        "scopes",
        "shared_admin",
        "actions",
        "actions_seen",
        "actions_seen_source",
        "observed_at",
        "gone_at",
        "run",
    ]

    # None for Customs' own tokens, which open every registry Customs is the token server of.
    registry = models.ForeignKey(
        Registry, null=True, blank=True, on_delete=models.CASCADE, related_name="credentials"
    )
    native_id = models.CharField(max_length=500, help_text="The registry's own identifier.")
    kind = models.CharField(max_length=32, choices=KINDS)
    name = models.CharField(max_length=255)
    enabled = models.BooleanField(default=True)
    owner_kind = models.CharField(max_length=32, choices=PRINCIPAL_KINDS, blank=True)
    owner_id = models.CharField(max_length=500, blank=True)
    owner_name = models.CharField(max_length=255, blank=True)
    # Linked only through a directory id that names exactly one person, as grants are.
    owner_user = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by_id = models.CharField(max_length=500, blank=True)
    created_by_name = models.CharField(max_length=255, blank=True)
    created_by_user = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    expiry_known = models.BooleanField(default=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    usage_known = models.BooleanField(default=True)
    last_used_source = models.CharField(max_length=100, blank=True)
    scopes = models.JSONField(default=list)
    # What it may do, where the registry says so in a form Customs understands ([] = not known).
    actions = models.JSONField(default=list, blank=True)
    # Usage evidence: action → ISO time it was last seen, and from where (an audit log, the token server).
    actions_seen = models.JSONField(default=dict, blank=True)
    actions_seen_source = models.CharField(max_length=100, blank=True)
    shared_admin = models.BooleanField(default=False)
    # Who answers for it since its creator left (set by offboarding; sync never touches it).
    steward = models.ForeignKey(
        "accounts.User",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="stewarded_credentials",
    )
    first_seen_at = models.DateTimeField(default=timezone.now)
    observed_at = models.DateTimeField(default=timezone.now)
    gone_at = models.DateTimeField(null=True, blank=True)
    run = models.ForeignKey(
        SyncRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="credentials"
    )

    objects = CredentialQuerySet.as_manager()

    class Meta:
        ordering = ["registry", "kind", "name", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["registry", "native_id"], name="credential_unique_per_registry"),
            # PostgreSQL treats NULLs as distinct: Customs' own rows need their own rule.
            models.UniqueConstraint(
                fields=["native_id"], condition=Q(registry=None), name="credential_unique_in_customs"
            ),
        ]
        indexes = [
            models.Index(fields=["registry", "gone_at"]),
            models.Index(fields=["owner_user"]),
            models.Index(fields=["expires_at"]),
            models.Index(fields=["last_used_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.name} ({self.registry_id or 'customs'})"

    @property
    def in_customs(self) -> bool:
        return self.registry_id is None

    @property
    def never_expires(self) -> bool:
        return self.expiry_known and self.expires_at is None


class ReplicationLink(models.Model):
    """A region or replication link the registry reports (registries/connectors/base.py RemoteReplication).

    The vendor's own configuration and its last known state, for people: not a Replica, which is an
    endpoint Customs reads itself. A registry's rows are replaced together after a complete read, as
    grants are; a failed read leaves the previous ones in place.
    """

    KINDS = [(kind.value, kind.value.replace("-", " ")) for kind in ReplicationKind]
    DIRECTIONS = [(d.value, d.value or "none") for d in ReplicationDirection]
    STATUSES = [(status.value, status.value.replace("_", " ")) for status in ReplicationStatus]

    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="replication_links")
    native_id = models.CharField(max_length=500, help_text="The registry's own identifier.")
    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=32, choices=KINDS)
    location = models.CharField(max_length=255, blank=True, help_text="The remote's name or region.")
    url = models.CharField(max_length=500, blank=True)
    direction = models.CharField(max_length=16, choices=DIRECTIONS, blank=True)
    enabled = models.BooleanField(default=True)
    status = models.CharField(max_length=16, choices=STATUSES, default=ReplicationStatus.UNKNOWN.value)
    status_text = models.CharField(max_length=1000, blank=True, help_text="The registry's own words.")
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    next_run_at = models.DateTimeField(null=True, blank=True)
    filters = models.JSONField(default=list, blank=True)
    trigger = models.CharField(max_length=255, blank=True)
    notes = models.CharField(max_length=1000, blank=True)
    observed_at = models.DateTimeField(default=timezone.now)
    run = models.ForeignKey(
        SyncRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="replication_links"
    )

    class Meta:
        ordering = ["kind", "location", "name", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["registry", "native_id"], name="replication_link_unique_per_registry"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.name} → {self.location or '—'} ({self.status})"


class PrincipalLink(models.Model):
    """An admin's word that a registry principal stands for a directory group.

    Some registries cannot name a directory group: Docker Hub teams, Quay teams without team sync,
    the IAM role an SSO permission set assumes. Linked, that principal's grants count as the group's
    (drift compares them with the group's rules) and reconcile plans give the group's access to it.
    """

    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="principal_links")
    principal_kind = models.CharField(max_length=32, choices=Grant.PRINCIPAL_KINDS)
    principal_id = models.CharField(max_length=500, help_text="As the registry knows it, e.g. a team id.")
    principal_name = models.CharField(max_length=255, blank=True)
    group = models.ForeignKey(
        "accounts.DirectoryGroup", on_delete=models.CASCADE, related_name="principal_links"
    )
    created_by = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["registry", "principal_kind", "principal_name", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["registry", "principal_kind", "principal_id"], name="principal_link_one_group"
            ),
            # One principal per group and registry: a plan must know where to give the group's access.
            models.UniqueConstraint(fields=["registry", "group"], name="principal_link_one_principal"),
        ]

    def __str__(self) -> str:
        return f"{self.principal_kind} {self.principal_name or self.principal_id} → {self.group}"


class Offboarding(models.Model):
    """One offboarding of one person: the plan it showed, then its steps as they run.

    Created from a plan (registries/offboarding.py); nothing changes until it is confirmed (a
    departure through SCIM confirms at once). Each step is idempotent and recorded, so a worker
    dying half-way loses nothing: the next run takes up the steps not yet done.
    """

    class State(models.TextChoices):
        PLANNED = "planned", "Planned (not started)"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        INCOMPLETE = "incomplete", "Finished with steps left"
        CANCELLED = "cancelled", "Cancelled"

    class Trigger(models.TextChoices):
        MANUAL = "manual", "Started by an admin"
        DIRECTORY = "directory", "Departure reported by the directory"

    person = models.ForeignKey("accounts.User", on_delete=models.PROTECT, related_name="offboardings")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PLANNED, db_index=True)
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.MANUAL)
    reason = models.TextField(blank=True)
    # Who answers for what they created that automation still uses.
    reassign_to = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_by = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # When Customs last re-read the affected registries to prove the steps held.
    verified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            # One open offboarding per person: a second start while one runs would race it.
            models.UniqueConstraint(
                fields=["person"],
                condition=Q(state__in=["planned", "running"]),
                name="offboarding_one_open_per_person",
            )
        ]

    def __str__(self) -> str:
        return f"offboarding of {self.person} ({self.state})"


class OffboardingStep(models.Model):
    """One item of the plan and what became of it. `key` is the plan item's stable key."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        MANUAL = "manual", "Left to a person"

    class Verification(models.TextChoices):
        NOT_CHECKED = "", "Not checked"
        GONE = "gone", "Gone"
        STILL_PRESENT = "present", "Still present"
        KEPT = "kept", "Kept on purpose"  # re-assigned, so it should still be there
        UNVERIFIABLE = "unverifiable", "Could not check"

    offboarding = models.ForeignKey(Offboarding, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveIntegerField()
    key = models.CharField(max_length=255)
    place = models.CharField(max_length=255, help_text="Customs, or the registry's name.")
    action = models.CharField(max_length=32)
    subject = models.CharField(max_length=500)
    why = models.CharField(max_length=500)
    automated = models.BooleanField(default=True)
    evidence = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    result = models.CharField(max_length=1000, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)
    # What re-reading the registry after the run showed (registries/offboarding.py, verify()).
    verification = models.CharField(
        max_length=16, choices=Verification.choices, default=Verification.NOT_CHECKED, blank=True
    )
    verification_note = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["offboarding", "position"]
        constraints = [
            models.UniqueConstraint(fields=["offboarding", "key"], name="offboarding_step_unique_key")
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.subject} ({self.state})"


# --- approved base images (registries/policy/) -------------------------------------------------------


class BaseImage(models.Model):
    """One entry of the approved base-image catalog, by normalised repository.

    `tags` are glob patterns (`3.12-*`); none means any tag (and digest-only references). `digests`,
    when given, are the only digests a reference that names one may use. The catalog is also kept
    as code (manage.py import_base_images / export_base_images); keys Customs does not know are kept
    in `extra`, so a file round-trips.
    """

    class Status(models.TextChoices):
        APPROVED = "approved", "Approved"
        DEPRECATED = "deprecated", "Deprecated"
        BANNED = "banned", "Banned"

    name = models.CharField(
        max_length=500, unique=True, help_text="Normalised repository, e.g. docker.io/library/python."
    )
    tags = models.JSONField(
        default=list, blank=True, help_text="Allowed tag patterns (globs); empty: any tag."
    )
    digests = models.JSONField(default=list, blank=True, help_text="Pinned digests; empty: any digest.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.APPROVED)
    replacement = models.CharField(max_length=600, blank=True, help_text="What to build on instead.")
    max_age_days = models.PositiveIntegerField(null=True, blank=True)
    description = models.TextField(blank=True)
    notes = models.TextField(blank=True)
    owner_group = models.ForeignKey(
        "accounts.DirectoryGroup",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="base_images",
    )
    extra = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class BaseImageMirror(models.Model):
    """A regional copy of a catalog entry, kept in one of the organisation's registries."""

    base_image = models.ForeignKey(BaseImage, on_delete=models.CASCADE, related_name="mirrors")
    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="base_image_mirrors")
    repository = models.CharField(max_length=255, help_text="Its path in that registry, e.g. base/python.")
    region = models.CharField(max_length=64, blank=True, help_text="Where it serves, e.g. westeurope.")

    class Meta:
        ordering = ["base_image", "region", "registry__name"]
        constraints = [
            models.UniqueConstraint(
                fields=["base_image", "registry"], name="base_image_mirror_once_per_registry"
            )
        ]

    def __str__(self) -> str:
        return f"{self.base_image} in {self.registry} ({self.region or 'no region'})"

    @property
    def serving_region(self) -> str:
        """Its own region, else its registry's."""
        return self.region or self.registry.region


class ArtifactLineage(models.Model):
    """What an artifact in the inventory is built on, and how Customs decided it."""

    class Method(models.TextChoices):
        ANNOTATION = "annotation", "OCI base-image annotations"
        PROVENANCE = "provenance", "Provenance attestation"
        LAYERS = "layers", "Layer prefix of a catalog image"
        UNKNOWN = "unknown", "Unknown"

    artifact = models.OneToOneField(
        Artifact, primary_key=True, on_delete=models.CASCADE, related_name="lineage"
    )
    method = models.CharField(max_length=16, choices=Method.choices)
    base_reference = models.CharField(max_length=600, blank=True, help_text="Normalised, as decided.")
    base_digest = models.CharField(max_length=100, blank=True)
    base_image = models.ForeignKey(
        BaseImage, null=True, blank=True, on_delete=models.SET_NULL, related_name="built_on"
    )
    matched_layers = models.PositiveIntegerField(default=0)
    base_created = models.DateTimeField(null=True, blank=True, help_text="When the base was built, if known.")
    decided_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["base_image", "method"])]

    def __str__(self) -> str:
        return f"{self.artifact}: {self.base_reference or 'unknown base'} ({self.method})"


# --- access review campaigns (registries/reviews/) --------------------------------------------------


class AccessReviewCampaignQuerySet(models.QuerySet["AccessReviewCampaign"]):
    def visible_to(self, user: Any) -> Self:
        """Reviewers and admins see every campaign; anyone else the ones they review items of."""
        if user.has_role("reviewer"):  # admins too: roles include the ones below them
            return self
        # Subqueries, not joins through the items: one row per campaign, no .distinct() to remember.
        reviewing = AccessReviewItem.objects.filter(reviewers=user).values("campaign")
        named = AccessReviewCampaign.reviewers.through.objects.filter(user=user).values(
            "accessreviewcampaign"
        )
        return self.filter(Q(pk__in=reviewing) | Q(pk__in=named) | Q(owner=user))


class AccessReviewItemQuerySet(models.QuerySet["AccessReviewItem"]):
    def visible_to(self, user: Any) -> Self:
        """Reviewers and admins see every item; anyone else the items they review or answer for."""
        if user.has_role("reviewer"):
            return self
        reviewing = AccessReviewItem.reviewers.through.objects.filter(user=user).values("accessreviewitem")
        return self.filter(Q(pk__in=reviewing) | Q(campaign__owner=user))

    def undecided(self) -> Self:
        return self.filter(decision="")

    def for_reviewer(self, user: Any) -> Self:
        return self.filter(
            pk__in=AccessReviewItem.reviewers.through.objects.filter(user=user).values("accessreviewitem")
        )


class AccessReviewCampaign(models.Model):
    """A certification of who may do what where: a scope in the access-rule language, who reviews
    each item, by when, and what happens to the items nobody answers.

    Opening builds the items from effective access; closing applies the default to undecided
    items and turns revocations into a plan that registries/reviews/ applies step by step.
    """

    class State(models.TextChoices):
        DRAFT = "draft", "Draft"
        OPEN = "open", "Open for review"
        CLOSED = "closed", "Closed, applying"
        APPLIED = "applied", "Applied"

    class ReviewerRule(models.TextChoices):
        GROUP_OWNER = "group_owner", "The owner of the group that gives the access"
        MANAGER = "manager", "The person's manager, from the directory"
        NAMED = "named", "Named reviewers"

    class Decision(models.TextChoices):
        CERTIFY = "certify", "Certify (keep)"
        REVOKE = "revoke", "Revoke"

    class Recurrence(models.TextChoices):
        NONE = "none", "Once"
        MONTHLY = "monthly", "Monthly"
        QUARTERLY = "quarterly", "Quarterly"
        YEARLY = "yearly", "Yearly"

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    # Scope: access on these registries (none: every registry) to repositories the pattern matches,
    # for any of these actions ("everyone who can push to prod/**").
    registries = models.ManyToManyField(Registry, blank=True, related_name="review_campaigns")
    pattern = models.CharField(max_length=255, default="**")
    actions = models.JSONField(default=list)
    reviewer_rule = models.CharField(
        max_length=16, choices=ReviewerRule.choices, default=ReviewerRule.GROUP_OWNER
    )
    # The named reviewers; also who reviews an item the reviewer rule finds nobody for.
    reviewers = models.ManyToManyField("accounts.User", blank=True, related_name="named_review_campaigns")
    owner = models.ForeignKey(
        "accounts.User",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_review_campaigns",
    )
    due_at = models.DateTimeField()
    default_decision = models.CharField(
        max_length=16,
        choices=Decision.choices,
        default=Decision.CERTIFY,
        help_text="What an item nobody decided becomes at the close.",
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.DRAFT, db_index=True)
    recurrence = models.CharField(max_length=16, choices=Recurrence.choices, default=Recurrence.NONE)
    # When Customs starts this campaign (a draft) or, once it has started, its next occurrence.
    next_start_at = models.DateTimeField(null=True, blank=True, db_index=True)
    recurs_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="recurrences"
    )
    created_at = models.DateTimeField(default=timezone.now)
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    applied_at = models.DateTimeField(null=True, blank=True)

    objects = AccessReviewCampaignQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.name


class AccessReviewItem(models.Model):
    """One person or credential with the access in scope, its evidence, and the reviewers' answer.

    Evidence is kept as the reviewer saw it when the campaign opened. `steps` is the plan made at
    the close (what revoking means here, each step with its state and result), so applying can be
    resumed and a report read without recomputing anything.
    """

    class Kind(models.TextChoices):
        PERSON = "person", "Person"
        ROBOT = "robot", "Customs robot token"
        CREDENTIAL = "credential", "Registry credential"

    class Outcome(models.TextChoices):
        NONE = "", "Not applied"
        KEPT = "kept", "Kept"
        PENDING = "pending", "Being applied"
        REVOKED = "revoked", "Revoked"
        MANUAL = "manual", "Left to a person"
        FAILED = "failed", "Failed"

    Decision = AccessReviewCampaign.Decision

    campaign = models.ForeignKey(AccessReviewCampaign, on_delete=models.CASCADE, related_name="items")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    person = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    robot = models.ForeignKey(
        "accounts.RobotToken", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    credential = models.ForeignKey(
        Credential, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The subject as it was named at the opening: the report stays readable if the row goes.
    subject = models.CharField(max_length=255)
    actions = models.JSONField(default=list, help_text="The actions in scope it has.")
    # {"rules": [...], "grants": [...]}: each with its group, membership, registry and pattern.
    access = models.JSONField(default=dict)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_source = models.CharField(max_length=100, blank=True)
    reviewers = models.ManyToManyField("accounts.User", blank=True, related_name="access_review_items")
    reviewers_why = models.CharField(max_length=255, blank=True)
    decision = models.CharField(max_length=16, choices=Decision.choices, blank=True, db_index=True)
    comment = models.TextField(blank=True)
    decided_by = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    by_default = models.BooleanField(default=False, help_text="Nobody decided: the campaign's default.")
    steps = models.JSONField(default=list, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.NONE, blank=True)
    result = models.TextField(blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)

    objects = AccessReviewItemQuerySet.as_manager()

    class Meta:
        ordering = ["campaign", "subject", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(kind="person", robot=None, credential=None)
                    | Q(kind="robot", person=None, credential=None)
                    | Q(kind="credential", person=None, robot=None)
                ),
                name="access_review_item_one_subject",
            ),
            models.UniqueConstraint(
                fields=["campaign", "person"],
                condition=~Q(person=None),
                name="access_review_item_person_once",
            ),
            models.UniqueConstraint(
                fields=["campaign", "robot"], condition=~Q(robot=None), name="access_review_item_robot_once"
            ),
            models.UniqueConstraint(
                fields=["campaign", "credential"],
                condition=~Q(credential=None),
                name="access_review_item_credential_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject} in {self.campaign}"


# --- the corporate cache: base images mirrored into every region (registries/mirror/) -----------------


class MirrorSource(models.Model):
    """How the mirror job reads one catalog entry upstream, when the defaults will not do.

    Without a row the entry is read from its own registry (https://<host>; Docker Hub at its registry
    host), signed in as the connected registry at that host if there is one, else anonymously. The
    password or token is encrypted like a registry's secrets, and never shown again.
    """

    base_image = models.OneToOneField(
        BaseImage, on_delete=models.CASCADE, primary_key=True, related_name="mirror_source"
    )
    endpoint = models.CharField(
        max_length=500,
        blank=True,
        help_text="Read from here instead, e.g. a pull-through cache. Empty: the entry's own registry.",
    )
    username = models.CharField(max_length=255, blank=True)
    # JSON {"password": …}, encrypted: the same shape as Registry.secret, so rotation treats both alike.
    secret = EncryptedTextField(blank=True, default="")
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"upstream of {self.base_image_id}"

    @property
    def password(self) -> str:
        loaded: dict[str, str] = json.loads(self.secret) if self.secret else {}
        return loaded.get("password", "")

    def set_password(self, value: str) -> None:
        self.secret = json.dumps({"password": value}) if value else ""


class MirrorRunQuerySet(models.QuerySet["MirrorRun"]):
    def running(self) -> Self:
        return self.filter(status=MirrorRun.Status.RUNNING)


class MirrorRun(models.Model):
    """One mirror job over one catalog entry: which tags it found, what it copied, and why it failed."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"  # the upstream could not be read, or some copy failed

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        CATALOG = "catalog", "Catalog change"
        COMMAND = "command", "Command"

    base_image = models.ForeignKey(BaseImage, on_delete=models.CASCADE, related_name="mirror_runs")
    region = models.CharField(max_length=64, blank=True, help_text="Only this region's mirrors; empty: all.")
    dry_run = models.BooleanField(default=False, help_text="Compared only; nothing was copied.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING, db_index=True)
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.SCHEDULE)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    tags_seen = models.PositiveIntegerField(default=0, help_text="Upstream tags the entry's patterns allow.")
    copies = models.PositiveIntegerField(default=0, help_text="Tags copied into a mirror (one per mirror).")
    failures = models.PositiveIntegerField(default=0)
    blobs_copied = models.PositiveIntegerField(default=0)
    blobs_skipped = models.PositiveIntegerField(default=0)
    blobs_mounted = models.PositiveIntegerField(default=0)
    bytes_sent = models.PositiveBigIntegerField(default=0)
    error = models.TextField(blank=True, help_text="Why the run failed as a whole (the upstream).")

    objects = MirrorRunQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-pk"]
        constraints = [
            # One run per entry at a time: the insert that claims it is atomic on SQLite and PostgreSQL.
            models.UniqueConstraint(
                fields=["base_image"], condition=Q(status="running"), name="mirror_run_one_at_a_time"
            )
        ]

    def __str__(self) -> str:
        return f"mirror run of {self.base_image_id} at {self.started_at:%Y-%m-%d %H:%M} ({self.status})"


class MirrorState(models.Model):
    """Whether one mirror holds one allowed tag as upstream has it, as of the last run that looked."""

    class State(models.TextChoices):
        PRESENT = "present", "Present"
        MISSING = "missing", "Missing"
        STALE = "stale", "Stale (upstream tag moved)"
        FAILED = "failed", "Failed"

    mirror = models.ForeignKey(BaseImageMirror, on_delete=models.CASCADE, related_name="states")
    tag = models.CharField(max_length=128)
    state = models.CharField(max_length=16, choices=State.choices, db_index=True)
    upstream_digest = models.CharField(max_length=100, blank=True)
    mirrored_digest = models.CharField(max_length=100, blank=True, help_text="What the mirror's tag names.")
    reason = models.CharField(max_length=1000, blank=True)
    checked_at = models.DateTimeField(default=timezone.now)
    copied_at = models.DateTimeField(null=True, blank=True)
    run = models.ForeignKey(
        MirrorRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="states"
    )

    class Meta:
        ordering = ["mirror", "tag"]
        constraints = [models.UniqueConstraint(fields=["mirror", "tag"], name="mirror_state_once_per_tag")]

    def __str__(self) -> str:
        return f"{self.mirror}:{self.tag} {self.state}"


class MirrorArrival(models.Model):
    """A tag's content (by digest) became present in a mirror: the event deployments in its region wait for.

    Written once per (mirror, tag, digest), then sent; the destinations that took it are listed, so
    a retry goes only to the others.
    """

    mirror = models.ForeignKey(BaseImageMirror, on_delete=models.CASCADE, related_name="arrivals")
    tag = models.CharField(max_length=128)
    digest = models.CharField(max_length=100)
    arrived_at = models.DateTimeField(default=timezone.now)
    delivered_to = models.JSONField(default=list, blank=True, help_text="Names of destinations that took it.")
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True, help_text="Every destination took it.")

    class Meta:
        ordering = ["arrived_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["mirror", "tag", "digest"], name="mirror_arrival_once")
        ]
        indexes = [models.Index(fields=["sent_at", "attempts"])]

    def __str__(self) -> str:
        return f"{self.mirror}:{self.tag}@{self.digest[:19]} arrived"


class PostureFact(models.Model):
    """One posture check's result on one subject, with its evidence (registries/connectors/base.py).

    `source` says who judged it: the registry, read at sync and replaced together after a complete
    read (a failed read keeps the previous rows, as grants do); or Customs, from its own records
    (credentials without expiry, being the registry's token server), replaced at each evaluation.
    Passing subjects of one check are kept as one row with a count: the page and the score need how
    many passed, not each name, and a registry may hold a hundred thousand repositories.
    """

    class Source(models.TextChoices):
        REGISTRY = "registry", "the registry"
        CUSTOMS = "customs", "Customs"

    CHECKS = [(check.value, check.value.replace("_", " ")) for check in PostureCheck]
    STATES = [(state.value, state.value) for state in PostureState]

    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="posture_facts")
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.REGISTRY)
    # Not `check`: that name is Model.check(), Django's system checks.
    check_name = models.CharField(max_length=32, choices=CHECKS)
    subject = models.CharField(max_length=500, blank=True, help_text="Empty: the registry as a whole.")
    state = models.CharField(max_length=16, choices=STATES)
    count = models.PositiveIntegerField(default=1, help_text="How many subjects this row stands for.")
    evidence = models.CharField(max_length=1000)
    evidence_url = models.CharField(max_length=1000, blank=True)
    observed_at = models.DateTimeField(default=timezone.now)
    run = models.ForeignKey(
        SyncRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="posture_facts"
    )

    class Meta:
        ordering = ["registry", "check_name", "state", "subject", "pk"]
        indexes = [models.Index(fields=["registry", "source"]), models.Index(fields=["state", "check_name"])]

    def __str__(self) -> str:
        return f"{self.registry_id} {self.check_name} {self.subject or '(registry)'}: {self.state}"


class PostureSnapshot(models.Model):
    """A registry's posture score on one day, for the chart over time; the day's last evaluation wins."""

    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="posture_snapshots")
    day = models.DateField()
    score = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="0-100; empty when no check's result was known."
    )
    passing = models.PositiveIntegerField(default=0)
    failing = models.PositiveIntegerField(default=0)
    unknown = models.PositiveIntegerField(default=0)
    # check → {"ok": n, "failing": n, "unknown": n, "score": 0-100 or null}: what the score was made of.
    checks = models.JSONField(default=dict, blank=True)
    taken_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["registry", "day"]
        constraints = [
            models.UniqueConstraint(fields=["registry", "day"], name="posture_snapshot_one_per_day")
        ]
        indexes = [models.Index(fields=["day"])]

    def __str__(self) -> str:
        return f"{self.registry_id} {self.day}: {self.score}"
