"""Harbor v2: repositories and artifacts with push and pull times from the REST API, manifests from /v2.

Harbor serves two APIs on one host. Its REST API (`/api/v2.0`) knows what distribution cannot tell:
when each artifact was pushed and last pulled, which robot accounts exist, who is a member of which
project, and where replication copies what. Manifests, configs and layers come through the registry
API at `/v2/`, behind Harbor's token service, by the same code as any distribution registry, so
lineage and digest checks work alike everywhere.

Authenticate with a robot account (`robot$customs`, system level; `needs` lists its permissions) or an
admin; the same credentials work for both APIs. Harbor keeps no "last used" for robots: it is estimated
from the audit log, newest operation by the robot's name (registry-apis.md §9.3). The same read says
which image actions each robot was seen using (pulls, pushes, deletes of artifacts).

Harbor users carry no directory id of their own. Where an admin says Harbor signs people in through
Customs' identity provider, a user's OIDC subject is one; where the directory's ids are e-mail
addresses, the e-mail Harbor keeps is. Otherwise a user stays Harbor's id and name.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections import defaultdict
from collections.abc import Collection, Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import quote, urljoin

import requests
from pydantic import Field, SecretStr, field_validator

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
    ConnectorError,
    NotFoundError,
    PermanentError,
    json_list,
    raise_for_status,
)

API = "/api/v2.0"

# Project roles (registry-apis.md §9.3) and what each lets a member do with images. Guest and limited
# guest differ only in what they see of the project (members, logs), not in what they can pull.
ROLE_ACTIONS: dict[int, frozenset[str]] = {
    1: frozenset(ACTIONS),  # projectAdmin
    4: frozenset(ACTIONS),  # maintainer
    2: frozenset({"pull", "push"}),  # developer
    3: frozenset({"pull"}),  # guest
    5: frozenset({"pull"}),  # limitedGuest
}
ROLE_NAMES = {1: "projectAdmin", 2: "developer", 3: "guest", 4: "maintainer", 5: "limitedGuest"}
# The roles Customs gives, smallest first: writing an access plan picks the first that covers it.
ROLES_SMALLEST_FIRST = (5, 2, 4)
# Robot permissions Customs compares: repository pull/push/delete; "*" means all of them.
ROBOT_ACTIONS = {"pull": ("pull",), "push": ("push",), "delete": ("delete",), "*": ACTIONS}
# Harbor's user group types, and the directory id each carries.
GROUP_LDAP, GROUP_HTTP, GROUP_OIDC = 1, 2, 3
ADMIN_ID = "admin"  # Harbor's local admin: user 1, always present, cannot be disabled or removed
ADMIN_USER = 1
ANONYMOUS = Principal(kind=PrincipalKind.OTHER, id="anonymous", name="anyone (public project)")
AUDIT_LOGS = (f"{API}/auditlog-exts", f"{API}/audit-logs")  # Harbor ≥ 2.13, then the deprecated one
# Audit log operations on artifacts as Customs' actions: Harbor logs a push as the artifact's "create".
AUDIT_ACTIONS = {"pull": "pull", "create": "push", "delete": "delete"}
AUDIT_OPERATIONS = {action: operation for operation, action in AUDIT_ACTIONS.items()}
AUDIT_SOURCE = "Harbor audit log"
# Harbor's auth modes that sign people in through a directory (systeminfo auth_mode); db_auth is
# Harbor's own user table. The local admin signs in with its password in every mode.
DIRECTORY_AUTH_MODES = {
    "oidc_auth": "OIDC",
    "ldap_auth": "LDAP",
    "uaa_auth": "UAA",
    "http_auth": "an authenticating proxy",
}
# What each write needs in a project, as /users/current/permissions names it (resource, action).
MEMBER_WRITES = ("member", ("create", "update", "delete"))
ROBOT_WRITES = ("robot", ("update", "delete"))


class HarborConfig(ConnectorConfig):
    url: str
    username: str
    password: SecretStr
    verify_tls: bool = True
    page_size: int = 100
    # How Harbor names the groups of Customs' directory: "oidc" when Harbor signs people in with the
    # same identity provider (a group is named by its group-claim value, Customs' group external id),
    # "ldap" when it reads the same LDAP (a group is known by its DN, Customs' group external id).
    directory_groups: Literal["oidc", "ldap"] = Field(
        "oidc",
        description="oidc or ldap: whether Harbor's groups come from the same identity provider's group "
        "claim or from the same LDAP as Customs' directory groups.",
    )
    # Harbor keeps each OIDC user's subject joined to the issuer (oidc_user_meta.subiss); the issuer
    # is what tells the two apart, and saying it is what opts in.
    directory_oidc_issuer: str | None = Field(
        None,
        description="Only if Harbor signs people in through the same OpenID Connect provider as Customs, "
        "and Customs takes a person's id from the sub claim (Entra ID's oid is not what Harbor keeps): "
        "that provider's issuer URL, exactly as in Harbor's OIDC endpoint setting. Harbor users are then "
        "linked to Customs people by their OIDC subject. Blank: not linked this way.",
    )
    link_members_by_email: bool = Field(
        default=False,
        description="Only if your directory identifies people by e-mail address: link Harbor users to "
        "Customs users by the e-mail Harbor keeps for them. Off: users stay Harbor names.",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        # The same rules as a distribution endpoint: Harbor's /v2/ lives at the same address.
        return http_url(value)

    @field_validator("directory_oidc_issuer")
    @classmethod
    def _issuer(cls, value: str | None) -> str | None:
        value = (value or "").strip()
        # Kept as typed, trailing slash included: it must match the token's iss character for character.
        if value and not value.startswith(("https://", "http://")):
            raise ValueError("the issuer is a URL, e.g. https://login.example.com/realms/acme")
        return value or None

    @field_validator("page_size")
    @classmethod
    def _page_size(cls, value: int) -> int:
        if not 1 <= value <= 100:  # Harbor caps page_size at 100
            raise ValueError("page size must be between 1 and 100")
        return value


@dataclasses.dataclass(frozen=True)
class _Usage:
    """What the audit log says about one account: its newest entry, and its newest use of each action."""

    last_used_at: datetime | None
    usage_known: bool
    source: str
    actions_seen: dict[str, datetime] = dataclasses.field(default_factory=dict)
    actions_seen_source: str = ""  # empty: the log was not readable, so there is no evidence


@dataclasses.dataclass(frozen=True)
class ReplicationRun:
    """One execution of a replication policy, as Harbor reports it."""

    id: int
    status: str  # InProgress, Succeed, Failed, Stopped
    trigger: str
    started_at: datetime | None
    finished_at: datetime | None
    total: int = 0
    failed: int = 0
    succeeded: int = 0
    status_text: str = ""


@dataclasses.dataclass(frozen=True)
class Replication:
    """A replication policy: where this Harbor copies images to (push) or from (pull), and how it went."""

    id: int
    name: str
    direction: Literal["push", "pull"]
    remote_name: str
    remote_url: str
    destination_namespace: str
    trigger: str  # manual, event_based or scheduled
    enabled: bool
    replicate_deletion: bool
    filters: tuple[str, ...]
    last_run: ReplicationRun | None


class HarborConnector:
    kind: ClassVar[str] = "harbor"
    label: ClassVar[str] = "Harbor"
    config_class: ClassVar[type[ConnectorConfig]] = HarborConfig
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.REPOSITORIES,
            Capability.ARTIFACTS,
            Capability.PUSHED_AT,
            Capability.PULLED_AT,
            Capability.CREDENTIALS,
            Capability.GRANTS,
            Capability.WRITE_GRANTS,
            Capability.DISABLE_CREDENTIALS,
            Capability.REPLICAS,
            Capability.EVENTS,
            Capability.POSTURE,
        }
    )
    # A system-level robot account with these permissions (Harbor's names: resource: actions). Reads
    # come first and are all a sync needs; the writes are optional.
    needs: ClassVar[tuple[str, ...]] = (
        "list projects (project: list, read)",
        "list repositories and pull their artifacts (repository: list, pull; artifact: list, read)",
        "list robot accounts (robot: list, read)",
        "list project members (member: list)",
        "read user groups (user-group: list, read): links Harbor groups to directory groups",
        "read the audit log (audit-log: list): when robots were last used, and for what",
        "list replication policies and executions (replication-policy: list; replication: list)",
        "read users (user: read): only when Harbor users are linked to Customs people by OIDC subject "
        "or e-mail",
        "optional, only to apply reconcile plans: change project members (member: create, update, delete)",
        "optional, only for offboarding: disable or delete robot accounts (robot: update, delete)",
    )
    # Posture reads beyond `needs` (not tried by the permission check): /systeminfo, which any
    # signed-in account may read, and each project's immutable tag rules.
    posture_needs: ClassVar[tuple[str, ...]] = ("list immutable tag rules (immutable-tag: list)",)

    def __init__(self, config: HarborConfig) -> None:
        self.config = config
        self._local = threading.local()
        self._registry = DistributionConnector(
            DistributionConfig(
                url=config.url,
                username=config.username,
                password=config.password,
                verify_tls=config.verify_tls,
            )
        )

    # --- the interface ---------------------------------------------------------------------------

    def check(self) -> None:
        # One page of one project: proves the address and that these credentials are accepted.
        self._get(f"{API}/projects", params={"page": 1, "page_size": 1})
        self._registry.check()

    def repositories(self) -> Iterator[RemoteRepository]:
        for item in self._pages(f"{API}/repositories"):
            yield RemoteRepository(name=str(item["name"]))

    def tags(self, repository: str) -> list[RemoteTag]:
        tags = [
            RemoteTag(name=str(tag["name"]), digest=str(artifact["digest"]))
            for artifact in self._pages(self._artifacts_path(repository), {"with_tag": "true"})
            for tag in artifact.get("tags") or []
        ]
        return sorted(tags, key=lambda tag: tag.name)

    def resolve(self, repository: str, reference: str) -> str:
        return self._registry.resolve(repository, reference)

    def artifact(self, repository: str, digest: str) -> RemoteArtifact:
        details = self._get(
            f"{self._artifacts_path(repository)}/{digest}", params={"with_tag": "false"}
        ).json()
        record = self._registry.artifact(repository, digest)
        return dataclasses.replace(
            record,
            pushed_at=_harbor_time(details.get("push_time")),
            last_pulled_at=_harbor_time(details.get("pull_time")),
        )

    # --- permissions -----------------------------------------------------------------------------

    def check_permissions(self) -> list[PermissionCheck]:
        """Each read Customs makes, tried once with the smallest page; then the two writes, which
        Harbor proves without a change: it says which actions this account holds in a project."""
        projects = self._try(self.needs[0], f"{API}/projects")
        first = next((p for p in projects.items if p.get("name")), None)
        steps = [projects.check, self._try_repositories(self.needs[1])]
        steps.append(self._try(self.needs[2], f"{API}/robots").check)
        if first is None:
            steps.append(PermissionCheck(self.needs[3], ok=projects.check.ok, detail="no project to try yet"))
        else:
            name = str(first["name"])
            steps.append(self._try(self.needs[3], f"{self._project_path(name)}/members", on=name).check)
        steps.append(self._try(self.needs[4], f"{API}/usergroups").check)
        steps.append(self._try_audit_log(self.needs[5]))
        steps.append(self._try(self.needs[6], f"{API}/replication/policies").check)
        if self._links_users():
            steps.append(self._try_users(self.needs[7]))
        return steps + self._try_writes(first)

    def _try_users(self, permission: str) -> PermissionCheck:
        # The local admin is always present: reading it proves user: read.
        try:
            self._get(f"{API}/users/{ADMIN_USER}")
        except ConnectorError as exc:
            return PermissionCheck(permission, ok=False, detail=str(exc))
        return PermissionCheck(permission, ok=True, detail=f"tried on user {ADMIN_USER}")

    def _try_writes(self, project: dict[str, Any] | None) -> list[PermissionCheck]:
        """Member and robot writes, as Harbor reports this account's actions in the first project.

        Only a project's permissions are asked: a system-level robot can be changed only with the
        system-level robot permission, which this request does not report."""
        writes = ((self.needs[8], *MEMBER_WRITES), (self.needs[9], *ROBOT_WRITES))
        project_id = project.get("project_id") if project else None
        if project is None or not isinstance(project_id, int):
            why = "no project to ask Harbor about yet"
            return [PermissionCheck(need, False, why, required=False, tried=False) for need, _, _ in writes]
        name = str(project["name"])
        try:
            held = self._held_in_project(project_id)
        except ConnectorError as exc:
            why = f"Harbor did not say what this account may do: {exc}"
            return [PermissionCheck(need, False, why, required=False, tried=False) for need, _, _ in writes]
        return [_write_check(need, resource, actions, held, name) for need, resource, actions in writes]

    def _held_in_project(self, project_id: int) -> set[tuple[str, str]]:
        """(resource, action) pairs this account holds in the project; changes nothing."""
        params = {"scope": f"/project/{project_id}", "relative": "true"}
        permissions = json_list(self._get(f"{API}/users/current/permissions", params=params))
        return {(str(p.get("resource", "")), str(p.get("action", ""))) for p in permissions}

    def _try(self, permission: str, path: str, on: str = "") -> _Tried:
        try:
            items = json_list(self._get(path, params={"page": 1, "page_size": 1}))
        except ConnectorError as exc:
            return _Tried(PermissionCheck(permission, ok=False, detail=str(exc)), [])
        return _Tried(PermissionCheck(permission, ok=True, detail=f"tried on {on}" if on else ""), items)

    def _try_repositories(self, permission: str) -> PermissionCheck:
        try:
            first = next(iter(json_list(self._get(f"{API}/repositories", {"page": 1, "page_size": 1}))), None)
            if first is None:
                return PermissionCheck(permission, ok=True, detail="no repository to try a pull on yet")
            name = str(first["name"])
            self._registry.tags(name)  # through /v2/ and Harbor's token service: a pull scope
        except ConnectorError as exc:
            return PermissionCheck(permission, ok=False, detail=str(exc))
        return PermissionCheck(permission, ok=True, detail=f"tried on {name}")

    def _try_audit_log(self, permission: str) -> PermissionCheck:
        try:
            path = self._audit_log_path()
        except ConnectorError as exc:
            return PermissionCheck(permission, ok=False, detail=str(exc))
        if path is None:
            return PermissionCheck(permission, ok=False, detail="neither audit log API answered")
        return PermissionCheck(permission, ok=True, detail=path.removeprefix(API))

    # --- credentials -----------------------------------------------------------------------------

    def read_credentials(self) -> Iterator[RemoteCredential]:
        """Every robot account, and Harbor's local admin; last use from the audit log where readable."""
        robots = list(self._pages(f"{API}/robots", complete=True))
        names = {int(r["id"]): str(r.get("name", "")) for r in robots if isinstance(r.get("id"), int)}
        audit = self._audit_log_path()
        users: dict[int, Principal] = {}
        for robot in robots:
            yield self._robot_credential(robot, names, users, audit)
        yield self._admin_credential(audit)

    def _robot_credential(
        self, robot: dict[str, Any], names: dict[int, str], users: dict[int, Principal], audit: str | None
    ) -> RemoteCredential:
        name = str(robot.get("name", ""))
        expires_at, expiry_known = _robot_expiry(robot)
        actions = _robot_actions(robot)
        usage = self._usage(audit, name, actions)
        return RemoteCredential(
            kind=CredentialKind.ROBOT,
            id=str(robot["id"]),
            name=name,
            enabled=not robot.get("disable", False),
            owner=Principal(kind=PrincipalKind.ROBOT, id=name, name=name),
            created_by=self._creator(robot, names, users),
            created_at=_harbor_time(robot.get("creation_time")),
            expires_at=expires_at,
            expiry_known=expiry_known,
            last_used_at=usage.last_used_at,
            usage_known=usage.usage_known,
            last_used_source=usage.source,
            scopes=_robot_scopes(robot),
            actions=actions,
            actions_seen=usage.actions_seen,
            actions_seen_source=usage.actions_seen_source,
        )

    def _admin_credential(self, audit: str | None) -> RemoteCredential:
        # Harbor always has its local `admin` (user 1): it signs in with a password in every auth mode,
        # and Harbor offers no way to disable or remove it. So it is reported always; it counts as a
        # shared admin account only where something shows automation using it (_admin_automation).
        usage = self._usage(audit, ADMIN_ID, frozenset(ACTIONS))
        shared, evidence = self._admin_automation(usage)
        return RemoteCredential(
            kind=CredentialKind.ADMIN_ACCOUNT,
            id=ADMIN_ID,
            name="admin",
            # A shared login is nobody's: never linked to a person, whatever e-mail it carries.
            owner=Principal(kind=PrincipalKind.USER, id=str(ADMIN_USER), name="admin"),
            expires_at=None,
            expiry_known=True,  # a password without expiry
            last_used_at=usage.last_used_at,
            usage_known=usage.usage_known,
            last_used_source=f"{usage.source}; {evidence}",
            scopes=("system administrator",),
            shared_admin=shared,
            actions=frozenset(ACTIONS),
            actions_seen=usage.actions_seen,
            actions_seen_source=usage.actions_seen_source,
        )

    def _admin_automation(self, usage: _Usage) -> tuple[bool, str]:
        """Whether the local admin is used by automation, and the evidence, in words short enough for
        last_used_source: a person may sign in as admin in the UI, but a pipeline or Customs itself
        using it is the shared admin account the rule is about. Pulls, pushes and deletes of artifacts
        are what pipelines do; people administer Harbor in the UI, which logs other operations."""
        if self.config.username == ADMIN_ID:
            return True, "shared: Customs itself signs in as admin"
        if not usage.actions_seen_source:
            return True, "flagged: nothing shows otherwise"  # no readable log: keep the safe default
        if seen := [action for action in ACTIONS if action in usage.actions_seen]:
            return True, f"used by automation: {', '.join(seen)}"
        return False, "no artifact pull, push or delete by it"

    def _creator(
        self, robot: dict[str, Any], robots: dict[int, str], users: dict[int, Principal]
    ) -> Principal | None:
        ref, kind = robot.get("creator_ref"), str(robot.get("creator_type", ""))
        if not isinstance(ref, int) or ref <= 0:
            return None
        if kind == "robot":
            name = robots.get(ref, "")
            return Principal(kind=PrincipalKind.ROBOT, id=name or f"robot {ref}", name=name)
        if ref not in users:
            users[ref] = self._user(ref)
        return users[ref]

    def _user(self, user_id: int) -> Principal:
        """A Harbor user by id, named when the account may read users, and linked to the directory
        where the configuration says how (_directory_id). Unreadable: Harbor's id, unlinked."""
        try:
            user = self._get(f"{API}/users/{user_id}").json()
        except (AuthError, NotFoundError):
            return Principal(kind=PrincipalKind.USER, id=str(user_id))
        user = user if isinstance(user, dict) else {}
        # The local admin is a shared login: never linked to a person.
        directory_id = self._directory_id(user) if user_id != ADMIN_USER else ""
        name = str(user.get("username", ""))
        return Principal(kind=PrincipalKind.USER, id=str(user_id), name=name, directory_id=directory_id)

    def _links_users(self) -> bool:
        return bool(self.config.directory_oidc_issuer) or self.config.link_members_by_email

    def _directory_id(self, user: dict[str, Any]) -> str:
        """The directory's id for a Harbor user: the OIDC subject where Harbor signs people in with
        Customs' issuer, else the e-mail where the directory's ids are e-mails, else none. Only the
        subject and issuer are read from oidc_user_meta: Harbor also returns the CLI secret there."""
        meta = user.get("oidc_user_meta")
        subiss = str(meta.get("subiss") or "") if isinstance(meta, dict) else ""
        if subject := _oidc_subject(subiss, self.config.directory_oidc_issuer):
            return subject
        email = str(user.get("email") or "").strip().lower()
        return email if self.config.link_members_by_email and "@" in email else ""

    def _audit_log_path(self) -> str | None:
        """The audit log this Harbor serves and lets us read, or None (then last use is unknown)."""
        cached: tuple[str | None] | None = getattr(self._local, "audit", None)
        if cached is not None:
            return cached[0]
        found: str | None = None
        for path in AUDIT_LOGS:
            try:
                self._get(path, params={"page": 1, "page_size": 1})
            except (AuthError, NotFoundError):
                continue  # older Harbor (no auditlog-exts), or no audit-log permission
            found = path
            break
        self._local.audit = (found,)
        return found

    def _usage(self, audit: str | None, username: str, holds: frozenset[str]) -> _Usage:
        """The account's newest audit log entry, and its newest pull, push and delete of an artifact.

        One page of the account's entries, newest first, usually answers both. Only when that page is
        full and lacks an action the account holds is that action asked for, newest entry only: never
        more than one request per action, however busy the account."""
        if audit is None:
            return _Usage(None, False, "not recorded by Harbor; its audit log is not readable")
        page = json_list(
            self._get(
                audit,
                params={
                    "q": f"username={username}",
                    "sort": "-op_time",
                    "page": 1,
                    "page_size": self.config.page_size,
                },
            )
        )
        entries = [e for e in page if e.get("username") == username]
        seen = _newest_per_action(entries)
        if len(page) >= self.config.page_size:
            for action in [a for a in ACTIONS if a in holds and a not in seen]:
                seen.update(_newest_per_action(self._newest_entries(audit, username, action)))
        # The log keeps what Harbor's audit-log retention keeps: an empty answer is "not since then".
        source = f"Harbor audit log ({audit.removeprefix(API + '/')}), newest operation"
        newest = _harbor_time(entries[0].get("op_time")) if entries else None
        return _Usage(newest, True, source, seen, AUDIT_SOURCE)

    def _newest_entries(self, audit: str, username: str, action: str) -> list[dict[str, Any]]:
        condition = f"username={username},operation={AUDIT_OPERATIONS[action]},resource_type=artifact"
        response = self._get(audit, params={"q": condition, "sort": "-op_time", "page": 1, "page_size": 1})
        return [e for e in json_list(response) if e.get("username") == username]

    # --- credentials: writes ---------------------------------------------------------------------

    @staticmethod
    def disablable(kind: str) -> bool:
        """Robots: Harbor's local admin cannot be switched off through its API."""
        return kind != CredentialKind.ADMIN_ACCOUNT

    def disable_credential(self, credential_id: str) -> None:
        """Disable a robot (PUT with `disable: true`); delete one Harbor will not edit. Idempotent."""
        if credential_id == ADMIN_ID:
            raise PermanentError(
                "Harbor's local admin cannot be disabled or removed: change its password in Harbor"
            )
        if not credential_id.isdigit():
            raise PermanentError(f"{credential_id!r} is not a Harbor robot id")
        path = f"{API}/robots/{credential_id}"
        try:
            robot = self._get(path).json()
        except NotFoundError:
            return  # gone already
        if robot.get("disable"):
            return
        if robot.get("editable") is False:
            # Robots from before Harbor 2.2 cannot be edited; deleting is the only way to stop them.
            self._send("DELETE", path, missing_ok=True)
            return
        editable = {
            key: robot[key]
            for key in ("id", "name", "description", "level", "duration", "permissions")
            if key in robot
        }
        self._send("PUT", path, json={**editable, "disable": True}, missing_ok=True)

    # --- grants ----------------------------------------------------------------------------------

    def read_grants(self) -> Iterator[RemoteGrant]:
        """Project members (users and groups) by role, public projects, and robots' repository access."""
        groups: dict[int, Principal] = {}
        users: dict[int, Principal] = {}
        grants: list[RemoteGrant] = []
        for project in self._pages(f"{API}/projects", complete=True):
            name = str(project["name"])
            scope = f"{name}/**"
            if str((project.get("metadata") or {}).get("public", "")).lower() == "true":
                grants.append(RemoteGrant(ANONYMOUS, scope, frozenset({"pull"}), f"project {name} is public"))
            for member in self._pages(f"{self._project_path(name)}/members", complete=True):
                grant = self._member_grant(name, member, groups, users)
                if grant is not None:
                    grants.append(grant)
        for robot in self._pages(f"{API}/robots", complete=True):
            grants.extend(_robot_grants(robot))
        yield from grants

    def _member_grant(
        self, project: str, member: dict[str, Any], groups: dict[int, Principal], users: dict[int, Principal]
    ) -> RemoteGrant | None:
        actions = _role_actions(member)
        if not actions:
            return None  # a role Harbor added later: nothing Customs can compare
        entity_id = int(member.get("entity_id") or 0)
        if member.get("entity_type") == "g":
            if entity_id not in groups:
                groups[entity_id] = self._group(entity_id, str(member.get("entity_name", "")))
            principal = groups[entity_id]
        else:
            principal = self._member_user(entity_id, str(member.get("entity_name", "")), users)
        role = ROLE_NAMES.get(int(member["role_id"]), str(member.get("role_name", "")))
        return RemoteGrant(principal, f"{project}/**", actions, _member_source(project, member["id"], role))

    def _member_user(self, user_id: int, name: str, users: dict[int, Principal]) -> Principal:
        """A user member: as the member list names them, and linked to the directory where the
        configuration says how; each user is read once, and only then."""
        if not self._links_users():
            return Principal(kind=PrincipalKind.USER, id=str(user_id), name=name)
        if user_id not in users:
            users[user_id] = self._user(user_id)
        return dataclasses.replace(users[user_id], name=users[user_id].name or name)

    def _group(self, group_id: int, fallback_name: str) -> Principal:
        """A Harbor user group, linked to the directory only by an immutable id it carries:

        - OIDC (type 3): the group's name is the value of the identity provider's groups claim, which
          is what Customs stores as the group's external id when people sign in (a group object id
          for Entra ID, whatever the provider puts in the claim elsewhere);
        - LDAP (type 1): the group's DN, for a Customs directory fed from the same LDAP;
        - HTTP (type 2) groups come from an authenticating proxy and carry no directory id: name only.

        Which one Customs' directory uses is `directory_groups`; a group of the other type is kept
        by name only, never matched, because the same text may mean different groups in each."""
        try:
            group = self._get(f"{API}/usergroups/{group_id}").json()
        except (AuthError, NotFoundError):
            group = {}  # unreadable: the group still has its access, as an unmapped principal
        name = str(group.get("group_name") or fallback_name)
        directory_id = ""
        group_type = group.get("group_type")
        if group_type == GROUP_OIDC and self.config.directory_groups == "oidc":
            directory_id = name
        elif group_type == GROUP_LDAP and self.config.directory_groups == "ldap":
            directory_id = str(group.get("ldap_group_dn") or "")
        return Principal(kind=PrincipalKind.GROUP, id=str(group_id), name=name, directory_id=directory_id)

    # --- grants: writes --------------------------------------------------------------------------

    def apply_access_plan(self, plan: AccessPlan) -> Iterator[GrantChange]:
        """Change project members to match the plan; additions first, removals after.

        Harbor gives a member one role on a whole project, so an addition can be made only when it
        means the same as a project role: the plan must add those actions on every repository of the
        project (or name `project/**`). A member's role becomes the smallest role covering what it
        had and what is added. A removal leaves the role that gives exactly what remains (none left:
        the member goes); Harbor has no role for "pull and delete without push", so such a removal is
        refused rather than done halfway. Robots and public projects are not changed here.
        """
        for changes in _by_member_and_project(plan.additions):
            self._add(changes)
            yield from changes
        for change in plan.removals:
            self._remove(change)
            yield change

    def _add(self, changes: list[GrantChange]) -> None:
        principal, project = changes[0].principal, _project_of(changes[0].scope)
        wanted = self._project_wide_actions(project, changes)
        members = self._members(project)
        member = self._find_member(members, principal)
        held = _role_actions(member) if member else frozenset()
        if wanted <= held:
            return  # already given: adding again is a no-op
        role = _smallest_role_covering(held | wanted)
        members_path = f"{self._project_path(project)}/members"
        if member is not None:
            self._send("PUT", f"{members_path}/{member['id']}", json={"role_id": role})
            return
        self._send(
            "POST", members_path, json={"role_id": role, **self._member_entity(principal)}, conflict_ok=True
        )

    def _project_wide_actions(self, project: str, changes: list[GrantChange]) -> frozenset[str]:
        """The actions the changes add on the whole project, or a refusal if they add less than that."""
        wide: set[str] = set()
        narrow: dict[str, set[str]] = {}
        for change in changes:
            target = wide if change.scope == f"{project}/**" else narrow.setdefault(change.scope, set())
            target.update(change.actions)
        if not narrow:
            return frozenset(wide)
        names = [str(r["name"]) for r in self._pages(f"{self._project_path(project)}/repositories")]
        asked = wide.union(*narrow.values())
        everywhere = set(asked)
        for name in names:
            everywhere &= narrow.get(name, set()) | wide
        if everywhere != asked or not set(narrow) <= set(names):
            shown = sorted(narrow)
            raise PermanentError(
                f"Harbor gives {changes[0].principal.name or changes[0].principal.id} one role on the whole "
                f"project {project}, but the plan adds {', '.join(a for a in ACTIONS if a in asked)} on "
                f"{', '.join(shown[:3])}{' and more' if len(shown) > 3 else ''} only, not on every one of "
                f"its {len(names)} repositories: widen the rule to {project}/** or change Harbor by hand"
            )
        return frozenset(everywhere)

    def _remove(self, change: GrantChange) -> None:
        if change.principal.kind not in (PrincipalKind.USER, PrincipalKind.GROUP):
            raise PermanentError(
                "the Harbor connector changes project members only; change "
                f"{change.source or change.principal.id} in Harbor (robot permissions, project visibility)"
            )
        project, member_id = _parse_member_source(change.source)
        if project is None:
            raise PermanentError(f"{change.source!r} does not name a Harbor project member")
        member = next((m for m in self._members(project) if m.get("id") == member_id), None)
        if member is None:
            return  # gone already
        held = _role_actions(member)
        remaining = held - set(change.actions)
        member_path = f"{self._project_path(project)}/members/{member_id}"
        if remaining == held:
            return  # nothing of it is held any more
        if not remaining:
            self._send("DELETE", member_path, missing_ok=True)
            return
        role = _exact_role(remaining)
        if role is None:
            raise PermanentError(
                "Harbor has no project role giving exactly "
                f"{', '.join(a for a in ACTIONS if a in remaining)}: change "
                f"{change.principal.name or change.principal.id} in project {project} by hand"
            )
        self._send("PUT", member_path, json={"role_id": role}, missing_ok=True)

    def _members(self, project: str) -> list[dict[str, Any]]:
        return list(self._pages(f"{self._project_path(project)}/members", complete=True))

    def _find_member(self, members: list[dict[str, Any]], principal: Principal) -> dict[str, Any] | None:
        if principal.kind == PrincipalKind.GROUP:
            group_id = self._group_id(principal)
            return next(
                (m for m in members if m.get("entity_type") == "g" and m.get("entity_id") == group_id), None
            )
        if principal.kind == PrincipalKind.USER:
            return next(
                (
                    m
                    for m in members
                    if m.get("entity_type") == "u" and str(m.get("entity_id")) == principal.id
                ),
                None,
            )
        raise PermanentError(
            f"the Harbor connector adds users and groups to projects, not {principal.kind} {principal.id}"
        )

    def _group_id(self, principal: Principal) -> int | None:
        """Harbor's id of the group a directory group is (None: Harbor has not seen it yet)."""
        if not principal.directory_id:
            return int(principal.id) if principal.id.isdigit() else None
        key = "ldap_group_dn" if self.config.directory_groups == "ldap" else "group_name"
        wanted_type = GROUP_LDAP if self.config.directory_groups == "ldap" else GROUP_OIDC
        for group in self._pages(f"{API}/usergroups", {key: principal.directory_id}):
            if group.get(key) == principal.directory_id and group.get("group_type") == wanted_type:
                return int(group["id"])
        return None

    def _member_entity(self, principal: Principal) -> dict[str, Any]:
        if principal.kind == PrincipalKind.USER:
            if not principal.id.isdigit():
                raise PermanentError(f"{principal.id!r} is not a Harbor user id")
            return {"member_user": {"user_id": int(principal.id)}}
        group_id = self._group_id(principal)
        if group_id is not None:
            return {"member_group": {"id": group_id}}
        if not principal.directory_id:
            raise PermanentError(f"{principal.name or principal.id} has no directory id to find it in Harbor")
        # Harbor creates the group on first use, named as the identity provider or LDAP will name it.
        if self.config.directory_groups == "ldap":
            group = {
                "group_type": GROUP_LDAP,
                "ldap_group_dn": principal.directory_id,
                "group_name": principal.name,
            }
        else:
            group = {"group_type": GROUP_OIDC, "group_name": principal.directory_id}
        return {"member_group": group}

    # --- regions: replication --------------------------------------------------------------------

    def replication(self) -> list[Replication]:
        """Every replication policy with its newest execution: where Harbor copies images, and whether
        the last copy worked. (No Replica rows: a policy copies a filtered part of the registry to
        another registry, often not a region of this one; see the report on the issue.)"""
        policies = []
        for policy in self._pages(f"{API}/replication/policies", complete=True):
            latest = next(
                iter(
                    json_list(
                        self._get(
                            f"{API}/replication/executions",
                            params={
                                "policy_id": policy["id"],
                                "sort": "-start_time",
                                "page": 1,
                                "page_size": 1,
                            },
                        )
                    )
                ),
                None,
            )
            policies.append(_replication(policy, latest))
        return policies

    def read_replication(self) -> Iterator[RemoteReplication]:
        """Each replication policy as a push replication or a pull mirror, with its latest execution."""
        yield from (_remote_replication(policy) for policy in self.replication())

    # --- posture ---------------------------------------------------------------------------------

    def read_posture(self, production: Collection[str] = ()) -> Iterator[PostureFact]:
        """The auth mode, the local admin's use, each project's visibility and scan on push, and the
        immutable tag rules covering the production repositories."""
        yield self._auth_mode_fact()
        yield self._admin_use_fact()
        for project in self._pages(f"{API}/projects", complete=True):
            name = str(project["name"])
            url = self.config.url + self._project_path(name)
            yield from _project_facts(name, project.get("metadata") or {}, url)
        by_project: dict[str, list[str]] = defaultdict(list)
        for repository in production:
            project_name, _, rest = repository.partition("/")
            if rest:
                by_project[project_name].append(rest)
        for project_name, names in sorted(by_project.items()):
            path = f"{self._project_path(project_name)}/immutabletagrules"
            rules = [rule for rule in self._pages(path) if not rule.get("disabled")]
            for name in sorted(names):
                yield _immutability_fact(project_name, name, rules, self.config.url + path)

    def _auth_mode_fact(self) -> PostureFact:
        url = f"{self.config.url}{API}/systeminfo"
        info = self._get(f"{API}/systeminfo").json()
        mode = str(info.get("auth_mode") or "") if isinstance(info, dict) else ""
        if mode in DIRECTORY_AUTH_MODES:
            evidence = f"auth_mode {mode}: people sign in through {DIRECTORY_AUTH_MODES[mode]}"
            return PostureFact(PostureCheck.SSO_NOT_ENFORCED, PostureState.OK, evidence, evidence_url=url)
        if mode == "db_auth":
            evidence = "auth_mode db_auth: people sign in with passwords kept in Harbor's own database"
            if info.get("self_registration"):
                evidence += ", and anyone may register an account"
            return PostureFact(
                PostureCheck.SSO_NOT_ENFORCED, PostureState.FAILING, evidence, evidence_url=url
            )
        evidence = (
            f"systeminfo names the auth mode {mode!r}" if mode else "systeminfo did not name the auth mode"
        )
        return PostureFact(PostureCheck.SSO_NOT_ENFORCED, PostureState.UNKNOWN, evidence, evidence_url=url)

    def _admin_use_fact(self) -> PostureFact:
        """Harbor's local admin in use: Customs signing in as it, or operations by it in the audit log."""
        if self.config.username == ADMIN_ID:
            return PostureFact(
                PostureCheck.ADMIN_ACCOUNT,
                PostureState.FAILING,
                "Customs itself signs in as Harbor's local admin: give it a system robot account",
                subject="admin",
            )
        audit = self._audit_log_path()
        url = f"{self.config.url}{audit}?q=username%3Dadmin" if audit else ""
        usage = self._usage(audit, ADMIN_ID, frozenset(ACTIONS))
        if not usage.usage_known:
            return PostureFact(
                PostureCheck.ADMIN_ACCOUNT, PostureState.UNKNOWN, usage.source, subject="admin"
            )
        if usage.last_used_at is not None:
            evidence = (
                f"the local admin was last used {usage.last_used_at:%Y-%m-%d %H:%M} UTC ({AUDIT_SOURCE})"
            )
            return PostureFact(
                PostureCheck.ADMIN_ACCOUNT, PostureState.FAILING, evidence, subject="admin", evidence_url=url
            )
        evidence = f"no operation by the local admin in the {AUDIT_SOURCE}, as far back as it keeps"
        return PostureFact(
            PostureCheck.ADMIN_ACCOUNT, PostureState.OK, evidence, subject="admin", evidence_url=url
        )

    # --- HTTP ------------------------------------------------------------------------------------

    def _project_path(self, project: str) -> str:
        return f"{API}/projects/{quote(project, safe='')}"

    def _artifacts_path(self, repository: str) -> str:
        project, _, name = repository.partition("/")
        # Harbor decodes path segments once more than usual: nested names are encoded twice.
        encoded = quote(quote(name, safe=""), safe="")
        return f"{self._project_path(project)}/repositories/{encoded}/artifacts"

    @property
    def _session(self) -> OutboundSession:
        session: OutboundSession | None = getattr(self._local, "session", None)
        if session is None:
            session = outbound_session(purpose="harbor")
            session.auth = (self.config.username, self.config.password.get_secret_value())
            session.headers["X-Is-Resource-Name"] = "true"  # a numeric project name is still a name
            if not self.config.verify_tls:
                session.verify = False  # an admin's explicit choice for a lab registry
            self._local.session = session
        return session

    def _get(self, path: str, params: dict[str, Any] | None = None) -> requests.Response:
        url = path if path.startswith("http") else f"{self.config.url}{path}"
        response = self._session.get(url, params=params)
        self._raise_for_status(response)
        return response

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        missing_ok: bool = False,
        conflict_ok: bool = False,
    ) -> None:
        """A change; a 404 when removing (or a 409 when adding) means it is already as wanted."""
        response = self._session.request(method, f"{self.config.url}{path}", json=json)
        if (missing_ok and response.status_code == 404) or (conflict_ok and response.status_code == 409):
            return
        self._raise_for_status(response)

    def _raise_for_status(self, response: requests.Response) -> None:
        # Harbor says 401 for a wrong, disabled or expired robot, 403 for a missing permission: say which.
        where = response.url.split("?", 1)[0]
        if response.status_code == 401:
            raise AuthError(
                f"401 from {where}: Harbor refused {self.config.username} (wrong secret, or the robot "
                "account is disabled or expired)"
            )
        if response.status_code == 403:
            raise AuthError(f"403 from {where}: {self.config.username} lacks the permission for this")
        raise_for_status(response)

    def _pages(
        self, path: str, params: dict[str, Any] | None = None, *, complete: bool = False
    ) -> Iterator[dict[str, Any]]:
        """Every item of a paged list, following Harbor's Link header rather than counting pages.

        Without a Link (a proxy may drop it), X-Total-Count says whether another page is due. With
        `complete`, a list that changed while it was read (fewer or more items than the total) is a
        TransientError: grants and credentials are replaced from complete reads only.
        """
        url: str | None = path
        base = {**(params or {}), "page_size": self.config.page_size}
        query: dict[str, Any] | None = {**base, "page": 1}
        page, seen, total = 1, 0, None
        while url:
            response = self._get(url, params=query)
            items = json_list(response)
            seen += len(items)
            yield from items
            total = _total(response)
            link = requests.utils.parse_header_links(response.headers.get("Link", ""))
            following = next((entry["url"] for entry in link if entry.get("rel") == "next"), None)
            if following:
                url, query = (
                    urljoin(self.config.url + "/", following),
                    None,
                )  # the link carries filters and page
            elif total is not None and items and seen < total:
                page += 1
                url, query = path, {**base, "page": page}
            else:
                url = None
        if complete and total is not None and seen != total:
            raise TransientError(f"{path} changed while it was read ({seen} items of {total}); try again")


