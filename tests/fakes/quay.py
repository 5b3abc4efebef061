"""A Quay on loopback: the REST API (`/api/v1`) from in-memory state, `/v2/` from a real docker-registry.

Quay publishes no machine-readable API description in ../shared/specs, so the shapes this fake may
answer in are written down here, once, from registry-apis.md §10 (and Quay's source where §10 is
silent). Every JSON answer, and every notification body the fake produces, is checked against them
before anyone sees it, exactly as the other fakes are checked against the vendor's spec file: a fake
that starts answering in a shape nobody documented fails the test that made it do so.

Fields and endpoints marked UNVERIFIED are not confirmed against a running Quay (§10 says "partly
unverified"); the connector treats each of them as optional.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import unquote

from jsonschema import Draft7Validator

from tests.fakes.server import Answer, LoopbackFake, Request
from tests.fakes.specs import FakeDrift

API = "/api/v1"
LOGS_PER_PAGE = 20  # Quay's page of usage log entries (endpoints/api/logs.py)

# --- the documented shapes (registry-apis.md §10), in one place ------------------------------------

STR: dict[str, Any] = {"type": "string"}
INT: dict[str, Any] = {"type": "integer"}
BOOL: dict[str, Any] = {"type": "boolean"}
ANY: dict[str, Any] = {}
ROLE: dict[str, Any] = {"enum": ["read", "write", "admin"]}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def keyed(values: dict[str, Any]) -> dict[str, Any]:
    """A JSON object keyed by name (Quay's permission and team maps)."""
    return {"type": "object", "additionalProperties": values}


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """An object with exactly these fields: a field nobody documented is drift too."""
    return {
        "type": "object",
        "required": sorted(required),
        "properties": {**required, **(optional or {})},
        "additionalProperties": False,
    }


# §10 Repositories: {repositories[{namespace,name,description,is_public,kind,state,last_modified?,
# popularity?}], next_page}. last_modified as epoch seconds: UNVERIFIED (Quay's source, not §10).
REPOSITORY = obj(
    {
        "namespace": STR,
        "name": STR,
        "description": nullable(STR),
        "is_public": BOOL,
        "kind": STR,
        "state": STR,
    },
    {"last_modified": nullable(INT), "popularity": {"type": "number"}, "is_starred": BOOL},
)
# §10 Tags: {tags[{name,reversion,immutable?,start_ts,end_ts,manifest_digest,is_manifest_list,size,
# last_modified,expiration}],page,has_additional}; end_ts and expiration only on expiring tags.
# last_modified as RFC 2822 text: UNVERIFIED (Quay's format_date).
TAG = obj(
    {
        "name": STR,
        "reversion": BOOL,
        "start_ts": INT,
        "manifest_digest": STR,
        "is_manifest_list": BOOL,
        "size": nullable(INT),
        "last_modified": STR,
    },
    {"immutable": BOOL, "end_ts": INT, "expiration": STR},
)
# §10 Robots: name, created, last_accessed, description, teams[], repositories[], unstructured_metadata
# (+ token on request). Dates as RFC 2822 text: UNVERIFIED. `repositories` holds names inside the
# robot's organisation ("app", not "acme/app": Quay selects Repository.name).
ROBOT = obj(
    {"name": STR, "created": STR, "last_accessed": nullable(STR), "description": STR},
    {
        "teams": array(obj({"name": STR}, {"avatar": ANY})),
        "repositories": array(STR),
        "unstructured_metadata": {"type": "object"},
        "token": STR,
    },
)
# The organisation itself and its teams: not in §10 (Quay's OrganizationResource): UNVERIFIED.
# Teams appear only for organisation admins (token scope org:admin).
TEAM = obj(
    {"name": STR, "role": {"enum": ["member", "creator", "admin"]}},
    {
        "description": STR,
        "avatar": ANY,
        "can_view": BOOL,
        "repo_count": INT,
        "member_count": INT,
        "is_synced": BOOL,
    },
)
ORGANIZATION = obj(
    {"name": STR, "is_admin": BOOL, "is_member": BOOL},
    {"avatar": ANY, "email": STR, "teams": keyed(TEAM), "ordered_teams": array(STR), "tag_expiration_s": INT},
)
# §10 …/team/{team}/members. `synced` (directory team sync) and its config keys: UNVERIFIED.
MEMBER = obj(
    {"name": STR, "kind": {"enum": ["user", "robot", "invite"]}, "is_robot": BOOL},
    {"avatar": ANY, "invited": BOOL},
)
MEMBERS = obj(
    {"name": STR, "members": array(MEMBER), "can_edit": BOOL},
    {"synced": obj({"service": STR}, {"config": {"type": "object"}, "last_updated": nullable(STR)})},
)
# §10 …/permissions/user/ and …/permissions/team/ (role read|write|admin).
TEAM_PERMISSION = obj({"role": ROLE, "name": STR}, {"avatar": ANY})
USER_PERMISSION = obj({"role": ROLE, "name": STR, "is_robot": BOOL}, {"avatar": ANY, "is_org_member": BOOL})
# …/team/{team}/permissions: in §10's list; its fields are UNVERIFIED (Quay's TeamPermissions, which
# answers permission_view: the repository's name inside the organisation, and the team's role there).
TEAM_REPOSITORY_PERMISSION = obj({"repository": obj({"name": STR, "is_public": BOOL}), "role": ROLE})
# …/mirror: the whole endpoint and its fields are UNVERIFIED (Quay's RepoMirrorResource).
MIRROR = obj(
    {
        "is_enabled": BOOL,
        "mirror_type": {"enum": ["PULL"]},
        "external_reference": STR,
        "sync_interval": INT,
        "sync_start_date": nullable(STR),
        "sync_status": STR,
        "root_rule": obj({"rule_kind": STR, "rule_value": array(STR)}),
        "robot_username": STR,
    },
    {
        "external_registry_username": nullable(STR),
        "external_registry_config": {"type": "object"},
        "sync_expiration_date": nullable(STR),
        "sync_retries_remaining": INT,
    },
)

# Not in §10: Quay's source (quay/quay endpoints/api/superuser.py SuperUserList, whose users are
# superuser_models_interface.User.to_dict). Only a superuser's token (scope super:user) gets an answer;
# newer Quays page the list with next_page: UNVERIFIED.
INSTANCE_USER = obj(
    {
        "kind": {"enum": ["user"]},
        "name": STR,
        "username": STR,
        "email": nullable(STR),
        "verified": BOOL,
        "avatar": ANY,
        "super_user": BOOL,
        "enabled": BOOL,
    },
    {"quotas": array(ANY), "quota_report": ANY},
)
# GET /user/ (scope user:read): endpoints/api/user.py user_view, for the token's own user.
TOKEN_USER = obj(
    {"anonymous": BOOL, "username": STR, "avatar": ANY},
    {
        "can_create_repo": BOOL,
        "is_me": BOOL,
        "verified": BOOL,
        "email": STR,
        "logins": array(ANY),
        "invoice_email": BOOL,
        "invoice_email_address": nullable(STR),
        "preferred_namespace": BOOL,
        "tag_expiration_s": INT,
        "prompts": array(ANY),
        "company": nullable(STR),
        "family_name": nullable(STR),
        "given_name": nullable(STR),
        "location": nullable(STR),
        "is_free_account": BOOL,
        "has_password_set": BOOL,
        "quotas": array(ANY),
        "quota_report": ANY,
        "organizations": array(ANY),
        "super_user": BOOL,
    },
)
# §10 lists …/organization/{org}/logs; its fields are Quay's source (endpoints/api/logs.py _get_logs,
# data/logs_model/datatypes.py Log.to_dict): 20 entries a page, newest first, filtered by performer,
# dates as RFC 2822 text. UNVERIFIED against a running Quay.
LOG_ENTRY = obj(
    {"kind": STR, "metadata": {"type": "object"}, "ip": nullable(STR), "datetime": STR},
    {
        "performer": obj({"kind": STR, "name": STR, "is_robot": nullable(BOOL)}, {"avatar": ANY}),
        "namespace": ANY,
    },
)

SHAPES: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/repository"): obj({"repositories": array(REPOSITORY)}, {"next_page": STR}),
    ("GET", "/repository/{ns}/{repo}/tag/"): obj({"tags": array(TAG), "page": INT, "has_additional": BOOL}),
    ("GET", "/organization/{org}"): ORGANIZATION,
    ("GET", "/organization/{org}/robots"): obj({"robots": array(ROBOT)}),
    ("GET", "/organization/{org}/team/{team}/members"): MEMBERS,
    ("GET", "/organization/{org}/team/{team}/permissions"): obj(
        {"permissions": array(TEAM_REPOSITORY_PERMISSION)}
    ),
    ("PUT", "/organization/{org}/team/{team}"): TEAM,
    ("GET", "/repository/{ns}/{repo}/permissions/team/"): obj({"permissions": keyed(TEAM_PERMISSION)}),
    ("GET", "/repository/{ns}/{repo}/permissions/user/"): obj({"permissions": keyed(USER_PERMISSION)}),
    ("PUT", "/repository/{ns}/{repo}/permissions/team/{name}"): TEAM_PERMISSION,
    ("PUT", "/repository/{ns}/{repo}/permissions/user/{name}"): USER_PERMISSION,
    ("GET", "/repository/{ns}/{repo}/mirror"): MIRROR,
    ("GET", "/superuser/users/"): obj({"users": array(INSTANCE_USER)}, {"next_page": STR}),
    ("GET", "/user/"): TOKEN_USER,
    ("GET", "/organization/{org}/logs"): obj(
        {"start_time": STR, "end_time": STR, "logs": array(LOG_ENTRY)}, {"next_page": STR}
    ),
    # §10 notification repo_push; pruned_image_count and pushed_image_count come from builds.
    ("POST", "notification:repo_push"): obj(
        {
            "repository": STR,
            "namespace": STR,
            "name": STR,
            "docker_url": STR,
            "homepage": STR,
            "updated_tags": array(STR),
        },
        {"pruned_image_count": INT, "pushed_image_count": INT},
    ),
}


