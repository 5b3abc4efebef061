"""What every fake vendor registry shares: a loopback HTTP server, spec checks, faults, and a real /v2.

A vendor fake answers its management API from in-memory state (each JSON answer checked against the
vendor's description before it leaves) and proxies the registry API (`/v2/`) to a real
`docker-registry`, behind a bearer challenge and a token endpoint that accepts the fake's own
credentials. Connectors then read real manifests and digests through the same authentication dance
as against the vendor.
"""

from __future__ import annotations

import base64
import json
import secrets
import socketserver
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from tests.fakes.specs import FakeDrift
from tests.registries.harness import LOOPBACK, loopback_session

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json"
)

Environ = dict[str, Any]
StartResponse = Callable[[str, list[tuple[str, str]]], Any]
Query = dict[str, list[str]]


@dataclass
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    # The operation the body is checked against: a swagger path template, or the request path for
    # OpenAPI 3 descriptions that match concrete paths themselves. Empty: not a vendor API answer.
    operation: str = ""


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # decoded once, as the vendor's router sees it
    query: Query
    environ: Environ

    def json(self) -> Any:
        length = int(self.environ.get("CONTENT_LENGTH") or 0)
        raw = self.environ["wsgi.input"].read(length) if length else b""
        return json.loads(raw) if raw else None


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (the base class's name)
        pass


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


def error(status: int, code: str, message: str) -> Answer:
    return Answer(status, {"errors": [{"code": code, "message": message}]})


class LoopbackFake:
    """Subclasses set `api_prefix` and implement `api()` and `check()`; the rest is shared."""

    api_prefix = "/api"
    token_path = "/service/token"
    service = "fake-registry"

    def __init__(self, registry_url: str) -> None:
        self.registry_url = registry_url  # the real docker-registry holding the content
        self.fail_next: list[Answer] = []  # answers served before real ones: faults on demand
        # Applied to every vendor-API body before it is checked: how a test proves the check bites.
        self.mutate: Callable[[Any], Any] | None = None
        self.drift: list[str] = []
        self.requests_seen: list[str] = []
        self._server: WSGIServer | None = None
        self._registry_tokens: set[str] = set()
        self._ids: dict[object, int] = {}

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://{LOOPBACK}:{self._server.server_port}"

    def start(self) -> LoopbackFake:
        self._server = make_server(LOOPBACK, 0, self, server_class=_ThreadingServer, handler_class=_Quiet)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def id_of(self, key: object) -> int:
        """A stable numeric id per object, as the vendor's database would give."""
        return self._ids.setdefault(key, len(self._ids) + 1)

    # --- to implement ----------------------------------------------------------------------------

    def api(self, request: Request) -> Answer:
        raise NotImplementedError

    def check(self, request: Request, answer: Answer) -> None:
        """Raise FakeDrift when the answer is not what the vendor's description allows."""
        raise NotImplementedError

    def registry_credentials_ok(self, username: str, password: str) -> bool:
        raise NotImplementedError

    # --- WSGI ------------------------------------------------------------------------------------

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path, method = str(environ.get("PATH_INFO", "")), str(environ["REQUEST_METHOD"])
        self.requests_seen.append(f"{method} {path}")
        request = Request(method, path, parse_qs(str(environ.get("QUERY_STRING", ""))), environ)
        if path == "/v2" or (path.startswith("/v2/") and not self.owns_v2_path(path)):
            return self._proxy(environ, start_response)
        if path == self.token_path:
            return self._send(request, self._registry_token(environ), start_response)
        if not path.startswith(self.api_prefix + "/") and not self.owns_v2_path(path):
            return self._send(request, error(404, "NOT_FOUND", "not found"), start_response)
        answer = self.fail_next.pop(0) if self.fail_next else self.api(request)
        return self._send(request, answer, start_response)

    def owns_v2_path(self, path: str) -> bool:
        """Whether a /v2/... path belongs to the vendor API (Docker Hub's does) rather than the registry."""
        return False

    def _send(self, request: Request, answer: Answer, start_response: StartResponse) -> Iterable[bytes]:
        if answer.operation and 200 <= answer.status < 300:
            if self.mutate is not None:
                answer.body = self.mutate(answer.body)
            try:
                self.check(request, answer)
            except FakeDrift as drift:
                self.drift.append(str(drift))
                answer = error(500, "FAKE_DRIFT", str(drift))
        body = json.dumps(answer.body).encode() if answer.body is not None else b""
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        start_response(f"{answer.status} {_reason(answer.status)}", headers + list(answer.headers.items()))
        return [body]

    # --- the registry side: token endpoint and /v2 -----------------------------------------------

    @staticmethod
    def basic_credentials(environ: Environ) -> tuple[str, str] | None:
        header = str(environ.get("HTTP_AUTHORIZATION", ""))
        if not header.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return user, password

    def _registry_token(self, environ: Environ) -> Answer:
        credentials = self.basic_credentials(environ)
        if credentials is None or not self.registry_credentials_ok(*credentials):
            return error(401, "UNAUTHORIZED", "unauthorized")
        token = secrets.token_urlsafe(16)
        self._registry_tokens.add(token)
        return Answer(200, {"token": token, "expires_in": 300})

    def _proxy(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        header = str(environ.get("HTTP_AUTHORIZATION", ""))
        if not (header.startswith("Bearer ") and header[7:] in self._registry_tokens):
            challenge = f'Bearer realm="{self.url}{self.token_path}",service="{self.service}"'
            start_response("401 Unauthorized", [("WWW-Authenticate", challenge), ("Content-Length", "0")])
            return [b""]
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

    # --- what the backing registry holds ---------------------------------------------------------

    def catalog(self) -> list[str]:
        response = loopback_session().get(f"{self.registry_url}/v2/_catalog?n=1000", timeout=10)
        return sorted(response.json().get("repositories") or [])

    def tags(self, repository: str) -> list[tuple[str, str]]:
        """(tag, digest) pairs, sorted by tag."""
        response = loopback_session().get(f"{self.registry_url}/v2/{repository}/tags/list", timeout=10)
        names = sorted(response.json().get("tags") or []) if response.ok else []
        return [(tag, digest) for tag in names if (digest := self.digest(repository, tag))]

    def digest(self, repository: str, reference: str) -> str | None:
        response = loopback_session().head(
            f"{self.registry_url}/v2/{repository}/manifests/{reference}",
            headers={"Accept": MANIFEST_TYPES},
            timeout=10,
        )
        return response.headers.get("Docker-Content-Digest") if response.ok else None


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
