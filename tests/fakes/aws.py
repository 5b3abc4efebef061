"""AWS ECR and IAM on loopback: moto's threaded server for the APIs, a real docker-registry for /v2/.

moto implements the ECR and IAM calls the connector makes (test-harness.md §9) but not the registry
host: ECR's `/v2/` is served here by FakeEcrHost, which asks for Basic `AWS:<password>` exactly as
GetAuthorizationToken hands it out, then proxies to the `registry` fixture's docker-registry. Images
are pushed to both: blobs and manifests to the registry, the same manifest bytes (and their true
digest, which moto would otherwise get wrong, §9.3) to moto.

Every answer botocore parses in a test, from moto or from a Stubber, is checked against the botocore
models in ../shared/specs by an `after-call` hook installed in every botocore session the test
creates (`aws_answers`, autouse wherever `aws_answers_fixture` is imported): no test can skip it.

Hooks installed the same way log every request botocore sends and can throttle chosen ones
(`aws_requests`), and answer IAM's policy simulator, which moto does not implement
(`policy_simulator`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import boto3
import botocore.handlers
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse, HTTPHeaders
from botocore.config import Config
from moto.server import ThreadedMotoServer

from registries.demo import images as im
from tests.fakes.server import Environ, LoopbackFake, StartResponse
from tests.fakes.specs import ECR_MODEL, IAM_MODEL, BotocoreSpec, FakeDrift
from tests.registries.harness import LOOPBACK, loopback_session

ACCOUNT = "123456789012"  # moto's account
REGION = "eu-west-1"
MODELS: dict[str, BotocoreSpec] = {"ecr": ECR_MODEL, "iam": IAM_MODEL}


def ecr_public(moto: str, **extra: Any) -> dict[str, Any]:
    """An ECR registry's public config whose every AWS endpoint is the moto server at `moto`."""
    return {
        "account_id": ACCOUNT,
        "region": REGION,
        "access_key_id": "testing",
        "ecr_endpoint_url": moto,
        "iam_endpoint_url": moto,
        "sts_endpoint_url": moto,
        **extra,
    }


class AnswerChecker:
    """Checks each parsed ECR/IAM answer against ../shared/specs; remembers what drifted."""

    def __init__(self) -> None:
        self.drift: list[str] = []
        self.checked: list[str] = []

    def __call__(self, *, parsed: dict[str, Any], model: Any, http_response: Any = None, **_: Any) -> None:
        service = model.service_model.service_name
        status = parsed.get("ResponseMetadata", {}).get("HTTPStatusCode", 200)
        if service not in MODELS or "Error" in parsed or status >= 300:
            return  # error answers are classified by the connector, not consumed as data
        try:
            MODELS[service].validate(model.name, parsed)
        except FakeDrift as drift:
            self.drift.append(str(drift))
            raise
        self.checked.append(f"{service}.{model.name}")


@pytest.fixture(name="aws_answers", autouse=True)
def aws_answers_fixture() -> Iterator[AnswerChecker]:
    """Install the spec check in every botocore session created during the test.

    Registered first for IAM: botocore's own after-call handler decodes IAM's URL-encoded policy
    documents into dicts, and the check must see the strings the model describes.
    """
    checker = AnswerChecker()
    entries = [
        ("after-call.ecr", checker, botocore.handlers.REGISTER_FIRST),
        ("after-call.iam", checker, botocore.handlers.REGISTER_FIRST),
    ]
    botocore.handlers.BUILTIN_HANDLERS.extend(entries)
    try:
        yield checker
    finally:
        for entry in entries:
            botocore.handlers.BUILTIN_HANDLERS.remove(entry)
    assert not checker.drift, "an AWS answer does not match the botocore model:\n" + "\n".join(checker.drift)


@contextmanager
def _installed(*entries: tuple[str, Callable[..., Any]]) -> Iterator[None]:
    """Handlers in every botocore session created inside the block (clients are made lazily)."""
    botocore.handlers.BUILTIN_HANDLERS.extend(entries)
    try:
        yield
    finally:
        for entry in entries:
            botocore.handlers.BUILTIN_HANDLERS.remove(entry)


@dataclass(frozen=True)
class SentRequest:
    service: str
    operation: str
    params: dict[str, Any]  # as sent: ECR's JSON body, or IAM's form fields


@dataclass
class AwsRequests:
    """Every request botocore sends (each attempt, retries included), and throttling on demand."""

    sent: list[SentRequest] = field(default_factory=list)
    # Each matching request is answered with the service's throttling error instead, once per entry.
    throttle: list[Callable[[SentRequest], bool]] = field(default_factory=list)

    def __call__(self, *, request: AWSPreparedRequest, event_name: str, **_: Any) -> AWSResponse | None:
        service, operation = event_name.split(".")[1:3]  # before-send.<service>.<operation>
        sent = SentRequest(service, operation, _params(request))
        self.sent.append(sent)
        for index, matches in enumerate(self.throttle):
            if matches(sent):
                del self.throttle[index]
                return _throttled(request.url, service)
        return None

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [sent.params for sent in self.sent if sent.operation == operation]


@pytest.fixture(name="aws_requests")
def aws_requests_fixture() -> Iterator[AwsRequests]:
    log = AwsRequests()
    with _installed(("before-send", log)):
        yield log
    assert not log.throttle, "a throttle was set up for a request that never came"


