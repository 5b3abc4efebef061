"""Docker Hub on loopback: the Hub API from in-memory state, the registry API from a real docker-registry.

The real service is two hosts (hub.docker.com and registry-1.docker.io, with auth.docker.io); the
fake serves both from one address, telling them apart by path: the Hub API's `/v2/namespaces/…`,
`/v2/auth/…` and friends, and the registry's `/v2/<name>/…`. Every Hub answer is checked against
Docker Hub's OpenAPI description before it leaves (tests/fakes/specs.py, with its known deviations).
"""

from __future__ import annotations

import re
import secrets
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
)


def hub_time(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if moment else None


def problem(status: int, detail: str) -> Answer:
    return Answer(status, {"detail": detail, "message": detail})


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

    # --- the Hub API -----------------------------------------------------------------------------

    def api(self, request: Request) -> Answer:
        if request.path == "/v2/auth/token" and request.method == "POST":
            return self._sign_in(request)
        header = str(request.environ.get("HTTP_AUTHORIZATION", ""))
        if not (header.startswith("Bearer ") and header[7:] in self._jwts):
            return problem(401, "authentication required")
        if request.method != "GET":
            return problem(405, f"{request.method} is not supported by the fake")
        if match := re.fullmatch(r"/v2/namespaces/([^/]+)/repositories", request.path):
            return self._repositories(request, unquote(match.group(1)))
        if match := re.fullmatch(r"/v2/namespaces/([^/]+)/repositories/([^/]+)/tags", request.path):
            return self._tags(request, unquote(match.group(1)), unquote(match.group(2)))
        return problem(404, f"no route {request.path}")

    def _sign_in(self, request: Request) -> Answer:
        body = request.json() or {}
        if not self.registry_credentials_ok(str(body.get("identifier", "")), str(body.get("secret", ""))):
            return problem(401, "incorrect username or password")
        self.sign_ins += 1
        jwt = "hub-jwt-" + secrets.token_urlsafe(16)
        self._jwts.add(jwt)
        return Answer(200, {"access_token": jwt}, operation="/v2/auth/token")

    def _repositories(self, request: Request, namespace: str) -> Answer:
        names = [name.split("/", 1)[1] for name in self.catalog() if name.split("/", 1)[0] == namespace]
        items = [self._repository_json(namespace, name) for name in names]
        return self._page(request, items)

    def _tags(self, request: Request, namespace: str, name: str) -> Answer:
        repository = f"{namespace}/{name}"
        items = [self._tag_json(repository, tag, digest) for tag, digest in self.tags(repository)]
        return self._page(request, items)

    # --- JSON as the Hub writes it ---------------------------------------------------------------

    def _repository_json(self, namespace: str, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": namespace,
            "repository_type": "image",
            "status": 1,
            "status_description": "active",
            "description": "",
            "is_private": True,
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
