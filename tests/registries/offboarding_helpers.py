"""One offboarding scene per registry kind on its fake, for tests/registries/test_offboarding_connectors.py.

Each scene is a registry synced from its fake (so credentials and grants are the connector's rows, as in
production) holding, for one person: a credential of theirs (`own`, to be disabled), one they created
that automation still uses (`kept`, to be re-assigned) and the access the registry gives them by name
(a grant, a team seat, an organisation membership: to be taken away), next to a colleague's that must
stay. Where sync cannot tie a registry identity to the person, `link` does it by hand, saying why.

Faults are served in front of a fake's own answers, for one kind of request only ("PATCH …/tokens/x"):
a 500 or a 403 in the vendor's own words, or a timeout whose write still lands after the client has
given up (the worst case for a retry). ECR's APIs are moto's, so there a loopback proxy in front of moto
names each call (`POST iam.UpdateAccessKey`) and serves the faults.
"""

from __future__ import annotations

import json
import re
import socketserver
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from registries import services, sync
from registries.demo import images as im
from registries.models import Credential, Grant, Registry, SyncRun
from tests import factories
from tests.fakes.acr import FakeAcr, FakeToken
from tests.fakes.artifact_registry import LOCATION, PROJECT, FakeArtifactRegistry, google_error
from tests.fakes.aws import ACCOUNT, REGION, client
from tests.fakes.dockerhub import FakeDockerHub, Member, OrgToken, problem
from tests.fakes.harbor import FakeHarbor
from tests.fakes.quay import FakeQuay, Robot, Team, quay_error
from tests.fakes.server import Answer, Environ, LoopbackFake, Request, StartResponse, error
from tests.registries.harness import LOOPBACK, RunningRegistry, loopback_session

KINDS = ("acr", "ecr", "gar", "dockerhub", "harbor", "quay")
EMAIL = "alice@acme.example"  # the person's address, where a registry links people by it
# A timeout: the client gives up after TIMEOUT seconds; the fake answers (and changes) after SLOW.
TIMEOUT, SLOW = 0.5, 1.0
# Requests that only read or sign in, though they are POSTs.
READING_POSTS = ("/token", "/oauth2/exchange", ":getIamPolicy", ":testIamPermissions")


# --- faults ---------------------------------------------------------------------------------------


class Faults:
    """Faults, each waiting for the first request its pattern matches ("METHOD path", "METHOD iam.Call")."""

    def __init__(self) -> None:
        self._pending: list[tuple[re.Pattern[str], str]] = []
        self._lock = threading.Lock()
        self.landed = threading.Event()  # set once a timed-out request has changed the registry after all

    def queue(self, pattern: str, fault: str) -> None:
        assert fault in ("500", "403", "timeout"), fault
        with self._lock:
            self._pending.append((re.compile(pattern), fault))

    def take(self, line: str) -> str | None:
        with self._lock:
            for index, (pattern, fault) in enumerate(self._pending):
                if pattern.fullmatch(line):
                    del self._pending[index]
                    return fault
        return None

    def wait_until_landed(self) -> None:
        assert self.landed.wait(10), "the slow answer never came"
        self.landed.clear()


