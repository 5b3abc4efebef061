"""Quay (quay.io or a self-hosted Red Hat Quay): organisations' repositories, robots, teams and permissions.

Quay serves two APIs on one host. Its REST API (`/api/v1`, registry-apis.md §10) takes an OAuth
application token as `Authorization: Bearer` and knows what distribution cannot tell: when each tag
was pushed, which robot accounts exist and when each was last used, which teams and users may do what
on each repository, and whether a repository is a mirror of another registry. Manifests, configs and
layers come through the registry API at `/v2/` with a robot (or user) credential, read by the
distribution connector so digests are checked alike everywhere.

Much of §10 is marked unverified; the shapes relied on are listed in one place in tests/fakes/quay.py,
and every parse here tolerates a missing optional field rather than guessing a value for it.

Quay's team and permission answers name users by username only, with no e-mail and no directory id.
Only its superuser API lists users with their e-mail, and only to a superuser's token: that token is
also what shows Quay's superusers, reported as admin accounts.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Collection, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import quote

import requests
from pydantic import Field, SecretStr, field_validator

from portal.http import OutboundSession, outbound_session
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
    visibility_fact,
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
)

QUAY_IO = "https://quay.io"
API = "/api/v1"
LAST_USED_SOURCE = "Quay robot last_accessed"
SUPERUSER_PREFIX = "superuser:"  # a superuser's credential id; robot ids are <org>+<name>
# How far back an organisation's logs are searched for a superuser's own pushes, and how many of
# Quay's 20-entry pages of one person's entries are read per organisation before giving up.
LOG_DAYS = 30
LOG_PAGES = 5

# Quay's repository roles, from least to most; each gives its actions and those of the roles before it.
ROLES: tuple[tuple[str, frozenset[str]], ...] = (
    ("read", frozenset({"pull"})),
    ("write", frozenset({"pull", "push"})),
    ("admin", frozenset({"pull", "push", "delete"})),
)
ROLE_ACTIONS = dict(ROLES)


class QuayConfig(ConnectorConfig):
    url: str = QUAY_IO
    # Organisations, comma separated: Quay's tenancy is the namespace, and the token sees only its own.
    namespaces: str
    token: SecretStr  # an OAuth application token (organisation → Applications → Generate token)
    registry_username: str  # a robot, e.g. acme+customs, with read on every repository: for /v2
    registry_password: SecretStr
    registry_url: str | None = None  # /v2 lives on the same host unless a proxy says otherwise
    page_size: int = 100
    # Quay records robots' last_accessed only with FEATURE_USER_LAST_ACCESSED (on at quay.io). When
    # it is on, an empty last_accessed means never used; when off, it means nobody knows.
    last_accessed_recorded: bool = True
    # Quay users carry no directory id. Where Quay signs people in through the same directory and
    # keeps its username, an admin may say so; sync then links Quay users' grants to the person of
    # that Customs username, and offboarding finds their team seats and permissions under it.
    link_users_by_username: bool = Field(
        default=False,
        description="Only if Quay signs people in through your directory and their Quay username is "
        "their directory username: that Quay user's permissions count as the person's (access, drift, "
        "reviews), and offboarding removes their team seats and permissions.",
    )
    link_members_by_email: bool = Field(
        default=False,
        description="Only if your directory identifies people by e-mail address, and only with a Quay "
        "superuser's token (scope super:user): link Quay users to Customs users by their e-mail. Quay "
        "gives users' e-mail to its superusers only; otherwise users stay Quay names.",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return http_url(value)

    @field_validator("registry_url")
    @classmethod
    def _registry_url(cls, value: str | None) -> str | None:
        return http_url(value) if value else None

    @field_validator("namespaces")
    @classmethod
    def _namespaces(cls, value: str) -> str:
        names = [name.strip().lower() for name in value.split(",") if name.strip()]
        if not names or any("/" in name or "+" in name for name in names):
            raise ValueError("list organisation names separated by commas, e.g. acme, acme-platform")
        return ", ".join(dict.fromkeys(names))

    @field_validator("page_size")
    @classmethod
    def _page_size(cls, value: int) -> int:
        if not 1 <= value <= 100:  # Quay caps the tag listing's limit at 100
            raise ValueError("page size must be between 1 and 100")
        return value

    @property
    def organisations(self) -> tuple[str, ...]:
        return tuple(self.namespaces.split(", "))


@dataclasses.dataclass(frozen=True)
class QuayMirror:
    """A repository that Quay fills by pulling from another registry (repository mirroring).

    Quay has no replicas of its own (geo-replicated storage is instance configuration, invisible to
    the API); a mirror is the opposite direction, content copied *into* Quay. Reported for people,
    not stored as a Replica: a mirror has no endpoint of its own that Customs could sync.
    """

    repository: str
    source: str  # external_reference, e.g. registry.example.com/team/app
    enabled: bool
    sync_status: str  # Quay's words: NEVER_RUN, SYNC_NOW, SYNCING, SUCCESS, FAIL, CANCEL
    sync_interval_seconds: int | None
    next_sync_at: datetime | None
    tags: tuple[str, ...]  # the root rule's tag patterns
    robot: str  # the robot the mirror pushes as


class QuayConnector:
    kind: ClassVar[str] = "quay"
    label: ClassVar[str] = "Quay"
    config_class: ClassVar[type[ConnectorConfig]] = QuayConfig
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.REPOSITORIES,
            Capability.ARTIFACTS,
            Capability.PUSHED_AT,
            Capability.CREDENTIALS,
            Capability.GRANTS,
            Capability.WRITE_GRANTS,
            Capability.DISABLE_CREDENTIALS,
            Capability.REMOVE_MEMBERS,
            Capability.REPLICAS,
            Capability.EVENTS,
            Capability.POSTURE,
        }
    )
    # Team seats only: a direct repository permission is a grant of its own, removed as one.
    membership_covers_grants: ClassVar[bool] = False
    # Reads first, each tried in every organisation; the writes after them are optional.
    needs: ClassVar[tuple[str, ...]] = (
        "OAuth token scope repo:read: list each organisation's repositories and tags",
        "OAuth token scope org:admin, from an organisation administrator: read robot accounts, teams "
        "and their members",
        "OAuth token scope repo:admin: read repository permissions and mirroring (Quay has no "
        "read-only scope for these; reconcile plans change permissions with it)",
        "registry credential (a robot with read on every repository): pull manifests over /v2",
        "only when linking users by e-mail: a Quay superuser's token (scope super:user), the only one "
        "Quay tells users' e-mail",
        "optional, only for offboarding: delete robot accounts (org:admin); not tried by the check",
        "optional, for reconcile plans and offboarding: change team roles and remove team members "
        "(org:admin); not tried by the check",
    )

    def __init__(self, config: QuayConfig) -> None:
        self.config = config
        self._local = threading.local()
        self._lock = threading.Lock()
        # (repository, digest) → when a tag last moved onto it, from the tag listing's start_ts.
        self._pushed: dict[tuple[str, str], datetime] = {}
        # directory group id → (organisation, team), learned from teams synced with the directory.
        self._teams_by_directory_id: dict[str, tuple[str, str]] = {}
        # Every Quay user by username, from the superuser API: read once, None when it is refused.
        self._users: tuple[dict[str, dict[str, Any]] | None] | None = None
        self._registry = DistributionConnector(
            DistributionConfig(
                url=config.registry_url or config.url,
                username=config.registry_username,
                password=config.registry_password,
            )
        )

    # --- inventory -------------------------------------------------------------------------------

    def check(self) -> None:
        for organisation in self.config.organisations:
            self._get(f"{API}/organization/{quote(organisation, safe='')}")
        self._registry.check()

    def repositories(self) -> Iterator[RemoteRepository]:
        for organisation in self.config.organisations:
            for item in self._repository_pages(organisation):
                yield RemoteRepository(name=f"{item['namespace']}/{item['name']}")

    def tags(self, repository: str) -> list[RemoteTag]:
        tags = []
        for item in self._tag_pages(repository):
            digest = str(item.get("manifest_digest") or "")
            if not digest.startswith("sha256:"):
                digest = self._registry.resolve(repository, str(item["name"]))
            if (pushed := _epoch(item.get("start_ts"))) is not None:
                self._note_pushed(repository, digest, pushed)
            tags.append(RemoteTag(name=str(item["name"]), digest=digest))
        return sorted(tags, key=lambda tag: tag.name)

    def resolve(self, repository: str, reference: str) -> str:
        return self._registry.resolve(repository, reference)

    def artifact(self, repository: str, digest: str) -> RemoteArtifact:
        record = self._registry.artifact(repository, digest)
        with self._lock:
            pushed = self._pushed.get((repository, digest))
        # Pull statistics exist per tag (…/pull_statistics) but are undocumented: not read.
        return dataclasses.replace(record, pushed_at=pushed)

    # --- credentials: robot accounts -------------------------------------------------------------

    def read_credentials(self) -> Iterator[RemoteCredential]:
        """Each organisation's robots; then Quay's superusers, where the token may list them."""
        for organisation in self.config.organisations:
            body = json_object(self._get(self._robots_path(organisation), params={"permissions": "true"}))
            roles = _RobotRoles(self, organisation)
            for robot in _dicts(body.get("robots")):
                yield self._robot(organisation, robot, roles.actions_of(robot))
        yield from self._superusers()

    @staticmethod
    def disablable(kind: str) -> bool:
        """Robots: a superuser is one by Quay's configuration, which its API cannot change."""
        return kind != CredentialKind.ADMIN_ACCOUNT

    def disable_credential(self, credential_id: str) -> None:
        """Delete the robot: Quay cannot disable one. A robot already gone is success."""
        if credential_id.startswith(SUPERUSER_PREFIX):
            raise PermanentError(
                f"{credential_id.removeprefix(SUPERUSER_PREFIX)} is a superuser by Quay's configuration "
                "(SUPER_USERS), which its API cannot change: remove it there"
            )
        organisation, plus, short = credential_id.partition("+")
        if not plus or organisation not in self.config.organisations or not short:
            raise ConfigError(f"{credential_id} is not a robot of {self.config.namespaces}")
        try:
            self._send("DELETE", f"{self._robots_path(organisation)}/{quote(short, safe='')}")
        except NotFoundError:
            return

    def _robot(self, organisation: str, robot: dict[str, Any], actions: frozenset[str]) -> RemoteCredential:
        last_accessed = _quay_time(robot.get("last_accessed"))
        scopes = [f"repository {name}" for name in _robot_repositories(organisation, robot)]
        scopes += [f"team {team['name']}" for team in _dicts(robot.get("teams")) if team.get("name")]
        return RemoteCredential(
            kind=CredentialKind.ROBOT,
            id=str(robot["name"]),
            name=str(robot["name"]),
            owner=Principal(kind=PrincipalKind.OTHER, id=organisation, name=f"organisation {organisation}"),
            created_at=_quay_time(robot.get("created")),
            expiry_known=False,  # Quay documents no expiry for robot tokens
            last_used_at=last_accessed,
            usage_known=last_accessed is not None or self.config.last_accessed_recorded,
            last_used_source=LAST_USED_SOURCE,
            scopes=tuple(sorted(scopes)),
            # Quay's last_accessed says nothing of what the robot did, and its usage logs are not
            # read (their fields and retention are unverified, §10): no per-action evidence.
            actions=actions,
        )

    # --- credentials: superusers -----------------------------------------------------------------

    def _superusers(self) -> Iterator[RemoteCredential]:
        """Quay's superusers as admin accounts. Only a superuser's token may list users: for any other
        Quay answers 403, and there is nothing to report."""
        users = self._instance_users()
        if users is None:
            return
        supers = sorted(name for name, user in users.items() if user.get("super_user") is True)
        owner = self._token_owner() if supers else None
        unreadable: set[str] = set()  # organisations whose logs refused once: not asked again
        for name in supers:
            shared, evidence = self._superuser_automation(name, owner, unreadable)
            yield RemoteCredential(
                kind=CredentialKind.ADMIN_ACCOUNT,
                id=SUPERUSER_PREFIX + name,
                name=name,
                enabled=users[name].get("enabled") is not False,
                owner=Principal(
                    PrincipalKind.USER, id=name, name=name, directory_id=self._directory_id(name)
                ),
                expiry_known=True,  # a user account does not expire
                usage_known=False,  # Quay keeps no last use for people, only for robots
                last_used_source=evidence,
                scopes=("Quay superuser: every organisation and repository",),
                shared_admin=shared,
                actions=frozenset(ACTIONS),
            )

    def _superuser_automation(self, name: str, owner: str | None, unreadable: set[str]) -> tuple[bool, str]:
        """Whether automation uses the superuser, and the evidence, short enough for last_used_source:
        Customs' own token being theirs, or pushes they made themselves (not through a robot) in a
        configured organisation's logs; nothing found is no evidence, and no finding."""
        if owner == name:
            return True, "shared: Customs' Quay token is this superuser's"
        readable = False
        for organisation in self.config.organisations:
            if organisation in unreadable:
                continue
            pushed = self._pushed_without_robot(organisation, name)
            if pushed is None:
                unreadable.add(organisation)
            readable = readable or pushed is not None
            if pushed:
                return True, f"used by automation: pushed to {organisation} without a robot"
        if not readable:
            return False, "no evidence of automation: organisation logs not readable"
        return False, f"no push by it in {LOG_DAYS} days of organisation logs"

    def _pushed_without_robot(self, organisation: str, name: str) -> bool | None:
        """Whether the organisation's logs show the user pushing in the last LOG_DAYS days (None: the
        logs are not readable). Quay filters by performer; only a few pages are read."""
        since = datetime.now(UTC) - timedelta(days=LOG_DAYS)
        params: dict[str, Any] = {"performer": name, "starttime": f"{since:%m/%d/%Y}"}
        path = f"{API}/organization/{quote(organisation, safe='')}/logs"
        for _ in range(LOG_PAGES):
            response = self._get_optional(path, params)
            if response is None:
                return None
            body = json_object(response)
            if any(_own_push(entry, name) for entry in _dicts(body.get("logs"))):
                return True
            following = body.get("next_page")
            if not (isinstance(following, str) and following):
                break
            params = {**params, "next_page": following}
        return False

    def _token_owner(self) -> str | None:
        """Whose OAuth token Customs uses (GET /api/v1/user/, scope user:read); None when not told."""
        response = self._get_optional(f"{API}/user/")
        username = json_object(response).get("username") if response is not None else None
        return username if isinstance(username, str) and username else None

    def _instance_users(self) -> dict[str, dict[str, Any]] | None:
        """Every Quay user by username, with e-mail and superuser flag (the superuser API); None when
        the token is not a superuser's (403) or superusers are turned off (404). Read once."""
        with self._lock:
            if self._users is not None:
                return self._users[0]
        users = self._read_users()
        with self._lock:
            self._users = (users,)
        return users

    def _read_users(self) -> dict[str, dict[str, Any]] | None:
        users: dict[str, dict[str, Any]] = {}
        params: dict[str, Any] = {}
        while True:
            response = self._get_optional(f"{API}/superuser/users/", params)
            if response is None:
                return None
            body = json_object(response)
            users.update((str(u["username"]), u) for u in _dicts(body.get("users")) if u.get("username"))
            following = body.get("next_page")  # newer Quays page this list; older ones answer at once
            if not (isinstance(following, str) and following):
                return users
            params = {"next_page": following}

    def _directory_id(self, username: str) -> str:
        """A Quay user's e-mail, where the admin said the directory's ids are e-mails and Quay told it."""
        if not self.config.link_members_by_email:
            return ""
        email = str(((self._instance_users() or {}).get(username) or {}).get("email") or "").strip().lower()
        return email if "@" in email else ""

    def _username(self, principal_id: str) -> str:
        """The Quay user a principal id names: a username, or their e-mail where users are linked by it
        (offboarding knows a person by that address). Nobody, or two people: the id as given."""
        if not self.config.link_members_by_email or "@" not in principal_id:
            return principal_id
        wanted = principal_id.strip().lower()
        users = self._instance_users() or {}
        named = [n for n, u in users.items() if str(u.get("email") or "").strip().lower() == wanted]
        return named[0] if len(named) == 1 else principal_id

    # --- grants: admin teams and repository permissions ------------------------------------------

    def read_grants(self) -> Iterator[RemoteGrant]:
        for organisation in self.config.organisations:
            teams = self._teams(organisation)
            for team, role in sorted(teams.items()):
                if role == "admin":
                    # An organisation admin team administers every repository, present and future.
                    yield RemoteGrant(
                        principal=self._team_principal(organisation, team),
                        scope=f"{organisation}/**",
                        actions=ROLE_ACTIONS["admin"],
                        source=f"team {team} (organisation role admin)",
                    )
            for item in self._repository_pages(organisation):
                yield from self._repository_grants(f"{item['namespace']}/{item['name']}")

    def _repository_grants(self, repository: str) -> Iterator[RemoteGrant]:
        organisation = repository.split("/", 1)[0]
        for team, entry in self._permissions(repository, "team").items():
            if actions := ROLE_ACTIONS.get(str(entry.get("role"))):
                yield RemoteGrant(
                    principal=self._team_principal(organisation, team),
                    scope=repository,
                    actions=actions,
                    source=f"repository permission {entry['role']} (team {team})",
                )
        for name, entry in self._permissions(repository, "user").items():
            if actions := ROLE_ACTIONS.get(str(entry.get("role"))):
                robot = bool(entry.get("is_robot"))
                kind = PrincipalKind.ROBOT if robot else PrincipalKind.USER
                yield RemoteGrant(
                    principal=self._member(name, robot),
                    scope=repository,
                    actions=actions,
                    source=f"repository permission {entry['role']} ({kind} {name})",
                )

    def _teams(self, organisation: str) -> dict[str, str]:
        """Team → organisation role; teams synced with a directory group are remembered by its id."""
        body = json_object(self._get(f"{API}/organization/{quote(organisation, safe='')}"))
        if not isinstance(body.get("teams"), dict):
            # Quay leaves the teams out, rather than refusing, for a token without org:admin.
            raise AuthError(f"{organisation}: the token cannot see teams (it needs the org:admin scope)")
        teams = {str(name): str(team.get("role", "")) for name, team in _items(body.get("teams"))}
        for team in teams:
            members = json_object(self._get(self._team_path(organisation, team, "members")))
            if directory_id := _synced_group(members.get("synced")):
                with self._lock:
                    self._teams_by_directory_id[directory_id] = (organisation, team)
        return teams

    def _team_principal(self, organisation: str, team: str) -> Principal:
        with self._lock:
            linked = {where: gid for gid, where in self._teams_by_directory_id.items()}
        return Principal(
            kind=PrincipalKind.GROUP,
            id=f"{organisation}/{team}",
            name=f"{organisation}/{team}",
            directory_id=linked.get((organisation, team), ""),
        )

    def team_members(self, organisation: str, team: str) -> list[Principal]:
        """The team's members (users and robots), as Quay names them."""
        body = json_object(self._get(self._team_path(organisation, team, "members")))
        return [
            self._member(str(member["name"]), bool(member.get("is_robot")))
            for member in _dicts(body.get("members"))
            if member.get("name")
        ]

    def _member(self, name: str, robot: bool) -> Principal:
        """A user or robot by its Quay name; a user linked to the directory where that is known."""
        if robot:
            return Principal(kind=PrincipalKind.ROBOT, id=name, name=name)
        return Principal(kind=PrincipalKind.USER, id=name, name=name, directory_id=self._directory_id(name))

    def memberships_of(self, principal_id: str) -> list[str]:
        username, seats = self._username(principal_id), []
        for organisation in self.config.organisations:
            for team in sorted(self._teams(organisation)):
                if username in {member.id for member in self.team_members(organisation, team)}:
                    seats.append(f"team {organisation}/{team}")
        return seats

    def remove_person(self, principal_id: str) -> list[str]:
        username = self._username(principal_id)
        seats = self.memberships_of(username)
        for seat in seats:
            organisation, team = seat.removeprefix("team ").split("/", 1)
            self.remove_team_member(organisation, team, username)
        return seats

    def remove_team_member(self, organisation: str, team: str, member: str) -> None:
        """Take a user or robot out of a team (offboarding). Someone already out is success."""
        if organisation not in self.config.organisations:
            raise ConfigError(f"{organisation} is not one of {self.config.namespaces}")
        if member not in {principal.id for principal in self.team_members(organisation, team)}:
            return  # what Quay answers for a non-member is undocumented: do not ask it
        try:
            self._send("DELETE", f"{self._team_path(organisation, team, 'members')}/{quote(member, safe='')}")
        except NotFoundError:
            return

    # --- writes: access plans --------------------------------------------------------------------

    def apply_access_plan(self, plan: AccessPlan) -> Iterator[GrantChange]:
        if plan.additions and not self._teams_by_directory_id:
            for organisation in self.config.organisations:
                self._teams(organisation)  # learn which teams are synced with which directory groups
        for change in plan.changes:
            if change.op == ChangeOp.ADD:
                self._add(change)
            else:
                self._remove(change)
            yield change

    def _add(self, change: GrantChange) -> None:
        if change.principal.kind != PrincipalKind.GROUP or "*" in change.scope:
            raise PermanentError(f"Quay cannot add {change.principal.kind} grants on {change.scope}")
        organisation = change.scope.split("/", 1)[0]
        with self._lock:
            where = self._teams_by_directory_id.get(change.principal.directory_id)
        if where is None or where[0] != organisation:
            raise PermanentError(
                f"no team of {organisation} is synced with the directory group {change.principal.name}:"
                " create one in Quay (team → directory synchronisation), then re-run the plan"
            )
        current = self._role_of(change.scope, "team", where[1])
        wanted = _role_for(ROLE_ACTIONS.get(current or "", frozenset()) | set(change.actions))
        if wanted != current:
            self._set_role(change.scope, "team", where[1], wanted)

    def _remove(self, change: GrantChange) -> None:
        principal = change.principal
        if change.scope.endswith("/**") and principal.kind == PrincipalKind.GROUP:
            self._demote_admin_team(change)
            return
        if "*" in change.scope:
            raise PermanentError(f"Quay has no grant on {change.scope} for {principal.name or principal.id}")
        team = principal.kind == PrincipalKind.GROUP
        kind, name = ("team", principal.id.split("/", 1)[-1]) if team else ("user", principal.id)
        current = self._role_of(change.scope, kind, name)
        if current is None:
            return  # already gone
        remaining = ROLE_ACTIONS[current] - set(change.actions)
        wanted = _role_for(remaining) if remaining else None
        if wanted != current:
            self._set_role(change.scope, kind, name, wanted)

    def _demote_admin_team(self, change: GrantChange) -> None:
        # The organisation role is all or nothing: only a removal of all three actions can be made.
        if set(change.actions) != ROLE_ACTIONS["admin"]:
            raise PermanentError(
                f"{change.principal.name} administers {change.scope}; Quay cannot take away only"
                f" {', '.join(change.actions)}: change the team's organisation role in Quay"
            )
        organisation, team = change.principal.id.split("/", 1)
        path = f"{API}/organization/{quote(organisation, safe='')}/team/{quote(team, safe='')}"
        try:
            self._send("PUT", path, json={"role": "member"})
        except NotFoundError:
            return

    def _role_of(self, repository: str, kind: str, name: str) -> str | None:
        entry = self._permissions(repository, kind).get(name)
        role = str(entry.get("role")) if entry else None
        return role if role in ROLE_ACTIONS else None

    def _set_role(self, repository: str, kind: str, name: str, role: str | None) -> None:
        path = f"{self._repository_path(repository)}/permissions/{kind}/{quote(name, safe='')}"
        if role is None:
            try:
                self._send("DELETE", path)
            except NotFoundError:
                return
        else:
            self._send("PUT", path, json={"role": role})

    # --- regions: repository mirroring -----------------------------------------------------------

    def read_mirrors(self) -> Iterator[QuayMirror]:
        """Every mirrored repository with its source and last sync status (registry-apis.md §10)."""
        for organisation in self.config.organisations:
            for item in self._repository_pages(organisation):
                if item.get("state") != "MIRROR":
                    continue  # only mirrors have a configuration; asking the others answers 404
                repository = f"{item['namespace']}/{item['name']}"
                body = json_object(self._get(f"{self._repository_path(repository)}/mirror"))
                yield _mirror(repository, body)

    def read_replication(self) -> Iterator[RemoteReplication]:
        """Each mirrored repository as a pull mirror from its source registry."""
        yield from (_remote_replication(mirror) for mirror in self.read_mirrors())

    # --- posture ---------------------------------------------------------------------------------

    def read_posture(self, production: Collection[str] = ()) -> Iterator[PostureFact]:
        """Each repository's visibility, and whether the production repositories' tags are immutable.

        How people sign in (AUTHENTICATION_TYPE, FEATURE_DIRECT_LOGIN) is the instance's configuration,
        which an organisation's token cannot read: said so, as unknown."""
        yield PostureFact(
            PostureCheck.SSO_NOT_ENFORCED,
            PostureState.UNKNOWN,
            "Quay's sign-in methods are instance configuration (AUTHENTICATION_TYPE, FEATURE_DIRECT_LOGIN), "
            "not visible to an organisation's OAuth token",
        )
        for organisation in self.config.organisations:
            for item in self._repository_pages(organisation):
                yield self._visibility_fact(f"{item['namespace']}/{item['name']}", item.get("is_public"))
        for repository in sorted(production):
            yield self._immutability_fact(repository)

    def _visibility_fact(self, repository: str, public: object) -> PostureFact:
        return visibility_fact(repository, public, f"{self.config.url}{self._repository_path(repository)}")

    def _immutability_fact(self, repository: str) -> PostureFact:
        """From the tags' own `immutable` flags (§10): Quay's immutability policies are not documented,
        so a repository is immutable here when every active tag says so."""
        url = f"{self.config.url}{self._repository_path(repository)}/tag/"
        tags = list(self._tag_pages(repository))
        flags = {str(tag.get("name", "")): tag.get("immutable") for tag in tags}
        if not tags or any(not isinstance(flag, bool) for flag in flags.values()):
            why = (
                "no active tag to read"
                if not tags
                else "the tag listing does not say which tags are immutable"
            )
            return PostureFact(PostureCheck.TAG_MUTABLE, PostureState.UNKNOWN, why, repository, url)
        mutable = sorted(name for name, flag in flags.items() if not flag)
        if not mutable:
            evidence = f"all {len(tags)} active tags are immutable"
            return PostureFact(PostureCheck.TAG_MUTABLE, PostureState.OK, evidence, repository, url)
        shown = ", ".join(mutable[:5]) + (f" and {len(mutable) - 5} more" if len(mutable) > 5 else "")
        evidence = f"{len(mutable)} of {len(tags)} active tags can be moved: {shown}"
        return PostureFact(PostureCheck.TAG_MUTABLE, PostureState.FAILING, evidence, repository, url)

    # --- "test connection", one permission at a time ---------------------------------------------

    def check_permissions(self) -> list[PermissionCheck]:
        """Each read in every organisation (held only if held in all), the pull once, the superuser
        read where users are linked by e-mail; the writes have no harmless proof and are not tried."""
        listings, robots, teams, permissions = [], [], [], []
        first: str | None = None
        for organisation in self.config.organisations:
            listing, repository = self._try_listing(organisation)
            listings.append(listing)
            read_robots = functools.partial(self._get, self._robots_path(organisation))
            robots.append(self._try(self.needs[1], read_robots, organisation))
            teams.append(self._try_team_members(organisation))
            permissions.append(self._try_permissions(organisation, repository, listing.ok))
            first = first or repository
        steps = [
            _all_of(self.needs[0], listings),
            _all_of(self.needs[1], robots + teams),
            _all_of(self.needs[2], permissions),
            self._try_pull(first),
        ]
        if self.config.link_members_by_email:
            steps.append(self._try_users())
        untried = "no harmless request proves it (it takes org:admin from an organisation administrator)"
        steps += [
            PermissionCheck(need, False, untried, required=False, tried=False) for need in self.needs[5:]
        ]
        return steps

    def _try_listing(self, organisation: str) -> tuple[PermissionCheck, str | None]:
        try:
            items = self._repository_pages(organisation)
            first = next((f"{i['namespace']}/{i['name']}" for i in items), None)
        except ConnectorError as exc:
            return PermissionCheck(self.needs[0], ok=False, detail=f"{organisation}: {exc}"), None
        return PermissionCheck(self.needs[0], ok=True, detail=f"listed {organisation}"), first

    def _try_team_members(self, organisation: str) -> PermissionCheck:
        """Reading the first team's members, as grants and offboarding do for every team."""
        try:
            team = next(iter(sorted(self._team_roles(organisation))), None)
            if team is None:
                return PermissionCheck(self.needs[1], ok=True, detail=f"{organisation}: no team to try yet")
            self._get(self._team_path(organisation, team, "members"))
        except ConnectorError as exc:
            return PermissionCheck(self.needs[1], ok=False, detail=f"{organisation}: {exc}")
        return PermissionCheck(self.needs[1], ok=True, detail=f"tried on team {organisation}/{team}")

    def _try_permissions(self, organisation: str, repository: str | None, listed: bool) -> PermissionCheck:
        if repository is None:
            return PermissionCheck(
                self.needs[2], ok=listed, detail=f"{organisation}: no repository to try yet"
            )
        return self._try(self.needs[2], lambda: self._permissions(repository, "user"), repository)

    def _try_pull(self, repository: str | None) -> PermissionCheck:
        if repository is None:
            return self._try(self.needs[3], self._registry.check, "the registry's /v2/")

        def pull() -> None:
            first_tag = next(iter(self._tag_pages(repository)), None)
            if first_tag is None:
                self._registry.check()
            else:
                self._registry.resolve(repository, str(first_tag["name"]))

        return self._try(self.needs[3], pull, repository)

    def _try_users(self) -> PermissionCheck:
        if self._instance_users() is None:
            detail = "Quay refused the superuser user list: the token is not a superuser's"
            return PermissionCheck(self.needs[4], ok=False, detail=detail)
        return PermissionCheck(self.needs[4], ok=True, detail="listed Quay's users")

    def _try(self, permission: str, attempt: Any, where: str) -> PermissionCheck:
        try:
            attempt()
        except ConnectorError as exc:
            return PermissionCheck(permission, ok=False, detail=f"{where}: {exc}")
        return PermissionCheck(permission, ok=True, detail=f"tried on {where}")

    # --- paging ----------------------------------------------------------------------------------

    def _repository_pages(self, organisation: str) -> Iterator[dict[str, Any]]:
        """Every repository of an organisation, following Quay's opaque next_page token."""
        params: dict[str, Any] = {"namespace": organisation, "last_modified": "true"}
        while True:
            body = json_object(self._get(f"{API}/repository", params=params))
            yield from _dicts(body.get("repositories"))
            following = body.get("next_page")
            if not (isinstance(following, str) and following):
                return
            params = {**params, "next_page": following}

    def _tag_pages(self, repository: str) -> Iterator[dict[str, Any]]:
        """Every active tag, page by page until Quay stops saying has_additional."""
        page = 1
        while True:
            params = {"onlyActiveTags": "true", "limit": self.config.page_size, "page": page}
            body = json_object(self._get(f"{self._repository_path(repository)}/tag/", params=params))
            yield from _dicts(body.get("tags"))
            if body.get("has_additional") is not True:
                return
            page += 1

    def _permissions(self, repository: str, kind: str) -> dict[str, dict[str, Any]]:
        body = json_object(self._get(f"{self._repository_path(repository)}/permissions/{kind}/"))
        return {str(name): entry for name, entry in _items(body.get("permissions"))}

    def _team_roles(self, organisation: str) -> dict[str, str]:
        """Team → organisation role (member, creator, admin), without reading the teams' members."""
        body = json_object(self._get(f"{API}/organization/{quote(organisation, safe='')}"))
        if not isinstance(body.get("teams"), dict):
            raise AuthError(f"{organisation}: the token cannot see teams (it needs the org:admin scope)")
        return {name: str(team.get("role", "")) for name, team in _items(body.get("teams"))}

    def _team_repository_roles(self, organisation: str, team: str) -> list[str]:
        """The roles a team holds on repositories (…/team/{team}/permissions: UNVERIFIED shape)."""
        body = json_object(self._get(self._team_path(organisation, team, "permissions")))
        return [str(entry.get("role", "")) for entry in _dicts(body.get("permissions"))]

    # --- paths and times -------------------------------------------------------------------------

    def _repository_path(self, repository: str) -> str:
        organisation, _, name = repository.partition("/")
        if organisation not in self.config.organisations or not name:
            raise ConfigError(f"{repository} is not in {self.config.namespaces}")
        return f"{API}/repository/{quote(organisation, safe='')}/{quote(name, safe='/')}"

    def _robots_path(self, organisation: str) -> str:
        return f"{API}/organization/{quote(organisation, safe='')}/robots"

    def _team_path(self, organisation: str, team: str, tail: str) -> str:
        return f"{API}/organization/{quote(organisation, safe='')}/team/{quote(team, safe='')}/{tail}"

    def _note_pushed(self, repository: str, digest: str, pushed: datetime) -> None:
        with self._lock:
            known = self._pushed.get((repository, digest))
            self._pushed[repository, digest] = max(pushed, known) if known else pushed

    # --- HTTP ------------------------------------------------------------------------------------

    @property
    def _session(self) -> OutboundSession:
        session: OutboundSession | None = getattr(self._local, "session", None)
        if session is None:
            session = outbound_session(purpose="quay")
            session.headers["Authorization"] = f"Bearer {self.config.token.get_secret_value()}"
            self._local.session = session
        return session

    def _get(self, path: str, params: dict[str, Any] | None = None) -> requests.Response:
        return self._send("GET", path, params=params)

    def _get_optional(self, path: str, params: dict[str, Any] | None = None) -> requests.Response | None:
        """A read Customs can do without: None when Quay refuses it (403: scope or role) or lacks it
        (404: a feature turned off). A rejected token (401) is still an error."""
        response = self._session.request("GET", f"{self.config.url}{path}", params=params)
        if response.status_code in (403, 404):
            return None
        _raise_for_status(response)
        return response

    def _send(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None
    ) -> requests.Response:
        response = self._session.request(method, f"{self.config.url}{path}", params=params, json=json)
        _raise_for_status(response)
        return response


