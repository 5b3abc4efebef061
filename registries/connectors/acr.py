"""Azure Container Registry: inventory from the data plane, credentials, grants and regions from ARM.

ACR answers on two planes. The data plane, on the registry's login server (`<name>.azurecr.io`),
lists repositories and tags with their times (`/acr/v1/...`, api-version 2021-07-01) and serves
manifests through `/v2/`, both behind ACR's own bearer tokens. The management plane (Azure Resource
Manager) knows what the data plane cannot tell: whether the shared admin user is on, the registry's
tokens and the scope maps that give them their access, role assignments, and geo-replications.

Two ways in (registry-apis.md §5.1):

- an Entra service principal (client credentials, through msal) for ARM; its ARM token is also
  exchanged for an ACR refresh token (`/oauth2/exchange`) and that for per-scope access tokens
  (`/oauth2/token`), as `az acr login` does, so one identity and one secret serve both planes;
- an ACR token (repository-scoped, Basic auth to `/oauth2/token`): inventory only, since ARM does
  not accept it. The connector is then built as AcrTokenConnector, which declares only that.

The Entra authority and the ARM address are settings with the public cloud's defaults, so a
sovereign cloud works and tests point both at a fake on loopback.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
import threading
import time
from collections.abc import Callable, Collection, Iterator
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote, urljoin, urlsplit

import msal  # type: ignore[import-untyped]  # msal ships no type information
import requests
from pydantic import Field, SecretStr, field_validator, model_validator

from portal.http import OutboundSession, TransientError, outbound_session
from registries.connectors.base import (
    ACTIONS,
    AccessPlan,
    Capability,
    ChangeOp,
    ConnectorConfig,
    CredentialKind,
    GrantChange,
    PermissionCheck,
    PostureCheck,
    PostureFact,
    PostureState,
    Principal,
    PrincipalKind,
    RemoteArtifact,
    RemoteCredential,
    RemoteGrant,
    RemoteReplication,
    RemoteRepository,
    RemoteTag,
    ReplicationDirection,
    ReplicationKind,
    ReplicationStatus,
    http_url,
    parse_rfc3339,
)
from registries.connectors.distribution import DistributionConfig, DistributionConnector
from registries.connectors.errors import (
    AuthError,
    ConfigError,
    ConnectorError,
    NotFoundError,
    PermanentError,
    json_object,
    raise_for_status,
    retry_after_seconds,
)

AUTHORITY = "https://login.microsoftonline.com"
ARM = "https://management.azure.com"
ARM_API_VERSION = "2023-07-01"
RBAC_API_VERSION = "2022-04-01"
DATA_API_VERSION = "2021-07-01"
CATALOG_SCOPE = "registry:catalog:*"
# An ACR refresh token lives about three hours; renew well before, so a long sync never sends a dead one.
REFRESH_LIFETIME_SECONDS = 60 * 60
ASYNC_POLLS = 30  # an ARM long-running write gets this many status reads before Customs gives up

# Built-in roles by their fixed ids (the same in every tenant), and what each lets a principal do
# with images. Reader is in the ACR roles table as able to pull; AcrImageSigner signs, which Customs
# does not compare. Custom roles are not read (their definitions need another call and another right).
BUILT_IN_ROLES: dict[str, tuple[str, frozenset[str]]] = {
    "7f951dda-4ed3-4680-a7ca-43fe172d538d": ("AcrPull", frozenset({"pull"})),
    "8311e382-0749-4cb8-b61a-304f252e45ec": ("AcrPush", frozenset({"pull", "push"})),
    "c2f4ef07-c644-48eb-af81-4b1b4947fb11": ("AcrDelete", frozenset({"delete"})),
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": ("Owner", frozenset(ACTIONS)),
    "b24988ac-6180-42a0-ab88-20f7382dd24c": ("Contributor", frozenset(ACTIONS)),
    "acdd72a7-3385-48ef-bd42-f606fba81ae7": ("Reader", frozenset({"pull"})),
}
PRINCIPAL_KINDS = {
    "User": PrincipalKind.USER,
    "Group": PrincipalKind.GROUP,
    "ServicePrincipal": PrincipalKind.SERVICE_ACCOUNT,
}
# Scope map actions → Customs actions. `contentWrite`/`delete` are the older spelling the published
# ScopeMapCreate example still uses; metadata actions have no counterpart and are dropped.
SCOPE_MAP_ACTIONS = {
    "content/read": "pull",
    "content/write": "push",
    "content/delete": "delete",
    "contentRead": "pull",
    "contentWrite": "push",
    "delete": "delete",
}
NATIVE_ACTION = {"pull": "content/read", "push": "content/write", "delete": "content/delete"}
_CONDITION = re.compile(
    r"repositories:name\]\s+(StringEqualsIgnoreCase|StringStartsWithIgnoreCase)\s+'([^']+)'", re.IGNORECASE
)
# ARM permissions the optional writes need, checked through the caller's effective permissions.
PLAN_PERMISSIONS = ("Microsoft.ContainerRegistry/registries/scopeMaps/write",)
OFFBOARDING_PERMISSIONS = (
    "Microsoft.ContainerRegistry/registries/tokens/write",  # disable a token
    "Microsoft.ContainerRegistry/registries/write",  # switch the admin user off
)
ADMIN_USER = "admin-user"  # the credential id of the shared admin login

# Data-plane reads a minute that one identity may make, by SKU: the per-identity DataplaneRead column
# of registry-apis.md §5.4 (learn.microsoft.com/azure/container-registry/container-registry-skus),
# which gives Basic and Standard one figure. Customs signs in as one identity, so that bucket is the
# one it alone fills (the registry's is shared by every client). Customs makes no data-plane writes
# or deletes (it never pushes), so only reads are paced; ARM throttles per subscription, not by SKU.
READS_PER_MINUTE = {"basic": 5_000, "standard": 5_000, "premium": 10_000}
# A SKU ARM did not tell (an ACR token cannot read ARM) or this table does not know: the lowest.
UNKNOWN_SKU_READS_PER_MINUTE = 5_000
# Nine tenths: the identity may also serve a pipeline or the CLI, and a one-second burst on top of a
# full minute's rate would otherwise carry that minute past the limit.
PACE_SHARE = 0.9


class AcrConfig(ConnectorConfig):
    url: str  # the login server, https://<name>.azurecr.io
    tenant_id: str | None = Field(default=None, description="Entra tenant (directory) id.")
    client_id: str | None = Field(default=None, description="The service principal's application id.")
    client_secret: SecretStr | None = None
    subscription_id: str | None = None
    resource_group: str | None = None
    registry_name: str | None = Field(
        default=None, description="The registry's ARM name; defaults to the login server's first label."
    )
    username: str | None = Field(
        default=None, description="Instead of a service principal: an ACR token's name (inventory only)."
    )
    password: SecretStr | None = None
    authority_url: str = Field(default=AUTHORITY, description="Entra sign-in host (sovereign clouds differ).")
    arm_url: str = Field(default=ARM, description="Azure Resource Manager endpoint.")
    read_role_assignments: bool = Field(
        default=True, description="Read Azure role assignments as grants (needs Reader on the registry)."
    )
    page_size: int = 100

    @field_validator("url", "arm_url")
    @classmethod
    def _urls(cls, value: str) -> str:
        return http_url(value)

    @field_validator("authority_url")
    @classmethod
    def _authority(cls, value: str) -> str:
        if not value.startswith("https://"):  # msal refuses anything else, and so should we
            raise ValueError("the Entra authority must start with https://")
        return http_url(value)

    @field_validator("page_size")
    @classmethod
    def _page_size(cls, value: int) -> int:
        if not 1 <= value <= 1000:
            raise ValueError("page size must be between 1 and 1000")
        return value

    @model_validator(mode="after")
    def _one_way_in(self) -> AcrConfig:
        principal = {
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "subscription_id": self.subscription_id,
            "resource_group": self.resource_group,
        }
        given = [name for name, value in principal.items() if value]
        if given and len(given) < len(principal):
            missing = ", ".join(name for name in principal if name not in given)
            raise ValueError(f"a service principal also needs {missing}")
        if not given and not (self.username and self.password):
            raise ValueError(
                "give a service principal (tenant, client id and secret, subscription, "
                "resource group) or an ACR token's username and password"
            )
        return self

    @property
    def service_principal(self) -> bool:
        return bool(self.client_id)

    @property
    def login_server(self) -> str:
        return urlsplit(self.url).netloc

    @property
    def name(self) -> str:
        return self.registry_name or self.login_server.split(".", 1)[0]

    @property
    def registry_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.ContainerRegistry/registries/{self.name}"
        )


@dataclasses.dataclass(frozen=True)
class Replication:
    """One geo-replication as ARM reports it: the region, its own endpoint, and how it is doing."""

    region: str
    endpoint: str  # https://<name>.<region>.geo.azurecr.io, or "" when regional endpoints are off
    status: str  # displayStatus: Ready, Syncing, Disabled, ...
    message: str = ""
    provisioning_state: str = ""
    home: bool = False  # the registry's own region


class Pacer:
    """A token bucket: `per_minute` requests a minute on average, in bursts of at most a second's worth.

    Each caller reserves its slot under the lock and sleeps outside it, so the threads of one sync
    share the budget without queueing on the lock.
    """

    def __init__(
        self, per_minute: float, *, clock: Callable[[], float], sleep: Callable[[float], None]
    ) -> None:
        self.per_second = per_minute / 60
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._tokens = self.per_second
        self._at = clock()

    def wait(self) -> None:
        """Return once one more request keeps within the budget."""
        with self._lock:
            now = self._clock()
            refilled = self._tokens + (now - self._at) * self.per_second
            self._tokens, self._at = min(self.per_second, refilled) - 1, now
            # Below zero, the request borrows from the next refill and waits until it arrives.
            delay = -self._tokens / self.per_second if self._tokens < 0 else 0.0
        if delay:
            self._sleep(delay)


class AcrConnector:
    kind: ClassVar[str] = "acr"
    label: ClassVar[str] = "Azure Container Registry"
    config_class: ClassVar[type[ConnectorConfig]] = AcrConfig
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.REPOSITORIES,
            Capability.ARTIFACTS,
            Capability.PUSHED_AT,
            Capability.CREDENTIALS,
            Capability.GRANTS,
            Capability.WRITE_GRANTS,
            Capability.DISABLE_CREDENTIALS,
            Capability.REPLICAS,
            Capability.EVENTS,
            Capability.POSTURE,
        }
    )
    needs: ClassVar[tuple[str, ...]] = (
        "read the registry in ARM (Microsoft.ContainerRegistry/registries/read: Reader on the registry)",
        "list repositories and tags (AcrPull on the registry: registries/pull/read; with ABAC, "
        "Container Registry Repository Catalog Lister plus Repository Reader)",
        "pull manifests (AcrPull: content/read); nothing more on the data plane: Customs never pushes",
        "read tokens and scope maps (registries/tokens/read, registries/scopeMaps/read: Reader)",
        "read role assignments on the registry (Microsoft.Authorization/roleAssignments/read: Reader)",
        "read geo-replications and webhooks (registries/replications/read, registries/webhooks/read: Reader)",
        "optional, only for reconcile plans: registries/scopeMaps/write to edit tokens' scope maps "
        "(a custom role; Contributor is far broader)",
        "optional, only for offboarding: registries/tokens/write to disable a token, and "
        "registries/write to switch the shared admin user off (a custom role; Contributor is far broader)",
    )

    def __new__(cls, config: AcrConfig, **_: Any) -> AcrConnector:
        return super().__new__(cls.variant_for(config) if cls is AcrConnector else cls)

    @classmethod
    def variant_for(cls, config: ConnectorConfig) -> type[AcrConnector]:
        """With an ACR token there is no ARM: the variant that declares inventory only, so sync,
        drift and the pages ask it for nothing it cannot do (capabilities are per class)."""
        if isinstance(config, AcrConfig) and not config.service_principal:
            return AcrTokenConnector
        return cls

    def __init__(
        self,
        config: AcrConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`clock` and `sleep` pace data-plane reads and ARM polls; tests pass simulated ones."""
        self.config = config
        self._clock, self._sleep = clock, sleep
        self._sku: str | None = None  # sku.name from ARM, once read
        self._reads: Pacer | None = None  # made on the first data-plane read, when the SKU is known
        self._local = threading.local()
        self._lock = threading.Lock()
        self._entra: Any = None  # the msal application, made on first use
        self._refresh: tuple[str, float] | None = None  # (ACR refresh token, monotonic time issued)
        self._access: dict[str, str] = {}  # scope → ACR access token
        # (repository, digest) → the latest time a tag pointing at it was pushed or moved.
        self._tag_times: dict[tuple[str, str], datetime] = {}
        self._registry = _AcrDistribution(
            DistributionConfig(url=config.url),
            token=lambda scope: self._access_token(scope, fresh=True),
            pace=lambda: self._pacer().wait(),
        )

    # --- inventory ---------------------------------------------------------------------------------

    def check(self) -> None:
        if self.config.service_principal:
            self._registry_resource()
        self._data_get("/acr/v1/_catalog", scope=CATALOG_SCOPE, params={"n": 1})

    def repositories(self) -> Iterator[RemoteRepository]:
        for body in self._data_pages("/acr/v1/_catalog", scope=CATALOG_SCOPE):
            for name in body.get("repositories") or []:
                yield RemoteRepository(name=str(name))

    def tags(self, repository: str) -> list[RemoteTag]:
        tags = []
        path = f"/acr/v1/{_path(repository)}/_tags"
        for body in self._data_pages(path, scope=_metadata(repository)):
            for item in body.get("tags") or []:
                digest, name = str(item.get("digest", "")), str(item.get("name", ""))
                if not digest.startswith("sha256:") or not name:
                    continue
                self._note(repository, digest, parse_rfc3339(item.get("lastUpdateTime")))
                tags.append(RemoteTag(name=name, digest=digest))
        return sorted(tags, key=lambda tag: tag.name)

    def resolve(self, repository: str, reference: str) -> str:
        return self._registry.resolve(repository, reference)

    def artifact(self, repository: str, digest: str) -> RemoteArtifact:
        record = self._registry.artifact(repository, digest)
        attributes = (
            json_object(
                self._data_get(
                    f"/acr/v1/{_path(repository)}/_manifests/{digest}", scope=_metadata(repository)
                )
            ).get("manifest")
            or {}
        )
        # When the image arrived: the latest tag push onto it, else when the manifest itself came.
        pushed = self._tag_times.get((repository, digest)) or parse_rfc3339(attributes.get("createdTime"))
        return dataclasses.replace(record, pushed_at=pushed)

    def _note(self, repository: str, digest: str, moment: datetime | None) -> None:
        known = self._tag_times.get((repository, digest))
        if moment is not None and (known is None or moment > known):
            self._tag_times[repository, digest] = moment

    # --- regions -----------------------------------------------------------------------------------

    def replications(self) -> list[Replication]:
        """The registry's home region and every geo-replication, with ARM's status for each."""
        registry = self._registry_resource()
        home = str(registry.get("location", ""))
        found = [Replication(region=home, endpoint=self.config.url, status="Ready", home=True)]
        for item in self._arm_list(f"{self.config.registry_id}/replications"):
            region = str(item.get("location", ""))
            if region == home:
                continue  # ARM lists the home region as a replication too
            properties = item.get("properties") or {}
            status = properties.get("status") or {}
            endpoint = (
                f"https://{self.config.name}.{region}.geo.azurecr.io"
                if properties.get("regionEndpointEnabled", True)
                else ""
            )
            found.append(
                Replication(
                    region=region,
                    endpoint=endpoint,
                    status=str(status.get("displayStatus") or ""),
                    message=str(status.get("message") or ""),
                    provisioning_state=str(properties.get("provisioningState") or ""),
                )
            )
        return found

    def webhook_regions(self) -> dict[str, list[str]]:
        """Region → enabled webhooks posting push events: ACR sends each region's pushes from there."""
        regions: dict[str, list[str]] = {}
        for item in self._arm_list(f"{self.config.registry_id}/webhooks"):
            properties = item.get("properties") or {}
            if properties.get("status") == "enabled" and "push" in (properties.get("actions") or []):
                regions.setdefault(str(item.get("location", "")), []).append(str(item.get("name", "")))
        return regions

    def read_replication(self) -> Iterator[RemoteReplication]:
        """The home region and each geo-replication, with the push webhooks ACR sends from each region."""
        webhooks = self.webhook_regions()
        for replication in self.replications():
            yield _remote_replication(replication, webhooks.get(replication.region, []))

    # --- credentials -------------------------------------------------------------------------------

    def read_credentials(self) -> Iterator[RemoteCredential]:
        registry = self._registry_resource()
        if (registry.get("properties") or {}).get("adminUserEnabled"):
            yield RemoteCredential(
                kind=CredentialKind.ADMIN_ACCOUNT,
                id=ADMIN_USER,
                name=self.config.name,  # the admin user's login is the registry's name
                expires_at=None,  # admin passwords never expire; they are only regenerated
                usage_known=False,  # ACR records no use of any credential
                scopes=("pull, push and delete on every repository",),
                shared_admin=True,
                actions=frozenset(ACTIONS),
            )
        maps = self._scope_maps()
        for token in self._arm_list(f"{self.config.registry_id}/tokens"):
            yield self._token_credential(token, maps)

    def _token_credential(self, token: dict[str, Any], maps: dict[str, dict[str, Any]]) -> RemoteCredential:
        properties = token.get("properties") or {}
        secrets = properties.get("credentials") or {}
        expiries = [
            item.get("expiry")
            for item in (secrets.get("passwords") or []) + (secrets.get("certificates") or [])
        ]
        # A token opens the registry until its last password or certificate expires; one without an
        # expiry (null) never does.
        expires_at = None
        if expiries and all(expiries):
            expires_at = max((m for e in expiries if (m := parse_rfc3339(e))), default=None)
        scope_map = maps.get(str(properties.get("scopeMapId", "")).lower(), {})
        actions = (scope_map.get("properties") or {}).get("actions") or []
        return RemoteCredential(
            kind=CredentialKind.ACCESS_TOKEN,
            id=f"tokens/{token.get('name', '')}",
            name=str(token.get("name", "")),
            enabled=properties.get("status") == "enabled",
            created_at=parse_rfc3339(properties.get("creationDate")),
            expires_at=expires_at,
            usage_known=False,
            scopes=tuple(f"scope map {scope_map.get('name', '?')}: {a}" for a in actions),
            # content/read, write and delete on any repository; metadata actions give none of the three.
            # No scope map found: what the token may do is not known, and stays empty.
            actions=frozenset(a for granted in _scope_map_grants(scope_map).values() for a in granted),
        )

    def disable_credential(self, credential_id: str) -> None:
        if credential_id == ADMIN_USER:
            self._arm_write("PATCH", self.config.registry_id, {"properties": {"adminUserEnabled": False}})
            return
        kind, _, name = credential_id.partition("/")
        if kind != "tokens" or not name:
            raise PermanentError(f"{credential_id!r} is not a credential this connector reported")
        try:
            token = self._arm_json(f"{self.config.registry_id}/tokens/{quote(name, safe='')}")
        except NotFoundError:
            return  # already gone: offboarding wanted exactly that
        if (token.get("properties") or {}).get("status") == "disabled":
            return
        self._arm_write(
            "PATCH",
            f"{self.config.registry_id}/tokens/{quote(name, safe='')}",
            {"properties": {"status": "disabled"}},
        )

    def delete_credential(self, credential_id: str) -> None:
        """Delete a token for good (ARM DELETE, registries/tokens/delete); one already gone is success.

        Offboarding disables instead (disable_credential), which can be undone. The admin user cannot
        be deleted, only switched off.
        """
        kind, _, name = credential_id.partition("/")
        if kind != "tokens" or not name:
            raise PermanentError(f"{credential_id!r} is not a token this connector reported")
        try:
            # ARM's convention for a token that is not there is 204; a 404 says the same.
            self._arm_write("DELETE", f"{self.config.registry_id}/tokens/{quote(name, safe='')}")
        except NotFoundError:
            return

    # --- posture -------------------------------------------------------------------------------------

    def read_posture(self, production: Collection[str] = ()) -> Iterator[PostureFact]:
        """The admin user and anonymous pull from ARM; for production repositories, whether their tags
        are locked (writeEnabled false). Sign-in is Entra's, except for the admin user and tokens."""
        properties = self._registry_resource().get("properties") or {}
        url = f"{self.config.arm_url}{self.config.registry_id}?api-version={ARM_API_VERSION}"
        yield admin_user_fact(properties, url)
        yield anonymous_pull_fact(properties, url)
        for repository in sorted(production):
            yield self._lock_fact(repository)

    def _lock_fact(self, repository: str) -> PostureFact:
        """ACR keeps a tag from moving when it is locked: changeableAttributes.writeEnabled false."""
        path = f"/acr/v1/{_path(repository)}/_tags"
        url = f"{self.config.url}{path}"
        unlocked, count = [], 0
        for body in self._data_pages(path, scope=_metadata(repository)):
            for item in body.get("tags") or []:
                count += 1
                if (item.get("changeableAttributes") or {}).get("writeEnabled") is not False:
                    unlocked.append(str(item.get("name", "")))
        if not count:
            return PostureFact(
                PostureCheck.TAG_MUTABLE, PostureState.UNKNOWN, "no tag to read", repository, url
            )
        if not unlocked:
            evidence = f"all {count} tags are locked (writeEnabled false)"
            return PostureFact(PostureCheck.TAG_MUTABLE, PostureState.OK, evidence, repository, url)
        shown = ", ".join(sorted(unlocked)[:5]) + (
            f" and {len(unlocked) - 5} more" if len(unlocked) > 5 else ""
        )
        evidence = f"{len(unlocked)} of {count} tags can be overwritten (writeEnabled true): {shown}"
        return PostureFact(PostureCheck.TAG_MUTABLE, PostureState.FAILING, evidence, repository, url)

    # --- grants --------------------------------------------------------------------------------------

    def read_grants(self) -> Iterator[RemoteGrant]:
        maps = self._scope_maps()
        for token in self._arm_list(f"{self.config.registry_id}/tokens"):
            properties = token.get("properties") or {}
            if properties.get("status") != "enabled":
                continue  # a disabled token opens nothing; it stays listed as a credential
            scope_map = maps.get(str(properties.get("scopeMapId", "")).lower())
            if scope_map is None:
                continue
            name = str(token.get("name", ""))
            principal = Principal(kind=PrincipalKind.ROBOT, id=name, name=name)
            for scope, actions in _scope_map_grants(scope_map).items():
                yield RemoteGrant(
                    principal=principal,
                    scope=scope,
                    actions=frozenset(actions),
                    source=f"scope map {scope_map.get('name', '')}",
                )
        if self.config.read_role_assignments:
            yield from self._role_assignment_grants()

    def _role_assignment_grants(self) -> Iterator[RemoteGrant]:
        path = f"{self.config.registry_id}/providers/Microsoft.Authorization/roleAssignments"
        params = {"$filter": "atScope()", "api-version": RBAC_API_VERSION}
        for assignment in self._arm_list(path, params=params):
            properties = assignment.get("properties") or {}
            role_id = str(properties.get("roleDefinitionId", "")).rsplit("/", 1)[-1].lower()
            if role_id not in BUILT_IN_ROLES:
                continue
            role, actions = BUILT_IN_ROLES[role_id]
            principal_id = str(properties.get("principalId", ""))
            kind = PRINCIPAL_KINDS.get(str(properties.get("principalType", "")), PrincipalKind.OTHER)
            directory_id = principal_id if kind in (PrincipalKind.USER, PrincipalKind.GROUP) else ""
            yield RemoteGrant(
                principal=Principal(kind=kind, id=principal_id, directory_id=directory_id),
                scope=_condition_scope(str(properties.get("condition") or "")),
                actions=actions,
                source=f"role assignment {role} ({assignment.get('name', '')}) "
                f"at {properties.get('scope', '')}",
            )

    # --- writes: scope maps --------------------------------------------------------------------------

    @staticmethod
    def removable(principal_kind: str, source: str) -> bool:
        """Tokens' scope maps only: role assignments are changed in Azure (see apply_access_plan)."""
        return principal_kind == PrincipalKind.ROBOT and source.startswith("scope map ")

    def apply_access_plan(self, plan: AccessPlan) -> Iterator[GrantChange]:
        """Edit tokens' scope maps. Role assignments are not written, and a plan needing one is refused
        before anything changes: Azure RBAC grants a group the whole registry (or, with ABAC, needs
        conditions Customs does not write), and changing it needs roleAssignments/write, i.e. User
        Access Administrator or Owner, far beyond what reading a registry should hold."""
        unwritable = [c for c in plan.changes if c.principal.kind != PrincipalKind.ROBOT]
        if unwritable:
            shown = "; ".join(
                f"{c.op} {', '.join(c.actions)} on {c.scope} for {c.principal.name or c.principal.id}"
                for c in unwritable[:5]
            )
            raise PermanentError(
                "Azure role assignments are not changed by Customs (they need User Access Administrator "
                f"or Owner); make these in Azure, then sync: {shown}"
            )
        maps = self._scope_maps()
        tokens = {str(t.get("name", "")): t for t in self._arm_list(f"{self.config.registry_id}/tokens")}
        for change in plan.changes:
            scope_map = self._map_for(change, maps, tokens)
            actions = list((scope_map.get("properties") or {}).get("actions") or [])
            edited = _edit_actions(actions, change)
            if edited != actions:
                path = f"{self.config.registry_id}/scopeMaps/{quote(str(scope_map.get('name', '')), safe='')}"
                self._arm_write("PATCH", path, {"properties": {"actions": edited}})
                scope_map.setdefault("properties", {})["actions"] = edited
            yield change

    def _map_for(
        self, change: GrantChange, maps: dict[str, dict[str, Any]], tokens: dict[str, dict[str, Any]]
    ) -> dict[str, Any]:
        if change.op == ChangeOp.REMOVE and change.source.startswith("scope map "):
            name = change.source.removeprefix("scope map ")
            found = next((m for m in maps.values() if m.get("name") == name), None)
        else:
            token = tokens.get(change.principal.id) or {}
            found = maps.get(str((token.get("properties") or {}).get("scopeMapId", "")).lower())
        if found is None:
            raise NotFoundError(f"no scope map for {change.principal.id} ({change.source or 'its token'})")
        if (found.get("properties") or {}).get("type") == "SystemDefined":
            raise PermanentError(
                f"scope map {found.get('name')} is built into ACR and cannot be edited; give token "
                f"{change.principal.id} a user-defined scope map"
            )
        return found

    def _scope_maps(self) -> dict[str, dict[str, Any]]:
        """Scope maps by resource id (lower case: ARM ids compare case-insensitively)."""
        return {
            str(item.get("id", "")).lower(): item
            for item in self._arm_list(f"{self.config.registry_id}/scopeMaps")
        }

    # --- permission checks ---------------------------------------------------------------------------

    def check_permissions(self) -> list[PermissionCheck]:
        registry = self.config.registry_id
        checks = [
            self._try(self.needs[0], self._registry_resource),
            self._try(
                self.needs[1],
                lambda: self._data_get("/acr/v1/_catalog", scope=CATALOG_SCOPE, params={"n": 1}),
            ),
            self._pull_check(),
            self._try(
                self.needs[3],
                lambda: (self._arm_get(f"{registry}/tokens"), self._arm_get(f"{registry}/scopeMaps")),
            ),
        ]
        if self.config.read_role_assignments:
            path = f"{registry}/providers/Microsoft.Authorization/roleAssignments"
            params = {"$filter": "atScope()", "api-version": RBAC_API_VERSION}
            checks.append(self._try(self.needs[4], lambda: self._arm_get(path, params=params)))
        checks.append(
            self._try(
                self.needs[5],
                lambda: (self._arm_get(f"{registry}/replications"), self._arm_get(f"{registry}/webhooks")),
            )
        )
        checks.extend(self._write_checks())
        return checks

    def _try(self, permission: str, call: Callable[[], object]) -> PermissionCheck:
        try:
            call()
        except ConnectorError as exc:
            return PermissionCheck(permission, ok=False, detail=str(exc))
        return PermissionCheck(permission, ok=True)

    def _pull_check(self) -> PermissionCheck:
        try:
            body = json_object(self._data_get("/acr/v1/_catalog", scope=CATALOG_SCOPE, params={"n": 1}))
            first = next(iter(body.get("repositories") or []), None)
            if first is None:
                return PermissionCheck(self.needs[2], ok=True, detail="no repository to try yet")
            tags = self.tags(str(first))
            if tags:
                self._registry.resolve(str(first), tags[0].name)
        except ConnectorError as exc:
            return PermissionCheck(self.needs[2], ok=False, detail=str(exc))
        return PermissionCheck(self.needs[2], ok=True, detail=f"tried on {first}")

    def _write_checks(self) -> list[PermissionCheck]:
        """The optional writes, from the caller's effective permissions on the registry: the one
        harmless way to ask ARM about a write. Unreadable, they are not tried rather than guessed."""
        wanted = (
            (self.needs[6], PLAN_PERMISSIONS, "plans"),
            (self.needs[7], OFFBOARDING_PERMISSIONS, "offboarding"),
        )
        path = f"{self.config.registry_id}/providers/Microsoft.Authorization/permissions"
        try:
            grants = list(self._arm_list(path, params={"api-version": RBAC_API_VERSION}))
        except ConnectorError as exc:
            detail = f"could not read the effective permissions: {exc}"
            return [
                PermissionCheck(need, False, detail, required=False, tried=False) for need, _, _ in wanted
            ]
        checks = []
        for need, permissions, use in wanted:
            missing = [p for p in permissions if not _allowed(p, grants)]
            detail = f"missing {', '.join(missing)}: {use} cannot write" if missing else ""
            checks.append(PermissionCheck(need, not missing, detail, required=False))
        return checks

    # --- the data plane: ACR tokens and paging -------------------------------------------------------

    @property
    def _session(self) -> OutboundSession:
        session: OutboundSession | None = getattr(self._local, "session", None)
        if session is None:
            session = outbound_session(purpose="acr")
            self._local.session = session
        return session

    def _data_get(self, path: str, *, scope: str, params: dict[str, Any] | None = None) -> requests.Response:
        url = path if path.startswith("http") else f"{self.config.url}{path}"
        if "api-version=" not in url:  # a followed link carries it already
            params = {"api-version": DATA_API_VERSION, **(params or {})}
        headers = self._bearer(scope)
        self._pacer().wait()
        response = self._session.get(url, params=params, headers=headers)
        if response.status_code == 401:  # the access token (or the refresh token behind it) died early
            headers = self._bearer(scope, fresh=True, renew=True)
            self._pacer().wait()
            response = self._session.get(url, params=params, headers=headers)
        raise_for_status(response)
        return response

    def _pacer(self) -> Pacer:
        """The data-plane read budget, sized by the registry's SKU on first use."""
        if self._reads is None:
            per_minute = READS_PER_MINUTE.get(self._sku_name().lower(), UNKNOWN_SKU_READS_PER_MINUTE)
            pacer = Pacer(per_minute * PACE_SHARE, clock=self._clock, sleep=self._sleep)
            with self._lock:
                self._reads = self._reads or pacer  # two threads may both have looked: keep one bucket
        return self._reads

    def _sku_name(self) -> str:
        """sku.name (Basic, Standard, Premium) from ARM, read once; "" when ARM will not say."""
        if self._sku is None and self.config.service_principal:
            try:
                self._registry_resource()
            except PermanentError:
                self._sku = ""  # no Reader on the registry: inventory still works, at the lowest pace
        return self._sku or ""

    def _data_pages(self, path: str, *, scope: str) -> Iterator[dict[str, Any]]:
        """Every page of an `n`/`last` listing, following the Link header (or the body's `link`)."""
        url: str | None = path
        params: dict[str, Any] | None = {"n": self.config.page_size}
        while url:
            response = self._data_get(url, scope=scope, params=params)
            body = json_object(response)
            yield body
            link = requests.utils.parse_header_links(response.headers.get("Link", ""))
            following = next((entry["url"] for entry in link if entry.get("rel") == "next"), None)
            following = following or body.get("link")
            # ACR's links are relative to the login server; `last` is lexical, so never compute it.
            url = urljoin(self.config.url + "/", str(following).strip("<>")) if following else None
            params = None

    def _bearer(self, scope: str, *, fresh: bool = False, renew: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._access_token(scope, fresh=fresh, renew=renew)}"}

    def _access_token(self, scope: str, *, fresh: bool = False, renew: bool = False) -> str:
        with self._lock:
            if not fresh and scope in self._access:
                return self._access[scope]
        service = self.config.login_server
        if self.config.service_principal:
            refresh = self._refresh_token(renew=renew)
            form = {"grant_type": "refresh_token", "service": service, "refresh_token": refresh}
            if scope:
                form["scope"] = scope
            response = self._session.post(f"{self.config.url}/oauth2/token", data=form)
        else:
            assert self.config.username
            assert self.config.password
            query = {"service": service, **({"scope": scope} if scope else {})}
            response = self._session.get(
                f"{self.config.url}/oauth2/token",
                params=query,
                auth=(self.config.username, self.config.password.get_secret_value()),
            )
        raise_for_status(response)
        token = json_object(response).get("access_token")
        if not isinstance(token, str) or not token:
            raise AuthError("ACR answered the token request without an access token")
        with self._lock:
            self._access[scope] = token
        return token

    def _refresh_token(self, *, renew: bool = False) -> str:
        with self._lock:
            current = self._refresh
        if renew or current is None or time.monotonic() - current[1] > REFRESH_LIFETIME_SECONDS:
            response = self._exchange(self._entra_token())
            if response.status_code == 401:  # the Entra token behind it expired too: one fresh sign-in
                response = self._exchange(self._entra_token(renew=True))
            raise_for_status(response)
            refresh = json_object(response).get("refresh_token")
            if not isinstance(refresh, str) or not refresh:
                raise AuthError("ACR answered the token exchange without a refresh token")
            current = (refresh, time.monotonic())
            with self._lock:
                self._refresh = current
        return current[0]

    def _exchange(self, entra_token: str) -> requests.Response:
        form = {
            "grant_type": "access_token",
            "service": self.config.login_server,
            "tenant": self.config.tenant_id or "",
            "access_token": entra_token,
        }
        return self._session.post(f"{self.config.url}/oauth2/exchange", data=form)

    # --- ARM: Entra tokens through msal ----------------------------------------------------------------

    def _entra_token(self, *, renew: bool = False) -> str:
        with self._lock:
            if self._entra is None:
                self._entra = self._entra_application()
            application = self._entra
            if renew:
                application.remove_tokens_for_client()  # msal would hand back the cached, rejected one
        try:
            result = application.acquire_token_for_client(scopes=[f"{self.config.arm_url}/.default"])
        except ValueError as exc:  # msal's word for a tenant the authority does not know
            raise AuthError(f"Entra sign-in failed: {exc}") from None
        token = result.get("access_token") if isinstance(result, dict) else None
        if not token:
            error = result.get("error", "no token") if isinstance(result, dict) else "no token"
            description = (
                str(result.get("error_description", "")).split("\n", 1)[0] if isinstance(result, dict) else ""
            )
            raise AuthError(f"Entra refused the service principal: {error} {description}".rstrip())
        return str(token)

    def _entra_application(self) -> Any:
        assert self.config.client_id
        assert self.config.client_secret
        try:
            return msal.ConfidentialClientApplication(
                self.config.client_id,
                client_credential=self.config.client_secret.get_secret_value(),
                authority=f"{self.config.authority_url}/{self.config.tenant_id}",
                # No instance discovery: it would ask login.microsoftonline.com about any other host,
                # including a sovereign cloud's. The tenant's own discovery document still validates it.
                instance_discovery=False,
                http_client=outbound_session(purpose="acr entra"),
            )
        except ValueError as exc:
            raise AuthError(f"Entra sign-in failed: {exc}") from None

    def _arm_request(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None
    ) -> requests.Response:
        url = path if path.startswith("http") else f"{self.config.arm_url}{path}"
        # nextLink and status URLs carry their own api-version; the RBAC calls name another one.
        query = None if "api-version=" in url else {"api-version": ARM_API_VERSION, **(params or {})}
        token = self._entra_token()
        response = self._session.request(
            method, url, params=query, json=json, headers={"Authorization": f"Bearer {token}"}
        )
        if response.status_code == 401:  # the Entra token expired or was revoked: one fresh sign-in
            token = self._entra_token(renew=True)
            response = self._session.request(
                method, url, params=query, json=json, headers={"Authorization": f"Bearer {token}"}
            )
        _raise_for_arm(response)
        return response

    def _arm_get(self, path: str, *, params: dict[str, Any] | None = None) -> requests.Response:
        return self._arm_request("GET", path, params=params)

    def _arm_json(self, path: str) -> dict[str, Any]:
        return json_object(self._arm_get(path))

    def _registry_resource(self) -> dict[str, Any]:
        """The registry's ARM resource; its SKU is noted on the way, for pacing the data plane."""
        registry = self._arm_json(self.config.registry_id)
        self._sku = str((registry.get("sku") or {}).get("name") or "")
        return registry

    def _arm_list(self, path: str, *, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of an ARM list, following `nextLink` (absolute, carrying the api-version)."""
        url: str | None = path
        while url:
            body = json_object(self._arm_get(url, params=params))
            yield from (item for item in body.get("value") or [] if isinstance(item, dict))
            following = body.get("nextLink")
            url, params = (str(following), None) if following else (None, None)

    def _arm_write(self, method: str, path: str, body: dict[str, Any] | None = None) -> None:
        response = self._arm_request(method, path, json=body)
        status_url = response.headers.get("Azure-AsyncOperation") or (
            response.headers.get("Location") if response.status_code == 202 else None
        )
        if response.status_code in (201, 202) and status_url:
            self._await(status_url)

    def _await(self, status_url: str) -> None:
        """Wait for an ARM long-running write, as long as its Retry-After asks (within ASYNC_POLLS)."""
        for _ in range(ASYNC_POLLS):
            response = self._arm_get(status_url)
            if response.status_code == 202:  # a Location URL says "not yet" by status alone, bodiless
                status = "InProgress"
            else:
                status = (
                    str(json_object(response).get("status", "Succeeded")) if response.content else "Succeeded"
                )
            if status == "Succeeded":
                return
            if status in ("Failed", "Canceled"):
                raise PermanentError(
                    f"Azure reports the change {status.lower()}: {status_url.split('?', 1)[0]}"
                )
            self._sleep(min(retry_after_seconds(response.headers.get("Retry-After")) or 1.0, 10.0))
        raise TransientError(f"Azure had not finished the change after {ASYNC_POLLS} checks")


class AcrTokenConnector(AcrConnector):
    """Signed in with an ACR token: the data plane only, since ARM does not accept ACR tokens."""

    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.REPOSITORIES, Capability.ARTIFACTS, Capability.PUSHED_AT, Capability.EVENTS}
    )

    def check_permissions(self) -> list[PermissionCheck]:
        catalog = self._try(
            self.needs[1], lambda: self._data_get("/acr/v1/_catalog", scope=CATALOG_SCOPE, params={"n": 1})
        )
        return [catalog, self._pull_check()]


class _AcrDistribution(DistributionConnector):
    """The distribution connector, answering ACR's bearer challenge with the connector's ACR tokens."""

    def __init__(
        self, config: DistributionConfig, *, token: Callable[[str], str], pace: Callable[[], None]
    ) -> None:
        super().__init__(config)
        self._acr_token = token
        self._pace = pace

    def _fetch_token(self, challenge: dict[str, str], scope: str) -> str:
        # Asked after a 401, so always a new access token: the cached one is what was refused.
        return self._acr_token(scope)

    def _send(
        self, method: str, url: str, scope: str, headers: dict[str, str], *, stream: bool = False
    ) -> requests.Response:
        self._pace()  # /v2/ reads draw on the same DataplaneRead budget as /acr/v1/
        return super()._send(method, url, scope, headers, stream=stream)


# --- posture ----------------------------------------------------------------------------------------


def admin_user_fact(properties: dict[str, Any], url: str) -> PostureFact:
    """The registry's adminUserEnabled (ARM)."""
    enabled = properties.get("adminUserEnabled")
    if enabled is True:
        evidence = (
            "adminUserEnabled: a shared login (the registry's name and two passwords) may pull, push "
            "and delete everywhere, and nobody can tell who used it"
        )
        return PostureFact(PostureCheck.ACR_ADMIN_USER, PostureState.FAILING, evidence, evidence_url=url)
    if enabled is False:
        evidence = "the admin user is disabled"
        return PostureFact(PostureCheck.ACR_ADMIN_USER, PostureState.OK, evidence, evidence_url=url)
    evidence = "ARM did not report adminUserEnabled"
    return PostureFact(PostureCheck.ACR_ADMIN_USER, PostureState.UNKNOWN, evidence, evidence_url=url)


def anonymous_pull_fact(properties: dict[str, Any], url: str) -> PostureFact:
    """anonymousPullEnabled is in ARM's newer (preview) API versions only (registry-apis.md §5.3):
    ARM's 2023-07-01 answer leaves it out, and then Customs cannot tell."""
    enabled = properties.get("anonymousPullEnabled")
    if enabled is True:
        evidence = "anonymousPullEnabled: anyone who reaches the registry may pull every repository"
        return PostureFact(PostureCheck.ANONYMOUS_PULL, PostureState.FAILING, evidence, evidence_url=url)
    if enabled is False:
        evidence = "anonymous pull is disabled"
        return PostureFact(PostureCheck.ANONYMOUS_PULL, PostureState.OK, evidence, evidence_url=url)
    evidence = (
        f"ARM's {ARM_API_VERSION} answer does not include anonymousPullEnabled (newer API versions do): "
        "see the registry's Properties in the Azure portal"
    )
    return PostureFact(PostureCheck.ANONYMOUS_PULL, PostureState.UNKNOWN, evidence, evidence_url=url)


# --- regions ----------------------------------------------------------------------------------------


# ARM's displayStatus words, lower-cased; a failed provisioning state wins over them.
_REPLICATION_STATUS = {
    "ready": ReplicationStatus.OK,
    "syncing": ReplicationStatus.IN_PROGRESS,
    "creating": ReplicationStatus.IN_PROGRESS,
    "updating": ReplicationStatus.IN_PROGRESS,
    "failed": ReplicationStatus.FAILED,
}


def _remote_replication(replication: Replication, webhooks: list[str]) -> RemoteReplication:
    failed = replication.provisioning_state.lower() == "failed"
    words = [replication.status, replication.message]
    if replication.provisioning_state and replication.provisioning_state != "Succeeded":
        words.append(f"provisioning {replication.provisioning_state}")
    # ACR sends a region's push notifications from that region's webhooks: none there, none heard.
    notes = [f"push webhooks here: {', '.join(webhooks)}" if webhooks else "no push webhook in this region"]
    if not replication.endpoint:
        notes.append("regional endpoint off")
    return RemoteReplication(
        id=replication.region,
        name=replication.region,
        kind=ReplicationKind.REGION if replication.home else ReplicationKind.GEO_REPLICA,
        location=replication.region,
        url=replication.endpoint,
        direction=ReplicationDirection.NONE if replication.home else ReplicationDirection.BOTH,
        status=ReplicationStatus.FAILED
        if failed
        else _REPLICATION_STATUS.get(replication.status.lower(), ReplicationStatus.UNKNOWN),
        status_text=": ".join(word for word in words if word),
        notes="; ".join(notes),
    )


# --- helpers ------------------------------------------------------------------------------------------


def _path(repository: str) -> str:
    return quote(repository, safe="/")


def _metadata(repository: str) -> str:
    # ACR wants metadata_read for /acr/v1 listings; pull does not include it.
    return f"repository:{repository}:metadata_read"


def _scope_map_grants(scope_map: dict[str, Any]) -> dict[str, set[str]]:
    """Pattern → Customs actions, from a scope map's `repositories/<repo>/<action>` entries."""
    grants: dict[str, set[str]] = {}
    for entry in (scope_map.get("properties") or {}).get("actions") or []:
        parsed = _parse_action(str(entry))
        if parsed is not None:
            grants.setdefault(parsed[0], set()).add(parsed[1])
    return grants


def _parse_action(entry: str) -> tuple[str, str] | None:
    if not entry.startswith("repositories/"):
        return None  # gateway and other non-repository actions
    body = entry.removeprefix("repositories/")
    for native, action in sorted(SCOPE_MAP_ACTIONS.items(), key=lambda item: -len(item[0])):
        if body.endswith("/" + native):
            return _pattern(body[: -len(native) - 1]), action
    return None  # metadata/read, metadata/write: nothing Customs compares


def _pattern(repository: str) -> str:
    """ACR's wildcard (`team/*`, `*`) in the pattern language (`team/**`, `**`)."""
    if repository == "*":
        return "**"
    if repository.endswith("/*"):
        return repository + "*"
    return repository


def _native_repository(scope: str) -> str:
    if scope == "**":
        return "*"
    if scope.endswith("/**"):
        return scope[:-1]
    return scope


def _edit_actions(actions: list[str], change: GrantChange) -> list[str]:
    """The scope map's actions with the change's actions added or taken away on its scope."""
    repository = _native_repository(change.scope)
    if change.op == ChangeOp.ADD:
        wanted = [f"repositories/{repository}/{NATIVE_ACTION[a]}" for a in change.actions]
        return actions + [entry for entry in wanted if entry not in actions]
    taken = set(change.actions)
    kept = []
    for entry in actions:
        parsed = _parse_action(entry)
        if parsed is not None and parsed[0] == change.scope and parsed[1] in taken:
            continue
        kept.append(entry)
    return kept


def _condition_scope(condition: str) -> str:
    """An ABAC condition's repository filter as a pattern; no condition (or one not understood): `**`."""
    match = _CONDITION.search(condition)
    if not match:
        return "**"
    operator, value = match.groups()
    if operator.lower() == "stringequalsignorecase":
        return value.lower()
    return value.lower().rstrip("/") + "/**"


def _allowed(permission: str, grants: list[dict[str, Any]]) -> bool:
    """Whether ARM's effective permissions (actions minus notActions, wildcards allowed) include one."""
    wanted = permission.lower()
    for grant in grants:
        actions = [str(a).lower() for a in grant.get("actions") or []]
        denied = [str(a).lower() for a in grant.get("notActions") or []]
        if any(fnmatch.fnmatchcase(wanted, a) for a in actions) and not any(
            fnmatch.fnmatchcase(wanted, a) for a in denied
        ):
            return True
    return False


def _raise_for_arm(response: requests.Response) -> None:
    """ARM's errors say what was refused in {"error": {"code", "message"}}: keep that in the message."""
    if response.ok:
        return
    try:
        error = (response.json() or {}).get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    detail = f"{error.get('code', '')} {error.get('message', '')}".strip() if error else ""
    try:
        raise_for_status(response, detail=detail)
    except PermanentError as exc:
        if response.status_code == 400:  # ARM's word for settings it cannot act on
            raise ConfigError(str(exc)) from None
        raise
