"""Registry tokens: checking a secret, serving /auth/token under load, and pulling through token auth.

1. Checking a personal token: keyed SHA-256 (what Customs stores) against a password hash. A token
   is checked on every API call and every `docker login`, so its cost is per request; the ratio
   shows why tokens are stored as HMAC digests rather than with Django's password hasher.
2. The token endpoint under gunicorn at the issue's scale (50,000 users, 5,000 groups, 20,000 rules,
   100,000 repositories; `BENCH_SCALE` shrinks it for a quick run): wrk drives 32 connections
   against GET /auth/token and, in alternating rounds, against /healthz on the same server, with
   the same client and headers. Target (issue 5): the token endpoint at least half the trivial
   endpoint's throughput.
3. `skopeo copy` of a 10-layer image from a registry trusting Customs' token server, next to the
   same pull from an anonymous registry, alternating. Target: at most 1.2x the anonymous pull.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
import requests
from cryptography import x509
from cryptography.fernet import Fernet
from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.test.utils import override_settings

from accounts import services as account_services
from accounts import tokens
from accounts.models import DirectoryGroup, GroupMembership, PersonalToken, User
from bench.access import FULL, estate
from registries import effective
from registries.demo import images as im
from registries.models import AccessRule, Registry, TokenSigningKey
from registries.patterns import compile_pattern
from registries.tokenserver import keys

ROUNDS = 5

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
WORKERS = int(os.environ.get("BENCH_TOKENS_WORKERS", "4"))
SECONDS = int(os.environ.get("BENCH_TOKENS_SECONDS", "10"))
LOAD_ROUNDS = int(os.environ.get("BENCH_TOKENS_ROUNDS", "3"))
PULL_ROUNDS = int(os.environ.get("BENCH_PULL_ROUNDS", "9"))
CONNECTIONS = 32
WARM_UP_SECONDS = 3
PEOPLE = 8  # bench users, each with a token and their own rules; requests cycle through them
LAYERS, LAYER_SIZE = 10, 2 * 2**20
LOOPBACK = "127.0.0.1"


# --- 1. checking a token secret -------------------------------------------------------------------


def _median_seconds(check: Callable[[], bool], repeat: int) -> float:
    samples = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(repeat):
            if not check():
                raise AssertionError("a valid token was rejected")
        samples.append((time.perf_counter() - started) / repeat)
    return statistics.median(samples)


def token_check() -> None:
    raw, _, stored_digest = tokens.mint()
    stored_password_hash = make_password(raw)
    hmac_cost = _median_seconds(lambda: tokens.matches(raw, stored_digest), repeat=20_000)
    password_cost = _median_seconds(lambda: check_password(raw, stored_password_hash), repeat=5)
    print("token check, median of 5 rounds")
    print(f"  HMAC-SHA256 digest (stored by Customs): {hmac_cost * 1e6:10.2f} µs")
    print(f"  Django password hasher (PBKDF2):        {password_cost * 1e6:10.2f} µs")
    print(f"  ratio password hash / HMAC:             {password_cost / hmac_cost:10.0f}x")


# --- the people and the token requests -------------------------------------------------------------


@dataclass(frozen=True)
class Secrets:
    """Fresh keys for the gunicorn server: DEBUG off refuses the development ones."""

    secret_key: str
    encryption_key: str
    token_hmac_key: str

    @classmethod
    def new(cls) -> Secrets:
        return cls(secrets.token_urlsafe(48), Fernet.generate_key().decode(), secrets.token_urlsafe(32))

    @contextmanager
    def in_this_process(self) -> Iterator[None]:
        """Rows written here (token digests, the signing key) must be readable by the server."""
        # The first key encrypts; the configured ones still decrypt rows written before the run.
        encryption_keys = [self.encryption_key, *settings.CUSTOMS_ENCRYPTION_KEYS]
        with override_settings(CUSTOMS_ENCRYPTION_KEYS=encryption_keys, TOKEN_HMAC_KEY=self.token_hmac_key):
            yield


@dataclass(frozen=True)
class TokenRequest:
    """One GET /auth/token the load cycles through, and the `access` claim it must come back with."""

    username: str
    secret: str
    scopes: tuple[str, ...]
    expected: tuple[tuple[str, tuple[str, ...]], ...]  # (repository, granted actions) per scope
    outcome: str  # granted, partial or denied: what issue() records for it

    def path(self, service: str) -> str:
        query = urlencode(
            [("service", service), ("account", self.username)] + [("scope", s) for s in self.scopes]
        )
        return f"/auth/token?{query}"


@dataclass(frozen=True)
class Person:
    user: User
    secret: str
    writable: str  # a namespace this person may push to
    readable: str  # a namespace this person may only pull from
    forbidden: str  # a repository nothing grants this person


def people(registry: Registry, users: list[User], names: list[str], tag: str) -> list[Person]:
    """PEOPLE of the estate's users, each given a team that may push and one that may only pull.

    They keep the four random groups the estate gave them, so each token request matches their
    own rules among the 20,000 as any member's would.
    """
    namespaces = sorted({name.split("/")[0] for name in names})
    chosen: list[Person] = []
    for index, user in enumerate(users[: PEOPLE * 4 : 4]):
        writable, readable = (
            namespaces[(2 * index) % len(namespaces)],
            namespaces[(2 * index + 1) % len(namespaces)],
        )
        for namespace, actions in ((writable, ("pull", "push")), (readable, ("pull",))):
            team = DirectoryGroup.objects.create(
                directory=f"bench-{tag}",
                external_id=f"tokens-{index}-{namespace}",
                display_name=f"tokens-{index}-{namespace}",
                source="scim",
            )
            GroupMembership.objects.create(user=user, group=team, source="scim")
            pattern = f"{namespace}/**" if "push" in actions else f"{namespace}/*"
            compiled = compile_pattern(pattern)
            # Rows, as the estate's rules are: the service would also queue a drift check per rule.
            AccessRule.objects.create(
                group=team,
                registry=registry,
                pattern=pattern,
                literal_prefix=compiled.literal_prefix,
                regex=compiled.anchored,
                can_pull=True,
                can_push="push" in actions,
                justification="bench",
            )
        # The estate's random rules may reach further; pick what this person truly cannot touch.
        forbidden = next(
            name for name in names[index::7] if not effective.user_access(user, registry, name).actions
        )
        if "push" in effective.user_access(user, registry, f"{readable}/svc-bench").actions:
            continue  # a random estate rule already lets them push there: no partial grant to show
        issued = account_services.create_token(
            user, actor=user, name="bench", kind=PersonalToken.Kind.REGISTRY, days=1
        )
        chosen.append(Person(user, issued.secret, writable, readable, forbidden))
    if len(chosen) < PEOPLE // 2:
        raise SystemExit("too few bench users without stray push access; the estate's seed changed?")
    return chosen


def token_requests(crowd: list[Person]) -> list[TokenRequest]:
    """Two scopes a request, as a pull of one image and a push of another ask; half are refused in part.

    Per person: two fully granted requests, one partial (push asked where only pull is allowed) and
    one naming a repository nothing grants. Refusals are audited, so they take the write path too.
    """
    made = []
    for person in crowd:
        name = person.user.get_username()
        rw, ro = f"{person.writable}/svc-bench", f"{person.readable}/svc-bench"
        full, pull = ("pull", "push"), ("pull",)
        cases = (
            ("granted", ((rw, full, full), (ro, pull, pull))),
            ("granted", ((ro, pull, pull), (f"{person.writable}/deep/app", full, full))),
            ("partial", ((rw, pull, pull), (ro, full, pull))),
            ("denied", ((rw, full, full), (person.forbidden, pull, ()))),
        )
        for outcome, scopes in cases:
            made.append(
                TokenRequest(
                    name,
                    person.secret,
                    tuple(f"repository:{repo}:{','.join(asked)}" for repo, asked, _ in scopes),
                    tuple((repo, granted) for repo, _, granted in scopes),
                    outcome,
                )
            )
    return made


def check_answers(base_url: str, service: str, certificate: str, made: list[TokenRequest]) -> None:
    """Every request answers 200 with a verifiable JWT granting exactly what the rules allow."""
    public_key = x509.load_pem_x509_certificate(certificate.encode()).public_key()
    session = _session()
    for request in made:
        response = session.get(
            base_url + request.path(service), auth=(request.username, request.secret), timeout=30
        )
        if response.status_code != 200:
            raise SystemExit(
                f"{request.path(service)} answered {response.status_code}: {response.text[:300]}"
            )
        claims = jwt.decode(
            response.json()["token"],
            public_key,  # type: ignore[arg-type]
            algorithms=["ES256"],
            audience=service,
            issuer=settings.REGISTRY_TOKEN_ISSUER,
        )
        got = tuple((entry["name"], tuple(entry["actions"])) for entry in claims["access"])
        if got != request.expected:
            raise SystemExit(f"{request.outcome} request for {request.scopes} was granted {got}")


# --- the servers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # a proxy variable must not catch loopback calls
    return session


def wait_for(url: str, ok: tuple[int, ...], process: subprocess.Popen[bytes], log: Path) -> None:
    session = _session()
    for _ in range(300):
        if process.poll() is not None:
            raise SystemExit(f"{process.args!r} exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            # Gunicorn's socket accepts before a worker has imported Django: allow a slow first answer.
            if session.get(url, timeout=10).status_code in ok:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer in 30 s:\n{log.read_text(errors='replace')[-3000:]}")


@contextmanager
def running(
    argv: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A child in its own session (Ctrl-C reaches only us, and we stop it), stopped on exit."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            argv, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.terminate()  # gunicorn's master stops its workers on SIGTERM
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


@contextmanager
def gunicorn(workdir: Path, keys_for_server: Secrets) -> Iterator[str]:
    """The portal under gunicorn, DEBUG off, sync workers, on a free loopback port."""
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        # A *_FILE variable would win over the fresh secrets set below.
        if key not in ("SECRET_KEY_FILE", "CUSTOMS_ENCRYPTION_KEYS_FILE", "CUSTOMS_TOKEN_HMAC_KEY_FILE")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DEBUG="false",
        SECRET_KEY=keys_for_server.secret_key,
        CUSTOMS_ENCRYPTION_KEYS=keys_for_server.encryption_key,
        CUSTOMS_TOKEN_HMAC_KEY=keys_for_server.token_hmac_key,
        CUSTOMS_REGISTRY_TOKEN_ISSUER=settings.REGISTRY_TOKEN_ISSUER,
        SECURE_SSL_REDIRECT="false",  # plain HTTP on loopback; a redirect would count as an answer
        ALLOWED_HOSTS=LOOPBACK,
        CUSTOMS_LOG_LEVEL="WARNING",
        CUSTOMS_DATA_DIR=str(workdir / "var"),
    )
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "portal.wsgi:application",
        f"--workers={WORKERS}",
        "--worker-class=sync",
        f"--bind={LOOPBACK}:{port}",
        "--backlog=2048",
        "--log-level=warning",
        f"--chdir={settings.BASE_DIR}",
    ]
    log = workdir / "gunicorn.log"
    with running(argv, log, env) as process:
        url = f"http://{LOOPBACK}:{port}"
        wait_for(f"{url}/healthz", (200,), process, log)
        yield url


@contextmanager
def docker_registry(workdir: Path, auth: dict[str, Any] | None = None) -> Iterator[str]:
    """Debian's docker-registry on a free loopback port, anonymous or with the given `auth` section."""
    binary = shutil.which("docker-registry")
    if not binary:
        raise SystemExit("bench/tokens.py needs Debian's docker-registry: apt-get install docker-registry")
    workdir.mkdir(parents=True)
    port = free_port()
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn"},
        "http": {"addr": f"{LOOPBACK}:{port}", "secret": "bench"},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "data")}},
    }
    if auth:
        config["auth"] = auth
    (workdir / "config.yml").write_text(json.dumps(config))  # JSON is YAML
    log = workdir / "registry.log"
    with running([binary, "serve", str(workdir / "config.yml")], log) as process:
        url = f"http://{LOOPBACK}:{port}"
        wait_for(f"{url}/v2/", (200, 401), process, log)
        yield url


