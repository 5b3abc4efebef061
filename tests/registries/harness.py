"""Real registry software on loopback for tests: Debian's docker-registry, a token server, a webhook sink.

Each piece is started by a fixture in conftest.py and stopped by the same fixture. Everything binds
127.0.0.1; state lives in the test's tmp_path. Behaviour these helpers rely on (and the surprises
of distribution 2.8.2) is written up in ../shared/docs/test-harness.md.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl, urlsplit

import jwt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from registries.demo.images import Auth, Pusher
from tests.certificates import self_signed

LOOPBACK = "127.0.0.1"
HTTP_SECRET = "customs-test-not-a-secret"  # set, so the log has no "generated random secret" warning

BASIC_USER, BASIC_PASSWORD = "customs", "customs-basic-secret"
TOKEN_SERVICE, TOKEN_ISSUER = "customs-test", "customs-test-issuer"
PUSHER, PUSHER_PASSWORD = "pusher", "pusher-secret"
READER, READER_PASSWORD = "reader", "reader-secret"


# --- missing components ---------------------------------------------------------------------------


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_binary(name: str, package: str, *, override: str | None = None) -> str:
    """The binary's path; fails under CI (make test installs it), skips elsewhere."""
    # `override` names an env var pointing at another build, e.g. REGISTRY_BIN for distribution 3.x.
    chosen = os.environ.get(override) if override else None
    path = shutil.which(chosen or name)
    if path:
        return path
    where = f"{override}={chosen}" if chosen else f"{name} from Debian package {package}"
    if in_ci():
        pytest.fail(f"{where} is missing: .ci/ensure-services installs it")
    pytest.skip(f"needs {where} (run `make services`)")


def free_port() -> int:
    # A small race (another process may take it before the server binds), in exchange for
    # knowing the URL before the process starts.
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def _serve_in_thread(server: ThreadingHTTPServer) -> None:
    # A short poll: shutdown() waits up to one interval, and the default 0.5 s adds up per test.
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()


def loopback_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # a proxy variable in the environment must not catch loopback calls
    return session


# --- basic auth -----------------------------------------------------------------------------------


def htpasswd_line(user: str, password: str) -> str:
    """A `user:<bcrypt>` line the registry's htpasswd auth accepts."""
    try:
        # Imported by name: bcrypt is not in the lock file, and mypy must not require it.
        bcrypt = importlib.import_module("bcrypt")
    except ImportError:
        htpasswd = require_binary("htpasswd", "apache2-utils")
        # -C 5: the lowest cost htpasswd allows keeps each login check cheap for the registry.
        run = subprocess.run(
            [htpasswd, "-nbB", "-C", "5", user, password], capture_output=True, text=True, check=True
        )
        return run.stdout.strip()
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    return f"{user}:{hashed}"


def htpasswd_config(workdir: Path, users: Mapping[str, str]) -> dict[str, Any]:
    """The registry's `auth` section for HTTP Basic with `users` (name → password)."""
    path = workdir / "htpasswd"
    path.write_text("".join(htpasswd_line(user, pw) + "\n" for user, pw in users.items()))
    return {"htpasswd": {"realm": "customs-test", "path": str(path)}}


# --- token auth -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """What a token-server user may do: `actions` on resources of `type` whose name matches `name`."""

    type: str
    name: str  # an fnmatch pattern, e.g. "team/*"
    actions: frozenset[str]


@dataclass(frozen=True)
class TokenUser:
    password: str
    grants: tuple[Grant, ...]


def everything() -> tuple[Grant, ...]:
    return (
        Grant("repository", "*", frozenset({"pull", "push", "delete"})),
        Grant("registry", "catalog", frozenset({"*"})),
    )


DEFAULT_TOKEN_USERS: Mapping[str, TokenUser] = {
    PUSHER: TokenUser(PUSHER_PASSWORD, everything()),
    READER: TokenUser(READER_PASSWORD, (Grant("repository", "*", frozenset({"pull"})),)),
}


def libtrust_kid(key: ec.EllipticCurvePublicKey) -> str:
    """The key id distribution 2.8 looks up: libtrust's fingerprint, not an RFC 7638 thumbprint."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(b32[i : i + 4] for i in range(0, 48, 4))


def self_signed_certificate(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    return self_signed(key, "customs test token signer", days=1, ca=True)


def parse_scope(scope: str) -> tuple[str, str, set[str]] | None:
    """`type[(class)]:name:action,action` → (type, name, actions); names may hold a `host:port`."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name:
        return None
    return kind.split("(", 1)[0], name, set(filter(None, actions.split(",")))


