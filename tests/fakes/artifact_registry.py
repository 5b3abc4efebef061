"""Google Artifact Registry on loopback: REST APIs from in-memory state, the docker host from a real registry.

The real service is several hosts: the OAuth token endpoint, artifactregistry.googleapis.com,
cloudresourcemanager.googleapis.com (project policies), iam.googleapis.com (service-account keys),
www.googleapis.com (the keys that sign Google's ID tokens, which Pub/Sub push subscriptions send)
and `<location>-docker.pkg.dev` (plus gcr.io). This fake serves them all from one address, telling
them apart by path as the real URLs do (`/locations/`, `/serviceAccounts/`, `projects/<p>:verb`), and
proxies `/v2/` to a real docker-registry whose repositories are named `<project>/<repository>/<path>`
(`<project>/<path>` for a gcr.io repository), as the docker host names them.

Google publishes no machine-readable description this project keeps (registry-apis.md §11), so the
documented field lists of registry-apis.md §7 are written below as JSON schemas, in one place, and
every answer is checked against them before it leaves, as the other fakes check theirs against specs.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt
from jsonschema import Draft7Validator

from tests.fakes.server import MANIFEST_TYPES, Answer, Environ, LoopbackFake, Request, StartResponse
from tests.fakes.specs import FakeDrift
from tests.registries.harness import loopback_session

# --- the documented shapes (registry-apis.md §7; int64 as JSON strings, §2.2) -----------------------

RFC3339 = {
    "type": "string",
    "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$",
}
INT64 = {"type": "string", "pattern": r"^-?[0-9]+$"}
STRING, BOOLEAN = {"type": "string"}, {"type": "boolean"}
STRINGS = {"type": "array", "items": STRING}


def _object(required: Iterable[str] = (), **properties: Any) -> dict[str, Any]:
    # additionalProperties false: a field the documentation does not list is drift too.
    return {
        "type": "object",
        "required": list(required),
        "properties": properties,
        "additionalProperties": False,
    }


# §7.2 repositories.list: Repository{...}
REPOSITORY = _object(
    ["name", "format"],
    name={"type": "string", "pattern": r"^projects/[^/]+/locations/[^/]+/repositories/[^/]+$"},
    format={"enum": ["DOCKER", "MAVEN", "NPM", "APT", "YUM", "PYTHON", "KFP", "GO", "GENERIC"]},
    description=STRING,
    labels={"type": "object", "additionalProperties": STRING},
    createTime=RFC3339,
    updateTime=RFC3339,
    kmsKeyName=STRING,
    mode={"enum": ["STANDARD_REPOSITORY", "VIRTUAL_REPOSITORY", "REMOTE_REPOSITORY"]},
    cleanupPolicies={"type": "object"},
    sizeBytes=INT64,
    satisfiesPzs=BOOLEAN,
    cleanupPolicyDryRun=BOOLEAN,
    vulnerabilityScanningConfig={"type": "object"},
    disallowUnspecifiedMode=BOOLEAN,
    satisfiesPzi=BOOLEAN,
    registryUri=STRING,
    dockerConfig=_object(immutableTags=BOOLEAN),
)
# §7.2 dockerImages.list / get: DockerImage{...}; the name percent-encodes the image path.
DOCKER_IMAGE = _object(
    ["name", "uri", "uploadTime"],
    name={
        "type": "string",
        "pattern": r"^projects/[^/]+/locations/[^/]+/repositories/[^/]+/dockerImages/[^/]+"
        r"@sha256:[0-9a-f]{64}$",
    },
    uri=STRING,
    tags=STRINGS,
    imageSizeBytes=INT64,
    uploadTime=RFC3339,
    mediaType=STRING,
    buildTime=RFC3339,
    updateTime=RFC3339,
    artifactType=STRING,
    imageManifests={"type": "array", "items": {"type": "object"}},
)
# §7.2 getIamPolicy / setIamPolicy: Policy{version,etag,bindings[{role,members[],condition}],auditConfigs}
POLICY = _object(
    ["etag"],
    version={"type": "integer", "enum": [1, 3]},
    etag=STRING,
    bindings={
        "type": "array",
        "items": _object(
            ["role", "members"],
            role={"type": "string", "pattern": r"^(roles|projects/[^/]+/roles|organizations/[^/]+/roles)/"},
            members={"type": "array", "minItems": 1, "items": STRING},
            condition=_object(["expression"], expression=STRING, title=STRING, description=STRING),
        ),
    },
    auditConfigs={"type": "array"},
)
# §7.3 keys.list: keys[ServiceAccountKey{...}]
SERVICE_ACCOUNT_KEY = _object(
    ["name", "keyType"],
    name={"type": "string", "pattern": r"^projects/[^/]+/serviceAccounts/[^/]+/keys/[^/]+$"},
    privateKeyType=STRING,
    keyAlgorithm={"enum": ["KEY_ALG_UNSPECIFIED", "KEY_ALG_RSA_1024", "KEY_ALG_RSA_2048"]},
    publicKeyData=STRING,
    validAfterTime=RFC3339,
    validBeforeTime=RFC3339,
    keyOrigin={"enum": ["ORIGIN_UNSPECIFIED", "USER_PROVIDED", "GOOGLE_PROVIDED"]},
    keyType={"enum": ["KEY_TYPE_UNSPECIFIED", "USER_MANAGED", "SYSTEM_MANAGED"]},
    disabled=BOOLEAN,
)
# §7.7 gcr.io's tags/list: distribution's answer plus `child` and a `manifest` map keyed by digest,
# its sizes and epoch-millisecond times as strings.
GCR_TAG_LIST = _object(
    ["name", "tags"],
    name=STRING,
    tags=STRINGS,
    child=STRINGS,
    manifest={
        "type": "object",
        "propertyNames": {"pattern": r"^sha256:[0-9a-f]{64}$"},
        "additionalProperties": _object(
            ["timeCreatedMs", "timeUploadedMs"],
            imageSizeBytes=INT64,
            layerId=STRING,
            mediaType=STRING,
            tag=STRINGS,
            timeCreatedMs=INT64,
            timeUploadedMs=INT64,
        ),
    },
)
SHAPES: dict[str, dict[str, Any]] = {
    "repositories.list": _object(repositories={"type": "array", "items": REPOSITORY}, nextPageToken=STRING),
    "dockerImages.list": _object(dockerImages={"type": "array", "items": DOCKER_IMAGE}, nextPageToken=STRING),
    "dockerImages.get": DOCKER_IMAGE,
    "getIamPolicy": POLICY,
    "setIamPolicy": POLICY,
    "projects.getIamPolicy": POLICY,  # cloudresourcemanager: the same Policy message
    "projects.setIamPolicy": POLICY,
    "testIamPermissions": _object(permissions=STRINGS),
    "keys.list": _object(keys={"type": "array", "items": SERVICE_ACCOUNT_KEY}),
    "keys.get": SERVICE_ACCOUNT_KEY,
    "keys.disable": {"type": "object", "maxProperties": 0},  # google.protobuf.Empty
    "projects.testIamPermissions": _object(permissions=STRINGS),  # cloudresourcemanager, as above
    "gcr.tags/list": GCR_TAG_LIST,
    # Not in §7: the OAuth 2.0 token response (RFC 6749 §5.1) google-auth reads.
    "token": _object(
        ["access_token", "expires_in", "token_type"],
        access_token=STRING,
        expires_in={"type": "integer"},
        token_type={"const": "Bearer"},
    ),
    # Not in §7: Google's ID-token signing keys, as google-auth's id_token.verify_token reads them:
    # oauth2/v1/certs maps key ids to PEM certificates, oauth2/v3/certs is a JWK Set (RFC 7517).
    "certs.x509": {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": {"type": "string", "pattern": "^-----BEGIN CERTIFICATE-----\n"},
    },
    "certs.jwks": _object(
        ["keys"],
        keys={
            "type": "array",
            "minItems": 1,
            "items": _object(
                ["kty", "kid", "n", "e", "alg", "use"],
                kty={"const": "RSA"},
                kid=STRING,
                n=STRING,
                e=STRING,
                alg={"const": "RS256"},
                use={"const": "sig"},
            ),
        },
    ),
}
VALIDATORS = {operation: Draft7Validator(schema) for operation, schema in SHAPES.items()}

PROJECT, LOCATION = "acme-prod", "us"
ACCOUNT = f"customs-reader@{PROJECT}.iam.gserviceaccount.com"
PUSHER = f"pubsub-push@{PROJECT}.iam.gserviceaccount.com"  # what a push subscription signs as
CERTS_X509, CERTS_JWKS = "/oauth2/v1/certs", "/oauth2/v3/certs"
GCR_HOSTS = ("gcr.io", "us.gcr.io", "eu.gcr.io", "asia.gcr.io")
NEVER = "9999-12-31T23:59:59Z"


def google_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def google_error(status: int, code: str, message: str) -> Answer:
    return Answer(status, {"error": {"code": status, "message": message, "status": code}})


class FakeArtifactRegistry(LoopbackFake):
    api_prefix = ""  # several Google hosts in one: every path is routed in api()
    token_path = "/v2/token"  # the docker host's token realm
    service = f"{LOCATION}-docker.pkg.dev"
    oauth_path = "/token"  # the key's token_uri

    def __init__(self, registry_url: str) -> None:
        super().__init__(registry_url)
        self.project, self.location = PROJECT, LOCATION
        self.repositories: dict[str, dict[str, Any]] = {}  # repository id → extra Repository fields
        # resource name → Policy; a project always has one
        self.policies: dict[str, dict[str, Any]] = {
            f"projects/{PROJECT}": {"version": 1, "etag": "BwY=", "bindings": []}
        }
        self.accounts: dict[str, list[dict[str, Any]]] = {}  # service account email → its keys
        self.upload_times: dict[str, datetime] = {}  # digest → uploadTime
        self.update_times: dict[str, datetime] = {}  # digest → updateTime; unset: the upload time
        self.unrecorded: set[str] = set()  # digests the REST API has no record of (dockerImages omits them)
        # gcr.io's tags/list extension (§7.7): off, the gcr.io host answers as plain distribution does.
        self.gcr_extension = False
        self.gcr_times: dict[str, tuple[str, str]] = {}  # digest → (timeCreatedMs, timeUploadedMs) as sent
        self.denied: set[str] = set()  # operations answered 403 PERMISSION_DENIED
        self.lacking: set[str] = set()  # permissions testIamPermissions leaves out
        self.concurrent_edits = 0  # setIamPolicy calls that find the policy changed under them
        self.key_refused = False  # the token endpoint refuses the key (deleted, disabled)
        self.token_requests = 0
        self._access_tokens: set[str] = set()
        self._lock = threading.Lock()
        self._private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.key_id = secrets.token_hex(20)
        self.add_key(ACCOUNT, self.key_id)
        # Google's own ID-token signing key, and the Cache-Control max-age its certificates are sent with.
        self._signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.signing_key_id = secrets.token_hex(20)
        self.certs_max_age = 19800

    def start(self) -> FakeArtifactRegistry:
        super().start()
        return self

    # --- what tests arrange ----------------------------------------------------------------------

    def key_json(self) -> str:
        """The connector's service-account key file, pointing its token_uri at this fake."""
        pem = self._private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return json.dumps(
            {
                "type": "service_account",
                "project_id": self.project,
                "private_key_id": self.key_id,
                "private_key": pem,
                "client_email": ACCOUNT,
                "client_id": "1234567890",
                "token_uri": f"{self.url}{self.oauth_path}",
            }
        )

    def add_repository(self, repo: str, **fields: Any) -> None:
        self.repositories[repo] = {"format": "DOCKER", "mode": "STANDARD_REPOSITORY", **fields}
        self.policies.setdefault(self.repository_name(repo), {"version": 1, "etag": "BwY=", "bindings": []})

    def repository_name(self, repo: str) -> str:
        return f"projects/{self.project}/locations/{self.location}/repositories/{repo}"

    def bind(self, resource: str, role: str, *members: str, condition: dict[str, str] | None = None) -> None:
        """Add a binding to a repository (by id) or to the project ("project")."""
        name = f"projects/{self.project}" if resource == "project" else self.repository_name(resource)
        policy = self.policies.setdefault(name, {"version": 1, "etag": "BwY=", "bindings": []})
        binding: dict[str, Any] = {"role": role, "members": list(members)}
        if condition:
            binding["condition"], policy["version"] = condition, 3
        policy["bindings"].append(binding)

    def policy(self, resource: str) -> dict[str, Any]:
        name = f"projects/{self.project}" if resource == "project" else self.repository_name(resource)
        return self.policies[name]

    def add_key(self, email: str, key_id: str, **fields: Any) -> dict[str, Any]:
        key = {
            "name": f"projects/{email.split('@')[1].split('.')[0]}/serviceAccounts/{email}/keys/{key_id}",
            "privateKeyType": "TYPE_GOOGLE_CREDENTIALS_FILE",
            "keyAlgorithm": "KEY_ALG_RSA_2048",
            "validAfterTime": "2026-01-05T10:00:00Z",
            "validBeforeTime": NEVER,
            "keyOrigin": "GOOGLE_PROVIDED",
            "keyType": "USER_MANAGED",
            "disabled": False,
            **fields,
        }
        self.accounts.setdefault(email, []).append({k: v for k, v in key.items() if v is not None})
        return key

    def expire_tokens(self) -> None:
        """Every access token handed out stops working, as an hour later."""
        self._access_tokens.clear()

    def id_token(
        self,
        audience: str,
        email: str = PUSHER,
        *,
        issued: datetime | None = None,
        email_verified: bool = True,
        signed_by: rsa.RSAPrivateKey | None = None,
    ) -> str:
        """An ID token as Google signs one for a Pub/Sub push subscription (valid for an hour).
        `signed_by` another key forges one: same key id, wrong signature."""
        issued = issued or datetime.now(UTC)
        claims = {
            "iss": "https://accounts.google.com",
            "aud": audience,
            "azp": "101234567890123456789",
            "sub": "101234567890123456789",
            "email": email,
            "email_verified": email_verified,
            "iat": int(issued.timestamp()),
            "exp": int((issued + timedelta(hours=1)).timestamp()),
        }
        pem = (signed_by or self._signing_key).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        signer = crypt.RSASigner.from_string(pem, key_id=self.signing_key_id)  # type: ignore[no-untyped-call]
        token: bytes = jwt.encode(signer, claims)  # type: ignore[no-untyped-call]
        return token.decode()

    # --- the shape check -------------------------------------------------------------------------

    def check(self, request: Request, answer: Answer) -> None:
        errors = sorted(VALIDATORS[answer.operation].iter_errors(answer.body), key=str)
        if errors:
            where = [f"at {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors[:5]]
            raise FakeDrift(
                f"fake answer does not match {answer.operation} (registry-apis.md §7):\n  "
                + "\n  ".join(where)
            )

    # --- routing ---------------------------------------------------------------------------------

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        # The token endpoint is another Google host: faults queued for the APIs do not hit it.
        if environ.get("PATH_INFO") == self.oauth_path:
            self.requests_seen.append(f"{environ['REQUEST_METHOD']} {self.oauth_path}")
            request = Request(environ["REQUEST_METHOD"], self.oauth_path, {}, environ)
            return self._send(request, self._oauth_token(environ), start_response)
        if environ.get("PATH_INFO") in (CERTS_X509, CERTS_JWKS) and environ["REQUEST_METHOD"] == "GET":
            path = str(environ["PATH_INFO"])
            self.requests_seen.append(f"GET {path}")
            return self._send(Request("GET", path, {}, environ), self._certs(path), start_response)
        path = str(environ.get("PATH_INFO", ""))
        gcr = re.fullmatch(r"/v2/(.+)/tags/list", path)
        if self.gcr_extension and gcr and environ["REQUEST_METHOD"] == "GET" and self._is_gcr(gcr.group(1)):
            return self._gcr_tag_list(environ, start_response, gcr.group(1))
        return super().__call__(environ, start_response)

    def owns_v2_path(self, path: str) -> bool:
        return path == self.token_path

    def registry_credentials_ok(self, username: str, password: str) -> bool:
        return username == "oauth2accesstoken" and password in self._access_tokens

    def api(self, request: Request) -> Answer:
        header = str(request.environ.get("HTTP_AUTHORIZATION", ""))
        if not (header.startswith("Bearer ") and header[7:] in self._access_tokens):
            return google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        parent = rf"/v1/projects/{self.project}/locations/{self.location}/repositories"
        account = r"/v1/projects/[^/]+/serviceAccounts/([^/:]+)"
        routes: list[tuple[str, str, str, Callable[..., Answer]]] = [
            ("GET", parent, "repositories.list", self._list_repositories),
            ("GET", parent + r"/([^/:]+)/dockerImages", "dockerImages.list", self._list_images),
            ("GET", parent + r"/([^/:]+)/dockerImages/(.+)", "dockerImages.get", self._get_image),
            ("GET", parent + r"/([^/:]+):getIamPolicy", "getIamPolicy", self._get_policy),
            ("POST", parent + r"/([^/:]+):setIamPolicy", "setIamPolicy", self._set_policy),
            ("POST", parent + r"/([^/:]+):testIamPermissions", "testIamPermissions", self._test),
            (
                "POST",
                rf"/v1/projects/({self.project}):getIamPolicy",
                "projects.getIamPolicy",
                self._get_policy,
            ),
            (
                "POST",
                rf"/v1/projects/({self.project}):setIamPolicy",
                "projects.setIamPolicy",
                self._set_policy,
            ),
            (
                "POST",
                rf"/v1/projects/({self.project}):testIamPermissions",
                "projects.testIamPermissions",
                self._test,
            ),
            ("GET", account + "/keys", "keys.list", self._list_keys),
            ("GET", account + r"/keys/([^/:]+)", "keys.get", self._get_key),
            ("POST", account + r"/keys/([^/:]+):disable", "keys.disable", self._disable_key),
            ("POST", account + r":testIamPermissions", "testIamPermissions", self._test),
        ]
        for method, pattern, operation, handler in routes:
            if request.method == method and (match := re.fullmatch(pattern, request.path)):
                if operation in self.denied:
                    return google_error(403, "PERMISSION_DENIED", f"Permission denied on {operation}")
                answer = handler(request, *match.groups())
                answer.operation = answer.operation or (operation if answer.status < 300 else "")
                return answer
        return google_error(404, "NOT_FOUND", f"no route {request.method} {request.path}")

    # --- OAuth -----------------------------------------------------------------------------------

    def _oauth_token(self, environ: Environ) -> Answer:
        self.token_requests += 1
        length = int(environ.get("CONTENT_LENGTH") or 0)
        form = parse_qs(environ["wsgi.input"].read(length).decode())
        assertion = (form.get("assertion") or [""])[0]
        public = self._private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        try:
            # google-auth addresses the assertion to Google's endpoint whatever token_uri says.
            claims = jwt.decode(assertion, certs=public, audience="https://oauth2.googleapis.com/token")  # type: ignore[no-untyped-call]
        except ValueError:
            return Answer(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        if self.key_refused or claims.get("iss") != ACCOUNT:
            return Answer(
                400, {"error": "invalid_grant", "error_description": "Invalid grant: account not found"}
            )
        token = "ya29." + secrets.token_urlsafe(24)
        self._access_tokens.add(token)
        return Answer(
            200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}, operation="token"
        )

    # --- Google's ID-token signing keys -----------------------------------------------------------

    def _certs(self, path: str) -> Answer:
        public = self._signing_key.public_key()
        if path == CERTS_X509:
            body: dict[str, Any] = {self.signing_key_id: self._certificate().decode()}
            operation = "certs.x509"
        else:
            numbers = public.public_numbers()
            body = {
                "keys": [
                    {
                        "kty": "RSA",
                        "kid": self.signing_key_id,
                        "n": _base64url(numbers.n),
                        "e": _base64url(numbers.e),
                        "alg": "RS256",
                        "use": "sig",
                    }
                ]
            }
            operation = "certs.jwks"
        cache = f"public, max-age={self.certs_max_age}, must-revalidate, no-transform"
        return Answer(200, body, headers={"Cache-Control": cache}, operation=operation)

    def _certificate(self) -> bytes:
        """A self-signed certificate of the signing key, as oauth2/v1/certs publishes each key."""
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.signing_key_id)])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._signing_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=14))
            .sign(self._signing_key, hashes.SHA256())
        )
        return certificate.public_bytes(serialization.Encoding.PEM)

    # --- Artifact Registry -----------------------------------------------------------------------

    def _list_repositories(self, request: Request) -> Answer:
        items = [
            {
                "name": self.repository_name(repo),
                "createTime": "2026-01-02T09:00:00.123456Z",
                "updateTime": "2026-01-02T09:00:00.123456Z",
                "sizeBytes": "0",
                "registryUri": self._uri(repo),
                **fields,
            }
            for repo, fields in sorted(self.repositories.items())
        ]
        return self._page(request, "repositories", items)

    def _list_images(self, request: Request, repo: str) -> Answer:
        if repo not in self.repositories:
            return google_error(404, "NOT_FOUND", f"Repository {repo} not found")
        return self._page(request, "dockerImages", self._images(repo))

    def _get_image(self, request: Request, repo: str, name: str) -> Answer:
        # PATH_INFO arrives decoded once: "team%2Fapp@sha256:…" reads "team/app@sha256:…".
        path, _, digest = name.rpartition("@")
        found = [i for i in self._images(repo) if i["name"].endswith(f"/{quote(path, safe='')}@{digest}")]
        return Answer(200, found[0]) if found else google_error(404, "NOT_FOUND", f"{name} not found")

    def _images(self, repo: str) -> list[dict[str, Any]]:
        items = []
        for path, backing in self._paths(repo):
            by_digest: dict[str, list[str]] = {}
            for tag, digest in self.tags(backing):
                by_digest.setdefault(digest, []).append(tag)
            for digest, tags in sorted(by_digest.items()):
                if digest in self.unrecorded:
                    continue
                upload = self.upload_times.setdefault(digest, datetime.now(UTC))
                uploaded = google_time(upload)
                items.append(
                    {
                        "name": f"{self.repository_name(repo)}/dockerImages/{quote(path, safe='')}@{digest}",
                        "uri": f"{self._uri(repo)}/{path}@{digest}",
                        "tags": tags,
                        "imageSizeBytes": str(self._size(backing, digest)),
                        "uploadTime": uploaded,
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "buildTime": "2026-01-01T00:00:00Z",
                        "updateTime": google_time(self.update_times.get(digest, upload)),
                    }
                )
        return items

    def _paths(self, repo: str) -> list[tuple[str, str]]:
        """(image path, name in the backing registry) of each image path in a repository."""
        found = []
        for name in self.catalog():
            project, _, rest = name.partition("/")
            first, _, path = rest.partition("/")
            if project != self.project:
                continue
            if repo in GCR_HOSTS and first not in self.repositories:
                found.append((rest, name))  # gcr.io: <project>/<path>, no repository segment
            elif first == repo and path:
                found.append((path, name))
        return found

    def _is_gcr(self, name: str) -> bool:
        """Whether a /v2 name is a gcr.io one: <project>/<path>, with no Artifact Registry repository."""
        project, _, rest = name.partition("/")
        hosted = any(host in self.repositories for host in GCR_HOSTS)
        return hosted and project == self.project and rest.split("/", 1)[0] not in self.repositories

    def _gcr_tag_list(self, environ: Environ, start_response: StartResponse, name: str) -> Iterable[bytes]:
        header = str(environ.get("HTTP_AUTHORIZATION", ""))
        if not (header.startswith("Bearer ") and header[7:] in self._registry_tokens):
            return super().__call__(environ, start_response)  # the shared proxy challenges
        self.requests_seen.append(f"GET /v2/{name}/tags/list")
        tags = self.tags(name)
        manifest: dict[str, dict[str, Any]] = {}
        for tag, digest in tags:
            entry = manifest.setdefault(digest, {"tag": []})
            entry["tag"].append(tag)
        for digest, entry in manifest.items():
            uploaded = self.upload_times.setdefault(digest, datetime.now(UTC))
            created, uploaded_ms = self.gcr_times.get(digest, ("0", str(int(uploaded.timestamp() * 1000))))
            entry.update(
                imageSizeBytes=str(self._size(name, digest)),
                layerId="",
                mediaType=self._media_type(name, digest),
                timeCreatedMs=created,
                timeUploadedMs=uploaded_ms,
            )
        body = {"child": [], "manifest": manifest, "name": name, "tags": [tag for tag, _ in tags]}
        request = Request("GET", f"/v2/{name}/tags/list", {}, environ)
        return self._send(request, Answer(200, body, operation="gcr.tags/list"), start_response)

    def _media_type(self, backing: str, digest: str) -> str:
        response = loopback_session().head(
            f"{self.registry_url}/v2/{backing}/manifests/{digest}",
            headers={"Accept": MANIFEST_TYPES},
            timeout=10,
        )
        return response.headers.get("Content-Type", "")

    def _size(self, backing: str, digest: str) -> int:
        response = loopback_session().get(
            f"{self.registry_url}/v2/{backing}/manifests/{digest}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
            timeout=10,
        )
        manifest = response.json() if response.ok else {}
        return int((manifest.get("config") or {}).get("size", 0)) + sum(
            int(layer.get("size", 0)) for layer in manifest.get("layers") or []
        )

    def _uri(self, repo: str) -> str:
        return (
            f"{repo}/{self.project}"
            if repo in GCR_HOSTS
            else f"{self.location}-docker.pkg.dev/{self.project}/{repo}"
        )

    def _page(self, request: Request, key: str, items: list[dict[str, Any]]) -> Answer:
        size = min(1000, int(request.query.get("pageSize", ["50"])[0]))
        token = request.query.get("pageToken", [""])[0]
        start = int(base64.urlsafe_b64decode(token).decode()) if token else 0
        body: dict[str, Any] = {key: items[start : start + size]}
        if start + size < len(items):
            body["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        return Answer(200, body)

    # --- IAM policies ----------------------------------------------------------------------------

    def _resource(self, request: Request, name: str) -> str:
        return (
            f"projects/{self.project}"
            if name == self.project and "/locations/" not in request.path
            else self.repository_name(name)
        )

    def _get_policy(self, request: Request, name: str) -> Answer:
        resource = self._resource(request, name)
        if resource not in self.policies:
            return google_error(404, "NOT_FOUND", f"{resource} not found")
        return Answer(200, json.loads(json.dumps(self.policies[resource])))

    def _set_policy(self, request: Request, name: str) -> Answer:
        resource = self._resource(request, name)
        policy = (request.json() or {}).get("policy") or {}
        with self._lock:
            current = self.policies.get(resource)
            if current is None:
                return google_error(404, "NOT_FOUND", f"{resource} not found")
            if self.concurrent_edits:  # someone else wrote the policy since the caller read it
                self.concurrent_edits -= 1
                current["etag"] = base64.b64encode(secrets.token_bytes(6)).decode()
            if policy.get("etag") != current["etag"]:
                return google_error(409, "ABORTED", "There were concurrent policy changes.")
            if any("condition" in b for b in policy.get("bindings") or []) and policy.get("version") != 3:
                return google_error(400, "INVALID_ARGUMENT", "conditions need policy version 3")
            stored = {**policy, "etag": base64.b64encode(secrets.token_bytes(6)).decode()}
            self.policies[resource] = stored
        return Answer(200, json.loads(json.dumps(stored)))

    def _test(self, request: Request, name: str) -> Answer:
        asked = (request.json() or {}).get("permissions") or []
        held = [p for p in asked if p not in self.lacking]
        # proto3 JSON leaves out an empty repeated field: holding none is an empty object.
        return Answer(200, {"permissions": held} if held else {})

    # --- service-account keys --------------------------------------------------------------------

    def _list_keys(self, request: Request, email: str) -> Answer:
        if email not in self.accounts:
            return google_error(404, "NOT_FOUND", f"Service account {email} does not exist.")
        wanted = request.query.get("keyTypes")
        return Answer(
            200, {"keys": [k for k in self.accounts[email] if not wanted or k["keyType"] in wanted]}
        )

    def _key(self, email: str, key_id: str) -> dict[str, Any] | None:
        return next((k for k in self.accounts.get(email, []) if k["name"].endswith(f"/keys/{key_id}")), None)

    def _get_key(self, request: Request, email: str, key_id: str) -> Answer:
        key = self._key(email, key_id)
        return Answer(200, key) if key else google_error(404, "NOT_FOUND", f"Key {key_id} not found")

    def _disable_key(self, request: Request, email: str, key_id: str) -> Answer:
        key = self._key(email, key_id)
        if key is None:
            return google_error(404, "NOT_FOUND", f"Key {key_id} not found")
        key["disabled"] = True
        return Answer(200, {})


def _base64url(number: int) -> str:
    """A JWK integer: big-endian bytes, base64url without padding (RFC 7518 §6.3.1)."""
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