@dataclasses.dataclass(frozen=True)
class _Tried:
    check: PermissionCheck
    items: list[dict[str, Any]]


def _write_check(
    permission: str, resource: str, actions: tuple[str, ...], held: set[tuple[str, str]], project: str
) -> PermissionCheck:
    """An optional write, held when Harbor lists every one of its actions for the account."""
    missing = [a for a in actions if (resource, a) not in held]
    if missing:
        detail = f"in project {project} it lacks {', '.join(f'{resource}: {a}' for a in missing)}"
    else:
        detail = f"holds {resource}: {', '.join(actions)} in project {project}"
    return PermissionCheck(permission, ok=not missing, detail=detail, required=False)


def _oidc_subject(subiss: str, issuer: str | None) -> str:
    """The subject out of Harbor's `subiss` (subject and issuer written one after the other), or "" when
    no issuer is configured or the user came from another one. A trailing slash is tried both ways:
    admins copy issuers with and without it."""
    if not issuer:
        return ""
    bare = issuer.rstrip("/")
    for candidate in (bare + "/", bare):
        if subiss.endswith(candidate) and len(subiss) > len(candidate):
            return subiss[: -len(candidate)]
    return ""


def _total(response: requests.Response) -> int | None:
    value = response.headers.get("X-Total-Count", "")
    return int(value) if value.isdigit() else None


