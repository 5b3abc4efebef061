"""An Azure Container Registry on loopback: Entra, ARM and the ACR data plane on one TLS host.

Three services in one fake, as a connector sees them:

- Entra ID: the tenant's OpenID discovery document and a client-credentials token endpoint, which
  is all msal asks of an authority once instance discovery is off. msal insists on https, so the
  whole fake serves TLS with a throwaway certificate for 127.0.0.1 (`ca_bundle` for the client).
- ARM: the registry, its tokens, scope maps, replications, webhooks, role assignments and the
  caller's effective permissions, built from the acr-mgmt-examples bodies (key sets compared).
- The login server: `/oauth2/exchange` and `/oauth2/token` (Entra token → refresh → access token,
  or Basic with an ACR token), `/acr/v1/...` from what the backing docker-registry holds (checked
  against the data-plane swagger), and `/v2/` proxied to that registry behind ACR's challenge.
"""

from __future__ import annotations

import re
import secrets
import ssl
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from tests.certificates import loopback_tls_files
from tests.fakes.server import Answer, Environ, LoopbackFake, Request, StartResponse, error
from tests.fakes.specs import ACR, FakeDrift, arm_example
from tests.registries.harness import LOOPBACK

PROVIDER = "/providers/Microsoft.ContainerRegistry/registries"
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
ACR_PUSH = "8311e382-0749-4cb8-b61a-304f252e45ec"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
CREATED = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

# No example file covers tokens or RBAC (registry-apis.md §11; acr-mgmt-examples has none for a token's
# list, get or delete, nor for role assignments): their key sets follow §5.3.
# A token's deletion answers 200, 202 (still deleting) or 204 (no such token), without a body: the
# Tokens_Delete responses of the Microsoft.ContainerRegistry 2023-07-01 REST description.
TOKEN_DELETE_STATUSES = frozenset({200, 202, 204})
TOKEN_PROPERTY_KEYS = {"creationDate", "scopeMapId", "status", "provisioningState", "credentials"}
ROLE_ASSIGNMENT_PROPERTY_KEYS = {
    "roleDefinitionId",
    "principalId",
    "principalType",
    "scope",
    "condition",
    "conditionVersion",
    "createdOn",
    "updatedOn",
}