class _RobotRoles:
    """What an organisation's robots may do, reading each repository's and team's permissions once.

    A robot's role comes from its own repository permissions and from its teams: a team with the
    organisation role admin administers every repository, the others hold repository roles."""

    def __init__(self, connector: QuayConnector, organisation: str) -> None:
        self._connector, self._organisation = connector, organisation
        self._users: dict[str, dict[str, dict[str, Any]]] = {}  # repository → user/robot → permission
        self._team_roles: dict[str, str] | None = None
        self._teams: dict[str, frozenset[str]] = {}  # team → the actions its repository roles give

    def actions_of(self, robot: dict[str, Any]) -> frozenset[str]:
        """The robot's actions; empty (not known) when a permission it depends on cannot be read."""
        name = str(robot.get("name", ""))
        actions: set[str] = set()
        try:
            for repository in _robot_repositories(self._organisation, robot):
                entry = self._user_permissions(repository).get(name) or {}
                actions |= ROLE_ACTIONS.get(str(entry.get("role")), frozenset())
            for team in sorted({str(t["name"]) for t in _dicts(robot.get("teams")) if t.get("name")}):
                actions |= self._team_actions(team)
        except AuthError:
            return frozenset()  # e.g. a token without repo:admin: what the robot may do is not known
        return frozenset(actions)

    def _user_permissions(self, repository: str) -> dict[str, dict[str, Any]]:
        if repository not in self._users:
            try:
                self._users[repository] = self._connector._permissions(repository, "user")
            except NotFoundError:
                self._users[repository] = {}  # deleted since the robots were listed: no access there
        return self._users[repository]

    def _team_actions(self, team: str) -> frozenset[str]:
        if self._team_roles is None:
            self._team_roles = self._connector._team_roles(self._organisation)
        if self._team_roles.get(team) == "admin":
            return ROLE_ACTIONS["admin"]
        if team not in self._teams:
            try:
                roles = self._connector._team_repository_roles(self._organisation, team)
            except NotFoundError:
                roles = []  # the team went away meanwhile
            self._teams[team] = frozenset(a for role in roles for a in ROLE_ACTIONS.get(role, ()))
        return self._teams[team]