def _harbor_time(value: object) -> datetime | None:
    """Harbor writes year 1 for "never" (a Go zero time) rather than null."""
    moment = parse_rfc3339(value)
    return None if moment is None or moment.year <= 1 else moment


# --- robots ---------------------------------------------------------------------------------------


def _robot_expiry(robot: dict[str, Any]) -> tuple[datetime | None, bool]:
    """(expires_at, expiry_known): -1 (or a -1 duration) is "never", a missing value is "not said"."""
    expires, duration = robot.get("expires_at"), robot.get("duration")
    if expires == -1 or duration == -1:
        return None, True
    if isinstance(expires, int) and expires > 0:
        return datetime.fromtimestamp(expires, tz=UTC), True
    return None, False


def _robot_scopes(robot: dict[str, Any]) -> tuple[str, ...]:
    """Permissions as people read them in Harbor: `project payments: repository:pull`."""
    scopes = []
    for permission in robot.get("permissions") or []:
        where = f"{permission.get('kind', '')} {permission.get('namespace', '')}".strip()
        for access in permission.get("access") or []:
            effect = "" if access.get("effect", "allow") in ("", "allow") else f" ({access['effect']})"
            scopes.append(f"{where}: {access.get('resource', '')}:{access.get('action', '')}{effect}")
    return tuple(scopes)