def intercept(fake: LoopbackFake, entry: str, refuse: Callable[[int], Answer]) -> Faults:
    """Serve faults in front of the fake's routing method `entry` (`api`, or ACR's `_route`)."""
    faults, original = Faults(), getattr(fake, entry)

    def routed(request: Request) -> Answer:
        fault = faults.take(f"{request.method} {request.path}")
        if fault is None:
            answer: Answer = original(request)
            return answer
        if fault != "timeout":
            return refuse(int(fault))
        time.sleep(SLOW)  # the client has given up by now; the registry carries on regardless
        answer = original(request)
        faults.landed.set()
        return answer

    setattr(fake, entry, routed)
    return faults


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (the base class's name)
        pass


class _Threading(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


_SIGNED_FOR = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/aws4_request")


class AwsProxy:
    """moto behind a loopback proxy that names each call (`POST iam.UpdateAccessKey`) and serves faults."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.faults = Faults()
        self.requests_seen: list[str] = []
        self._server = make_server(LOOPBACK, 0, self, server_class=_Threading, handler_class=_Quiet)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        headers = {
            name[5:].replace("_", "-").title(): str(value)
            for name, value in environ.items()
            if name.startswith("HTTP_") and name != "HTTP_HOST"
        }
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = str(environ["CONTENT_TYPE"])
        service, call = _aws_call(headers, body)
        line = f"{environ['REQUEST_METHOD']} {service}.{call}"
        self.requests_seen.append(line)
        fault = self.faults.take(line)
        if fault in ("500", "403"):
            code, content_type, refusal = _aws_error(service, int(fault), call)
            start_response(f"{code} Error", [("Content-Type", content_type)])
            return [refusal]
        if fault == "timeout":
            time.sleep(SLOW)  # as in intercept(): the client has given up, moto changes all the same
        status, passed, payload = self._forward(environ, headers, body)
        if fault == "timeout":
            self.faults.landed.set()
        start_response(status, passed)
        return [payload]

    def _forward(
        self, environ: Environ, headers: dict[str, str], body: bytes
    ) -> tuple[str, list[Any], bytes]:
        query = environ.get("QUERY_STRING", "")
        answer = loopback_session().request(
            environ["REQUEST_METHOD"],
            f"{self.upstream}{environ.get('PATH_INFO', '')}" + (f"?{query}" if query else ""),
            headers=headers,
            data=body,
            timeout=10,
        )
        # Not Content-Encoding or Content-Length: requests has decoded the body already.
        passed = [
            (name, value)
            for name, value in answer.headers.items()
            if name.lower() == "content-type" or name.lower().startswith("x-amz")
        ]
        return f"{answer.status_code} Answer", passed, answer.content


def _aws_call(headers: dict[str, str], body: bytes) -> tuple[str, str]:
    """(service, operation): IAM names it in its form body, ECR in X-Amz-Target."""
    signed = _SIGNED_FOR.search(headers.get("Authorization", ""))
    service = signed.group(1) if signed else "?"
    if target := headers.get("X-Amz-Target"):
        return service, target.rsplit(".", 1)[-1]
    action = parse_qs(body.decode(errors="replace")).get("Action", ["?"])[0]
    return service, action


def _aws_error(service: str, status: int, call: str) -> tuple[int, str, bytes]:
    """An error as the service writes it: IAM's query protocol in XML, ECR's JSON protocol."""
    refused = status == 403
    code = (
        ("AccessDenied" if refused else "ServiceFailure")
        if service == "iam"
        else ("AccessDeniedException" if refused else "ServerException")
    )
    message = f"not authorized to perform: {service}:{call}" if refused else "internal failure"
    if service != "iam":
        # JSON-protocol services answer a denial with 400, naming it in __type.
        return (
            (400 if refused else 500),
            "application/x-amz-json-1.1",
            (f'{{"__type": "{code}", "message": "{message}"}}'.encode()),
        )
    kind = "Sender" if refused else "Receiver"
    xml = (
        '<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
        f"<Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>4d2f1c3e-0000-4000-8000-000000000000</RequestId></ErrorResponse>"
    )
    return status, "text/xml", xml.encode()


# --- the scene ------------------------------------------------------------------------------------


@dataclass
class Scene:
    """A synced registry and its fake, with what offboarding `person` should find and do there."""

    kind: str
    registry: Registry
    person: User
    heir: User
    fake: LoopbackFake | AwsProxy  # whose `requests_seen` counts what reached the registry
    faults: Faults
    own: str  # native id of the person's credential, to be disabled
    kept: str  # native id of one they created that automation still uses, to be re-assigned
    disabling: str  # the request that disables `own`, as a pattern over "METHOD path"
    said: dict[str, str]  # how the connector words each fault: "500", "timeout", "403" → a pattern
    link: Callable[[Scene], None]  # what sync cannot do here: tie the person to their registry identities
    revoked: Callable[[], bool]  # the fake no longer lets `own` in
    kept_working: Callable[[], bool]  # the fake still lets `kept` in
    # The fake still gives the person the access their grant named, and others theirs beside it;
    # None where the scene has no grant Customs can remove (ACR: people hold role assignments).
    has_access: Callable[[], bool] | None
    others_keep_access: Callable[[], bool] | None
    # Where the registry has organisations or teams, one step takes the person out of all of them;
    # where membership is the only access (Docker Hub), that step replaces one step per grant.
    member_step: bool = False
    membership_covers_grants: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # kind-specific handles for the gap tests

    def sync(self) -> None:
        """Sync from the fake (every aspect read), then link the person as sync cannot."""
        run = sync.sync_inventory(self.registry)
        assert run.status == SyncRun.Status.SUCCEEDED, run.error
        assert not run.not_read, run.not_read
        self.link(self)

    def credential(self, native_id: str) -> Credential:
        return Credential.objects.get(registry=self.registry, native_id=native_id)

    def grants(self) -> list[Grant]:
        """The grants naming the person: linked to them, or by username where the registry says so."""
        theirs = Q(user=self.person)
        if self.registry.config.get("link_users_by_username"):
            theirs |= Q(principal_kind="user", principal_id=self.person.username)
        return list(Grant.objects.filter(theirs, registry=self.registry).order_by("pk"))

    def key(self, row: Credential | Grant) -> str:
        return (
            f"registry-{self.registry.pk}/{'credential' if isinstance(row, Credential) else 'grant'}-{row.pk}"
        )

    def access_keys(self) -> list[str]:
        """The keys of the steps that should take the person's access away."""
        members = [f"registry-{self.registry.pk}/member-1"] if self.member_step else []
        return members + ([] if self.membership_covers_grants else [self.key(g) for g in self.grants()])

    def requests(self) -> list[str]:
        return list(self.fake.requests_seen)

    def writes(self) -> list[str]:
        """The requests that would change the registry (sign-ins and policy reads excluded)."""
        return [line for line in self.requests() if _writes(line)]


def _writes(line: str) -> bool:
    method, _, target = line.partition(" ")
    if aws := re.fullmatch(r"(\w+)\.(\w+)", target):  # an AWS call: reads are named as such
        return not aws.group(2).startswith(("Get", "List", "Describe", "BatchGet", "BatchCheck"))
    return method in ("PUT", "PATCH", "DELETE") or (method == "POST" and not target.endswith(READING_POSTS))


def people(**person: Any) -> tuple[User, User]:
    """The person leaving, and the colleague who takes over what automation still uses."""
    return factories.user(**person), factories.user()


def link_credentials(scene: Scene, *, own: str = "owner_user", kept: str = "created_by_user") -> None:
    """Tie the two credentials to the person by hand: `own` theirs, `kept` made by them."""
    Credential.objects.filter(registry=scene.registry, native_id=scene.own).update(**{own: scene.person})
    Credential.objects.filter(registry=scene.registry, native_id=scene.kept).update(**{kept: scene.person})


def link_grants(scene: Scene, principal_id: str) -> None:
    """Tie a registry user's grants to the person by hand (sync links only by a directory id)."""
    Grant.objects.filter(registry=scene.registry, principal_kind="user", principal_id=principal_id).update(
        user=scene.person
    )


def recently() -> datetime:
    return timezone.now() - timedelta(days=1)


def push_one(registry: RunningRegistry, name: str) -> None:
    registry.pusher().push_image(name, im.base_image(name.replace("/", "-")), tags=["1"])


def stop_and_check(request: pytest.FixtureRequest, fake: LoopbackFake, vendor: str) -> None:
    def finish() -> None:
        fake.stop()
        assert not fake.drift, f"the fake answered in a shape {vendor} does not use:\n" + "\n".join(
            fake.drift
        )

    request.addfinalizer(finish)


# --- ACR: tokens through ARM ----------------------------------------------------------------------


def acr_scene(request: pytest.FixtureRequest) -> Scene:
    registry: RunningRegistry = request.getfixturevalue("registry")
    fake = FakeAcr(registry_url=registry.url).start()
    request.getfixturevalue("settings").OUTBOUND_CA_BUNDLE = fake.ca_bundle
    stop_and_check(request, fake, "ACR")
    fake.scope_maps = {
        "alice-push": ["repositories/payments/api/content/read", "repositories/payments/api/content/write"],
        "ci-push": ["repositories/payments/api/content/read", "repositories/payments/api/content/write"],
    }
    fake.tokens = {"alice-laptop": FakeToken("alice-push"), "ci-push": FakeToken("ci-push")}
    person, heir = people()
    saved = services.save_registry(
        Registry(name="acr-eu", kind="acr", endpoint=fake.url),
        actor=None,
        public={k: v for k, v in fake.public_config().items() if k != "url"},
        secrets={"client_secret": fake.client_secret},
    )

    def link(scene: Scene) -> None:
        # ARM says nothing of who made a token or whom it is for: tokens are registry-wide robots.
        link_credentials(scene)

    faults = intercept(fake, "_route", _arm_refusal)
    scene = Scene(
        kind="acr",
        registry=saved,
        person=person,
        heir=heir,
        fake=fake,
        faults=faults,
        own="tokens/alice-laptop",
        kept="tokens/ci-push",
        disabling=f"PATCH {re.escape(fake.registry_id)}/tokens/alice-laptop",
        said={"500": "500 from", "timeout": "timed out", "403": "403 from .*AuthorizationFailed"},
        link=link,
        revoked=lambda: fake.tokens["alice-laptop"].status == "disabled",
        kept_working=lambda: fake.tokens["ci-push"].status == "enabled",
        has_access=None,
        others_keep_access=None,
        extra={"fake": fake},
    )
    scene.sync()
    return scene


def _arm_refusal(status: int) -> Answer:
    if status == 403:
        message = "The client does not have authorization to perform action 'tokens/write'"
        return Answer(403, {"error": {"code": "AuthorizationFailed", "message": message}})
    return Answer(status, {"error": {"code": "InternalServerError", "message": "An error has occurred."}})


# --- ECR: IAM access keys and repository policies, on moto ----------------------------------------


ALICE_ARN = f"arn:aws:iam::{ACCOUNT}:user/dev/alice"
DEPLOYER_ARN = f"arn:aws:iam::{ACCOUNT}:user/bots/deployer"
PULL = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]


def ecr_scene(request: pytest.FixtureRequest) -> Scene:
    moto: str = request.getfixturevalue("moto")
    proxy = AwsProxy(moto)
    request.addfinalizer(proxy.stop)
    iam, ecr = client("iam", moto), client("ecr", moto)
    iam.create_user(UserName="alice", Path="/dev/")
    own = iam.create_access_key(UserName="alice")["AccessKey"]
    iam.create_user(UserName="deployer", Path="/bots/")
    kept = iam.create_access_key(UserName="deployer")["AccessKey"]
    # A call signed with the key is what makes IAM record its last use.
    client("ecr", moto, key=kept["AccessKeyId"], secret=kept["SecretAccessKey"]).describe_repositories()
    ecr.create_repository(repositoryName="payments/api")
    statement = {
        "Sid": "pull",
        "Effect": "Allow",
        "Principal": {"AWS": [ALICE_ARN, DEPLOYER_ARN]},
        "Action": PULL,
    }
    ecr.set_repository_policy(
        repositoryName="payments/api",
        policyText=json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
    )
    person, heir = people()
    saved = services.save_registry(
        Registry(name="ecr-eu", kind="ecr", endpoint="http://127.0.0.1:9"),  # no /v2/ read: no images
        actor=None,
        public={
            "account_id": ACCOUNT,
            "region": REGION,
            "access_key_id": "testing",
            "ecr_endpoint_url": proxy.url,
            "iam_endpoint_url": proxy.url,
            "sts_endpoint_url": moto,
            "max_attempts": 1,  # botocore's own retries would hide the faults from Customs' retries
        },
        secrets={"secret_access_key": "testing"},
    )

    def link(scene: Scene) -> None:
        # IAM users carry no directory id or e-mail: nothing ties alice to the person but an admin.
        link_credentials(scene)
        link_grants(scene, ALICE_ARN)

    def principals() -> list[str]:
        text = ecr.get_repository_policy(repositoryName="payments/api")["policyText"]
        return [p for s in json.loads(text)["Statement"] for p in _as_list(s["Principal"]["AWS"])]

    def status(user: str) -> str:
        return str(iam.list_access_keys(UserName=user)["AccessKeyMetadata"][0]["Status"])

    scene = Scene(
        kind="ecr",
        registry=saved,
        person=person,
        heir=heir,
        fake=proxy,
        faults=proxy.faults,
        own=own["AccessKeyId"],
        kept=kept["AccessKeyId"],
        disabling=r"POST iam\.UpdateAccessKey",
        said={"500": "ServiceFailure", "timeout": "ReadTimeout", "403": "AccessDenied"},
        link=link,
        revoked=lambda: status("alice") == "Inactive",
        kept_working=lambda: status("deployer") == "Active",
        has_access=lambda: ALICE_ARN in principals(),
        others_keep_access=lambda: DEPLOYER_ARN in principals(),
        extra={"iam": iam},
    )
    scene.sync()
    return scene


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- Artifact Registry: IAM bindings and service-account keys --------------------------------------


ALICE_SA = f"alice-laptop@{PROJECT}.iam.gserviceaccount.com"
DEPLOYER_SA = f"deployer@{PROJECT}.iam.gserviceaccount.com"


def gar_scene(request: pytest.FixtureRequest) -> Scene:
    registry: RunningRegistry = request.getfixturevalue("registry")
    fake = FakeArtifactRegistry(registry_url=registry.url).start()
    stop_and_check(request, fake, "Google")
    fake.add_repository("images")
    fake.bind("images", "roles/artifactregistry.writer", f"user:{EMAIL}", "user:bob@acme.example")
    fake.bind(
        "images",
        "roles/artifactregistry.reader",
        f"serviceAccount:{ALICE_SA}",
        f"serviceAccount:{DEPLOYER_SA}",
    )
    own = fake.add_key(ALICE_SA, "alice0001")["name"]
    kept = fake.add_key(DEPLOYER_SA, "deploy0001")["name"]
    person, heir = people(external_id=EMAIL)  # a directory whose immutable ids are e-mails
    saved = services.save_registry(
        Registry(name="gar-us", kind="gar", endpoint=fake.url, region=LOCATION),
        actor=None,
        public={
            "project": PROJECT,
            "location": LOCATION,
            "api_url": fake.url,
            "iam_url": fake.url,
            "resource_manager_url": fake.url,
            "gcr_url": fake.url,
            "directory_uses_emails": True,
        },
        secrets={"service_account_key": fake.key_json()},
    )

    def link(scene: Scene) -> None:
        # The binding for user:alice@… is linked by sync; a key belongs to its service account, and
        # who made it is only in Cloud Audit Logs, which the connector does not read.
        link_credentials(scene)

    def members() -> list[str]:
        return [m for b in fake.policy("images")["bindings"] for m in b["members"]]

    def disabled(name: str) -> bool:
        return any(k["name"] == name and k.get("disabled") for keys in fake.accounts.values() for k in keys)

    scene = Scene(
        kind="gar",
        registry=saved,
        person=person,
        heir=heir,
        fake=fake,
        faults=intercept(fake, "api", _google_refusal),
        own=own,
        kept=kept,
        disabling=r"POST /v1/projects/[^/]+/serviceAccounts/[^/]+/keys/alice0001:disable",
        said={"500": "500 INTERNAL from", "timeout": "timed out", "403": "403 PERMISSION_DENIED from"},
        link=link,
        revoked=lambda: disabled(own),
        kept_working=lambda: not disabled(kept),
        has_access=lambda: f"user:{EMAIL}" in members(),
        others_keep_access=lambda: "user:bob@acme.example" in members(),
        extra={"fake": fake},
    )
    scene.sync()
    return scene


def _google_refusal(status: int) -> Answer:
    if status == 403:
        return google_error(403, "PERMISSION_DENIED", "Permission 'iam.serviceAccountKeys.disable' denied")
    return google_error(status, "INTERNAL", "Internal error encountered.")


# --- Docker Hub: organisation tokens and team members ----------------------------------------------


def dockerhub_scene(request: pytest.FixtureRequest) -> Scene:
    registry: RunningRegistry = request.getfixturevalue("registry")
    push_one(registry, "acme/app")  # team permissions are read per repository
    fake = FakeDockerHub(registry_url=registry.url).start()
    stop_and_check(request, fake, "Docker Hub")
    fake.members["alice"] = Member("alice", EMAIL, full_name="Alice")
    fake.add_team("deployers", ["alice", "bob"], app="write")
    created = timezone.now() - timedelta(days=200)
    resources = [{"type": "TYPE_REPO", "path": "acme/app", "scopes": ["repo-pull"]}]
    own = OrgToken(
        "alice-old", created_by="alice", created_at=created, resources=resources, last_used_at=None
    )
    kept = OrgToken(
        "ci-deploy", created_by="alice", created_at=created, resources=resources, last_used_at=recently()
    )
    fake.org_tokens += [own, kept]
    person, heir = people(external_id=EMAIL)
    saved = services.save_registry(
        Registry(name="hub-acme", kind="dockerhub", endpoint=fake.url),
        actor=None,
        public={
            "registry_url": fake.url,
            "namespace": "acme",
            "username": fake.username,
            "link_members_by_email": True,
        },
        secrets={"token": fake.token},
    )

    def link(scene: Scene) -> None:
        pass  # members are linked by e-mail: the tokens' creator and the team member grant alike

    scene = Scene(
        kind="dockerhub",
        registry=saved,
        person=person,
        heir=heir,
        fake=fake,
        faults=intercept(fake, "api", _hub_refusal),
        own=own.id,
        kept=kept.id,
        disabling=f"PATCH /v2/orgs/acme/access-tokens/{own.id}",
        said={"500": "500 from", "timeout": "timed out", "403": "403 from"},
        link=link,
        revoked=lambda: not own.is_active,
        kept_working=lambda: kept.is_active,
        has_access=lambda: "alice" in fake.teams["deployers"].members,
        others_keep_access=lambda: "bob" in fake.teams["deployers"].members,
        member_step=True,
        membership_covers_grants=True,
        extra={"fake": fake},
    )
    scene.sync()
    return scene


def _hub_refusal(status: int) -> Answer:
    if status == 403:
        return problem(403, "You do not have permission to perform this action.")
    return problem(status, "internal server error")


# --- Harbor: robots and project members ------------------------------------------------------------


def harbor_scene(request: pytest.FixtureRequest) -> Scene:
    fake: FakeHarbor = request.getfixturevalue("harbor")  # stopped and checked for drift by the fixture
    alice = fake.add_user("alice", email=EMAIL)
    bob = fake.add_user("bob")
    fake.add_member("payments", role_id=2, user_id=alice)  # developer: pull and push
    fake.add_member("payments", role_id=3, user_id=bob)
    own = fake.add_robot("alice-ci", access={"payments": ["pull", "push"]}, creator=("local", alice))
    kept = fake.add_robot("deploy", access={"payments": ["pull"]}, creator=("local", alice))
    fake.log(fake.robots[kept]["name"], recently(), resource="payments/api")
    person, heir = people()
    saved = services.save_registry(
        Registry(name="harbor-eu", kind="harbor", endpoint=fake.url),
        actor=None,
        public={"username": fake.username},
        secrets={"password": fake.password},
    )

    def link(scene: Scene) -> None:
        # Harbor names users by its own numeric id, and the connector claims no directory id for them.
        link_credentials(scene, own="created_by_user")  # made by them, never used: disabled too
        link_grants(scene, str(alice))

    def member_ids() -> list[int]:
        return [int(m["entity_id"]) for m in fake.members.get("payments", []) if m["entity_type"] == "u"]

    scene = Scene(
        kind="harbor",
        registry=saved,
        person=person,
        heir=heir,
        fake=fake,
        faults=intercept(fake, "api", _harbor_refusal),
        own=str(own),
        kept=str(kept),
        disabling=f"PUT /api/v2.0/robots/{own}",
        said={"500": "500 from", "timeout": "timed out", "403": "403 from"},
        link=link,
        revoked=lambda: bool(fake.robots[own]["disable"]),
        kept_working=lambda: not fake.robots[kept]["disable"],
        has_access=lambda: alice in member_ids(),
        others_keep_access=lambda: bob in member_ids(),
        extra={"fake": fake},
    )
    scene.sync()
    return scene


def _harbor_refusal(status: int) -> Answer:
    if status == 403:
        return error(403, "FORBIDDEN", "forbidden")
    return error(status, "INTERNAL_SERVER_ERROR", "internal error")


# --- Quay: robots, team seats and repository permissions -------------------------------------------


def quay_scene(request: pytest.FixtureRequest) -> Scene:
    registry: RunningRegistry = request.getfixturevalue("registry")
    push_one(registry, "acme/app")  # permissions are read per repository
    fake = FakeQuay(registry_url=registry.url).start()
    stop_and_check(request, fake, "Quay (registry-apis.md §10)")
    created = timezone.now() - timedelta(days=200)
    fake.robots["acme"] = {
        "alice_ci": Robot(created=created),  # never used (Quay records last_accessed)
        "deploy": Robot(created=created, last_accessed=recently()),
    }
    fake.teams["acme"] = {"deployers": Team(members={"alice": False, "bob": False})}
    fake.team_permissions["acme/app"] = {"deployers": "write"}
    fake.user_permissions["acme/app"] = {"alice": ("admin", False), "bob": ("read", False)}
    person, heir = people(username="alice")  # Quay signs people in through the directory, same names
    saved = services.save_registry(
        Registry(name="quay-acme", kind="quay", endpoint=fake.url),
        actor=None,
        public={"namespaces": "acme", "registry_username": fake.robot_name, "link_users_by_username": True},
        secrets={"token": fake.token, "registry_password": fake.robot_token},
    )

    def link(scene: Scene) -> None:
        # People are found by username; robots belong to the organisation and say nothing of their maker.
        link_credentials(scene, own="created_by_user")

    def holds(name: str) -> bool:
        return name in fake.teams["acme"]["deployers"].members or name in fake.user_permissions["acme/app"]

    scene = Scene(
        kind="quay",
        registry=saved,
        person=person,
        heir=heir,
        fake=fake,
        faults=intercept(fake, "api", _quay_refusal),
        own="acme+alice_ci",
        kept="acme+deploy",
        disabling="DELETE /api/v1/organization/acme/robots/alice_ci",
        said={"500": "500 from", "timeout": "timed out", "403": "403 from .*insufficient_scope"},
        link=link,
        revoked=lambda: "alice_ci" not in fake.robots["acme"],
        kept_working=lambda: "deploy" in fake.robots["acme"],
        has_access=lambda: holds("alice"),
        others_keep_access=lambda: (
            "bob" in fake.teams["acme"]["deployers"].members and "bob" in fake.user_permissions["acme/app"]
        ),
        member_step=True,
        extra={"fake": fake},
    )
    scene.sync()
    return scene


def _quay_refusal(status: int) -> Answer:
    if status == 403:
        return quay_error(403, "insufficient_scope", "the token lacks the org:admin scope")
    return quay_error(status, "internal_error", "internal server error")


BUILDERS: dict[str, Callable[[pytest.FixtureRequest], Scene]] = {
    "acr": acr_scene,
    "ecr": ecr_scene,
    "gar": gar_scene,
    "dockerhub": dockerhub_scene,
    "harbor": harbor_scene,
    "quay": quay_scene,
}