def granted_actions(grants: Iterable[Grant], kind: str, name: str, wanted: set[str]) -> set[str]:
    """The intersection of `wanted` with what `grants` allow; a partial grant is still a grant."""
    allowed: set[str] = set()
    for grant in grants:
        if grant.type == kind and fnmatchcase(name, grant.name):
            allowed |= grant.actions
    if "*" in allowed:
        return wanted
    if "*" in wanted:
        return allowed  # skopeo's delete first asks for "*"; answer with what the user has
    return wanted & allowed


@dataclass
class TokenRequest:
    """One request the token server answered, for tests that assert on the challenge flow."""

    user: str | None
    scopes: list[str]
    status: int


class TokenServer:
    """The Docker token-auth realm: checks Basic credentials, mints ES256 JWTs with a libtrust kid.

    The registry never calls it; clients do, after a Bearer challenge. `bundle_path` is the
    certificate bundle the registry verifies signatures with (`auth.token.rootcertbundle`).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        users: Mapping[str, TokenUser] = DEFAULT_TOKEN_USERS,
        anonymous: tuple[Grant, ...] = (),
        ttl: int = 300,
    ) -> None:
        self.users, self.anonymous, self.ttl = dict(users), anonymous, ttl
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.certificate = self_signed_certificate(self.key)
        self.bundle_path = workdir / "token-bundle.pem"
        self.bundle_path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        self.requests: list[TokenRequest] = []
        self._server = ThreadingHTTPServer((LOOPBACK, 0), self._handler())
        self.url = f"http://{LOOPBACK}:{self._server.server_address[1]}"
        self.realm = f"{self.url}/token"
        _serve_in_thread(self._server)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def auth_config(self) -> dict[str, Any]:
        """The registry's `auth` section trusting this server."""
        token = {
            "realm": self.realm,
            "service": TOKEN_SERVICE,
            "issuer": TOKEN_ISSUER,
            "rootcertbundle": str(self.bundle_path),
        }
        return {"token": token}

    def mint(
        self,
        access: list[dict[str, Any]],
        *,
        subject: str = "",
        ttl: int | None = None,
        x5c: bool = False,
        **claims: Any,
    ) -> str:
        """A token the registry trusts; `claims` override any standard claim for negative tests."""
        now = int(time.time())
        body = {
            "iss": TOKEN_ISSUER,
            "aud": TOKEN_SERVICE,  # a string: distribution 2.8 rejects an audience list as malformed
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + (self.ttl if ttl is None else ttl),
            "jti": uuid.uuid4().hex,
            "access": access,
            **claims,
        }
        return jwt.encode(body, self.key, algorithm="ES256", headers=self._key_header(x5c))

    def _key_header(self, x5c: bool) -> dict[str, Any]:
        if x5c:
            # Standard base64 DER, leaf first; URL-safe base64 is refused by 2.8.
            der = self.certificate.public_bytes(serialization.Encoding.DER)
            return {"x5c": [base64.b64encode(der).decode()]}
        return {"kid": libtrust_kid(self.key.public_key())}

    def access_for(self, user: str | None, scopes: Iterable[str]) -> list[dict[str, Any]]:
        """The `access` claim for `user` (None: anonymous) asking for `scopes`."""
        grants = self.users[user].grants if user else self.anonymous
        access = []
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed and (actions := granted_actions(grants, *parsed)):
                access.append({"type": parsed[0], "name": parsed[1], "actions": sorted(actions)})
        return access

    def authenticate(self, header: str | None) -> tuple[bool, str | None]:
        """(credentials ok, user) for an Authorization header; no header is an anonymous success."""
        if not header:
            return True, None
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False, None
        user, _, password = base64.b64decode(encoded).decode().partition(":")
        known = self.users.get(user)
        return bool(known and known.password == password), user

    def answer(self, path: str, authorization: str | None) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) for a GET on the realm."""
        url = urlsplit(path)
        if url.path == "/healthz":
            return 200, {}
        if url.path != "/token":
            return 404, {"error": "not found"}
        # Clients send several scope= parameters, or several scopes space-separated in one.
        scopes = [s for k, v in parse_qsl(url.query) if k == "scope" for s in v.split()]
        ok, user = self.authenticate(authorization)
        status = 200 if ok else 401
        self.requests.append(TokenRequest(user, scopes, status))
        if not ok:
            return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "invalid username/password"}]}
        token = self.mint(self.access_for(user, scopes), subject=user or "")
        issued = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return 200, {"token": token, "access_token": token, "expires_in": self.ttl, "issued_at": issued}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = server.answer(self.path, self.headers.get("Authorization"))
                data = json.dumps(body).encode()
                self.send_response(status)
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="customs-test-token"')
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep pytest's captured output for the test's own messages

        return Handler


# --- notifications --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notifications:
    """One notification endpoint for the registry config.

    The defaults keep only manifest push/delete events (no pulls, no blob pushes) and retry fast:
    delivery is asynchronous and retried forever, so a slow backoff only slows the tests down.
    """

    url: str
    authorization: str | None = None
    ignore_actions: tuple[str, ...] = ("pull",)
    ignore_media_types: tuple[str, ...] = ("application/octet-stream",)
    threshold: int = 3
    backoff: str = "200ms"
    timeout: str = "1s"

    def config(self) -> dict[str, Any]:
        endpoint: dict[str, Any] = {
            "name": "customs-sink",
            "url": self.url,
            "timeout": self.timeout,
            "threshold": self.threshold,
            "backoff": self.backoff,
            "ignore": {"actions": list(self.ignore_actions), "mediatypes": list(self.ignore_media_types)},
        }
        if self.authorization:
            # Header values must be lists: the registry decodes them into a Go http.Header.
            endpoint["headers"] = {"Authorization": [self.authorization]}
        return {"events": {"includereferences": True}, "endpoints": [endpoint]}


@dataclass(frozen=True)
class Delivery:
    """One POST the sink received."""

    path: str
    headers: dict[str, str]
    events: list[dict[str, Any]]


class WebhookSink:
    """Receives registry notifications on loopback; `status` switches the answer (500 to test retries)."""

    def __init__(self) -> None:
        self.status = 200
        self.deliveries: list[Delivery] = []
        self._arrived: queue.Queue[Delivery] = queue.Queue()
        self._server = ThreadingHTTPServer((LOOPBACK, 0), self._handler())
        self.url = f"http://{LOOPBACK}:{self._server.server_address[1]}/events"
        _serve_in_thread(self._server)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        """The first event (past or future) matching `predicate`; fails the test after `timeout`."""
        seen = [event for delivery in self.deliveries for event in delivery.events]
        deadline = time.monotonic() + timeout
        while True:
            for event in seen:
                if predicate(event):
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no matching registry event within {timeout}s; got {len(seen)} other events")
            try:
                seen = self._arrived.get(timeout=remaining).events
            except queue.Empty:
                seen = []

    def record(self, path: str, headers: dict[str, str], body: bytes) -> int:
        """Store one delivery; returns the status to answer."""
        if self.status < 300:
            delivery = Delivery(path, headers, json.loads(body).get("events", []))
            self.deliveries.append(delivery)
            self._arrived.put(delivery)
        return self.status

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = sink.record(self.path, dict(self.headers.items()), body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


# --- the registry ---------------------------------------------------------------------------------


@dataclass
class RunningRegistry:
    """A docker-registry process on loopback, owned by the fixture that started it."""

    url: str
    port: int
    config_path: Path
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    credentials: tuple[str, str] | None = None
    token_server: TokenServer | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)
    _also_stop: list[Callable[[], None]] = field(default_factory=list, repr=False)

    @property
    def host(self) -> str:
        """`127.0.0.1:<port>`, as image references and skopeo write it."""
        return f"{LOOPBACK}:{self.port}"

    def pusher(self, *, auth: Auth | None = None, anonymous: bool = False) -> Pusher:
        """A Pusher with this registry's credentials (or `auth`, or none when `anonymous`)."""
        return Pusher(self.url, auth=None if anonymous else auth or self.credentials)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop_with(self, callback: Callable[[], None]) -> None:
        """Run `callback` after the process stops, e.g. to stop a token server it owns."""
        self._also_stop.append(callback)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; safe to repeat. Undelivered notifications are lost."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log:
            self._log.close()
            self._log = None
        while self._also_stop:
            self._also_stop.pop()()