def _newest_per_action(entries: list[dict[str, Any]]) -> dict[str, datetime]:
    """Customs action → the newest time an artifact operation of that kind was logged."""
    newest: dict[str, datetime] = {}
    for entry in entries:
        action = AUDIT_ACTIONS.get(str(entry.get("operation", "")))
        moment = _harbor_time(entry.get("op_time"))
        if action is None or moment is None or entry.get("resource_type") != "artifact":
            continue  # projects, robots and users created, tags changed: not image use
        if action not in newest or moment > newest[action]:
            newest[action] = moment
    return newest


def _repository_actions(permission: dict[str, Any]) -> set[str]:
    """The pull/push/delete a robot permission allows on repositories (registry-apis.md §9.3)."""
    actions: set[str] = set()
    for access in permission.get("access") or []:
        if access.get("resource") == "repository" and access.get("effect", "allow") in ("", "allow"):
            actions.update(ROBOT_ACTIONS.get(str(access.get("action")), ()))
    return actions


def _robot_actions(robot: dict[str, Any]) -> frozenset[str]:
    """Everything the robot's project permissions allow on images, disabled or expired or not: what
    it could do if it were turned back on."""
    return frozenset(
        action
        for permission in robot.get("permissions") or []
        if permission.get("kind") == "project"
        for action in _repository_actions(permission)
    )


