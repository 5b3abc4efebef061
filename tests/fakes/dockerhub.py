"""Docker Hub on loopback: the Hub API from in-memory state, the registry API from a real docker-registry.

The real service is two hosts (hub.docker.com and registry-1.docker.io, with auth.docker.io); the
fake serves both from one address, telling them apart by path: the Hub API's `/v2/namespaces/…`,
`/v2/auth/…` and friends, and the registry's `/v2/<name>/…`. Every Hub answer is checked against
Docker Hub's OpenAPI description before it leaves (tests/fakes/specs.py, with its known deviations).

Beyond inventory the fake keeps an organisation: members (owners and members), teams with their
members and repository permissions, personal access tokens (the signed-in account's own),
organisation access tokens, and audit log entries. One route is not in the published description:
`GET /v2/repositories/{namespace}/{repository}/groups`, the listing of the teams with a permission
on a repository. The Hub UI uses it (registry-apis.md §8.4); its shape here (the envelope of the
POST's `RepositoryGroup` entries) is UNVERIFIED against the live service, and specs.py adds it to the
loaded description in `_hub_repository_teams_listing`, so at least its entries are checked.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from tests.fakes.server import Answer, LoopbackFake, Query, Request
from tests.fakes.specs import DOCKER_HUB

HUB_API_PATHS = (
    "/v2/namespaces/",
    "/v2/auth/",
    "/v2/repositories/",
    "/v2/orgs/",
    "/v2/access-tokens",
    "/v2/users/",
    "/v2/auditlogs/",
)

PERMISSIONS = ("read", "write", "admin")


def hub_time(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if moment else None


def problem(status: int, detail: str) -> Answer:
    return Answer(status, {"detail": detail, "message": detail})


MISSING = object()  # a field the answer leaves out, as opposed to one it sends as null


@dataclass
class Member:
    username: str
    email: str
    role: str = "Member"  # Owner, Member or Invitee, as the Hub writes it
    full_name: str = ""
    is_guest: bool = False  # an e-mail outside the organisation's verified domains (§8.4)


@dataclass
class Team:
    id: int
    name: str
    members: list[str] = field(default_factory=list)
    description: str = ""
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class PersonalToken:
    label: str
    scopes: list[str]
    created_at: datetime
    last_used: datetime | None | object = None  # MISSING: the answer has no last_used at all
    expires_at: datetime | None = None
    is_active: bool = True
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class OrgToken:
    label: str
    created_by: str
    created_at: datetime
    resources: list[dict[str, Any]]
    last_used_at: datetime | None | object = None
    expires_at: datetime | None = None
    is_active: bool = True
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


Route = tuple[str, str, Callable[..., Answer]]


class FakeDockerHub(LoopbackFake):
    api_prefix = "/v2"
    token_path = "/token"  # auth.docker.io/token on the real service
    service = "registry.docker.io"

    def __init__(self, registry_url: str, namespace: str = "acme") -> None:
        super().__init__(registry_url)
        self.namespace = namespace
        self.username = "acme-ci"
        self.token = "dckr_pat_" + secrets.token_urlsafe(20)
        self.push_times: dict[tuple[str, str], datetime] = {}  # (repository, tag) → last pushed
        self.pull_times: dict[tuple[str, str], datetime] = {}  # (repository, tag) → last pulled
        self.sign_ins = 0
        self._jwts: set[str] = set()
        # The organisation: the signed-in account is its owner unless a test says otherwise.
        self.members: dict[str, Member] = {
            self.username: Member(self.username, "ci@acme.example", role="Owner", full_name="CI")
        }
        self.teams: dict[str, Team] = {}
        self.team_permissions: dict[tuple[str, str], str] = {}  # (repository, team name) → permission
        self.personal_tokens: list[PersonalToken] = []
        self.org_tokens: list[OrgToken] = []
        self.audit_logs: list[dict[str, Any]] = []
        # "envelope" (what the service sends) or "array" (what the description says): §8.4.
        self.members_shape = "envelope"
        self.forbidden: set[str] = set()  # route names answered 403, as for a role that lacks them
        self.writes: list[str] = []  # "METHOD path" of every accepted write, in order
        self.public: set[str] = set()  # "acme/app": repositories anyone may pull (is_private false)
        # "acme/app" → the tag rules (regexes) of its immutable tags setting; absent: the setting is off.
        self.immutable_tags: dict[str, list[str]] = {}
        self._routes: list[tuple[str, re.Pattern[str], str, Callable[..., Answer]]] = [
            (method, re.compile(pattern), name, handler)
            for method, pattern, name, handler in self._route_table()
        ]

    def start(self) -> FakeDockerHub:
        super().start()
        return self

    def owns_v2_path(self, path: str) -> bool:
        return path.startswith(HUB_API_PATHS)

    def registry_credentials_ok(self, username: str, password: str) -> bool:
        return secrets.compare_digest(f"{username}:{password}", f"{self.username}:{self.token}")

    def check(self, request: Request, answer: Answer) -> None:
        DOCKER_HUB.validate(
            request.method, request.path, answer.body, status=answer.status, query=_flat(request.query)
        )

    def revoke_sessions(self) -> None:
        """Forget every JWT handed out, as if they had expired."""
        self._jwts.clear()

    # --- test helpers ----------------------------------------------------------------------------

    def add_team(self, name: str, members: list[str], **permissions: str) -> Team:
        """A team with members (added to the org as members if new) and {repository name: permission}."""
        team = self.teams.setdefault(name, Team(id=self.id_of(("team", name)), name=name))
        for username in members:
            self.members.setdefault(username, Member(username, f"{username}@acme.example"))
            if username not in team.members:
                team.members.append(username)
        for repository, permission in permissions.items():
            self.team_permissions[f"{self.namespace}/{repository}", name] = permission
        return team

    # --- routing ---------------------------------------------------------------------------------

    def _route_table(self) -> list[tuple[str, str, str, Callable[..., Answer]]]:
        segment = "([^/]+)"
        org = f"/v2/orgs/{segment}"
        return [
            ("GET", rf"/v2/namespaces/{segment}/repositories", "repositories", self._repositories),
            ("GET", rf"/v2/namespaces/{segment}/repositories/{segment}/tags", "tags", self._tags),
            ("GET", rf"/v2/namespaces/{segment}/repositories/{segment}", "repository", self._repository),
            ("GET", r"/v2/access-tokens", "personal_tokens", self._personal_tokens),
            ("PATCH", rf"/v2/access-tokens/{segment}", "patch_personal_token", self._patch_personal_token),
            ("GET", rf"{org}/access-tokens", "org_tokens", self._org_tokens),
            ("GET", rf"{org}/access-tokens/{segment}", "org_token", self._org_token),
            ("PATCH", rf"{org}/access-tokens/{segment}", "patch_org_token", self._patch_org_token),
            ("GET", rf"{org}/members", "members", self._members),
            ("DELETE", rf"{org}/members/{segment}", "remove_member", self._remove_member),
            ("GET", rf"{org}/groups", "teams", self._teams),
            ("GET", rf"{org}/groups/{segment}/members", "team_members", self._team_members),
            (
                "DELETE",
                rf"{org}/groups/{segment}/members/{segment}",
                "remove_team_member",
                self._remove_team_member,
            ),
            (
                "GET",
                rf"/v2/repositories/{segment}/{segment}/groups",
                "repository_teams",
                self._repository_teams,
            ),
            ("POST", rf"/v2/repositories/{segment}/{segment}/groups", "give_team", self._give_team),
            ("GET", rf"/v2/auditlogs/{segment}", "audit_logs", self._audit_logs),
        ]

    def api(self, request: Request) -> Answer:
        if request.path == "/v2/auth/token" and request.method == "POST":
            return self._sign_in(request)
        header = str(request.environ.get("HTTP_AUTHORIZATION", ""))
        if not (header.startswith("Bearer ") and header[7:] in self._jwts):
            return problem(401, "authentication required")
        for method, pattern, name, handler in self._routes:
            if method == request.method and (match := pattern.fullmatch(request.path)):
                if name in self.forbidden:
                    return problem(403, "You do not have permission to perform this action.")
                return handler(request, *(unquote(group) for group in match.groups()))
        return problem(404, f"no route {request.method} {request.path}")

    def _sign_in(self, request: Request) -> Answer:
        body = request.json() or {}
        if not self.registry_credentials_ok(str(body.get("identifier", "")), str(body.get("secret", ""))):
            return problem(401, "incorrect username or password")
        self.sign_ins += 1
        jwt = "hub-jwt-" + secrets.token_urlsafe(16)
        self._jwts.add(jwt)
        return Answer(200, {"access_token": jwt}, operation="/v2/auth/token")

    def _org(self, name: str) -> Answer | None:
        return None if name == self.namespace else problem(404, f"organization {name} not found")

    # --- inventory -------------------------------------------------------------------------------

    def _repositories(self, request: Request, namespace: str) -> Answer:
        items = [self._repository_json(namespace, name) for name in self._repository_names(namespace)]
        return self._page(request, items)

    def _repository(self, request: Request, namespace: str, name: str) -> Answer:
        if name not in self._repository_names(namespace):
            return problem(404, f"repository {namespace}/{name} not found")
        return Answer(200, self._repository_info_json(namespace, name), operation=request.path)

    def _repository_names(self, namespace: str) -> list[str]:
        return [name.split("/", 1)[1] for name in self.catalog() if name.split("/", 1)[0] == namespace]

    def _tags(self, request: Request, namespace: str, name: str) -> Answer:
        repository = f"{namespace}/{name}"
        items = [self._tag_json(repository, tag, digest) for tag, digest in self.tags(repository)]
        return self._page(request, items)

    # --- credentials -----------------------------------------------------------------------------

    def _personal_tokens(self, request: Request) -> Answer:
        items = [self._personal_token_json(token) for token in self.personal_tokens]
        answer = self._page(request, items)
        answer.body["active_count"] = sum(token.is_active for token in self.personal_tokens)
        return answer

    def _patch_personal_token(self, request: Request, token_id: str) -> Answer:
        token = next((t for t in self.personal_tokens if t.uuid == token_id), None)
        if token is None:
            return problem(404, "token not found")
        body = request.json() or {}
        if "is_active" in body:
            token.is_active = bool(body["is_active"])
        self.writes.append(f"PATCH {request.path}")
        return Answer(200, self._personal_token_json(token), operation=request.path)

    def _org_tokens(self, request: Request, org: str) -> Answer:
        if refused := self._org(org):
            return refused
        items = [self._org_token_json(token) for token in self.org_tokens]
        answer = self._page(request, items)
        answer.body["total"] = answer.body.pop("count")  # the OAT list says total, not count
        return answer

    def _org_token(self, request: Request, org: str, token_id: str) -> Answer:
        token = next((t for t in self.org_tokens if t.id == token_id), None)
        if self._org(org) or token is None:
            return problem(404, "access token not found")
        return Answer(
            200, {**self._org_token_json(token), "resources": token.resources}, operation=request.path
        )

    def _patch_org_token(self, request: Request, org: str, token_id: str) -> Answer:
        token = next((t for t in self.org_tokens if t.id == token_id), None)
        if self._org(org) or token is None:
            return problem(404, "access token not found")
        body = request.json() or {}
        if "is_active" in body:
            token.is_active = bool(body["is_active"])
        self.writes.append(f"PATCH {request.path}")
        return Answer(
            200, {**self._org_token_json(token), "resources": token.resources}, operation=request.path
        )

    # --- members and teams -----------------------------------------------------------------------

    def _members(self, request: Request, org: str) -> Answer:
        if refused := self._org(org):
            return refused
        items = [self._member_json(member) for member in self.members.values()]
        answer = self._page(request, items)
        if self.members_shape == "array":
            answer.body = [answer.body]  # the described shape: a list holding the page envelope
        return answer

    def _remove_member(self, request: Request, org: str, username: str) -> Answer:
        if (refused := self._org(org)) or username not in self.members:
            return refused or problem(404, f"{username} is not a member")
        del self.members[username]
        for team in self.teams.values():
            if username in team.members:
                team.members.remove(username)
        self.writes.append(f"DELETE {request.path}")
        return Answer(204, None, operation=request.path)

    def _teams(self, request: Request, org: str) -> Answer:
        if refused := self._org(org):
            return refused
        return self._page(request, [self._team_json(team) for team in self.teams.values()])

    def _team_members(self, request: Request, org: str, name: str) -> Answer:
        team = self.teams.get(name)
        if self._org(org) or team is None:
            return problem(404, f"team {name} not found")
        items = [self._team_member_json(self.members[username]) for username in team.members]
        return self._page(request, items)

    def _remove_team_member(self, request: Request, org: str, name: str, username: str) -> Answer:
        team = self.teams.get(name)
        if self._org(org) or team is None or username not in team.members:
            return problem(404, f"{username} is not in team {name}")
        team.members.remove(username)
        self.writes.append(f"DELETE {request.path}")
        return Answer(204, None, operation=request.path)

    def _repository_teams(self, request: Request, namespace: str, name: str) -> Answer:
        repository = f"{namespace}/{name}"
        if name not in self._repository_names(namespace):
            return problem(404, f"repository {repository} not found")
        items = [
            {"group_name": team, "permission": permission, "group_id": self.teams[team].id}
            for (where, team), permission in sorted(self.team_permissions.items())
            if where == repository and team in self.teams
        ]
        return self._page(request, items)

    def _give_team(self, request: Request, namespace: str, name: str) -> Answer:
        body = request.json() or {}
        team = next((t for t in self.teams.values() if t.id == body.get("group_id")), None)
        if team is None or body.get("permission") not in PERMISSIONS:
            return problem(400, "group_id must name a team and permission be read, write or admin")
        if name not in self._repository_names(namespace):
            return problem(404, f"repository {namespace}/{name} not found")
        # Assumed (unverified): the POST sets the team's permission, replacing an earlier one.
        self.team_permissions[f"{namespace}/{name}", team.name] = str(body["permission"])
        self.writes.append(f"POST {request.path} {body['permission']} {team.name}")
        answer = {"group_name": team.name, "permission": body["permission"], "group_id": team.id}
        return Answer(200, answer, operation=request.path)

    def _audit_logs(self, request: Request, account: str) -> Answer:
        if refused := self._org(account):
            return refused
        wanted = {key: values[-1] for key, values in request.query.items() if key in ("action", "actor")}
        logs = [log for log in self.audit_logs if all(log.get(k) == v for k, v in wanted.items())]
        logs.sort(key=lambda log: str(log["timestamp"]), reverse=True)  # newest first
        size = int(request.query.get("page_size", ["25"])[0])
        return Answer(200, {"logs": logs[:size]}, operation=request.path)

    # --- JSON as the Hub writes it ---------------------------------------------------------------

    def _repository_json(self, namespace: str, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": namespace,
            "repository_type": "image",
            "status": 1,
            "status_description": "active",
            "description": "",
            "is_private": f"{namespace}/{name}" not in self.public,
            "star_count": 0,
            "pull_count": 0,
            "last_updated": hub_time(datetime(2026, 11, 1, tzinfo=UTC)),
            "date_registered": hub_time(datetime(2026, 1, 1, tzinfo=UTC)),
            "affiliation": "",
            "media_types": ["application/vnd.oci.image.manifest.v1+json"],
            "content_types": ["image"],
            "categories": [],
            "storage_size": 0,
        }

    def _repository_info_json(self, namespace: str, name: str) -> dict[str, Any]:
        """repository_info: the listing's fields plus the caller's rights and the immutable tags setting."""
        listed = self._repository_json(namespace, name)
        rules = self.immutable_tags.get(f"{namespace}/{name}")
        return {
            **{key: value for key, value in listed.items() if key != "date_registered"},
            "user": namespace,
            "is_automated": False,
            "date_registered": listed["date_registered"],
            "collaborator_count": 0,
            "has_starred": False,
            "full_description": "",
            "permissions": {"read": True, "write": True, "admin": True},
            "immutable_tags_settings": {"enabled": rules is not None, "rules": list(rules or [])},
        }

    def _tag_json(self, repository: str, tag: str, digest: str) -> dict[str, Any]:
        pushed = self.push_times.setdefault((repository, tag), datetime.now(UTC).replace(microsecond=0))
        pulled = self.pull_times.get((repository, tag))
        return {
            "id": self.id_of((repository, tag)),
            "creator": 1,
            "last_updated": hub_time(pushed),
            "last_updater": 1,
            "last_updater_username": self.username,
            "name": tag,
            "repository": self.id_of(repository),
            "full_size": 0,
            "v2": "true",
            "status": "active",
            "tag_last_pulled": hub_time(pulled),
            "tag_last_pushed": hub_time(pushed),
            # What the live service sends (a list of platform images); see specs.py for the patch.
            "images": [{"architecture": "amd64", "os": "linux", "digest": digest, "size": 0}],
        }

    def _personal_token_json(self, token: PersonalToken) -> dict[str, Any]:
        body: dict[str, Any] = {
            "uuid": token.uuid,
            "client_id": "HUB",
            "creator_ip": "127.0.0.1",
            "creator_ua": "fake",
            "created_at": hub_time(token.created_at),
            "generated_by": "manual",
            "is_active": token.is_active,
            "token": "",  # the secret is shown once, at creation
            "token_label": token.label,
            "scopes": token.scopes,
            "expires_at": hub_time(token.expires_at),
        }
        if token.last_used is not MISSING:
            body["last_used"] = hub_time(token.last_used) if isinstance(token.last_used, datetime) else None
        return body

    def _org_token_json(self, token: OrgToken) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": token.id,
            "label": token.label,
            "created_by": token.created_by,
            "is_active": token.is_active,
            "created_at": hub_time(token.created_at),
            "expires_at": hub_time(token.expires_at),
        }
        if token.last_used_at is not MISSING:
            used = token.last_used_at
            body["last_used_at"] = hub_time(used) if isinstance(used, datetime) else None
        return body

    def _member_json(self, member: Member) -> dict[str, Any]:
        return {
            "id": uuid.uuid5(uuid.NAMESPACE_URL, member.username).hex,
            "username": member.username,
            "full_name": member.full_name,
            "type": "User",
            "email": member.email,
            "role": member.role,
            "groups": sorted(t.name for t in self.teams.values() if member.username in t.members),
            "is_guest": member.is_guest,
            "date_joined": "2026-01-05T21:06:53.506400Z",
        }

    def _team_json(self, team: Team) -> dict[str, Any]:
        return {
            "id": team.id,
            "uuid": team.uuid,
            "name": team.name,
            "description": team.description,
            "member_count": len(team.members),
        }

    def _team_member_json(self, member: Member) -> dict[str, Any]:
        return {
            "id": uuid.uuid5(uuid.NAMESPACE_URL, member.username).hex,
            "username": member.username,
            "full_name": member.full_name,
            "type": "User",
            "email": member.email,
        }

    def _page(self, request: Request, items: list[Any]) -> Answer:
        page = max(1, int(request.query.get("page", ["1"])[0]))
        size = min(100, max(1, int(request.query.get("page_size", ["10"])[0])))
        following = (
            f"{self.url}{request.path}?page={page + 1}&page_size={size}" if page * size < len(items) else None
        )
        previous = f"{self.url}{request.path}?page={page - 1}&page_size={size}" if page > 1 else None
        body = {
            "count": len(items),
            "next": following,
            "previous": previous,
            "results": items[(page - 1) * size : page * size],
        }
        return Answer(200, body, operation=request.path)


def _flat(query: Query) -> dict[str, str]:
    return {key: values[-1] for key, values in query.items()}