def registry_config(port: int, workdir: Path, **sections: Any) -> dict[str, Any]:
    """A complete config: filesystem storage in `workdir`, deletes on, info logs; `sections` override."""
    config: dict[str, Any] = {
        "version": 0.1,
        # info, not warn: token rejections are explained only at info.
        "log": {"level": "info", "formatter": "text"},
        "http": {"addr": f"{LOOPBACK}:{port}", "secret": HTTP_SECRET},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "data")}, "delete": {"enabled": True}},
    }
    config.update({key: value for key, value in sections.items() if value is not None})
    return config


def launch_registry(
    workdir: Path,
    *,
    auth: dict[str, Any] | None = None,
    notifications: Notifications | None = None,
    **sections: Any,
) -> RunningRegistry:
    """Write a config into `workdir`, start `docker-registry serve`, and wait until `/v2/` answers."""
    binary = require_binary("docker-registry", "docker-registry", override="REGISTRY_BIN")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = registry_config(
        port, workdir, auth=auth, notifications=notifications and notifications.config(), **sections
    )
    config_path, log_path = workdir / "config.yml", workdir / "registry.log"
    config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML: no PyYAML needed
    log = log_path.open("wb")
    process = subprocess.Popen([binary, "serve", str(config_path)], stdout=log, stderr=subprocess.STDOUT)
    running = RunningRegistry(f"http://{LOOPBACK}:{port}", port, config_path, log_path, process, _log=log)
    try:
        wait_until_ready(running)
    except BaseException:
        running.stop()
        raise
    return running