def _robot_grants(robot: dict[str, Any]) -> list[RemoteGrant]:
    """A live robot's repository access, one grant per project (or `**` for every project).

    A disabled or expired robot cannot sign in, so it grants nothing now; its record stays on the
    credentials page. Only repository pull/push/delete is compared (registry-apis.md §9.3)."""
    expires_at, _ = _robot_expiry(robot)
    if robot.get("disable") or (expires_at is not None and expires_at <= datetime.now(UTC)):
        return []
    name = str(robot.get("name", ""))
    principal = Principal(kind=PrincipalKind.ROBOT, id=name, name=name)
    by_scope: dict[str, set[str]] = defaultdict(set)
    for permission in robot.get("permissions") or []:
        if permission.get("kind") != "project":
            continue  # system permissions (users, projects, scanners) are not image access
        namespace = str(permission.get("namespace", ""))
        scope = "**" if namespace == "*" else f"{namespace}/**"
        by_scope[scope].update(_repository_actions(permission))
    return [
        RemoteGrant(
            principal, scope, frozenset(actions), f"robot {name} permissions on {scope.removesuffix('/**')}"
        )
        for scope, actions in sorted(by_scope.items())
        if actions and _namespace_ok(scope)
    ]


def _namespace_ok(scope: str) -> bool:
    # A namespace Harbor would never write ("" or one with a slash) would make an unusable pattern.
    return scope == "**" or (scope.count("/") == 1 and not scope.startswith("/"))


