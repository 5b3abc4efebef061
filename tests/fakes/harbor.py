"""A Harbor v2.0 on loopback: the REST API from in-memory state, the registry API from a real docker-registry.

Harbor is one host serving its management API (`/api/v2.0`) and the distribution API (`/v2/`,
behind its token service at `/service/token`); so is this fake (tests/fakes/server.py). The REST
answers describe what the backing registry holds, with push and pull times kept here, and each is
checked against Harbor's own swagger file before it leaves.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

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

    def start(self) -> FakeHarbor:
        super().start()
        return self

    def project(self, name: str) -> int:
        return self.projects.setdefault(name, len(self.projects) + 1)

    def registry_credentials_ok(self, username: str, password: str) -> bool:
        return secrets.compare_digest(f"{username}:{password}", f"{self.username}:{self.password}")

    def check(self, request: Request, answer: Answer) -> None:
        HARBOR.validate(request.method, answer.operation, answer.body, status=answer.status)

    def api(self, request: Request) -> Answer:
        credentials = self.basic_credentials(request.environ)
        if credentials is None or not self.registry_credentials_ok(*credentials):
            return error(401, "UNAUTHORIZED", "unauthorized")
        if request.method != "GET":
            return error(405, "METHOD_NOT_ALLOWED", request.method)
        # PATH_INFO is decoded once, as Harbor's router sees it: a doubly encoded name is still one segment.
        path = request.path[len(API) :]
        routes: list[tuple[str, Callable[..., Answer]]] = [
            (r"/projects", self._list_projects),
            (r"/repositories", self._list_repositories),
            (r"/projects/([^/]+)/repositories", self._list_project_repositories),
            (r"/projects/([^/]+)/repositories/([^/]+)/artifacts", self._list_artifacts),
            (r"/projects/([^/]+)/repositories/([^/]+)/artifacts/([^/]+)", self._get_artifact),
        ]
        for pattern, handler in routes:
            if match := re.fullmatch(pattern, path):
                # Harbor wants nested repository names encoded twice (a/b → a%252Fb): undo both.
                return handler(request.query, *(unquote(unquote(group)) for group in match.groups()))
        return error(404, "NOT_FOUND", f"no route {path}")

    def _list_projects(self, query: Query) -> Answer:
        for name in {name.split("/", 1)[0] for name in self.catalog()}:
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
            "metadata": {"public": "false"},
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
        if page * size < len(items):
            headers["Link"] = f'<{API}{path}?page={page + 1}&page_size={size}>; rel="next"'
        return Answer(200, chunk, headers=headers, operation=template)