def _robot_repositories(organisation: str, robot: dict[str, Any]) -> list[str]:
    """The repositories a robot holds a permission on, as `<organisation>/<name>`: Quay lists the
    names inside the robot's own organisation (Repository.name), the only place it can be granted."""
    return sorted(
        {
            f"{organisation}/{name}"
            for name in robot.get("repositories") or []
            if isinstance(name, str) and name
        }
    )


def _all_of(permission: str, checks: list[PermissionCheck]) -> PermissionCheck:
    """One permission tried in each organisation: held only where every organisation allowed it."""
    details = "; ".join(check.detail for check in checks if check.detail)
    return PermissionCheck(permission, ok=all(check.ok for check in checks), detail=details)


def _own_push(entry: dict[str, Any], name: str) -> bool:
    """A push logged as made by the user themselves: a robot's push is logged under the robot's own
    name (<org>+<robot>), never its owner's."""
    performer = entry.get("performer")
    return entry.get("kind") == "push_repo" and isinstance(performer, dict) and performer.get("name") == name


def _raise_for_status(response: requests.Response) -> None:
    """The shared taxonomy, with Quay's own explanation (its error body is not the OCI envelope)."""
    if not response.ok:
        raise_for_status(response, detail=_quay_error(response))


def _quay_error(response: requests.Response) -> str:
    # {"status": 403, "error_message": "...", "title": "insufficient_scope", "detail": "..."}
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    return " ".join(str(body[key]) for key in ("title", "error_message") if body.get(key))