def acr_time(moment: datetime) -> str:
    """ACR writes seven fractional digits (.NET ticks) and a Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


@dataclass
class FakeToken:
    scope_map: str
    status: str = "enabled"
    # (name, expiry or None for never)
    passwords: list[tuple[str, datetime | None]] = field(default_factory=lambda: [("password1", None)])
    created: datetime = CREATED


@dataclass
class RoleAssignment:
    role: str  # a built-in role definition id (guid)
    principal_id: str
    principal_type: str  # User, Group, ServicePrincipal, ForeignGroup
    condition: str | None = None
    name: str = field(default_factory=lambda: secrets.token_hex(16))


class FakeAcr(LoopbackFake):
    token_path = "/oauth2/token"

    def __init__(self, registry_url: str) -> None:
        super().__init__(registry_url)
        self.tenant_id = "72f988bf-0000-4000-8000-000000000001"
        self.client_id = "c1d2e3f4-0000-4000-8000-000000000002"
        self.client_secret = secrets.token_urlsafe(16)
        self.subscription_id = "00000000-0000-4000-8000-000000000003"
        self.resource_group = "registries"
        self.name = "acme"
        self.location = "westeurope"
        self.sku = "Standard"  # sku.name and sku.tier, as in the RegistryGet example
        self.admin_user_enabled = False
        self.replications: dict[str, str] = {}  # region → displayStatus
        self.webhooks: dict[str, tuple[str, list[str]]] = {}  # name → (region, actions)
        self.scope_maps: dict[str, list[str]] = {}  # name → actions
        self.system_maps: dict[str, list[str]] = {"_repositories_pull": ["repositories/*/content/read"]}
        self.tokens: dict[str, FakeToken] = {}
        self.role_assignments: list[RoleAssignment] = []
        self.role_assignments_readable = True
        self.permissions: list[dict[str, list[str]]] = [{"actions": ["*/read"], "notActions": []}]
        self.permissions_readable = True
        self.acr_token = ("customs-reader", secrets.token_urlsafe(16))  # an ACR token for Basic auth
        self.tag_times: dict[tuple[str, str], datetime] = {}  # (repository, tag) → last pushed
        self.locked_tags: set[tuple[str, str]] = set()  # (repository, tag) with writeEnabled false
        self.entra_tokens: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self.scopes_asked: list[str] = []
        # Where a listing's next page is named: ACR sends both, a connector must manage with either.
        self.link_header = True
        self.link_body = True
        self.data_requests: list[tuple[str, dict[str, list[str]]]] = []  # /acr/v1 (path, query), in order
        self.deletions_pending: dict[str, int] = {}  # operation id → polls still answered "not yet"
        self._directory = tempfile.TemporaryDirectory(prefix="fake-acr-")
        self._cert, self._key = loopback_tls_files(Path(self._directory.name), "fake-acr")

    # --- lifecycle: one TLS host -----------------------------------------------------------------

    def start(self) -> FakeAcr:
        super().start()
        assert self._server is not None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self._cert, self._key)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.service = self.login_server
        return self

    def stop(self) -> None:
        super().stop()
        self._directory.cleanup()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"https://{LOOPBACK}:{self._server.server_port}"

    @property
    def login_server(self) -> str:
        return self.url.removeprefix("https://")

    @property
    def ca_bundle(self) -> str:
        return str(self._cert)

    @property
    def registry_id(self) -> str:
        group = f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
        return f"{group}{PROVIDER}/{self.name}"

    def public_config(self, **extra: Any) -> dict[str, Any]:
        return {
            "url": self.url,
            "tenant_id": self.tenant_id,
            "client_id": self.client_id,
            "subscription_id": self.subscription_id,
            "resource_group": self.resource_group,
            "registry_name": self.name,
            "authority_url": self.url,
            "arm_url": self.url,
            **extra,
        }

    def revoke_tokens(self) -> None:
        """Every Entra, refresh and access token dies, as when they expire mid-sync."""
        self.entra_tokens.clear()
        self.refresh_tokens.clear()
        self._registry_tokens.clear()

    def registry_credentials_ok(self, username: str, password: str) -> bool:
        return secrets.compare_digest(f"{username}:{password}", ":".join(self.acr_token))

    # --- routing ---------------------------------------------------------------------------------

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path, method = str(environ.get("PATH_INFO", "")), str(environ["REQUEST_METHOD"])
        request = Request(method, path, parse_qs(str(environ.get("QUERY_STRING", ""))), environ)
        if path == "/v2" or path.startswith("/v2/"):
            return super().__call__(environ, start_response)
        self.requests_seen.append(f"{method} {path}")
        answer = self.fail_next.pop(0) if self.fail_next else self._route(request)
        return self._send(request, answer, start_response)

    def _route(self, request: Request) -> Answer:
        path = request.path
        if path == f"/{self.tenant_id}/v2.0/.well-known/openid-configuration":
            return self._openid_configuration()
        if path == f"/{self.tenant_id}/oauth2/v2.0/token" and request.method == "POST":
            return self._entra_token(request)
        if path == "/oauth2/exchange" and request.method == "POST":
            return self._exchange(request)
        if path == "/oauth2/token":
            return self._acr_token(request)
        if path.startswith("/acr/v1/"):
            return self._data_plane(request)
        if path.startswith("/subscriptions/"):
            return self._arm(request)
        return error(404, "NOT_FOUND", f"no route {path}")

    # --- Entra -----------------------------------------------------------------------------------

    def _openid_configuration(self) -> Answer:
        base = f"{self.url}/{self.tenant_id}"
        return Answer(
            200,
            {
                "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            },
        )

    def _entra_token(self, request: Request) -> Answer:
        form = _form(request)
        if form.get("grant_type") != "client_credentials":
            return Answer(400, {"error": "unsupported_grant_type"})
        if form.get("client_id") != self.client_id or not secrets.compare_digest(
            form.get("client_secret", ""), self.client_secret
        ):
            return Answer(
                401,
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.",
                },
            )
        token = secrets.token_urlsafe(24)
        self.entra_tokens.add(token)
        return Answer(
            200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}
        )

    # --- the login server's token endpoints ------------------------------------------------------

    def _exchange(self, request: Request) -> Answer:
        form = _form(request)
        if form.get("grant_type") != "access_token" or form.get("service") != self.login_server:
            return error(400, "UNSUPPORTED", "grant_type access_token and this service expected")
        if form.get("access_token") not in self.entra_tokens or form.get("tenant") != self.tenant_id:
            return error(401, "UNAUTHORIZED", "the Entra token is not valid for this tenant")
        token = secrets.token_urlsafe(24)
        self.refresh_tokens.add(token)
        return Answer(200, {"refresh_token": token}, operation="/oauth2/exchange")

    def _acr_token(self, request: Request) -> Answer:
        if request.method == "POST":
            form = _form(request)
            if (
                form.get("grant_type") != "refresh_token"
                or form.get("refresh_token") not in self.refresh_tokens
            ):
                return error(401, "UNAUTHORIZED", "the refresh token is not valid")
            scope = form.get("scope", "")
        else:
            credentials = self.basic_credentials(request.environ)
            if credentials is None or not self.registry_credentials_ok(*credentials):
                return error(401, "UNAUTHORIZED", "unauthorized")
            scope = request.query.get("scope", [""])[0]
        self.scopes_asked.append(scope)
        token = secrets.token_urlsafe(24)
        self._registry_tokens.add(token)
        return Answer(200, {"access_token": token}, operation="/oauth2/token")

    # --- the data plane --------------------------------------------------------------------------

    def _data_plane(self, request: Request) -> Answer:
        header = str(request.environ.get("HTTP_AUTHORIZATION", ""))
        if not (header.startswith("Bearer ") and header[7:] in self._registry_tokens):
            challenge = f'Bearer realm="{self.url}/oauth2/token",service="{self.login_server}"'
            answer = error(401, "UNAUTHORIZED", "authentication required")
            answer.headers["WWW-Authenticate"] = challenge
            return answer
        if request.query.get("api-version") != ["2021-07-01"]:
            return error(400, "UNSUPPORTED", "api-version 2021-07-01 expected")
        self.data_requests.append((request.path, request.query))
        path = request.path.removeprefix("/acr/v1/")
        if path == "_catalog":
            return self._paged(
                request, self.catalog(), "repositories", "/acr/v1/_catalog", "/acr/v1/_catalog"
            )
        if match := re.fullmatch(r"(.+)/_tags", path):
            repository = match.group(1)
            items = [self._tag_json(repository, tag, digest) for tag, digest in self.tags(repository)]
            return self._paged(
                request,
                items,
                "tags",
                "/acr/v1/{name}/_tags",
                f"/acr/v1/{quote(repository)}/_tags",
                extra={"registry": self.login_server, "imageName": repository},
                key="name",
            )
        if match := re.fullmatch(r"(.+)/_manifests/(sha256:[0-9a-f]{64})", path):
            repository, digest = match.groups()
            tags = [tag for tag, d in self.tags(repository) if d == digest]
            if not tags:
                return error(404, "MANIFEST_UNKNOWN", f"{repository}@{digest}")
            body = {
                "registry": self.login_server,
                "imageName": repository,
                "manifest": self._manifest_json(repository, digest, tags),
            }
            return Answer(200, body, operation="/acr/v1/{name}/_manifests/{digest}")
        return error(404, "NAME_UNKNOWN", f"no route {request.path}")

    def _tag_json(self, repository: str, tag: str, digest: str) -> dict[str, Any]:
        pushed = self.tag_times.setdefault((repository, tag), CREATED)
        return {
            "name": tag,
            "digest": digest,
            "createdTime": acr_time(min(pushed, CREATED)),
            "lastUpdateTime": acr_time(pushed),
            "signed": False,
            "changeableAttributes": {
                "deleteEnabled": True,
                "writeEnabled": (repository, tag) not in self.locked_tags,
                "readEnabled": True,
                "listEnabled": True,
            },
        }

    def _manifest_json(self, repository: str, digest: str, tags: list[str]) -> dict[str, Any]:
        return {
            "digest": digest,
            "imageSize": 0,
            "createdTime": acr_time(CREATED),
            "lastUpdateTime": acr_time(CREATED),
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "tags": tags,
            "changeableAttributes": {
                "deleteEnabled": True,
                "writeEnabled": True,
                "readEnabled": True,
                "listEnabled": True,
            },
        }

    def _paged(
        self,
        request: Request,
        items: list[Any],
        name: str,
        template: str,
        path: str,
        *,
        extra: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> Answer:
        """ACR's `n`/`last` paging: `last` is the name the previous page ended with, compared lexically."""
        n = int(request.query.get("n", ["100"])[0])
        last = request.query.get("last", [""])[0]
        names = [item[key] if key else item for item in items]
        start = sum(1 for each in names if last and each <= last)
        chunk = items[start : start + n]
        body: dict[str, Any] = {**(extra or {}), name: chunk}
        headers = {}
        if start + n < len(items):
            link = f"{path}?last={quote(str(names[start + n - 1]))}&n={n}&api-version=2021-07-01"
            if self.link_header:
                headers["Link"] = f'<{link}>; rel="next"'
            if self.link_body:
                body["link"] = link
        return Answer(200, body, headers=headers, operation=template)

    # --- ARM -------------------------------------------------------------------------------------

    def _arm(self, request: Request) -> Answer:
        header = str(request.environ.get("HTTP_AUTHORIZATION", ""))
        if not (header.startswith("Bearer ") and header[7:] in self.entra_tokens):
            return Answer(
                401, {"error": {"code": "ExpiredAuthenticationToken", "message": "The access token expiry"}}
            )
        if not request.path.startswith(self.registry_id):
            return _arm_error(404, "ResourceNotFound", f"no resource {request.path}")
        rest = request.path[len(self.registry_id) :]
        method = request.method
        if rest == "/providers/Microsoft.Authorization/roleAssignments" and method == "GET":
            if not self.role_assignments_readable:
                return _arm_error(
                    403,
                    "AuthorizationFailed",
                    "does not have authorization to perform action "
                    "'Microsoft.Authorization/roleAssignments/read'",
                )
            return Answer(
                200,
                {"value": [self._assignment_json(a) for a in self.role_assignments]},
                operation="arm:roleAssignments",
            )
        if rest == "/providers/Microsoft.Authorization/permissions" and method == "GET":
            if not self.permissions_readable:
                return _arm_error(
                    403,
                    "AuthorizationFailed",
                    "does not have authorization to perform action "
                    "'Microsoft.Authorization/permissions/read'",
                )
            return Answer(
                200, {"value": [{**p, "dataActions": [], "notDataActions": []} for p in self.permissions]}
            )
        if request.query.get("api-version") != ["2023-07-01"]:
            return _arm_error(400, "InvalidApiVersionParameter", "api-version 2023-07-01 expected")
        if rest == "" and method == "GET":
            return Answer(200, self._registry_json(), operation="arm:2023-07-01-RegistryGet")
        if rest == "" and method == "PATCH":
            body = request.json() or {}
            self.admin_user_enabled = bool(
                (body.get("properties") or {}).get("adminUserEnabled", self.admin_user_enabled)
            )
            return Answer(200, self._registry_json(), operation="arm:2023-07-01-RegistryGet")
        if rest == "/replications" and method == "GET":
            return self._arm_list(
                [self._replication_json(r, s) for r, s in self.replications.items()],
                request,
                "arm:2023-07-01-ReplicationList",
            )
        if rest == "/webhooks" and method == "GET":
            return self._arm_list(
                [self._webhook_json(n, *w) for n, w in self.webhooks.items()],
                request,
                "arm:2023-07-01-WebhookList",
            )
        if rest == "/scopeMaps" and method == "GET":
            maps = [self._scope_map_json(n, a, "UserDefined") for n, a in self.scope_maps.items()]
            maps += [self._scope_map_json(n, a, "SystemDefined") for n, a in self.system_maps.items()]
            return self._arm_list(maps, request, "arm:scopeMaps")
        if match := re.fullmatch(r"/scopeMaps/([^/]+)", rest):
            map_name = unquote(match.group(1))
            if map_name not in self.scope_maps:
                return _arm_error(404, "ResourceNotFound", f"scope map {map_name}")
            if method == "PATCH":
                self.scope_maps[map_name] = list(
                    ((request.json() or {}).get("properties") or {}).get("actions") or []
                )
            return Answer(
                200,
                self._scope_map_json(map_name, self.scope_maps[map_name], "UserDefined"),
                operation="arm:2023-07-01-ScopeMapCreate",
            )
        if rest == "/tokens" and method == "GET":
            return self._arm_list(
                [self._token_json(n, t) for n, t in self.tokens.items()], request, "arm:tokens"
            )
        if match := re.fullmatch(r"/tokens/([^/]+)", rest):
            token_name = unquote(match.group(1))
            token = self.tokens.get(token_name)
            if token is None and method == "DELETE":
                return Answer(204, operation="arm:tokenDelete")  # ARM: deleting nothing is no error
            if token is None:
                return _arm_error(404, "ResourceNotFound", f"token {token_name}")
            if method == "DELETE":
                return self._delete_token(token_name)
            if method == "PATCH":
                status = ((request.json() or {}).get("properties") or {}).get("status")
                token.status = status or token.status
                # A real update is long-running: 201 and a status URL to poll.
                answer = Answer(201, self._token_json(token_name, token), operation="arm:token")
                answer.headers["Azure-AsyncOperation"] = (
                    f"{self.url}{self.registry_id}/operationStatuses/tok-1?api-version=2023-07-01"
                )
                return answer
            return Answer(200, self._token_json(token_name, token), operation="arm:token")
        if rest.startswith("/operationStatuses/"):
            return Answer(200, {"status": "Succeeded"})
        if match := re.fullmatch(r"/operationResults/([^/]+)", rest):
            return self._operation_result(match.group(1))
        return _arm_error(404, "ResourceNotFound", f"no route {rest}")

    def _delete_token(self, name: str) -> Answer:
        """A real deletion is long-running: 202 and a Location to poll until it answers 204."""
        del self.tokens[name]
        operation = f"del-{name}"
        self.deletions_pending[operation] = 1
        answer = Answer(202, operation="arm:tokenDelete")
        answer.headers["Location"] = (
            f"{self.url}{self.registry_id}/operationResults/{operation}?api-version=2023-07-01"
        )
        answer.headers["Retry-After"] = "3"
        return answer

    def _operation_result(self, operation: str) -> Answer:
        pending = self.deletions_pending.get(operation, 0)
        if pending:
            self.deletions_pending[operation] = pending - 1
            return Answer(202, headers={"Retry-After": "3"})
        return Answer(204)

    def _arm_list(self, items: list[dict[str, Any]], request: Request, operation: str) -> Answer:
        """ARM lists page with an absolute nextLink; two items a page here, so tests see it followed."""
        skip = int(request.query.get("$skipToken", ["0"])[0])
        body: dict[str, Any] = {"value": items[skip : skip + 2]}
        if skip + 2 < len(items):
            body["nextLink"] = f"{self.url}{request.path}?api-version=2023-07-01&$skipToken={skip + 2}"
        return Answer(200, body, operation=operation)

    def _registry_json(self) -> dict[str, Any]:
        body = arm_example("2023-07-01-RegistryGet")
        body.update(
            id=self.registry_id,
            name=self.name,
            location=self.location,
            sku={"name": self.sku, "tier": self.sku},
        )
        body["properties"].update(
            loginServer=self.login_server,
            adminUserEnabled=self.admin_user_enabled,
            creationDate=acr_time(CREATED),
        )
        return dict(body)

    def _replication_json(self, region: str, status: str) -> dict[str, Any]:
        item = arm_example("2023-07-01-ReplicationList")["value"][0]
        item.update(id=f"{self.registry_id}/replications/{region}", name=region, location=region)
        item["properties"]["status"].update(
            displayStatus=status, message=f"The replication is {status.lower()}."
        )
        return dict(item)

    def _webhook_json(self, name: str, region: str, actions: list[str]) -> dict[str, Any]:
        item = arm_example("2023-07-01-WebhookList")["value"][0]
        item.update(id=f"{self.registry_id}/webhooks/{name}", name=name, location=region)
        item["properties"].update(actions=actions, scope="")
        return dict(item)

    def _scope_map_json(self, name: str, actions: list[str], kind: str) -> dict[str, Any]:
        item = arm_example("2023-07-01-ScopeMapCreate")
        item.update(id=f"{self.registry_id}/scopeMaps/{name}", name=name)
        item["properties"].update(actions=list(actions), type=kind, creationDate=acr_time(CREATED))
        return dict(item)

    def _token_json(self, name: str, token: FakeToken) -> dict[str, Any]:
        return {
            "id": f"{self.registry_id}/tokens/{name}",
            "name": name,
            "type": "Microsoft.ContainerRegistry/registries/tokens",
            "properties": {
                "creationDate": acr_time(token.created),
                "scopeMapId": f"{self.registry_id}/scopeMaps/{token.scope_map}",
                "status": token.status,
                "provisioningState": "Succeeded",
                "credentials": {
                    "certificates": [],
                    "passwords": [
                        {
                            "creationTime": acr_time(token.created),
                            "expiry": acr_time(e) if e else None,
                            "name": n,
                        }
                        for n, e in token.passwords
                    ],
                },
            },
        }

    def _assignment_json(self, assignment: RoleAssignment) -> dict[str, Any]:
        scope = self.registry_id
        return {
            "id": f"{scope}/providers/Microsoft.Authorization/roleAssignments/{assignment.name}",
            "name": assignment.name,
            "type": "Microsoft.Authorization/roleAssignments",
            "properties": {
                "roleDefinitionId": f"/subscriptions/{self.subscription_id}/providers/"
                f"Microsoft.Authorization/roleDefinitions/{assignment.role}",
                "principalId": assignment.principal_id,
                "principalType": assignment.principal_type,
                "scope": scope,
                "condition": assignment.condition,
                "conditionVersion": "2.0" if assignment.condition else None,
                "createdOn": acr_time(CREATED),
                "updatedOn": acr_time(CREATED),
            },
        }

    # --- checks ----------------------------------------------------------------------------------

    def check(self, request: Request, answer: Answer) -> None:
        operation = answer.operation
        if not operation.startswith("arm:"):
            ACR.validate(request.method, operation, answer.body, status=200)
            return
        kind = operation.removeprefix("arm:")
        if kind == "tokenDelete":
            if answer.status not in TOKEN_DELETE_STATUSES or answer.body is not None:
                raise FakeDrift(f"a token's deletion answers {sorted(TOKEN_DELETE_STATUSES)} without a body")
            return
        body = answer.body
        items: list[Any] = body["value"] if isinstance(body, dict) and "value" in body else [body]
        for item in items:
            if kind in ("tokens", "token"):
                same_keys(
                    {"id": 0, "name": 0, "type": 0, "properties": dict.fromkeys(TOKEN_PROPERTY_KEYS, None)},
                    item,
                    kind,
                )
            elif kind == "roleAssignments":
                same_keys(
                    {
                        "id": 0,
                        "name": 0,
                        "type": 0,
                        "properties": dict.fromkeys(ROLE_ASSIGNMENT_PROPERTY_KEYS, None),
                    },
                    item,
                    kind,
                )
            elif kind == "scopeMaps":
                same_keys(arm_example("2023-07-01-ScopeMapCreate"), item, kind)
            else:
                golden = arm_example(kind)
                same_keys(golden["value"][0] if "value" in golden else golden, item, kind)


def same_keys(golden: Any, actual: Any, where: str) -> None:
    """The fake's body has exactly the golden example's keys, all the way down (null: anything goes)."""
    if isinstance(golden, dict):
        if not isinstance(actual, dict):
            raise FakeDrift(f"{where}: an object expected, got {type(actual).__name__}")
        if set(golden) != set(actual):
            raise FakeDrift(
                f"fake ARM answer does not match the example at {where}: "
                f"missing {sorted(set(golden) - set(actual))}, extra {sorted(set(actual) - set(golden))}"
            )
        for key, value in golden.items():
            if value is not None:
                same_keys(value, actual[key], f"{where}/{key}")
    elif isinstance(golden, list) and golden and isinstance(actual, list):
        for item in actual:
            same_keys(golden[0], item, f"{where}[]")


def _form(request: Request) -> dict[str, str]:
    length = int(request.environ.get("CONTENT_LENGTH") or 0)
    raw = request.environ["wsgi.input"].read(length).decode() if length else ""
    return {key: values[0] for key, values in parse_qs(raw).items()}


def _arm_error(status: int, code: str, message: str) -> Answer:
    return Answer(status, {"error": {"code": code, "message": message}})
