"""A Harbor v2.0 on loopback: the REST API from in-memory state, the registry API from a real docker-registry.

Harbor is one host serving its management API (`/api/v2.0`) and the distribution API (`/v2/`,
behind its token service at `/service/token`); so is this fake (tests/fakes/server.py). The REST
answers describe what the backing registry holds, with push and pull times kept here, plus robots,
users, groups, project members, audit log and replication set up by each test; every answer is
checked against Harbor's own swagger file before it leaves, and every body the connector sends
(robot updates, new members, role changes) against the swagger's request schema.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote, urlencode

from jsonschema import Draft4Validator

from tests.fakes.server import Answer, LoopbackFake, Query, Request, error
from tests.fakes.specs import HARBOR

API = "/api/v2.0"
NEVER = "0001-01-01T00:00:00.000Z"  # Harbor's "never pulled" (registry-apis.md §9.3)


def harbor_time(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z") if moment else NEVER


class FakeHarbor(LoopbackFake):
    api_prefix = API
    token_path = "/service/token"
    service = "harbor-registry"

    def __init__(self, registry_url: str) -> None:
        super().__init__(registry_url)
        self.username = "robot$customs"
        self.password = secrets.token_urlsafe(16)
        self.projects: dict[str, int] = {}  # name → project_id
        self.push_times: dict[str, datetime] = {}  # digest → pushed
        self.pull_times: dict[str, datetime] = {}  # digest → last pulled
        self.public: set[str] = set()  # projects anyone may pull from
        self.robots: dict[int, dict[str, Any]] = {}  # robot id → Robot
        self.users: dict[int, dict[str, Any]] = {1: _user(1, "admin", sysadmin=True)}  # user id → UserResp
        self.groups: dict[int, dict[str, Any]] = {}  # group id → UserGroup
        self.members: dict[str, list[dict[str, Any]]] = {}  # project → ProjectMemberEntity list
        self.audit: list[dict[str, Any]] = []  # AuditLogExt entries, any order
        self.audit_api = "ext"  # "ext": /auditlog-exts (≥ 2.13); "legacy": only /audit-logs
        self.policies: list[dict[str, Any]] = []  # ReplicationPolicy
        self.executions: list[dict[str, Any]] = []  # ReplicationExecution
        self.forbidden: set[str] = set()  # "GET /robots": operations this account may not call (403)
        self.expired = False  # the account's robot expired: every API call is a 401
        self.link_header = True  # False: a proxy dropped Link, only X-Total-Count says there is more
        self.writes: list[str] = []  # "PUT /robots/3", in order: what the connector changed
        self.queries: list[str] = []  # "/robots?page=2&page_size=2": API reads with their query strings
        # Posture: project metadata beyond `public` ("auto_scan": "true"), each project's immutable tag
        # rules, and what /systeminfo says (Harbor's default install signs people in with db_auth).
        self.project_metadata: dict[str, dict[str, str]] = {}  # project → ProjectMetadata strings
        self.immutable_rules: dict[str, list[dict[str, Any]]] = {}  # project → ImmutableRule list
        self.system_info: dict[str, Any] = {"auth_mode": "db_auth", "self_registration": False}

    def start(self) -> FakeHarbor:
        super().start()
        return self

    def project(self, name: str) -> int:
        return self.projects.setdefault(name, len(self.projects) + 1)

    def registry_credentials_ok(self, username: str, password: str) -> bool:
        return secrets.compare_digest(f"{username}:{password}", f"{self.username}:{self.password}")

    def check(self, request: Request, answer: Answer) -> None:
        HARBOR.validate(request.method, answer.operation, answer.body, status=answer.status)

    # --- setting the scene ------------------------------------------------------------------------

    def add_user(self, username: str, **fields: Any) -> int:
        user_id = len(self.users) + 1
        self.users[user_id] = _user(user_id, username, **fields)
        return user_id

    def add_group(self, name: str, group_type: int, ldap_group_dn: str = "") -> int:
        group_id = len(self.groups) + 1
        self.groups[group_id] = {"id": group_id, "group_name": name, "group_type": group_type}
        if ldap_group_dn:
            self.groups[group_id]["ldap_group_dn"] = ldap_group_dn
        return group_id

    def add_member(self, project: str, *, role_id: int, user_id: int = 0, group_id: int = 0) -> int:
        member_id = self.id_of(("member", project, user_id, group_id))
        entity = (
            ("g", group_id, self.groups[group_id]["group_name"])
            if group_id
            else ("u", user_id, self.users[user_id]["username"])
        )
        self.members.setdefault(project, []).append(
            {
                "id": member_id,
                "project_id": self.project(project),
                "entity_type": entity[0],
                "entity_id": entity[1],
                "entity_name": entity[2],
                "role_id": role_id,
                "role_name": ROLE_NAMES[role_id],
            }
        )
        return member_id

    def add_robot(
        self,
        name: str,
        *,
        access: dict[str, list[str]],  # namespace ("*": every project) → actions on repositories
        expires_at: int = -1,
        disable: bool = False,
        editable: bool = True,
        creator: tuple[str, int] = ("local", 1),
        level: str = "",
        extra: list[dict[str, Any]] | None = None,
    ) -> int:
        robot_id = len(self.robots) + 1
        project_level = len(access) == 1 and "*" not in access and level != "system"
        self.robots[robot_id] = {
            "id": robot_id,
            "name": f"robot${next(iter(access))}+{name}" if project_level else f"robot${name}",
            "description": "",
            "level": level or ("project" if project_level else "system"),
            "duration": -1 if expires_at == -1 else 30,
            "editable": editable,
            "disable": disable,
            "expires_at": expires_at,
            "permissions": [
                {
                    "kind": "project",
                    "namespace": namespace,
                    "access": [{"resource": "repository", "action": a, "effect": "allow"} for a in actions],
                }
                for namespace, actions in access.items()
            ]
            + (extra or []),
            "creator_type": creator[0],
            "creator_ref": creator[1],
            "creation_time": harbor_time(datetime(2026, 2, 1, tzinfo=UTC)),
            "update_time": harbor_time(datetime(2026, 2, 1, tzinfo=UTC)),
        }
        return robot_id

    def log(
        self,
        username: str,
        at: datetime,
        operation: str = "pull",
        resource: str = "team/app",
        resource_type: str = "artifact",
    ) -> None:
        # Harbor logs an artifact push as its "create" (src/controller/event/metadata): never "push".
        assert operation in AUDIT_OPERATIONS, f"Harbor's audit log has no operation {operation!r}"
        self.audit.append(
            {
                "id": len(self.audit) + 1,
                "username": username,
                "resource": resource,
                "resource_type": resource_type,
                "operation": operation,
                "operation_description": f"{operation} {resource}",
                "operation_result": True,
                "op_time": harbor_time(at),
            }
        )

    def immutable(
        self, project: str, *, repositories: str = "**", tags: str = "**", disabled: bool = False
    ) -> int:
        """An immutable tag rule on a project, as Harbor's UI writes one (doublestar selectors)."""
        rules = self.immutable_rules.setdefault(project, [])
        rules.append(
            {
                "id": len(rules) + 1,
                "priority": 0,
                "disabled": disabled,
                "action": "immutable",
                "template": "immutable_template",
                "params": {},
                "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": tags}],
                "scope_selectors": {
                    "repository": [
                        {"kind": "doublestar", "decoration": "repoMatches", "pattern": repositories}
                    ]
                },
            }
        )
        return len(rules)

    def replicate(self, name: str, *, to: str, executions: list[dict[str, Any]]) -> int:
        policy_id = len(self.policies) + 1
        remote = {
            "id": 7,
            "name": "dr-site",
            "url": to,
            "type": "harbor",
            "insecure": False,
            "status": "healthy",
        }
        self.policies.append(
            {
                "id": policy_id,
                "name": name,
                "description": "",
                # Harbor names its own side as registry 0, "Local" (never null: the swagger wants an object).
                "src_registry": {"id": 0, "name": "Local", "url": "http://core:8080", "type": "harbor"},
                "dest_registry": remote,
                "dest_namespace": "",
                "dest_namespace_replace_count": -1,
                "trigger": {"type": "event_based", "trigger_settings": {"cron": ""}},
                "filters": [{"type": "name", "value": "payments/**", "decoration": "matches"}],
                "replicate_deletion": True,
                "deletion": True,
                "override": True,
                "enabled": True,
                "creation_time": harbor_time(datetime(2026, 1, 1, tzinfo=UTC)),
                "update_time": harbor_time(datetime(2026, 1, 1, tzinfo=UTC)),
                "speed": -1,
                "copy_by_chunk": False,
            }
        )
        for execution in executions:
            self.executions.append({"id": len(self.executions) + 1, "policy_id": policy_id, **execution})
        return policy_id

    # --- the API ---------------------------------------------------------------------------------

    def api(self, request: Request) -> Answer:
        credentials = self.basic_credentials(request.environ)
        if credentials is None or not self.registry_credentials_ok(*credentials) or self.expired:
            return error(401, "UNAUTHORIZED", "unauthorized")
        # PATH_INFO is decoded once, as Harbor's router sees it: a doubly encoded name is still one segment.
        path = request.path[len(API) :]
        self.queries.append(f"{path}?{request.environ.get('QUERY_STRING', '')}")
        routes: list[tuple[str, str, str, Callable[..., Answer]]] = [
            ("GET", r"/projects", "/projects", self._list_projects),
            ("GET", r"/repositories", "/repositories", self._list_repositories),
            (
                "GET",
                r"/projects/([^/]+)/repositories",
                "/projects/{project_name}/repositories",
                self._list_project_repositories,
            ),
            (
                "GET",
                r"/projects/([^/]+)/repositories/([^/]+)/artifacts",
                "/projects/{project_name}/repositories/{repository_name}/artifacts",
                self._list_artifacts,
            ),
            (
                "GET",
                r"/projects/([^/]+)/repositories/([^/]+)/artifacts/([^/]+)",
                "/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}",
                self._get_artifact,
            ),
            ("GET", r"/projects/([^/]+)/members", MEMBERS, self._list_members),
            ("POST", r"/projects/([^/]+)/members", MEMBERS, self._create_member),
            ("PUT", r"/projects/([^/]+)/members/(\d+)", MEMBER, self._update_member),
            ("DELETE", r"/projects/([^/]+)/members/(\d+)", MEMBER, self._delete_member),
            ("GET", r"/usergroups", "/usergroups", self._list_groups),
            ("GET", r"/usergroups/(\d+)", "/usergroups/{group_id}", self._get_group),
            ("GET", r"/users/(\d+)", "/users/{user_id}", self._get_user),
            ("GET", r"/users/current/permissions", "/users/current/permissions", self._current_permissions),
            ("GET", r"/robots", "/robots", self._list_robots),
            ("GET", r"/robots/(\d+)", ROBOT, self._get_robot),
            ("PUT", r"/robots/(\d+)", ROBOT, self._update_robot),
            ("DELETE", r"/robots/(\d+)", ROBOT, self._delete_robot),
            ("GET", r"/auditlog-exts", "/auditlog-exts", self._list_audit),
            ("GET", r"/audit-logs", "/audit-logs", self._list_audit),
            ("GET", r"/replication/policies", "/replication/policies", self._list_policies),
            ("GET", r"/replication/executions", "/replication/executions", self._list_executions),
            ("GET", r"/systeminfo", "/systeminfo", self._system_info),
            ("GET", r"/projects/([^/]+)/immutabletagrules", IMMUTABLE_RULES, self._list_immutable_rules),
        ]
        for method, pattern, template, handler in routes:
            if request.method == method and (match := re.fullmatch(pattern, path)):
                if f"{method} {template}" in self.forbidden:
                    return error(403, "FORBIDDEN", f"{self.username} may not {method} {template}")
                if template == "/auditlog-exts" and self.audit_api != "ext":
                    return error(404, "NOT_FOUND", f"no route {path}")  # an older Harbor
                # Harbor wants nested repository names encoded twice (a/b → a%252Fb): undo both.
                groups = (unquote(unquote(group)) for group in match.groups())
                if method == "GET":
                    return handler(request.query, *groups)
                self.writes.append(f"{method} {request.path}")
                return handler(request, *groups)
        if any(re.fullmatch(pattern, path) for _, pattern, _, _ in routes):
            return error(405, "METHOD_NOT_ALLOWED", request.method)
        return error(404, "NOT_FOUND", f"no route {path}")

    def _list_projects(self, query: Query) -> Answer:
        for name in {name.split("/", 1)[0] for name in self.catalog()} | set(self.members) | self.public:
            self.project(name)
        items = [self._project_json(name, pid) for name, pid in sorted(self.projects.items())]
        return self._page(items, query, "/projects", "/projects")

    def _list_repositories(self, query: Query) -> Answer:
        items = [self._repository_json(name) for name in self.catalog()]
        return self._page(items, query, "/repositories", "/repositories")

    def _list_project_repositories(self, query: Query, project: str) -> Answer:
        names = [name for name in self.catalog() if name.split("/", 1)[0] == project]
        template = "/projects/{project_name}/repositories"
        return self._page(
            [self._repository_json(n) for n in names], query, template, f"/projects/{project}/repositories"
        )

    def _list_artifacts(self, query: Query, project: str, repository: str) -> Answer:
        full = f"{project}/{repository}"
        by_digest: Query = {}
        for tag, digest in self.tags(full):
            by_digest.setdefault(digest, []).append(tag)
        items = [self._artifact_json(full, digest, tags) for digest, tags in sorted(by_digest.items())]
        template = "/projects/{project_name}/repositories/{repository_name}/artifacts"
        encoded = quote(quote(repository, safe=""), safe="")
        return self._page(items, query, template, f"/projects/{project}/repositories/{encoded}/artifacts")

    def _get_artifact(self, query: Query, project: str, repository: str, reference: str) -> Answer:
        full = f"{project}/{repository}"
        tags = [tag for tag, digest in self.tags(full) if reference in (digest, tag)]
        digest = reference if reference.startswith("sha256:") else self.digest(full, reference)
        if digest is None:
            return error(404, "NOT_FOUND", f"{full}@{reference}")
        template = "/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}"
        return Answer(200, self._artifact_json(full, digest, tags), operation=template)

    # --- JSON as Harbor writes it ----------------------------------------------------------------

    def _project_json(self, name: str, project_id: int) -> dict[str, Any]:
        return {
            "project_id": project_id,
            "name": name,
            "owner_id": 1,
            "owner_name": "admin",
            "repo_count": sum(1 for n in self.catalog() if n.split("/", 1)[0] == name),
            "creation_time": harbor_time(datetime(2026, 1, 1, tzinfo=UTC)),
            "update_time": harbor_time(datetime(2026, 1, 1, tzinfo=UTC)),
            "metadata": {
                "public": "true" if name in self.public else "false",
                **self.project_metadata.get(name, {}),
            },
        }

    def _repository_json(self, name: str) -> dict[str, Any]:
        return {
            "id": self.id_of(name),
            "project_id": self.project(name.split("/", 1)[0]),
            "name": name,
            "artifact_count": 0,
            "pull_count": 0,
            "creation_time": harbor_time(datetime(2026, 1, 1, tzinfo=UTC)),
            "update_time": harbor_time(datetime(2026, 1, 1, tzinfo=UTC)),
        }

    def _artifact_json(self, repository: str, digest: str, tags: list[str]) -> dict[str, Any]:
        pushed = self.push_times.setdefault(digest, datetime.now(UTC).replace(microsecond=0))
        pulled = self.pull_times.get(digest)
        artifact_id = self.id_of(digest)
        return {
            "id": artifact_id,
            "type": "IMAGE",
            "media_type": "application/vnd.oci.image.config.v1+json",
            "manifest_media_type": "application/vnd.oci.image.manifest.v1+json",
            "project_id": self.project(repository.split("/", 1)[0]),
            "repository_id": self.id_of(repository),
            "repository_name": repository,
            "digest": digest,
            "size": 0,
            "push_time": harbor_time(pushed),
            "pull_time": harbor_time(pulled),
            "tags": [
                {
                    "id": self.id_of((digest, tag)),
                    "repository_id": self.id_of(repository),
                    "artifact_id": artifact_id,
                    "name": tag,
                    "push_time": harbor_time(pushed),
                    "pull_time": harbor_time(pulled),
                    "immutable": False,
                }
                for tag in tags
            ],
        }

    def _page(self, items: list[Any], query: Query, template: str, path: str) -> Answer:
        page = max(1, int(query.get("page", ["1"])[0]))
        size = min(100, max(1, int(query.get("page_size", ["10"])[0])))
        chunk = items[(page - 1) * size : page * size]
        headers = {"X-Total-Count": str(len(items))}
        if page * size < len(items) and self.link_header:
            # Harbor's link keeps the request's filters (registry-apis.md §3.1).
            kept = [(k, v) for k, values in query.items() if k not in ("page", "page_size") for v in values]
            following = urlencode([*kept, ("page", page + 1), ("page_size", size)])
            headers["Link"] = f'<{API}{path}?{following}>; rel="next"'
        return Answer(200, chunk, headers=headers, operation=template)

    # --- members, users and groups ---------------------------------------------------------------

    def _list_members(self, query: Query, project: str) -> Answer:
        self.project(project)
        items = list(self.members.get(project, []))
        if name := query.get("entityname", [""])[0]:
            items = [m for m in items if name in m["entity_name"]]
        return self._page(items, query, MEMBERS, f"/projects/{project}/members")

    def _create_member(self, request: Request, project: str) -> Answer:
        body = self._request_body(request, "ProjectMember")
        role = body.get("role_id")
        if role not in ROLE_NAMES:
            return error(400, "BAD_REQUEST", f"role {role}")
        user, group = body.get("member_user") or {}, body.get("member_group") or {}
        if user:
            if user.get("user_id") not in self.users:
                return error(404, "NOT_FOUND", "no such user")
            kind, entity_id = "u", int(user["user_id"])
        elif group.get("id"):
            if group["id"] not in self.groups:
                return error(404, "NOT_FOUND", "no such group")
            kind, entity_id = "g", int(group["id"])
        else:  # Harbor creates an OIDC or LDAP group the first time a project names it
            key = "ldap_group_dn" if group.get("group_type") == 1 else "group_name"
            found = [g for g in self.groups.values() if g.get(key) == group.get(key)]
            entity_id = (
                found[0]["id"]
                if found
                else self.add_group(
                    str(group.get("group_name") or group.get("ldap_group_dn")),
                    int(group.get("group_type", 0)),
                    ldap_group_dn=str(group.get("ldap_group_dn", "")),
                )
            )
            kind = "g"
        existing = self.members.get(project, [])
        if any(m["entity_type"] == kind and m["entity_id"] == entity_id for m in existing):
            return error(409, "CONFLICT", "already a member")
        member_id = self.add_member(
            project, role_id=int(role), **({"group_id": entity_id} if kind == "g" else {"user_id": entity_id})
        )
        return Answer(
            201,
            headers={"Location": f"{API}/projects/{project}/members/{member_id}"},
            operation=MEMBERS,
        )

    def _update_member(self, request: Request, project: str, member_id: str) -> Answer:
        body = self._request_body(request, "RoleRequest")
        member = self._member(project, int(member_id))
        if member is None:
            return error(404, "NOT_FOUND", f"member {member_id}")
        if body.get("role_id") not in ROLE_NAMES:
            return error(400, "BAD_REQUEST", f"role {body.get('role_id')}")
        member["role_id"], member["role_name"] = body["role_id"], ROLE_NAMES[body["role_id"]]
        return Answer(200, operation=MEMBER)

    def _delete_member(self, request: Request, project: str, member_id: str) -> Answer:
        member = self._member(project, int(member_id))
        if member is None:
            return error(404, "NOT_FOUND", f"member {member_id}")
        self.members[project].remove(member)
        return Answer(200, operation=MEMBER)

    def _member(self, project: str, member_id: int) -> dict[str, Any] | None:
        return next((m for m in self.members.get(project, []) if m["id"] == member_id), None)

    def _list_groups(self, query: Query) -> Answer:
        items = list(self.groups.values())
        for key in ("group_name", "ldap_group_dn"):
            if value := query.get(key, [""])[0]:
                items = [g for g in items if value in str(g.get(key, ""))]  # Harbor matches by substring
        return self._page(items, query, "/usergroups", "/usergroups")

    def _get_group(self, query: Query, group_id: str) -> Answer:
        group = self.groups.get(int(group_id))
        if group is None:
            return error(404, "NOT_FOUND", f"group {group_id}")
        return Answer(200, group, operation="/usergroups/{group_id}")

    def _get_user(self, query: Query, user_id: str) -> Answer:
        user = self.users.get(int(user_id))
        if user is None:
            return error(404, "NOT_FOUND", f"user {user_id}")
        return Answer(200, user, operation="/users/{user_id}")

    def _current_permissions(self, query: Query) -> Answer:
        """What this account may do in a project (`scope=/project/<id>`): every call of
        PROJECT_PERMISSIONS a test has not forbidden, so the answer and the calls agree."""
        scope = query.get("scope", [""])[0]
        match = re.fullmatch(r"/project/(\d+)", scope)
        if match is None or int(match.group(1)) not in self.projects.values():
            return Answer(200, [], operation="/users/current/permissions")  # nothing held there
        prefix = "" if query.get("relative", ["false"])[0] == "true" else f"{scope}/"
        held = [
            {"resource": f"{prefix}{resource}", "action": action}
            for (resource, action), call in PROJECT_PERMISSIONS.items()
            if call not in self.forbidden
        ]
        return Answer(200, held, operation="/users/current/permissions")

    # --- robots ----------------------------------------------------------------------------------

    def _list_robots(self, query: Query) -> Answer:
        return self._page(list(self.robots.values()), query, "/robots", "/robots")

    def _get_robot(self, query: Query, robot_id: str) -> Answer:
        robot = self.robots.get(int(robot_id))
        if robot is None:
            return error(404, "NOT_FOUND", f"robot {robot_id}")
        return Answer(200, robot, operation=ROBOT)

    def _update_robot(self, request: Request, robot_id: str) -> Answer:
        body = self._request_body(request, "Robot")
        robot = self.robots.get(int(robot_id))
        if robot is None:
            return error(404, "NOT_FOUND", f"robot {robot_id}")
        if not robot["editable"]:
            return error(403, "FORBIDDEN", "the robot account is not editable")
        # Harbor's update replaces the robot: a missing name, level or permissions is refused.
        if (
            body.get("name") != robot["name"]
            or body.get("level") != robot["level"]
            or "permissions" not in body
        ):
            return error(400, "BAD_REQUEST", "name, level and permissions are required and cannot change")
        robot.update({k: body[k] for k in ("description", "disable", "permissions", "duration") if k in body})
        return Answer(200, operation=ROBOT)

    def _delete_robot(self, request: Request, robot_id: str) -> Answer:
        if self.robots.pop(int(robot_id), None) is None:
            return error(404, "NOT_FOUND", f"robot {robot_id}")
        return Answer(200, operation=ROBOT)

    # --- audit log and replication ---------------------------------------------------------------

    def _list_audit(self, query: Query) -> Answer:
        items = list(self.audit)
        for condition in [c for c in query.get("q", [""])[0].split(",") if c]:
            key, _, value = condition.partition("=")
            items = [entry for entry in items if str(entry.get(key)) == value]
        if query.get("sort", [""])[0] == "-op_time":
            items.sort(key=lambda entry: entry["op_time"], reverse=True)
        if self.audit_api == "ext":
            return self._page(items, query, "/auditlog-exts", "/auditlog-exts")
        legacy = [{k: v for k, v in e.items() if not k.startswith("operation_")} for e in items]
        return self._page(legacy, query, "/audit-logs", "/audit-logs")

    def _list_policies(self, query: Query) -> Answer:
        return self._page(self.policies, query, "/replication/policies", "/replication/policies")

    def _list_executions(self, query: Query) -> Answer:
        items = list(self.executions)
        if policy := query.get("policy_id", [""])[0]:
            items = [e for e in items if str(e["policy_id"]) == policy]
        if query.get("sort", [""])[0] == "-start_time":
            items.sort(key=lambda e: e.get("start_time", ""), reverse=True)
        return self._page(items, query, "/replication/executions", "/replication/executions")

    # --- posture ---------------------------------------------------------------------------------

    def _system_info(self, query: Query) -> Answer:
        return Answer(200, dict(self.system_info), operation="/systeminfo")

    def _list_immutable_rules(self, query: Query, project: str) -> Answer:
        rules = self.immutable_rules.get(project, [])
        return self._page(rules, query, IMMUTABLE_RULES, f"/projects/{project}/immutabletagrules")

    # --- what the connector sends ----------------------------------------------------------------

    def _request_body(self, request: Request, definition: str) -> dict[str, Any]:
        """The JSON body, checked against the swagger's request schema: a connector sending a shape
        Harbor does not take fails its test, as a fake answering in one would."""
        body = request.json()
        schema = {"$ref": f"#/definitions/{definition}", "definitions": HARBOR.document["definitions"]}
        problems = [e.message for e in Draft4Validator(schema).iter_errors(body)]
        if not isinstance(body, dict) or problems:
            self.drift.append(f"{request.method} {request.path} sent a body Harbor does not take: {problems}")
            return {}
        return body


