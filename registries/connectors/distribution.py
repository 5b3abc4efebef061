"""docker/distribution and any OCI Distribution v2 registry: catalog, tags, manifests, indexes, configs.

Authentication follows the registry's challenge: anonymous first, then Basic, or the Docker token
flow (a bearer token per scope from the realm the registry names). Every manifest and config is
checked against its digest: a registry (or a proxy) that hands back other bytes is an error.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Collection, Iterator
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urljoin

import requests
from pydantic import SecretStr, field_validator

from portal.http import OutboundSession, TransientError, outbound_session
from registries.connectors.base import (
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    Capability,
    ConnectorConfig,
    PermissionCheck,
    Platform,
    PostureCheck,
    PostureFact,
    PostureState,
    RemoteArtifact,
    RemoteRepository,
    RemoteTag,
    http_url,
    parse_rfc3339,
)
from registries.connectors.errors import (
    AuthError,
    ConnectorError,
    PermanentError,
    json_object,
    raise_for_status,
)

# Every manifest type Customs reads, most specific first; schema1 is deliberately absent.
ACCEPT = ", ".join(sorted(INDEX_MEDIA_TYPES | MANIFEST_MEDIA_TYPES))
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


class DistributionConfig(ConnectorConfig):
    url: str
    username: str | None = None
    password: SecretStr | None = None
    verify_tls: bool = True
    page_size: int = 100

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return http_url(value)

    @field_validator("page_size")
    @classmethod
    def _page_size(cls, value: int) -> int:
        if not 1 <= value <= 1000:  # distribution refuses n > 1000 (PAGINATION_NUMBER_INVALID)
            raise ValueError("page size must be between 1 and 1000")
        return value


class DistributionConnector:
    kind: ClassVar[str] = "distribution"
    label: ClassVar[str] = "Docker distribution / OCI registry"
    config_class: ClassVar[type[ConnectorConfig]] = DistributionConfig
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.REPOSITORIES, Capability.ARTIFACTS, Capability.EVENTS, Capability.POSTURE}
    )
    needs: ClassVar[tuple[str, ...]] = (
        "list the catalog (registry:catalog:*)",
        "pull every repository (repository:<name>:pull); nothing more: Customs never pushes or deletes",
    )

    def __init__(self, config: DistributionConfig) -> None:
        self.config = config
        # Sync calls this connector from several threads; each gets its own HTTP session.
        self._local = threading.local()
        self._tokens: dict[str, str] = {}
        self._tokens_lock = threading.Lock()

    # --- the interface ---------------------------------------------------------------------------

    def check(self) -> None:
        self._get("/v2/", scope="")

    def check_permissions(self) -> list[PermissionCheck]:
        catalog = PermissionCheck(self.needs[0], ok=True)
        first: str | None = None
        try:
            response = self._get(f"{self.config.url}/v2/_catalog?n=1", scope="registry:catalog:*")
            first = next(iter(json_object(response).get("repositories") or []), None)
        except ConnectorError as exc:
            catalog = PermissionCheck(self.needs[0], ok=False, detail=str(exc))
        if first is None:
            return [catalog, PermissionCheck(self.needs[1], ok=catalog.ok, detail="no repository to try yet")]
        try:
            self._get(f"/v2/{first}/tags/list", scope=_pull(first))
        except ConnectorError as exc:
            return [catalog, PermissionCheck(self.needs[1], ok=False, detail=f"{first}: {exc}")]
        return [catalog, PermissionCheck(self.needs[1], ok=True, detail=f"tried on {first}")]

    def repositories(self) -> Iterator[RemoteRepository]:
        url: str | None = f"{self.config.url}/v2/_catalog?n={self.config.page_size}"
        while url:
            response = self._get(url, scope="registry:catalog:*")
            for name in json_object(response).get("repositories") or []:
                yield RemoteRepository(name=name)
            url = self._next_page(response)

    def tags(self, repository: str) -> list[RemoteTag]:
        names = self.tag_list(repository).get("tags") or []  # distribution answers "tags": null when empty
        return [RemoteTag(name=name, digest=self.resolve(repository, name)) for name in sorted(names)]

    def tag_list(self, repository: str) -> dict[str, Any]:
        """The tags/list answer as the registry sent it, vendor extensions included (gcr.io's `manifest`)."""
        return json_object(self._get(f"/v2/{repository}/tags/list", scope=_pull(repository)))

    def resolve(self, repository: str, reference: str) -> str:
        """The digest a tag points at, with a HEAD: no body, and not counted as a pull by most registries."""
        response = self._request(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            scope=_pull(repository),
            headers={"Accept": ACCEPT},
        )
        digest = response.headers.get("Docker-Content-Digest", "")
        if not digest.startswith("sha256:"):
            # Some registries omit the header on HEAD: fall back to hashing the manifest itself.
            body = self._get(
                f"/v2/{repository}/manifests/{reference}", scope=_pull(repository), headers={"Accept": ACCEPT}
            ).content
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
        return digest

    def artifact(self, repository: str, digest: str) -> RemoteArtifact:
        manifest, media_type = self._manifest(repository, digest)
        if media_type in INDEX_MEDIA_TYPES:
            return self._index(repository, digest, media_type, manifest)
        return self._image(repository, digest, media_type, manifest, platform=None)

    # --- posture: what a client without credentials gets ----------------------------------------

    def read_posture(self, production: Collection[str] = ()) -> Iterator[PostureFact]:
        """Anonymous access and the kind of sign-in, probed as a stranger would; and tag immutability,
        which docker distribution does not have: anyone allowed to push may move any tag."""
        yield from self._sign_in_posture()
        for name in sorted(production):
            yield PostureFact(
                PostureCheck.TAG_MUTABLE,
                PostureState.FAILING,
                "docker distribution cannot make tags immutable: whoever may push can move this "
                "repository's tags",
                subject=name,
                evidence_url=f"{self.config.url}/v2/{name}/tags/list",
            )

    def _sign_in_posture(self) -> list[PostureFact]:
        where = f"{self.config.url}/v2/"
        # No credentials on purpose: the session carries none, _send adds them per request.
        response = self._session.get(where)
        scheme, _, params = response.headers.get("WWW-Authenticate", "").partition(" ")
        if response.ok:
            return [
                _fact(
                    PostureCheck.ANONYMOUS_PULL,
                    PostureState.FAILING,
                    "GET /v2/ answers without credentials: no authentication is configured, anyone "
                    "who reaches the registry may pull (and push)",
                    where,
                ),
                _fact(PostureCheck.SSO_NOT_ENFORCED, PostureState.FAILING, "no sign-in at all", where),
            ]
        if response.status_code != 401:
            text = f"GET /v2/ without credentials answered {response.status_code}"
            return [_fact(PostureCheck.ANONYMOUS_PULL, PostureState.UNKNOWN, text, where)]
        if scheme.lower() == "basic":
            return [
                _fact(PostureCheck.ANONYMOUS_PULL, PostureState.OK, "GET /v2/ asks for a password", where),
                _fact(
                    PostureCheck.SSO_NOT_ENFORCED,
                    PostureState.FAILING,
                    "Basic authentication: accounts live in the registry's own password file, outside "
                    "the directory (put the registry behind Customs' token server)",
                    where,
                ),
            ]
        if scheme.lower() == "bearer":
            challenge = dict(_CHALLENGE_PARAM.findall(params))
            sso = _fact(
                PostureCheck.SSO_NOT_ENFORCED,
                PostureState.UNKNOWN,
                f"token authentication through {challenge.get('realm') or 'an unnamed realm'}: whether "
                "it signs people in through the directory is up to that token server",
                where,
            )
            return [self._anonymous_token_pull(challenge), sso]
        text = f"GET /v2/ asks for {scheme or 'an unnamed'} authentication"
        return [_fact(PostureCheck.ANONYMOUS_PULL, PostureState.UNKNOWN, text, where)]

    def _anonymous_token_pull(self, challenge: dict[str, str]) -> PostureFact:
        """Whether the token server hands a stranger a token that pulls: tried on one repository."""
        first = next(iter(self.repositories()), None)  # with Customs' own credentials
        realm = challenge.get("realm", "")
        if first is None or not realm:
            why = "no repository to try an anonymous pull on" if realm else "the challenge names no realm"
            return _fact(PostureCheck.ANONYMOUS_PULL, PostureState.UNKNOWN, why, realm)
        scope = _pull(first.name)
        answer = self._session.get(realm, params={"service": challenge.get("service", ""), "scope": scope})
        body = json_object(answer) if answer.ok else {}
        # A token server grants the intersection of what is asked and allowed: a token with no
        # access is still a token, so the pull itself is tried with it.
        if token := body.get("token") or body.get("access_token"):
            tags = self._session.get(
                f"{self.config.url}/v2/{first.name}/tags/list", headers={"Authorization": f"Bearer {token}"}
            )
            if tags.ok:
                return _fact(
                    PostureCheck.ANONYMOUS_PULL,
                    PostureState.FAILING,
                    f"{realm} gives a client without credentials a token that lists {first.name}'s tags",
                    realm,
                )
        return _fact(
            PostureCheck.ANONYMOUS_PULL,
            PostureState.OK,
            f"a client without credentials cannot pull {first.name} (token server {realm})",
            realm,
        )

    # --- manifests -------------------------------------------------------------------------------

    def _manifest(self, repository: str, digest: str) -> tuple[dict[str, Any], str]:
        response = self._get(
            f"/v2/{repository}/manifests/{digest}", scope=_pull(repository), headers={"Accept": ACCEPT}
        )
        _check_digest(response.content, digest, what=f"manifest {repository}@{digest}")
        manifest = json_object(response)
        media_type = manifest.get("mediaType") or response.headers.get("Content-Type", "").split(";")[0]
        if media_type not in INDEX_MEDIA_TYPES | MANIFEST_MEDIA_TYPES:
            raise PermanentError(
                f"{repository}@{digest} is a {media_type or 'schema1'} manifest, which Customs cannot read"
            )
        return manifest, media_type

    def _index(self, repository: str, digest: str, media_type: str, index: dict[str, Any]) -> RemoteArtifact:
        children = []
        for descriptor in index.get("manifests") or []:
            if descriptor.get("mediaType") not in MANIFEST_MEDIA_TYPES:
                continue  # attestations and nested indexes: not platform images
            child, child_type = self._manifest(repository, descriptor["digest"])
            children.append(
                self._image(
                    repository,
                    descriptor["digest"],
                    child_type,
                    child,
                    platform=_platform(descriptor.get("platform")),
                )
            )
        return RemoteArtifact(
            digest=digest,
            media_type=media_type,
            size=sum(child.size for child in children),
            annotations=dict(index.get("annotations") or {}),
            created=_created(index.get("annotations") or {}, {}),
            children=tuple(children),
        )

    def _image(
        self,
        repository: str,
        digest: str,
        media_type: str,
        manifest: dict[str, Any],
        platform: Platform | None,
    ) -> RemoteArtifact:
        config_descriptor = manifest.get("config") or {}
        layers = manifest.get("layers") or []
        config = self._config(repository, config_descriptor.get("digest", ""))
        annotations = dict(manifest.get("annotations") or {})
        return RemoteArtifact(
            digest=digest,
            media_type=media_type,
            size=int(config_descriptor.get("size", 0)) + sum(int(layer.get("size", 0)) for layer in layers),
            platform=platform or _platform(config),
            config_digest=config_descriptor.get("digest", ""),
            layer_digests=tuple(layer["digest"] for layer in layers),
            diff_ids=tuple((config.get("rootfs") or {}).get("diff_ids") or ()),
            labels=dict((config.get("config") or {}).get("Labels") or {}),
            annotations=annotations,
            created=_created(annotations, config),
        )

    def _config(self, repository: str, digest: str) -> dict[str, Any]:
        if not digest:
            return {}
        response = self._get(f"/v2/{repository}/blobs/{digest}", scope=_pull(repository))
        _check_digest(response.content, digest, what=f"config {repository}@{digest}")
        return json_object(response)

    # --- HTTP and authentication -----------------------------------------------------------------

    @property
    def _session(self) -> OutboundSession:
        session: OutboundSession | None = getattr(self._local, "session", None)
        if session is None:
            session = outbound_session(purpose="distribution")
            if not self.config.verify_tls:
                session.verify = False  # an admin's explicit choice for a lab registry
            self._local.session = session
        return session

    def _get(self, path: str, *, scope: str, headers: dict[str, str] | None = None) -> requests.Response:
        return self._request("GET", path, scope=scope, headers=headers)

    def _request(
        self, method: str, path: str, *, scope: str, headers: dict[str, str] | None = None
    ) -> requests.Response:
        url = path if path.startswith("http") else f"{self.config.url}{path}"
        response = self._send(method, url, scope, headers or {})
        if response.status_code == 401 and (challenge := response.headers.get("WWW-Authenticate")):
            self._answer(challenge, scope)
            response = self._send(method, url, scope, headers or {})
        raise_for_status(response)
        return response

    def _send(self, method: str, url: str, scope: str, headers: dict[str, str]) -> requests.Response:
        headers = dict(headers)
        auth = None
        if token := self._tokens.get(scope):
            headers["Authorization"] = f"Bearer {token}"
        elif getattr(self._local, "basic", False) and self.config.username:
            auth = (self.config.username, self._password())
        return self._session.request(method, url, headers=headers, auth=auth)

    def _answer(self, challenge: str, scope: str) -> None:
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            if not self.config.username:
                raise AuthError("the registry wants a username and password, and none is configured")
            self._local.basic = True
            return
        if scheme.lower() != "bearer":
            raise AuthError(f"the registry asks for {scheme} authentication, which Customs does not speak")
        fields = dict(_CHALLENGE_PARAM.findall(params))
        token = self._fetch_token(fields, scope or fields.get("scope", ""))
        with self._tokens_lock:
            self._tokens[scope] = token

    def _fetch_token(self, challenge: dict[str, str], scope: str) -> str:
        realm = challenge.get("realm")
        if not realm:
            raise AuthError("the registry's bearer challenge names no realm")
        params = {"service": challenge.get("service", "")}
        if scope:
            params["scope"] = scope
        auth = (self.config.username, self._password()) if self.config.username else None
        response = self._session.get(realm, params=params, auth=auth)
        raise_for_status(response)
        body = json_object(response)
        token = body.get("token") or body.get("access_token")
        if not token:
            raise AuthError(f"the token server at {realm} answered without a token")
        return str(token)

    def _password(self) -> str:
        return self.config.password.get_secret_value() if self.config.password else ""

    def _next_page(self, response: requests.Response) -> str | None:
        # Follow the server's link (distribution's is relative) instead of computing the next page.
        match = _NEXT_LINK.search(response.headers.get("Link", ""))
        return urljoin(self.config.url + "/", match.group(1)) if match else None


def _pull(repository: str) -> str:
    return f"repository:{repository}:pull"


def _fact(check: PostureCheck, state: PostureState, evidence: str, url: str) -> PostureFact:
    return PostureFact(check, state, evidence, evidence_url=url)


def _check_digest(body: bytes, digest: str, *, what: str) -> None:
    algorithm, _, expected = digest.partition(":")
    if algorithm not in ("sha256", "sha512"):
        raise PermanentError(f"{what}: unsupported digest algorithm {algorithm!r}")
    if hashlib.new(algorithm, body).hexdigest() != expected:
        raise TransientError(f"{what}: the registry sent bytes that do not match the digest")


def _platform(data: dict[str, Any] | None) -> Platform | None:
    if not data or not data.get("os") or not data.get("architecture"):
        return None
    return Platform(os=data["os"], architecture=data["architecture"], variant=data.get("variant", ""))


def _created(annotations: dict[str, str], config: dict[str, Any]) -> datetime | None:
    # No push times exist in the protocol: the build's own record is the best there is.
    return parse_rfc3339(annotations.get("org.opencontainers.image.created")) or parse_rfc3339(
        config.get("created")
    )