# --- posture --------------------------------------------------------------------------------------


def _project_facts(name: str, metadata: dict[str, Any], url: str) -> Iterator[PostureFact]:
    """A project's visibility and scan on push, from its metadata (values are the strings "true"/"false")."""
    scope = f"{name}/**"
    if str(metadata.get("public", "")).lower() == "true":
        evidence = f"project {name} is public: anyone may pull its images without signing in"
        yield PostureFact(PostureCheck.PUBLIC_REPOSITORY, PostureState.FAILING, evidence, scope, url)
    else:
        evidence = f"project {name} is private"
        yield PostureFact(PostureCheck.PUBLIC_REPOSITORY, PostureState.OK, evidence, scope, url)
    # Harbor leaves a metadata key out until someone sets it: no auto_scan is its default, off.
    if str(metadata.get("auto_scan", "")).lower() == "true":
        evidence = f"project {name} scans every image pushed (auto_scan)"
        yield PostureFact(PostureCheck.SCAN_ON_PUSH_OFF, PostureState.OK, evidence, scope, url)
    else:
        setting = metadata.get("auto_scan", "not set")
        evidence = f"project {name} does not scan images on push (auto_scan is {setting})"
        yield PostureFact(PostureCheck.SCAN_ON_PUSH_OFF, PostureState.FAILING, evidence, scope, url)