def check_shape(method: str, operation: str, body: Any) -> None:
    """Raise FakeDrift unless the body has the documented shape of the operation."""
    schema = SHAPES.get((method, operation))
    if schema is None:
        raise FakeDrift(f"{method} {operation}: no documented shape (registry-apis.md §10)")
    problems = sorted(Draft7Validator(schema).iter_errors(body), key=lambda e: list(e.absolute_path))
    if problems:
        where = "/".join(str(p) for p in problems[0].absolute_path) or "(body)"
        raise FakeDrift(f"{method} {operation} at {where}: {problems[0].message}")


# --- the fake --------------------------------------------------------------------------------------


def quay_time(moment: datetime | None) -> str | None:
    """Quay's format_date: RFC 2822 in UTC, written with -0000."""
    return format_datetime(moment.astimezone(UTC).replace(tzinfo=None)) if moment else None


def quay_error(status: int, title: str, message: str) -> Answer:
    return Answer(
        status,
        {"status": status, "error_message": message, "title": title, "error_type": title, "detail": message},
    )


@dataclass
class Team:
    role: str = "member"  # member | creator | admin
    members: dict[str, bool] = field(default_factory=dict)  # name → is_robot
    synced_group: str = ""  # the directory group a synced team follows


@dataclass
class User:
    """A Quay user as the superuser API knows them."""

    email: str = ""
    super_user: bool = False
    enabled: bool = True