def wait_until_ready(registry: RunningRegistry, timeout: float = 10.0) -> None:
    """Poll `/v2/` every 20 ms: 200, or 401 when auth is on, means it serves."""
    session, deadline = loopback_session(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        if registry.process.poll() is not None:
            raise RuntimeError(f"docker-registry exited:\n{registry.log_text()[-2000:]}")
        try:
            if session.get(registry.url + "/v2/", timeout=0.5).status_code in (200, 401):
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"docker-registry did not answer /v2/ in {timeout}s:\n{registry.log_text()[-2000:]}")


# --- skopeo ---------------------------------------------------------------------------------------


class Skopeo:
    """skopeo against loopback registries: plain HTTP, and never the machine's stored logins."""

    def __init__(self, workdir: Path) -> None:
        self.binary = require_binary("skopeo", "skopeo")
        workdir.mkdir(parents=True, exist_ok=True)
        # An empty auth file of our own: as root skopeo would otherwise read /run/containers/0/auth.json.
        self.authfile = workdir / "auth.json"
        self.authfile.write_text('{"auths": {}}')

    def run(self, *args: str) -> bytes:
        """Run one skopeo command; a failure fails the test with skopeo's stderr."""
        env = {**os.environ, "REGISTRY_AUTH_FILE": str(self.authfile)}
        done = subprocess.run([self.binary, *args], capture_output=True, env=env, timeout=120, check=False)
        if done.returncode:
            pytest.fail(f"skopeo {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
        return done.stdout

    def inspect_raw(self, reference: str, *, creds: tuple[str, str] | None = None) -> bytes:
        """The manifest bytes exactly as the registry serves them to skopeo."""
        return self.run(
            "inspect", "--raw", "--tls-verify=false", *_creds("--creds", creds), f"docker://{reference}"
        )

    def list_tags(self, reference: str, *, creds: tuple[str, str] | None = None) -> list[str]:
        out = self.run("list-tags", "--tls-verify=false", *_creds("--creds", creds), f"docker://{reference}")
        return sorted(json.loads(out)["Tags"] or [])

    def copy(
        self,
        source: str,
        destination: str,
        *,
        src_creds: tuple[str, str] | None = None,
        dest_creds: tuple[str, str] | None = None,
        all_platforms: bool = True,
    ) -> None:
        """Copy between registries keeping every digest (`--preserve-digests` refuses to convert)."""
        self.run(
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--preserve-digests",
            *(["--all"] if all_platforms else []),
            *_creds("--src-creds", src_creds),
            *_creds("--dest-creds", dest_creds),
            f"docker://{source}",
            f"docker://{destination}",
        )


def _creds(flag: str, creds: tuple[str, str] | None) -> list[str]:
    return [flag, f"{creds[0]}:{creds[1]}"] if creds else []
