"""A Harbor v2.0 on loopback: the REST API from in-memory state, the registry API from a real docker-registry.

Harbor is one host serving both its management API (`/api/v2.0`) and the distribution API (`/v2/`,
behind its token service at `/service/token`). The fake does the same: `/v2/` is proxied to a real
`docker-registry` (so manifests, digests and blobs are real), and the REST answers describe what
that registry holds, with push and pull times, robots and members kept here. Every JSON answer is
validated against Harbor's own swagger file before it leaves; a drift is answered with a 500 and
kept in `drift`, which the fixture checks, so a fake that lies about Harbor fails its test.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import socketserver
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, quote, unquote
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from tests.fakes.specs import HARBOR, FakeDrift
from tests.registries.harness import LOOPBACK, loopback_session

API = "/api/v2.0"
NEVER = "0001-01-01T00:00:00.000Z"  # Harbor's "never pulled" (registry-apis.md §9.3)
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json"
)

Environ = dict[str, Any]
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def harbor_time(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z") if moment else NEVER


@dataclass
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    template: str = ""  # the swagger operation the body is validated against


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (the base class's name)
        pass


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


@dataclass
class FakeHarbor:
    registry_url: str  # the real docker-registry holding the content
    username: str = "robot$customs"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    projects: dict[str, int] = field(default_factory=dict)  # name → project_id
    push_times: dict[str, datetime] = field(default_factory=dict)  # digest → pushed
    pull_times: dict[str, datetime] = field(default_factory=dict)  # digest → last pulled
    fail_next: list[Answer] = field(default_factory=list)  # answers served before real ones (faults)
    # Applied to every REST body before validation: how a test proves the validation bites.
    mutate: Callable[[Any], Any] | None = None
    drift: list[str] = field(default_factory=list)
    requests_seen: list[str] = field(default_factory=list)
    _server: WSGIServer | None = None
    _tokens: set[str] = field(default_factory=set)
    _ids: dict[object, int] = field(default_factory=dict)

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://{LOOPBACK}:{self._server.server_port}"

    def start(self) -> FakeHarbor:
        self._server = make_server(LOOPBACK, 0, self, server_class=_ThreadingServer, handler_class=_Quiet)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def id_of(self, key: object) -> int:
        """A stable numeric id per object, as Harbor's database would give."""
        return self._ids.setdefault(key, len(self._ids) + 1)

    def project(self, name: str) -> int:
        return self.projects.setdefault(name, len(self.projects) + 1)

    # --- WSGI ------------------------------------------------------------------------------------

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        # PATH_INFO is decoded once, as Harbor's router sees it: a doubly encoded name is still one segment.
        path, method = str(environ.get("PATH_INFO", "")), str(environ["REQUEST_METHOD"])
        self.requests_seen.append(f"{method} {path}")
        if path.startswith("/v2/") or path == "/v2":
            return self._proxy(environ, start_response)
        if path == "/service/token":
            answer = self._token(environ)
        elif not path.startswith(API + "/"):
            answer = Answer(404, {"errors": [{"code": "NOT_FOUND", "message": "not found"}]})
        elif self.fail_next:
            answer = self.fail_next.pop(0)
        elif not self._authorised(environ):
            answer = Answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "unauthorized"}]})
        else:
            answer = self._api(method, path[len(API) :], parse_qs(environ.get("QUERY_STRING", "")))
        return self._send(answer, start_response)

    def _send(self, answer: Answer, start_response: StartResponse) -> Iterable[bytes]:
        if answer.template and 200 <= answer.status < 300:
            if self.mutate is not None:
                answer.body = self.mutate(answer.body)
            try:
                HARBOR.validate("get", answer.template, answer.body, status=answer.status)
            except FakeDrift as drift:
                self.drift.append(str(drift))
                answer = Answer(500, {"errors": [{"code": "FAKE_DRIFT", "message": str(drift)}]})
        body = json.dumps(answer.body).encode() if answer.body is not None else b""
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        start_response(f"{answer.status} {_reason(answer.status)}", headers + list(answer.headers.items()))
        return [body]

    def _authorised(self, environ: Environ) -> bool:
        header = environ.get("HTTP_AUTHORIZATION", "")
        if not header.lower().startswith("basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return secrets.compare_digest(f"{user}:{password}", f"{self.username}:{self.password}")

    # --- the registry side: token service and /v2 ------------------------------------------------

    def _token(self, environ: Environ) -> Answer:
        if not self._authorised(environ):
            return Answer(401, {"errors": [{"code": "UNAUTHORIZED", "message": "unauthorized"}]})
        token = secrets.token_urlsafe(16)
        self._tokens.add(token)
        return Answer(200, {"token": token, "expires_in": 1800})

    def _proxy(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        header = environ.get("HTTP_AUTHORIZATION", "")
        if not (header.startswith("Bearer ") and header[7:] in self._tokens):
            challenge = f'Bearer realm="{self.url}/service/token",service="harbor-registry"'
            return self._send(
                Answer(
                    401,
                    {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
                    headers={"WWW-Authenticate": challenge},
                ),
                start_response,
            )
        query = environ.get("QUERY_STRING", "")
        url = f"{self.registry_url}{environ.get('PATH_INFO', '')}" + (f"?{query}" if query else "")
        upstream = loopback_session().request(
            environ["REQUEST_METHOD"],
            url,
            headers={"Accept": environ.get("HTTP_ACCEPT", MANIFEST_TYPES)},
            timeout=10,
        )
        passed = ("Content-Type", "Docker-Content-Digest", "Content-Length", "Link")
        headers = [(name, upstream.headers[name]) for name in passed if name in upstream.headers]
        start_response(f"{upstream.status_code} {_reason(upstream.status_code)}", headers)
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [upstream.content]

    # --- the REST side ---------------------------------------------------------------------------

    def _api(self, method: str, path: str, query: dict[str, list[str]]) -> Answer:
        if method != "GET":
            return Answer(405, {"errors": [{"code": "METHOD_NOT_ALLOWED", "message": method}]})
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
                return handler(query, *(unquote(unquote(group)) for group in match.groups()))
        return Answer(404, {"errors": [{"code": "NOT_FOUND", "message": f"no route {path}"}]})

    def _list_projects(self, query: dict[str, list[str]]) -> Answer:
        for name in {name.split("/", 1)[0] for name in self._catalog()}:
            self.project(name)
        items = [self._project_json(name, pid) for name, pid in sorted(self.projects.items())]
        return self._page(items, query, "/projects", "/projects")

    def _list_repositories(self, query: dict[str, list[str]]) -> Answer:
        items = [self._repository_json(name) for name in self._catalog()]
        return self._page(items, query, "/repositories", "/repositories")

    def _list_project_repositories(self, query: dict[str, list[str]], project: str) -> Answer:
        names = [name for name in self._catalog() if name.split("/", 1)[0] == project]
        template = "/projects/{project_name}/repositories"
        return self._page(
            [self._repository_json(n) for n in names], query, template, f"/projects/{project}/repositories"
        )

    def _list_artifacts(self, query: dict[str, list[str]], project: str, repository: str) -> Answer:
        full = f"{project}/{repository}"
        by_digest: dict[str, list[str]] = {}
        for tag, digest in self._tags(full):
            by_digest.setdefault(digest, []).append(tag)
        items = [self._artifact_json(full, digest, tags) for digest, tags in sorted(by_digest.items())]
        template = "/projects/{project_name}/repositories/{repository_name}/artifacts"
        encoded = quote(quote(repository, safe=""), safe="")
        return self._page(items, query, template, f"/projects/{project}/repositories/{encoded}/artifacts")

    def _get_artifact(
        self, query: dict[str, list[str]], project: str, repository: str, reference: str
    ) -> Answer:
        full = f"{project}/{repository}"
        tags = [tag for tag, digest in self._tags(full) if reference in (digest, tag)]
        digest = reference if reference.startswith("sha256:") else self._digest(full, reference)
        if digest is None:
            return Answer(404, {"errors": [{"code": "NOT_FOUND", "message": f"{full}@{reference}"}]})
        template = "/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}"
        return Answer(200, self._artifact_json(full, digest, tags), template=template)

    # --- what the backing registry holds ---------------------------------------------------------

    def _catalog(self) -> list[str]:
        response = loopback_session().get(f"{self.registry_url}/v2/_catalog?n=1000", timeout=10)
        return sorted(response.json().get("repositories") or [])

    def _tags(self, repository: str) -> Iterator[tuple[str, str]]:
        response = loopback_session().get(f"{self.registry_url}/v2/{repository}/tags/list", timeout=10)
        for tag in sorted(response.json().get("tags") or []) if response.ok else []:
            digest = self._digest(repository, tag)
            if digest:
                yield tag, digest

    def _digest(self, repository: str, reference: str) -> str | None:
        response = loopback_session().head(
            f"{self.registry_url}/v2/{repository}/manifests/{reference}",
            headers={"Accept": MANIFEST_TYPES},
            timeout=10,
        )
        return response.headers.get("Docker-Content-Digest") if response.ok else None

    # --- JSON as Harbor writes it ----------------------------------------------------------------

    def _project_json(self, name: str, project_id: int) -> dict[str, Any]:
        return {
            "project_id": project_id,
            "name": name,
            "owner_id": 1,
            "owner_name": "admin",
            "repo_count": sum(1 for n in self._catalog() if n.split("/", 1)[0] == name),
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

    def _page(self, items: list[Any], query: dict[str, list[str]], template: str, path: str) -> Answer:
        page = max(1, int(query.get("page", ["1"])[0]))
        size = min(100, max(1, int(query.get("page_size", ["10"])[0])))
        chunk = items[(page - 1) * size : page * size]
        headers = {"X-Total-Count": str(len(items))}
        if page * size < len(items):
            headers["Link"] = f'<{API}{path}?page={page + 1}&page_size={size}>; rel="next"'
        return Answer(200, chunk, headers=headers, template=template)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