def _role_for(actions: frozenset[str] | set[str]) -> str | None:
    """The smallest Quay role giving all these actions; None for none at all."""
    if not actions:
        return None
    return next((role for role, gives in ROLES if set(actions) <= gives), "admin")


def _synced_group(synced: object) -> str:
    """The directory group a team is synced with (LDAP group_dn, OIDC group_name): unverified shape."""
    if not isinstance(synced, dict) or not isinstance(synced.get("config"), dict):
        return ""
    config = synced["config"]
    return str(config.get("group_name") or config.get("group_dn") or config.get("group_id") or "")


def _mirror(repository: str, body: dict[str, Any]) -> QuayMirror:
    rule = body.get("root_rule") if isinstance(body.get("root_rule"), dict) else {}
    interval = body.get("sync_interval")
    return QuayMirror(
        repository=repository,
        source=str(body.get("external_reference") or ""),
        enabled=body.get("is_enabled") is True,
        sync_status=str(body.get("sync_status") or ""),
        sync_interval_seconds=interval if isinstance(interval, int) else None,
        next_sync_at=_quay_time(body.get("sync_start_date")),
        tags=tuple(str(value) for value in (rule or {}).get("rule_value") or ()),
        robot=str(body.get("robot_username") or ""),
    )


# Quay's sync_status words; a cancelled sync counts as failed: the mirror is behind its source.
_MIRROR_STATUS = {
    "SUCCESS": ReplicationStatus.OK,
    "FAIL": ReplicationStatus.FAILED,
    "CANCEL": ReplicationStatus.FAILED,
    "SYNCING": ReplicationStatus.IN_PROGRESS,
    "SYNC_NOW": ReplicationStatus.IN_PROGRESS,
}


