"""The connector interface: plain records out, typed configuration in, five kinds of failure.

A connector talks to one registry and never touches the database: registries/sync.py turns its
records into rows. Adding a registry kind means one module here and one entry in CONNECTORS.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, ClassVar, Protocol, TypeGuard
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr


class Capability(enum.StrEnum):
    """What a connector can supply; pages and rules only ask for what it declares."""

    REPOSITORIES = "repositories"
    ARTIFACTS = "artifacts"
    PUSHED_AT = "pushed_at"
    PULLED_AT = "pulled_at"
    CREDENTIALS = "credentials"
    GRANTS = "grants"  # read_grants(): who the registry lets do what
    WRITE_GRANTS = "write_grants"  # apply_access_plan(): change that to match Customs' rules
    DISABLE_CREDENTIALS = "disable_credentials"  # disable_credential(): offboarding and hygiene
    REMOVE_MEMBERS = "remove_members"  # memberships_of() / remove_person(): offboarding
    REPLICAS = "replicas"  # read_replication(): the regions and replication the registry reports
    EVENTS = "events"
    POSTURE = "posture"  # read_posture(): security settings (anonymous pull, SSO, immutability, ...)


def http_url(value: str) -> str:
    """A registry or API address as settings accept it: http(s), no credentials in it, no trailing slash."""
    if not value.startswith(("https://", "http://")):
        raise ValueError("the registry URL must start with https:// (or http:// for a local registry)")
    if "@" in urlsplit(value).netloc:
        # user:password@ would be shown to every reader of the endpoint, the audit trail and errors.
        raise ValueError("the registry URL must not carry credentials; use the username and password")
    return value.rstrip("/")


class ConnectorConfig(BaseModel):
    """Per-kind configuration. Secret fields are SecretStr: they print as stars and live encrypted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def secret_fields(cls) -> set[str]:
        return {name for name, f in cls.model_fields.items() if f.annotation in (SecretStr, SecretStr | None)}

    def public(self) -> dict[str, Any]:
        """Everything but the secrets: what templates, the API and logs may see."""
        return self.model_dump(mode="json", exclude=self.secret_fields())

    def secrets(self) -> dict[str, str]:
        """The secret values, for the encrypted column only."""
        values = {name: getattr(self, name) for name in self.secret_fields()}
        return {name: value.get_secret_value() for name, value in values.items() if value is not None}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(part for part in (self.os, self.architecture, self.variant) if part)


@dataclass(frozen=True)
class RemoteRepository:
    name: str


@dataclass(frozen=True)
class RemoteTag:
    name: str
    digest: str


@dataclass(frozen=True)
class RemoteArtifact:
    """One manifest (or index) by digest, with what its config and annotations say about it."""

    digest: str
    media_type: str
    size: int  # config plus layers, as the manifest's descriptors state them
    platform: Platform | None = None
    config_digest: str = ""
    layer_digests: tuple[str, ...] = ()
    diff_ids: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    created: datetime | None = None
    pushed_at: datetime | None = None
    last_pulled_at: datetime | None = None
    children: tuple[RemoteArtifact, ...] = ()  # the platform manifests of an index
    # A platform manifest's SLSA provenance, from its index's attestation manifest (BuildKit): the
    # statement slimmed to what lineage reads, and `notes` when an attestation could not be read.
    provenance: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def is_index(self) -> bool:
        return bool(self.children) or self.media_type in INDEX_MEDIA_TYPES


OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_MEDIA_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})


_SUBMICROSECONDS = re.compile(r"(\.\d{6})\d+")


def parse_rfc3339(text: object) -> datetime | None:
    """An RFC 3339 timestamp as an aware datetime, or None; Go's nanoseconds are cut to microseconds."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(_SUBMICROSECONDS.sub(r"\1", text.replace("Z", "+00:00")))
    except ValueError:
        return None
    return moment if moment.tzinfo else None  # a time without a zone cannot be placed: treat as unknown


class Connector(Protocol):
    kind: ClassVar[str]
    label: ClassVar[str]
    config_class: ClassVar[type[ConnectorConfig]]
    capabilities: ClassVar[frozenset[Capability]]

    def check(self) -> None:
        """Return when the registry answers with these credentials; raise a ConnectorError otherwise."""

    def repositories(self) -> Iterator[RemoteRepository]:
        """Every repository, streamed page by page."""

    def tags(self, repository: str) -> list[RemoteTag]:
        """The repository's tags with the digest each points at."""

    def artifact(self, repository: str, digest: str) -> RemoteArtifact:
        """The manifest (or index, with its platform manifests) behind a digest."""

    def resolve(self, repository: str, reference: str) -> str:
        """The digest a tag points at now (for notifications that name only the tag)."""