@contextmanager
def signing_key() -> Iterator[TokenSigningKey]:
    """A fresh active key for the run; an earlier active key is active again afterwards."""
    previous = keys.active()
    created = keys.rotate(actor=None)
    try:
        yield created
    finally:
        created.delete()
        if previous:
            TokenSigningKey.objects.filter(pk=previous.pk).update(active=True)


# --- 2. load ---------------------------------------------------------------------------------------

# wrk runs this in each of its threads: requests cycle through the list (each thread from its own
# offset), every answer other than 200 is counted, and done() prints one line for parse_wrk().
WRK_SCRIPT = """
local paths = %(paths)s
local auths = %(auths)s
local threads = {}

function setup(thread)
  thread:set("offset", #threads * 5)
  table.insert(threads, thread)
end

function init(args)
  prepared = {}
  for i, path in ipairs(paths) do
    prepared[i] = wrk.format("GET", path, {["Authorization"] = auths[i]})
  end
  n = offset
  bad = 0
end

function request()
  n = n + 1
  return prepared[(n %% #prepared) + 1]
end

function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end

function done(summary, latency, requests)
  local bad_total = 0
  for _, thread in ipairs(threads) do bad_total = bad_total + thread:get("bad") end
  local e = summary.errors
  io.write(string.format(
    "CUSTOMS requests=%%d duration_us=%%d p50_us=%%d p99_us=%%d non200=%%d socket=%%d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    bad_total, e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass(frozen=True)
class Load:
    per_second: float
    p50_ms: float
    p99_ms: float
    failures: int  # answers other than 200, and socket errors
    client_cpu: float  # wrk's CPU seconds per second of the run: its share of one core


def wrk_script(path: Path, requests_: list[tuple[str, str]]) -> Path:
    def lua_list(values: list[str]) -> str:
        return "{" + ", ".join(json.dumps(value) for value in values) + "}"  # JSON strings are Lua strings

    paths, auths = [p for p, _ in requests_], [a for _, a in requests_]
    path.write_text(WRK_SCRIPT % {"paths": lua_list(paths), "auths": lua_list(auths)})
    return path


def load(wrk: str, base_url: str, script: Path, seconds: int) -> Load:
    before = os.times()
    done = subprocess.run(
        [wrk, "-t2", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout=10s", "-s", str(script), base_url],
        capture_output=True,
        text=True,
        check=False,
    )
    after = os.times()
    found = re.search(
        r"CUSTOMS requests=(\d+) duration_us=(\d+) p50_us=(\d+) p99_us=(\d+) non200=(\d+) socket=(\d+)",
        done.stdout,
    )
    if done.returncode or not found:
        raise SystemExit(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    count, duration_us, p50, p99, non200, socket_errors = map(int, found.groups())
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return Load(
        count / (duration_us / 1e6), p50 / 1000, p99 / 1000, non200 + socket_errors, cpu / (duration_us / 1e6)
    )


def median_load(samples: list[Load]) -> Load:
    return Load(
        statistics.median(s.per_second for s in samples),
        statistics.median(s.p50_ms for s in samples),
        statistics.median(s.p99_ms for s in samples),
        sum(s.failures for s in samples),
        max(s.client_cpu for s in samples),
    )


def measure_load(base_url: str, service: str, made: list[TokenRequest], workdir: Path) -> tuple[Load, Load]:
    """(token endpoint, /healthz): alternating rounds after a warm-up of each, medians."""
    wrk = shutil.which("wrk")
    if not wrk:
        raise SystemExit("bench/tokens.py needs wrk: apt-get install wrk (make bench installs it)")
    auths = [f"Basic {_basic(r.username, r.secret)}" for r in made]
    # The same headers on both, so the client does the same work per request.
    token_script = wrk_script(
        workdir / "token.lua", [(r.path(service), a) for r, a in zip(made, auths, strict=True)]
    )
    trivial_script = wrk_script(workdir / "trivial.lua", [("/healthz", a) for a in auths])
    for script in (token_script, trivial_script):
        load(wrk, base_url, script, WARM_UP_SECONDS)
    rounds: dict[Path, list[Load]] = {token_script: [], trivial_script: []}
    for _ in range(LOAD_ROUNDS):
        for script in rounds:
            rounds[script].append(load(wrk, base_url, script, SECONDS))
    token, trivial = median_load(rounds[token_script]), median_load(rounds[trivial_script])
    if token.failures or trivial.failures:
        log = (workdir / "gunicorn.log").read_text(errors="replace")[-3000:]
        raise SystemExit(
            f"failed requests under load: token endpoint {token.failures}, /healthz {trivial.failures}\n{log}"
        )
    return token, trivial


def _basic(username: str, secret: str) -> str:
    return base64.b64encode(f"{username}:{secret}".encode()).decode()


# --- 3. pull ---------------------------------------------------------------------------------------


def skopeo_copy(skopeo: str, reference: str, destination: Path, authfile: Path, creds: str | None) -> float:
    argv = [skopeo, "copy", "--quiet", "--src-tls-verify=false"]
    if creds:
        argv.append(f"--src-creds={creds}")
    argv += [f"docker://{reference}", f"oci:{destination}:pulled"]
    # An empty auth file of our own: as root skopeo would otherwise read /run/containers/0/auth.json.
    env = {**os.environ, "REGISTRY_AUTH_FILE": str(authfile)}
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, env=env, timeout=300, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"skopeo copy {reference} failed: {done.stderr.decode(errors='replace')}")
    shutil.rmtree(destination)
    return elapsed


def measure_pull(workdir: Path, anonymous: str, guarded: str, person: Person) -> tuple[float, float]:
    """(anonymous, token auth) seconds for skopeo copy of the same image: alternating, medians."""
    skopeo = shutil.which("skopeo")
    if not skopeo:
        raise SystemExit("bench/tokens.py needs skopeo: apt-get install skopeo")
    repository, username = f"{person.writable}/pull-bench", person.user.get_username()
    image = im.bulky_image("bench-pull", layers=LAYERS, layer_size=LAYER_SIZE)
    im.Pusher(anonymous).push_image(repository, image, tags=["v1"])
    im.Pusher(guarded, auth=(username, person.secret)).push_image(repository, image, tags=["v1"])
    authfile = workdir / "auth.json"
    authfile.write_text('{"auths": {}}')
    sources = {
        "anonymous": (f"{anonymous.removeprefix('http://')}/{repository}:v1", None),
        "token": (f"{guarded.removeprefix('http://')}/{repository}:v1", f"{username}:{person.secret}"),
    }
    timings: dict[str, list[float]] = {name: [] for name in sources}
    for round_ in range(PULL_ROUNDS + 1):
        for name, (reference, creds) in sources.items():
            elapsed = skopeo_copy(skopeo, reference, workdir / f"pulled-{name}-{round_}", authfile, creds)
            if round_:  # round 0 warms the page cache and skopeo's own start-up
                timings[name].append(elapsed)
    return statistics.median(timings["anonymous"]), statistics.median(timings["token"])


# --- the run ---------------------------------------------------------------------------------------


def token_server() -> None:
    tag = f"tokens-{os.getpid()}"
    service = f"bench-{tag}"
    server_keys = Secrets.new()
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="customs-bench-tokens-")))
        started = time.perf_counter()
        registry, users, names = stack.enter_context(estate(SCALE, tag, token_service=service))
        with server_keys.in_this_process():
            key = stack.enter_context(signing_key())
            crowd = people(registry, users, names, tag)
        seeded = time.perf_counter() - started
        base_url = stack.enter_context(gunicorn(workdir, server_keys))
        made = token_requests(crowd)
        check_answers(base_url, service, key.certificate, made)
        token, trivial = measure_load(base_url, service, made, workdir)

        bundle = workdir / "bundle.pem"
        with server_keys.in_this_process():
            bundle.write_text(keys.bundle())  # what `manage.py registry_token_keys bundle` prints
        auth = {
            "token": {
                "realm": f"{base_url}/auth/token",
                "service": service,
                "issuer": settings.REGISTRY_TOKEN_ISSUER,
                "rootcertbundle": str(bundle),
            }
        }
        anonymous = stack.enter_context(docker_registry(workdir / "anonymous"))
        guarded = stack.enter_context(docker_registry(workdir / "token", auth))
        anonymous_pull, token_pull = measure_pull(workdir, anonymous, guarded, crowd[0])

    sizes = {key: max(10, int(value * SCALE)) for key, value in FULL.items()}
    mix = {outcome: sum(r.outcome == outcome for r in made) for outcome in ("granted", "partial", "denied")}
    print(
        f"token server under gunicorn ({WORKERS} sync workers, DEBUG off), {sizes['users']:,} users, "
        f"{sizes['groups']:,} groups, {sizes['rules']:,} rules, {sizes['repositories']:,} repositories "
        f"(seeded in {seeded:.0f} s)"
    )
    print(
        f"  wrk, {CONNECTIONS} connections, {SECONDS} s a round, median of {LOAD_ROUNDS} alternating rounds "
        f"after a {WARM_UP_SECONDS} s warm-up; {len(made)} token requests of 2 scopes cycled, "
        f"{mix['granted']} granted, {mix['partial']} partly, {mix['denied']} with a scope refused (audited)"
    )
    print(f"  {'':34} {'req/s':>8} {'p50':>9} {'p99':>9}  failed")
    for label, figures in (("(a) GET /auth/token", token), ("(b) GET /healthz (trivial)", trivial)):
        print(
            f"  {label:34} {figures.per_second:8.0f} {figures.p50_ms:6.1f} ms {figures.p99_ms:6.1f} ms  "
            f"{figures.failures:6d}"
        )
    print(
        f"  throughput (a)/(b) = {token.per_second / trivial.per_second:.2f}x   target >= 0.5x   "
        f"(wrk used at most {max(token.client_cpu, trivial.client_cpu):.0%} of one core)"
    )
    print(
        f"  skopeo copy of {LAYERS} x {LAYER_SIZE // 2**20} MiB layers to oci:, "
        f"median of {PULL_ROUNDS} alternating rounds after a warm-up"
    )
    print(f"  (c) anonymous registry:             {anonymous_pull:6.2f} s")
    print(f"  (d) token auth through Customs:     {token_pull:6.2f} s")
    print(f"  pull (d)/(c) = {token_pull / anonymous_pull:.2f}x   target <= 1.2x")


def run() -> None:
    token_check()
    token_server()