def _params(request: AWSPreparedRequest) -> dict[str, Any]:
    body = request.body.decode() if isinstance(request.body, bytes) else str(request.body or "")
    if body.startswith("{"):  # ECR's JSON protocol; IAM and STS send form fields
        return dict(json.loads(body))
    return dict(parse_qsl(body))


class _Body:
    """The raw stream an AWSResponse reads its content from."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


def _throttled(url: str, service: str) -> AWSResponse:
    # As each protocol spells it: ECR speaks JSON, IAM the query protocol's XML.
    if service == "ecr":
        body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
        headers = {"x-amzn-ErrorType": "ThrottlingException", "Content-Type": "application/x-amz-json-1.1"}
    else:
        body = (
            b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
            b"<Message>Rate exceeded</Message></Error><RequestId>throttled</RequestId></ErrorResponse>"
        )
        headers = {"Content-Type": "text/xml"}
    return AWSResponse(url, 400, HTTPHeaders.from_dict(headers), _Body(body))


@dataclass
class PolicySimulator:
    """IAM's SimulatePrincipalPolicy, which moto lacks: `allowed` actions are allowed, others denied
    (implicitly), or every call is refused with the error code `refusal`. Calls are recorded."""

    allowed: set[str] = field(default_factory=set)
    refusal: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)

    def record(self, *, params: dict[str, Any], **_: Any) -> None:
        self.calls.append(dict(params))

    def answer(self, **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        if self.refusal:
            error = {"Code": self.refusal, "Message": "not authorized to perform iam:SimulatePrincipalPolicy"}
            return _answered(403), {
                "Error": error,
                "ResponseMetadata": {"HTTPStatusCode": 403},
            }
        call = self.calls[-1]
        results = [
            {
                "EvalActionName": action,
                "EvalResourceName": resource,
                "EvalDecision": "allowed" if action in self.allowed else "implicitDeny",
                "MatchedStatements": [],
                "MissingContextValues": [],
            }
            for action in call["ActionNames"]
            for resource in call.get("ResourceArns") or ["*"]
        ]
        parsed = {
            "EvaluationResults": results,
            "IsTruncated": False,
            "ResponseMetadata": {"HTTPStatusCode": 200},
        }
        return _answered(200), parsed


def _answered(status: int) -> AWSResponse:
    # As a Stubber answers: the parsed answer comes with it, so there is no body to parse.
    return AWSResponse("", status, HTTPHeaders(), _Body(b""))


@pytest.fixture(name="policy_simulator")
def policy_simulator_fixture() -> Iterator[PolicySimulator]:
    simulator = PolicySimulator()
    with _installed(
        ("before-parameter-build.iam.SimulatePrincipalPolicy", simulator.record),
        ("before-call.iam.SimulatePrincipalPolicy", simulator.answer),
    ):
        yield simulator


@pytest.fixture(name="moto_server", scope="session")
def moto_server_fixture() -> Iterator[str]:
    """One moto server for the session (it starts in about a second); state is reset per test."""
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(name="moto")
def moto_fixture(moto_server: str) -> str:
    response = loopback_session().post(f"{moto_server}/moto-api/reset", timeout=10)
    assert response.status_code == 200
    return moto_server


def client(service: str, moto_url: str, **credentials: str) -> Any:
    """A client for arranging state in moto (one attempt per call: moto's 500s are not worth retrying)."""
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=moto_url,
        region_name=REGION,
        aws_access_key_id=credentials.get("key", "testing"),
        aws_secret_access_key=credentials.get("secret", "testing"),
        config=Config(retries={"total_max_attempts": 1}),
    )


def registry_password(moto_url: str) -> str:
    """The /v2/ password inside the token moto's GetAuthorizationToken hands out."""
    token = client("ecr", moto_url).get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    assert user == "AWS"
    return password


class FakeEcrHost(LoopbackFake):
    """`https://<account>.dkr.ecr.<region>.amazonaws.com` on loopback: /v2/ behind ECR's Basic challenge."""

    api_prefix = "/not-ecr"  # the ECR API is moto's; this host serves only the registry

    def __init__(self, registry_url: str, password: str) -> None:
        super().__init__(registry_url)
        self.password = password
        self._inner = "inner-" + password  # lets the shared proxy pass an authenticated request on
        self._registry_tokens.add(self._inner)

    def start(self) -> FakeEcrHost:
        super().start()
        return self

    def registry_credentials_ok(self, username: str, password: str) -> bool:
        return username == "AWS" and password == self.password

    def _proxy(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        credentials = self.basic_credentials(environ)
        if credentials is None or not self.registry_credentials_ok(*credentials):
            challenge = f'Basic realm="{self.url}/",service="ecr.amazonaws.com"'
            start_response("401 Unauthorized", [("WWW-Authenticate", challenge), ("Content-Length", "0")])
            return [b""]
        return super()._proxy({**environ, "HTTP_AUTHORIZATION": f"Bearer {self._inner}"}, start_response)


def put_image(moto_url: str, repository: str, image: im.Image, tags: Iterable[str]) -> None:
    """Record an image in moto with its true digest (moto's own would be wrong, test-harness.md §9.3)."""
    ecr = client("ecr", moto_url)
    for tag in tags:
        ecr.put_image(
            repositoryName=repository,
            imageManifest=image.manifest_bytes.decode(),
            imageManifestMediaType=image.manifest["mediaType"],
            imageTag=tag,
            imageDigest=image.digest,
        )