def _immutability_fact(project: str, name: str, rules: list[dict[str, Any]], url: str) -> PostureFact:
    """Whether an enabled immutable tag rule of the project covers the repository (named within it)."""
    for rule in rules:
        if _selects(rule.get("scope_selectors", {}).get("repository") or [], name, "repo"):
            tags = ", ".join(str(t.get("pattern", "")) for t in rule.get("tag_selectors") or []) or "**"
            evidence = (
                f"immutable tag rule {rule.get('id', '?')} of project {project} keeps tags matching {tags}"
            )
            return PostureFact(PostureCheck.TAG_MUTABLE, PostureState.OK, evidence, f"{project}/{name}", url)
    evidence = f"no enabled immutable tag rule of project {project} covers {name}"
    return PostureFact(PostureCheck.TAG_MUTABLE, PostureState.FAILING, evidence, f"{project}/{name}", url)


def _selects(selectors: list[dict[str, Any]], name: str, prefix: str) -> bool:
    """Harbor's selectors: "<prefix>Matches" takes names matching the doublestar pattern, "<prefix>Excludes"
    the others; a rule needs every selector to agree. Repository names are matched without the project."""
    if not selectors:
        return False
    for selector in selectors:
        matched = _doublestar(str(selector.get("pattern", ""))).fullmatch(name) is not None
        if matched != (selector.get("decoration") != f"{prefix}Excludes"):
            return False
    return True