def _remote_replication(mirror: QuayMirror) -> RemoteReplication:
    interval = mirror.sync_interval_seconds
    return RemoteReplication(
        id=mirror.repository,
        name=mirror.repository,
        kind=ReplicationKind.PULL_MIRROR,
        location=mirror.source.split("/", 1)[0],  # the source registry's host
        url=mirror.source,
        direction=ReplicationDirection.INBOUND,
        enabled=mirror.enabled,
        status=_MIRROR_STATUS.get(mirror.sync_status, ReplicationStatus.UNKNOWN),
        status_text=mirror.sync_status,
        next_run_at=mirror.next_sync_at,
        filters=tuple(f"tags matching {pattern}" for pattern in mirror.tags),
        trigger=f"every {interval} s" if interval else "",
        notes=f"pushes as {mirror.robot}" if mirror.robot else "",
    )


def _epoch(value: object) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return datetime.fromtimestamp(value, tz=UTC)


def _quay_time(value: object) -> datetime | None:
    """Quay writes dates as RFC 2822 ("Thu, 01 Oct 2026 08:30:00 -0000"); accept RFC 3339 too."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return parse_rfc3339(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _dicts(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _items(value: object) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(value, dict):
        return []
    return [(str(key), item) for key, item in value.items() if isinstance(item, dict)]