@dataclass
class Robot:
    created: datetime
    last_accessed: datetime | None = None
    description: str = ""


class FakeQuay(LoopbackFake):
    api_prefix = API
    token_path = "/v2/auth"  # Quay's registry token realm (§10)
    service = "quay"

    def __init__(self, registry_url: str, organisations: tuple[str, ...] = ("acme",)) -> None:
        super().__init__(registry_url)
        self.organisations = organisations
        self.token = "quay-app-" + secrets.token_urlsafe(20)  # the OAuth application token
        self.scopes = {"repo:read", "repo:admin", "org:admin"}
        self.token_owner = "customs"  # the user the OAuth token acts for (GET /user/)
        self.users: dict[str, User] = {}  # the instance's users, as its superuser API lists them
        self.logs: dict[str, list[dict[str, Any]]] = {}  # organisation → its usage log entries
        # "GET /api/v1/organization/beta/robots": calls refused to the token's user (403), as Quay refuses
        # them in an organisation the user does not administer, whatever the token's scopes.
        self.refused: set[str] = set()
        self.robot_name = f"{organisations[0]}+customs"
        self.robot_token = secrets.token_urlsafe(24)
        self.repository_page_size = 100  # Quay pages repositories by 100; tests shrink it
        self.pushed: dict[tuple[str, str], datetime] = {}  # (repository, tag) → start_ts
        self.robots: dict[str, dict[str, Robot]] = {org: {} for org in organisations}
        self.teams: dict[str, dict[str, Team]] = {org: {} for org in organisations}
        self.team_permissions: dict[str, dict[str, str]] = {}  # repository → team → role
        self.user_permissions: dict[
            str, dict[str, tuple[str, bool]]
        ] = {}  # repository → name → (role, robot)
        self.mirrors: dict[str, dict[str, Any]] = {}  # repository → mirror configuration
        self.writes: list[str] = []  # "METHOD path" of every accepted change, for idempotency checks
        self.public: set[str] = set()  # repositories anyone may pull (is_public)
        # repository → its immutable tags; a repository listed here has every tag say `immutable`
        # (§10's optional field), one that is not sends no such field, as older Quays do.
        self.tag_immutability: dict[str, set[str]] = {}

    def start(self) -> FakeQuay:
        super().start()
        return self

    def owns_v2_path(self, path: str) -> bool:
        return path == self.token_path

    def registry_credentials_ok(self, username: str, password: str) -> bool:
        return secrets.compare_digest(f"{username}:{password}", f"{self.robot_name}:{self.robot_token}")

    def check(self, request: Request, answer: Answer) -> None:
        check_shape(request.method, answer.operation, answer.body)

    def repo_push(self, repository: str, tags: list[str]) -> bytes:
        """The body Quay posts for a repo_push notification (§10), checked like every answer."""
        namespace, _, name = repository.partition("/")
        host = self.url.split("://", 1)[1]
        body = {
            "repository": repository,
            "namespace": namespace,
            "name": name,
            "docker_url": f"{host}/{repository}",
            "homepage": f"{self.url}/repository/{repository}",
            "updated_tags": tags,
        }
        try:
            check_shape("POST", "notification:repo_push", body)
        except FakeDrift as drift:
            self.drift.append(str(drift))
        return json.dumps(body).encode()

    # --- routing ---------------------------------------------------------------------------------

    def api(self, request: Request) -> Answer:
        header = str(request.environ.get("HTTP_AUTHORIZATION", ""))
        if not (header.startswith("Bearer ") and secrets.compare_digest(header[7:], self.token)):
            return quay_error(401, "invalid_token", "Invalid or expired OAuth token")
        if f"{request.method} {request.path}" in self.refused:
            return quay_error(403, "insufficient_scope", "Unauthorized")
        path = request.path[len(API) :]
        repo = r"/repository/([^/]+)/([^/]+)"
        org = r"/organization/([^/]+)"
        routes: list[tuple[str, str, str, Callable[..., Answer]]] = [
            ("GET", r"/repository", "repo:read", self._repositories),
            ("GET", repo + r"/tag/", "repo:read", self._tags),
            ("GET", repo + r"/permissions/(team|user)/", "repo:admin", self._permissions),
            ("PUT", repo + r"/permissions/(team|user)/([^/]+)", "repo:admin", self._put_permission),
            ("DELETE", repo + r"/permissions/(team|user)/([^/]+)", "repo:admin", self._delete_permission),
            ("GET", repo + r"/mirror", "repo:admin", self._mirror),
            ("GET", r"/superuser/users/", "super:user", self._instance_users),
            ("GET", r"/user/", "user:read", self._token_user),
            ("GET", org + r"/logs", "org:admin", self._logs),
            ("GET", org, "", self._organisation),
            ("PUT", org + r"/team/([^/]+)", "org:admin", self._put_team),
            ("GET", org + r"/robots", "org:admin", self._robots),
            ("DELETE", org + r"/robots/([^/]+)", "org:admin", self._delete_robot),
            ("GET", org + r"/team/([^/]+)/members", "org:admin", self._members),
            ("GET", org + r"/team/([^/]+)/permissions", "org:admin", self._team_permissions),
            ("DELETE", org + r"/team/([^/]+)/members/([^/]+)", "org:admin", self._delete_member),
        ]
        for method, pattern, scope, handler in routes:
            if request.method == method and (match := re.fullmatch(pattern, path)):
                if scope and scope not in self.scopes:
                    return quay_error(403, "insufficient_scope", f"the token lacks the {scope} scope")
                return handler(request, *(unquote(group) for group in match.groups()))
        return quay_error(404, "not_found", f"no route {request.method} {path}")

    # --- repositories and tags -------------------------------------------------------------------

    def _repositories(self, request: Request) -> Answer:
        namespace = request.query.get("namespace", [""])[0]
        names = [n for n in self.catalog() if n.split("/", 1)[0] == namespace]
        start = int(request.query.get("next_page", ["0"])[0].removeprefix("after-") or 0)
        chunk = names[start : start + self.repository_page_size]
        body: dict[str, Any] = {"repositories": [self._repository_json(name) for name in chunk]}
        if start + self.repository_page_size < len(names):
            body["next_page"] = f"after-{start + self.repository_page_size}"  # opaque to clients
        return Answer(200, body, operation="/repository")

    def _repository_json(self, name: str) -> dict[str, Any]:
        namespace, _, short = name.partition("/")
        return {
            "namespace": namespace,
            "name": short,
            "description": None,
            "is_public": name in self.public,
            "kind": "image",
            "state": "MIRROR" if name in self.mirrors else "NORMAL",
            "last_modified": int(datetime(2026, 11, 1, tzinfo=UTC).timestamp()),
        }

    def _tags(self, request: Request, namespace: str, name: str) -> Answer:
        repository = f"{namespace}/{name}"
        limit = min(100, max(1, int(request.query.get("limit", ["50"])[0])))
        page = max(1, int(request.query.get("page", ["1"])[0]))
        tags = self.tags(repository)
        chunk = tags[(page - 1) * limit : page * limit]
        body = {
            "tags": [self._tag_json(repository, tag, digest) for tag, digest in chunk],
            "page": page,
            "has_additional": page * limit < len(tags),
        }
        return Answer(200, body, operation="/repository/{ns}/{repo}/tag/")

    def _tag_json(self, repository: str, tag: str, digest: str) -> dict[str, Any]:
        pushed = self.pushed.setdefault((repository, tag), datetime.now(UTC).replace(microsecond=0))
        body: dict[str, Any] = {
            "name": tag,
            "reversion": False,
            "start_ts": int(pushed.timestamp()),
            "manifest_digest": digest,
            "is_manifest_list": False,
            "size": 0,
            "last_modified": quay_time(pushed),
        }
        if repository in self.tag_immutability:
            body["immutable"] = tag in self.tag_immutability[repository]
        return body

    # --- permissions -----------------------------------------------------------------------------

    def _permissions(self, request: Request, namespace: str, name: str, kind: str) -> Answer:
        repository = f"{namespace}/{name}"
        permissions: dict[str, dict[str, Any]]
        if kind == "team":
            permissions = {
                team: {"role": role, "name": team}
                for team, role in self.team_permissions.get(repository, {}).items()
            }
        else:
            permissions = {
                user: {"role": role, "name": user, "is_robot": robot, "is_org_member": True}
                for user, (role, robot) in self.user_permissions.get(repository, {}).items()
            }
        return Answer(
            200, {"permissions": permissions}, operation=f"/repository/{{ns}}/{{repo}}/permissions/{kind}/"
        )

    def _put_permission(self, request: Request, namespace: str, name: str, kind: str, who: str) -> Answer:
        repository, role = f"{namespace}/{name}", str((request.json() or {}).get("role", ""))
        if role not in ("read", "write", "admin"):
            return quay_error(400, "invalid_request", f"invalid role {role!r}")
        self.writes.append(f"PUT {repository} {kind} {who} {role}")
        operation = f"/repository/{{ns}}/{{repo}}/permissions/{kind}/{{name}}"
        if kind == "team":
            if who not in self.teams.get(namespace, {}):
                return quay_error(400, "invalid_request", f"no team {who}")
            self.team_permissions.setdefault(repository, {})[who] = role
            return Answer(200, {"role": role, "name": who}, operation=operation)
        robot = "+" in who
        self.user_permissions.setdefault(repository, {})[who] = (role, robot)
        return Answer(200, {"role": role, "name": who, "is_robot": robot}, operation=operation)

    def _delete_permission(self, request: Request, namespace: str, name: str, kind: str, who: str) -> Answer:
        repository = f"{namespace}/{name}"
        held: dict[str, Any] = (self.team_permissions if kind == "team" else self.user_permissions).get(
            repository, {}
        )
        if who not in held:
            return quay_error(404, "not_found", f"no permission for {who}")
        del held[who]
        self.writes.append(f"DELETE {repository} {kind} {who}")
        return Answer(204)

    def _mirror(self, request: Request, namespace: str, name: str) -> Answer:
        repository = f"{namespace}/{name}"
        if repository not in self.mirrors:
            return quay_error(404, "not_found", "mirroring is not configured")
        return Answer(200, self.mirrors[repository], operation="/repository/{ns}/{repo}/mirror")

    # --- users and logs --------------------------------------------------------------------------

    def log(self, org: str, performer: str, kind: str, at: datetime, *, robot: bool = False) -> None:
        """An entry in the organisation's usage log, e.g. kind push_repo or pull_repo."""
        self.logs.setdefault(org, []).append(
            {
                "kind": kind,
                "metadata": {"repo": "app", "namespace": org},
                "ip": "192.0.2.10",
                "datetime": quay_time(at),
                "performer": {"kind": "user", "name": performer, "is_robot": robot},
            }
        )

    def _is_superuser(self, name: str) -> bool:
        return name in self.users and self.users[name].super_user

    def _instance_users(self, request: Request) -> Answer:
        if not self._is_superuser(self.token_owner):
            return quay_error(403, "insufficient_scope", "Unauthorized")  # the scope alone is not enough
        users = [
            {
                "kind": "user",
                "name": name,
                "username": name,
                "email": user.email or None,
                "verified": True,
                "avatar": {"name": name},
                "super_user": user.super_user,
                "enabled": user.enabled,
            }
            for name, user in sorted(self.users.items())
        ]
        return Answer(200, {"users": users}, operation="/superuser/users/")

    def _token_user(self, request: Request) -> Answer:
        body: dict[str, Any] = {"anonymous": False, "username": self.token_owner, "avatar": {}, "is_me": True}
        if "super:user" in self.scopes and self._is_superuser(self.token_owner):
            body["super_user"] = True
        return Answer(200, body, operation="/user/")

    def _logs(self, request: Request, org: str) -> Answer:
        if org not in self.organisations:
            return quay_error(404, "not_found", f"no organisation {org}")
        now = datetime.now(UTC)
        # Quay's default is the last day; a start date is "%m/%d/%Y" in UTC.
        start = request.query.get("starttime", [""])[0]
        since = datetime.strptime(start, "%m/%d/%Y").replace(tzinfo=UTC) if start else now - timedelta(days=1)
        performer = request.query.get("performer", [""])[0]
        entries = sorted(
            (
                e
                for e in self.logs.get(org, [])
                if parsedate_to_datetime(e["datetime"]).replace(tzinfo=UTC) >= since
                and (not performer or e["performer"]["name"] == performer)
            ),
            key=lambda e: parsedate_to_datetime(e["datetime"]),
            reverse=True,
        )
        offset = int(request.query.get("next_page", ["0"])[0] or 0)
        body: dict[str, Any] = {
            "start_time": quay_time(since),
            "end_time": quay_time(now + timedelta(days=1)),
            "logs": entries[offset : offset + LOGS_PER_PAGE],
        }
        if offset + LOGS_PER_PAGE < len(entries):
            body["next_page"] = str(offset + LOGS_PER_PAGE)
        return Answer(200, body, operation="/organization/{org}/logs")

    # --- organisations, teams and robots ---------------------------------------------------------

    def _organisation(self, request: Request, org: str) -> Answer:
        if org not in self.organisations:
            return quay_error(404, "not_found", f"no organisation {org}")
        body: dict[str, Any] = {"name": org, "is_admin": "org:admin" in self.scopes, "is_member": True}
        if "org:admin" in self.scopes:  # Quay shows teams to organisation admins only
            body["teams"] = {
                name: {
                    "name": name,
                    "role": team.role,
                    "member_count": len(team.members),
                    "is_synced": bool(team.synced_group),
                }
                for name, team in self.teams[org].items()
            }
            body["ordered_teams"] = sorted(self.teams[org])
        return Answer(200, body, operation="/organization/{org}")

    def _put_team(self, request: Request, org: str, name: str) -> Answer:
        role = str((request.json() or {}).get("role", ""))
        team = self.teams.get(org, {}).get(name)
        if team is None:
            return quay_error(404, "not_found", f"no team {name}")
        team.role = role
        self.writes.append(f"PUT team {org}/{name} {role}")
        return Answer(200, {"name": name, "role": role}, operation="/organization/{org}/team/{team}")

    def _robots(self, request: Request, org: str) -> Answer:
        with_permissions = request.query.get("permissions", ["false"])[0] == "true"
        robots = []
        for short, robot in sorted(self.robots.get(org, {}).items()):
            full = f"{org}+{short}"
            entry: dict[str, Any] = {
                "name": full,
                "created": quay_time(robot.created),
                "last_accessed": quay_time(robot.last_accessed),
                "description": robot.description,
            }
            if with_permissions:
                entry["teams"] = [
                    {"name": t} for t, team in sorted(self.teams[org].items()) if full in team.members
                ]
                entry["repositories"] = sorted(
                    repo.split("/", 1)[1]
                    for repo, users in self.user_permissions.items()
                    if full in users and repo.split("/", 1)[0] == org
                )
            robots.append(entry)
        return Answer(200, {"robots": robots}, operation="/organization/{org}/robots")

    def _delete_robot(self, request: Request, org: str, short: str) -> Answer:
        if short not in self.robots.get(org, {}):
            return quay_error(404, "not_found", f"no robot {org}+{short}")
        del self.robots[org][short]
        self.writes.append(f"DELETE robot {org}+{short}")
        return Answer(204)

    def _members(self, request: Request, org: str, name: str) -> Answer:
        team = self.teams.get(org, {}).get(name)
        if team is None:
            return quay_error(404, "not_found", f"no team {name}")
        body: dict[str, Any] = {
            "name": name,
            "members": [
                {"name": member, "kind": "robot" if robot else "user", "is_robot": robot}
                for member, robot in sorted(team.members.items())
            ],
            "can_edit": True,
        }
        if team.synced_group:
            body["synced"] = {"service": "oidc", "config": {"group_name": team.synced_group}}
        return Answer(200, body, operation="/organization/{org}/team/{team}/members")

    def _team_permissions(self, request: Request, org: str, name: str) -> Answer:
        if name not in self.teams.get(org, {}):
            return quay_error(404, "not_found", f"no team {name}")
        permissions = [
            {"repository": {"name": repository.split("/", 1)[1], "is_public": False}, "role": teams[name]}
            for repository, teams in sorted(self.team_permissions.items())
            if repository.split("/", 1)[0] == org and name in teams
        ]
        return Answer(
            200, {"permissions": permissions}, operation="/organization/{org}/team/{team}/permissions"
        )

    def _delete_member(self, request: Request, org: str, name: str, member: str) -> Answer:
        team = self.teams.get(org, {}).get(name)
        if team is None or member not in team.members:
            return quay_error(404, "not_found", f"{member} is not a member of {name}")
        del team.members[member]
        self.writes.append(f"DELETE member {org}/{name} {member}")
        return Answer(204)