# --- Grants: access the registry actually gives, and plans that change it ---------------------------
#
# Scope: every grant and plan change names where it applies in the access-rule pattern language
# (registries/patterns.py), so rules and grants are compared by one matcher over the inventory:
#
#     team/app     exactly that repository (an ECR repository policy, a Docker Hub team on a repo)
#     team/**      everything under a prefix (a Harbor project, an ACR "repositories/team/*" scope
#                  map entry, an Artifact Registry repository's IAM bindings)
#     **           the whole registry (an ACR AcrPush role assignment, a Docker Hub org owner,
#                  a project-level IAM binding)
#
# Actions are pull, push and delete only. A connector maps native roles onto them (Harbor developer:
# pull+push; ACR content/delete: delete; Quay admin: all three) and drops what has no counterpart
# (metadata reads, scanner pulls), so Customs compares what rules can express.

ACTIONS = ("pull", "push", "delete")


class PrincipalKind(enum.StrEnum):
    GROUP = "group"
    USER = "user"
    ROBOT = "robot"  # robot accounts and registry-native tokens (ACR tokens, Docker Hub OATs)
    SERVICE_ACCOUNT = "service_account"  # cloud workload identities: IAM roles, GCP service accounts
    OTHER = "other"  # anything else: allUsers, a whole domain, a foreign tenant


@dataclass(frozen=True)
class Principal:
    """Who a grant is for, as the registry names them."""

    kind: PrincipalKind
    id: str  # the registry's own identifier: an Entra object id, an ARN, "robot$team+ci", a team id
    name: str = ""  # what people recognise it by
    # The directory's immutable id for this principal, when the connector knows it (an ACR role
    # assignment's principalId is the Entra group's object id; a Harbor OIDC group may be named by
    # the group id claim). Only this links a grant to a DirectoryGroup or User: never names.
    directory_id: str = ""


@dataclass(frozen=True)
class RemoteGrant:
    """One principal's access through one native object, e.g. one role assignment or one statement."""

    principal: Principal
    scope: str  # a pattern, as above
    actions: frozenset[str]
    source: str  # the native object, for people and for removal: "scope map ci-push", "policy statement 2"


class ChangeOp(enum.StrEnum):
    ADD = "add"
    REMOVE = "remove"