def _doublestar(pattern: str) -> re.Pattern[str]:
    """Harbor's doublestar globs: `**` crosses "/", `*` and `?` do not, `{a,b}` is either."""
    out, index = "", 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**", index):
            out, index = out + ".*", index + 2
            continue
        if char == "{" and "}" in pattern[index:]:
            end = pattern.index("}", index)
            choices = pattern[index + 1 : end].split(",")
            out, index = out + "(?:" + "|".join(re.escape(c) for c in choices) + ")", end + 1
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
        index += 1
    return re.compile(out)


# --- members --------------------------------------------------------------------------------------


def _member_source(project: str, member_id: object, role: str) -> str:
    return f"project {project} member {member_id} ({role})"


def _parse_member_source(source: str) -> tuple[str | None, int]:
    parts = source.split(" ")
    if len(parts) >= 4 and parts[0] == "project" and parts[2] == "member" and parts[3].isdigit():
        return parts[1], int(parts[3])
    return None, 0


def _project_of(scope: str) -> str:
    project = scope.split("/", 1)[0]
    if not project or project.startswith("*"):
        raise PermanentError(f"Harbor grants on projects; {scope!r} does not name one")
    return project


def _by_member_and_project(changes: tuple[GrantChange, ...]) -> list[list[GrantChange]]:
    """Additions grouped as Harbor applies them: one role per principal per project."""
    grouped: dict[tuple[str, str, str, str], list[GrantChange]] = {}
    for change in changes:
        if change.op != ChangeOp.ADD:
            raise PermanentError("an addition in the plan is not an addition")
        key = (
            change.principal.kind,
            change.principal.id,
            change.principal.directory_id,
            _project_of(change.scope),
        )
        grouped.setdefault(key, []).append(change)
    return list(grouped.values())


def _role_actions(member: dict[str, Any]) -> frozenset[str]:
    role = member.get("role_id")
    return ROLE_ACTIONS.get(role, frozenset()) if isinstance(role, int) else frozenset()


def _smallest_role_covering(actions: frozenset[str] | set[str]) -> int:
    return next(role for role in ROLES_SMALLEST_FIRST if actions <= ROLE_ACTIONS[role])


def _exact_role(actions: frozenset[str] | set[str]) -> int | None:
    return next((role for role in ROLES_SMALLEST_FIRST if ROLE_ACTIONS[role] == actions), None)


# --- replication ----------------------------------------------------------------------------------


def _replication(policy: dict[str, Any], latest: dict[str, Any] | None) -> Replication:
    source, destination = policy.get("src_registry") or {}, policy.get("dest_registry") or {}
    # The local Harbor is the side without a registry (id 0 or absent): push copies to a remote.
    pushes = not source.get("id")
    remote = destination if pushes else source
    return Replication(
        id=int(policy["id"]),
        name=str(policy.get("name", "")),
        direction="push" if pushes else "pull",
        remote_name=str(remote.get("name", "")),
        remote_url=str(remote.get("url", "")),
        destination_namespace=str(policy.get("dest_namespace") or ""),
        trigger=str((policy.get("trigger") or {}).get("type", "")),
        enabled=bool(policy.get("enabled")),
        replicate_deletion=bool(policy.get("replicate_deletion") or policy.get("deletion")),
        filters=tuple(
            f"{f.get('type', '')} {f.get('decoration', 'matches')} {f.get('value', '')}".strip()
            for f in policy.get("filters") or []
            if isinstance(f, dict)
        ),
        last_run=_replication_run(latest) if latest else None,
    )


# Harbor's execution statuses; Stopped counts as failed: someone stopped it before everything was copied.
_RUN_STATUS = {
    "Succeed": ReplicationStatus.OK,
    "Failed": ReplicationStatus.FAILED,
    "Stopped": ReplicationStatus.FAILED,
    "InProgress": ReplicationStatus.IN_PROGRESS,
}


def _remote_replication(policy: Replication) -> RemoteReplication:
    run, pushes = policy.last_run, policy.direction == "push"
    notes = [f"into namespace {policy.destination_namespace}"] if policy.destination_namespace else []
    notes += ["deletions are replicated"] if policy.replicate_deletion else []
    return RemoteReplication(
        id=str(policy.id),
        name=policy.name,
        kind=ReplicationKind.PUSH_REPLICATION if pushes else ReplicationKind.PULL_MIRROR,
        location=policy.remote_name,
        url=policy.remote_url,
        direction=ReplicationDirection.OUTBOUND if pushes else ReplicationDirection.INBOUND,
        enabled=policy.enabled,
        status=_RUN_STATUS.get(run.status, ReplicationStatus.UNKNOWN) if run else ReplicationStatus.UNKNOWN,
        status_text=_run_text(run) if run else "never run",
        last_started_at=run.started_at if run else None,
        last_finished_at=run.finished_at if run else None,
        filters=policy.filters,
        trigger=policy.trigger,
        notes="; ".join(notes),
    )


def _run_text(run: ReplicationRun) -> str:
    text = f"{run.status}: {run.status_text}" if run.status_text else run.status
    if run.total:
        text += f" ({run.succeeded} of {run.total} copied, {run.failed} failed)"
    return text


def _replication_run(execution: dict[str, Any]) -> ReplicationRun:
    return ReplicationRun(
        id=int(execution["id"]),
        status=str(execution.get("status", "")),
        trigger=str(execution.get("trigger", "")),
        started_at=_harbor_time(execution.get("start_time")),
        finished_at=_harbor_time(execution.get("end_time")),
        total=int(execution.get("total") or 0),
        failed=int(execution.get("failed") or 0),
        succeeded=int(execution.get("succeed") or 0),
        status_text=str(execution.get("status_text") or ""),
    )