MEMBERS = "/projects/{project_name_or_id}/members"
MEMBER = "/projects/{project_name_or_id}/members/{mid}"
ROBOT = "/robots/{robot_id}"
IMMUTABLE_RULES = "/projects/{project_name_or_id}/immutabletagrules"
# What /users/current/permissions reports of a project, each with the call it lets the account make.
PROJECT_PERMISSIONS: dict[tuple[str, str], str] = {
    ("project", "read"): "GET /projects",
    ("repository", "list"): "GET /projects/{project_name}/repositories",
    ("member", "list"): f"GET {MEMBERS}",
    ("member", "create"): f"POST {MEMBERS}",
    ("member", "update"): f"PUT {MEMBER}",
    ("member", "delete"): f"DELETE {MEMBER}",
    ("robot", "list"): "GET /robots",
    ("robot", "read"): f"GET {ROBOT}",
    ("robot", "update"): f"PUT {ROBOT}",
    ("robot", "delete"): f"DELETE {ROBOT}",
    ("immutable-tag", "list"): f"GET {IMMUTABLE_RULES}",
}
ROLE_NAMES = {1: "projectAdmin", 2: "developer", 3: "guest", 4: "maintainer", 5: "limitedGuest"}
# What Harbor's audit logs record as `operation` (rbac action names): the legacy log keeps pull,
# create and delete; the extended log (2.13) adds update.
AUDIT_OPERATIONS = frozenset({"pull", "create", "delete", "update"})
OIDC_CLI_SECRET = "cli-secret-" + secrets.token_urlsafe(12)  # must never reach Customs' records


def _user(
    user_id: int, username: str, *, sysadmin: bool = False, email: str = "", oidc_subiss: str = ""
) -> dict[str, Any]:
    """A UserResp; `oidc_subiss` (subject then issuer, as Harbor joins them) makes it an OIDC user, whose
    record Harbor returns with the CLI secret in clear to an admin (src/server/v2.0/handler/model)."""
    created = harbor_time(datetime(2026, 1, 1, tzinfo=UTC))
    meta = {
        "oidc_user_meta": {
            "id": user_id,
            "user_id": user_id,
            "subiss": oidc_subiss,
            "secret": OIDC_CLI_SECRET,
            "creation_time": created,
            "update_time": created,
        }
    }
    return {
        **(meta if oidc_subiss else {}),
        "user_id": user_id,
        "username": username,
        "email": email or f"{username}@example.test",
        "realname": username,
        "comment": "",
        "sysadmin_flag": sysadmin,
        "admin_role_in_auth": False,
        "creation_time": created,
        "update_time": created,
    }