@dataclass(frozen=True)
class GrantChange:
    """One step of a plan: give or take `actions` for a principal on a scope.

    An addition names one inventoried repository (a connector may merge several into a native
    wildcard it knows is equivalent); a removal names the scope and `source` of the grant it takes
    the actions from, on that whole scope: what rules still allow there is in the plan's additions.
    """

    op: ChangeOp
    principal: Principal
    scope: str
    actions: tuple[str, ...]
    source: str = ""
    reason: str = ""  # the rule or grant that motivates it, for people reading the plan

    def as_dict(self) -> dict[str, Any]:
        return {
            "op": str(self.op),
            "principal_kind": str(self.principal.kind),
            "principal_id": self.principal.id,
            "principal_name": self.principal.name,
            "principal_directory_id": self.principal.directory_id,
            "scope": self.scope,
            "actions": list(self.actions),
            "source": self.source,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class AccessPlan:
    """What would make a registry's grants match Customs' rules. Additions are listed (and applied) first,
    so a grant being narrowed never leaves people without access the rules give them."""

    registry: str
    additions: tuple[GrantChange, ...] = ()
    removals: tuple[GrantChange, ...] = ()

    @property
    def changes(self) -> tuple[GrantChange, ...]:
        return self.additions + self.removals

    def __bool__(self) -> bool:
        return bool(self.additions or self.removals)


class GrantReader(Protocol):
    capabilities: ClassVar[frozenset[Capability]]

    def read_grants(self) -> Iterator[RemoteGrant]:
        """Every grant the registry holds, read completely (or a ConnectorError: nothing is replaced)."""


class GrantWriter(Protocol):
    capabilities: ClassVar[frozenset[Capability]]

    def apply_access_plan(self, plan: AccessPlan) -> Iterator[GrantChange]:
        """Make the plan's changes, additions first, yielding each once the registry accepted it.

        Raises a ConnectorError at the first change the registry refuses: the ones yielded before
        stand, and the caller reports both. Each change must be idempotent (adding a grant that
        exists, or removing one that is gone, succeeds), because a re-run after a failure recomputes
        the plan from grants that may not have been read again yet.

        A connector that refuses to remove some kinds of grant says which beforehand, with a static
        `removable(principal_kind, source) -> bool` (optional: without it, every grant is), so
        offboarding's plan leaves those to a person instead of failing at run time.
        """


def can_read_grants(connector: object) -> TypeGuard[GrantReader]:
    """Whether the connector declares, and implements, reading grants."""
    return Capability.GRANTS in getattr(connector, "capabilities", ()) and callable(
        getattr(connector, "read_grants", None)
    )


def can_write_grants(connector: object) -> TypeGuard[GrantWriter]:
    """Whether the connector declares, and implements, applying access plans."""
    return Capability.WRITE_GRANTS in getattr(connector, "capabilities", ()) and callable(
        getattr(connector, "apply_access_plan", None)
    )


# --- Credentials: every secret that opens the registry, with its owner, expiry and last use -------------


class CredentialKind(enum.StrEnum):
    ROBOT = "robot"  # Harbor and Quay robot accounts
    ACCESS_TOKEN = "access_token"  # a person's token: Docker Hub PAT, ACR token, Harbor CLI secret
    ORGANIZATION_TOKEN = "organization_token"  # Docker Hub organisation access token
    ACCESS_KEY = "access_key"  # AWS IAM access key
    SERVICE_ACCOUNT_KEY = "service_account_key"  # Google service-account key
    ADMIN_ACCOUNT = "admin_account"  # a shared admin login: the ACR admin user, Harbor's local admin


@dataclass(frozen=True)
class RemoteCredential:
    """One credential as the registry reports it. Unknown is not the same as never, twice over:

    - `expires_at` None with `expiry_known` means it never expires; without, the registry does not say.
    - `last_used_at` None with `usage_known` means never used; without, the registry keeps no record
      (Harbor robots, ACR tokens), and hygiene must say "unknown" rather than "unused".

    And per action: `actions` empty means the registry does not say what the credential may do (in a
    form Customs reads), not that it may do nothing. `actions_seen` with an empty
    `actions_seen_source` means no usage evidence was read; with a source, a missing action was not
    seen in what that source keeps (e.g. an audit log's retention).
    """

    kind: CredentialKind
    id: str  # the registry's stable identifier: robot id, token uuid, access key id, key name
    name: str
    enabled: bool = True
    owner: Principal | None = None  # whom it acts as or belongs to
    created_by: Principal | None = None
    created_at: datetime | None = None
    expires_at: datetime | None = None
    expiry_known: bool = True
    last_used_at: datetime | None = None
    usage_known: bool = True
    last_used_source: str = ""  # where the last use comes from, e.g. "IAM GetAccessKeyLastUsed"
    scopes: tuple[str, ...] = ()  # native scopes, as text, for people
    shared_admin: bool = False
    actions: frozenset[str] = frozenset()  # what it may do, in ACTIONS' words
    # Action → when it was last seen used (aware datetimes); read-only, and left out of the hash.
    actions_seen: Mapping[str, datetime] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    actions_seen_source: str = ""  # where that evidence comes from, e.g. "Harbor audit log"

    def __post_init__(self) -> None:
        # A connector may pass a plain dict: freeze a copy, so the record stays what it was read as.
        object.__setattr__(self, "actions_seen", MappingProxyType(dict(self.actions_seen)))


class CredentialReader(Protocol):
    capabilities: ClassVar[frozenset[Capability]]

    def read_credentials(self) -> Iterator[RemoteCredential]:
        """Every credential the registry holds, read completely (or a ConnectorError: nothing changes)."""


class CredentialDisabler(Protocol):
    capabilities: ClassVar[frozenset[Capability]]

    def disable_credential(self, credential_id: str) -> None:
        """Make the credential unusable (disable where the registry can, delete where it cannot).

        Idempotent: a credential already disabled or gone is success, so an interrupted offboarding
        can run the step again.
        """


def can_read_credentials(connector: object) -> TypeGuard[CredentialReader]:
    return Capability.CREDENTIALS in getattr(connector, "capabilities", ()) and callable(
        getattr(connector, "read_credentials", None)
    )


def can_disable_credentials(connector: object) -> TypeGuard[CredentialDisabler]:
    return Capability.DISABLE_CREDENTIALS in getattr(connector, "capabilities", ()) and callable(
        getattr(connector, "disable_credential", None)
    )


class MemberRemover(Protocol):
    """Organisations and teams a person belongs to, and taking them out (offboarding).

    Where membership is itself the access (a Docker Hub organisation), removing the person is the
    step; `membership_covers_grants` says that removal also ends every grant the registry lists for
    them, so offboarding need not remove those one by one.
    """

    capabilities: ClassVar[frozenset[Capability]]
    membership_covers_grants: ClassVar[bool]

    def memberships_of(self, principal_id: str) -> list[str]:
        """Where they are a member, read now ("organisation acme", "team acme/ci"); [] for nowhere."""

    def remove_person(self, principal_id: str) -> list[str]:
        """Take them out of every organisation and team the connector manages; returns where they
        were, worded as memberships_of() words it ([] for nowhere). Idempotent."""


def can_remove_members(connector: object) -> TypeGuard[MemberRemover]:
    return Capability.REMOVE_MEMBERS in getattr(connector, "capabilities", ()) and callable(
        getattr(connector, "remove_person", None)
    )


# --- Permission checks: "test connection" one permission at a time ------------------------------------


@dataclass(frozen=True)
class PermissionCheck:
    """One permission the connector needs, and whether these credentials have it.

    Reading the inventory, credentials and grants is required. Writes (disabling a credential,
    editing grants) are optional: a read-only account is the least-privilege set-up, and only
    reconcile plans and offboarding need them. A write that no harmless request can prove is
    reported as not tried rather than guessed either way.
    """

    permission: str  # in the registry's words, e.g. "list repositories (registry:catalog:*)"
    ok: bool
    detail: str = ""  # why not, or what was seen
    required: bool = True  # False: only plans and offboarding need it
    tried: bool = True  # False: no harmless request proves it; `ok` then says nothing

    @property
    def missing(self) -> bool:
        return self.tried and not self.ok


class PermissionChecker(Protocol):
    # What the account needs, least privilege first: shown on the registry form.
    needs: ClassVar[tuple[str, ...]]

    def check_permissions(self) -> list[PermissionCheck]:
        """Try each needed permission with a harmless read; never raises for a missing one."""


def can_check_permissions(connector: object) -> TypeGuard[PermissionChecker]:
    return callable(getattr(connector, "check_permissions", None))


# --- Regions and replication: where the registry says its content lives, and what it copies where ------
#
# What the vendor reports about itself, for people and the registry page: a geo-replica it keeps in
# another region (ACR), a policy pushing content to another registry (Harbor push, an ECR replication
# rule), a mirror pulling content in (Harbor pull, a Quay repository mirror), or simply the region
# content is stored in (the ACR home region, an Artifact Registry repository's location). This is not
# a Replica row: a Replica is an endpoint Customs itself reads, to learn which artifacts each region
# holds; a RemoteReplication is the vendor's own configuration and its last known state.


class ReplicationKind(enum.StrEnum):
    GEO_REPLICA = "geo-replica"  # the vendor keeps a copy of the whole registry in another region
    PUSH_REPLICATION = "push-replication"  # this registry copies (part of) its content to another
    PULL_MIRROR = "pull-mirror"  # this registry copies content in from another
    REGION = "region"  # where the registry (or one of its repositories) stores content


class ReplicationDirection(enum.StrEnum):
    OUTBOUND = "outbound"  # content leaves this registry
    INBOUND = "inbound"  # content arrives from the remote
    BOTH = "both"  # the vendor keeps both sides in step (ACR geo-replication)
    NONE = ""  # a region: nothing is copied


class ReplicationStatus(enum.StrEnum):
    """The vendor's state mapped to four words; `status_text` keeps the vendor's own."""

    OK = "ok"
    FAILED = "failed"  # the last copy failed or was stopped before finishing
    IN_PROGRESS = "in_progress"
    UNKNOWN = "unknown"  # never ran, or the vendor does not say (ECR reports status per image only)


@dataclass(frozen=True)
class RemoteReplication:
    """One replication link or region, as the registry reports it."""

    id: str  # stable and unique per registry: a policy id, a region, "<region>/<account>", a repository
    name: str
    kind: ReplicationKind
    location: str  # the remote's name or region: "dr-site", "eastus", "registry.example.com"
    url: str = ""  # the remote's endpoint, when there is one
    direction: ReplicationDirection = ReplicationDirection.NONE
    enabled: bool = True
    status: ReplicationStatus = ReplicationStatus.UNKNOWN
    status_text: str = ""  # the vendor's words, e.g. "Failed: dr-site unreachable (4 of 4 failed)"
    last_started_at: datetime | None = None
    last_finished_at: datetime | None = None
    next_run_at: datetime | None = None  # when the vendor will run it next, where it says (Quay)
    filters: tuple[str, ...] = ()  # what is copied, as text: "name matches payments/**", "prefix team/"
    trigger: str = ""  # what starts a copy, as text: "event_based", "every 3600 s"
    notes: str = ""  # anything else worth showing people, e.g. the robot a mirror pushes as


class ReplicationReader(Protocol):
    capabilities: ClassVar[frozenset[Capability]]

    def read_replication(self) -> Iterator[RemoteReplication]:
        """Every replication link and region the registry reports, read completely (or a
        ConnectorError: the previous ones are kept). Each `id` appears once."""


def can_read_replication(connector: object) -> TypeGuard[ReplicationReader]:
    """Whether the connector declares, and implements, reading regions and replication."""
    return Capability.REPLICAS in getattr(connector, "capabilities", ()) and callable(
        getattr(connector, "read_replication", None)
    )


# --- Posture: the registry's own security settings, one fact per check and subject ------------------
#
# A connector reads what the vendor's API says about a setting and judges it: `ok`, `failing`, or
# `unknown` when the API does not say (a field a newer API version has, a permission Customs lacks).
# A check that means nothing for a kind (scan on push for docker distribution) yields no fact at all.
# registries/posture.py turns failing facts into findings and scores the registry.


class PostureCheck(enum.StrEnum):
    """What is checked; a fact `failing` means the risky condition holds."""

    ANONYMOUS_PULL = "anonymous_pull"  # the whole registry lets anyone pull without signing in
    PUBLIC_REPOSITORY = "public_repository"  # one repository (or project) anyone may pull from
    SSO_NOT_ENFORCED = "sso_not_enforced"  # people can sign in without the directory's SSO
    ADMIN_ACCOUNT = "admin_account"  # an admin or root account is in use
    NO_EXPIRY = "no_expiry"  # credentials without expiry (from the credential list, not a connector)
    TAG_MUTABLE = "tag_mutable"  # a production repository's tags can be moved
    SCAN_ON_PUSH_OFF = "scan_on_push_off"  # pushed images are not scanned
    ACR_ADMIN_USER = "acr_admin_user"  # ACR's shared admin user is enabled
    MEMBERS_WITHOUT_SSO = "members_without_sso"  # organisation members who sign in without SSO


class PostureState(enum.StrEnum):
    OK = "ok"
    FAILING = "failing"
    UNKNOWN = "unknown"  # the registry does not say, or would not let Customs read it


@dataclass(frozen=True)
class PostureFact:
    """One check's result on one subject, with the evidence a reviewer can follow."""

    check: PostureCheck
    state: PostureState
    evidence: str  # what the registry said, in words: "project payments: metadata.public is true"
    # "" for the registry as a whole; else what the fact is about: a repository ("team/app"), a
    # pattern for a part of it ("team/**": a Harbor project), or another named part ("member alice").
    subject: str = ""
    evidence_url: str = ""  # where the setting is read or changed (an API resource or a console page)


def visibility_fact(repository: str, public: object, url: str) -> PostureFact:
    """A repository's visibility as a listing reports it: True public, False private, else unknown."""
    if public is True:
        evidence = "a public repository: anyone may pull it without signing in"
        return PostureFact(PostureCheck.PUBLIC_REPOSITORY, PostureState.FAILING, evidence, repository, url)
    if public is False:
        return PostureFact(PostureCheck.PUBLIC_REPOSITORY, PostureState.OK, "private", repository, url)
    evidence = "the repository listing did not say whether it is public"
    return PostureFact(PostureCheck.PUBLIC_REPOSITORY, PostureState.UNKNOWN, evidence, repository, url)


class PostureReader(Protocol):
    capabilities: ClassVar[frozenset[Capability]]

    def read_posture(self, production: Collection[str] = ()) -> Iterator[PostureFact]:
        """The registry's security settings, read completely (or a ConnectorError: nothing changes).

        `production` names the repositories whose tags must not move (POSTURE_PRODUCTION_REPOSITORIES,
        applied to the inventory): tag immutability is read for those only, since some registries
        need a request per repository for it.
        """


def can_read_posture(connector: object) -> TypeGuard[PostureReader]:
    """Whether the connector declares, and implements, reading its security settings."""
    return Capability.POSTURE in getattr(connector, "capabilities", ()) and callable(
        getattr(connector, "read_posture", None)
    )
