"""docker/distribution and any OCI Distribution v2 registry: catalog, tags, manifests, indexes, configs.

Authentication follows the registry's challenge: anonymous first, then Basic, or the Docker token
flow (a bearer token per scope from the realm the registry names). Every manifest and config is
checked against its digest: a registry (or a proxy) that hands back other bytes is an error.

BuildKit keeps attestations in the image index (docs/attestations/attestation-storage.md): a manifest
whose descriptor says `vnd.docker.reference.type: attestation-manifest`, about the platform manifest
its `vnd.docker.reference.digest` names, one in-toto statement per layer. The SLSA provenance among
them is read (only when an index has such a descriptor) and kept on that platform manifest, cut to
what lineage reads; an attestation that cannot be read is noted there and never fails the read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import threading
from collections.abc import Collection, Iterator, Mapping
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import urljoin

import requests
from pydantic import SecretStr, field_validator
from urllib3.exceptions import HTTPError as Urllib3Error

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
    RateLimited,
    json_object,
    raise_for_status,
)

# Every manifest type Customs reads, most specific first; schema1 is deliberately absent.
ACCEPT = ", ".join(sorted(INDEX_MEDIA_TYPES | MANIFEST_MEDIA_TYPES))
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_NEXT_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')

REFERENCE_TYPE = "vnd.docker.reference.type"
REFERENCE_DIGEST = "vnd.docker.reference.digest"
ATTESTATION_MANIFEST = "attestation-manifest"
PREDICATE_TYPE = "in-toto.io/predicate-type"
SLSA_PROVENANCE = "https://slsa.dev/provenance/"
SLSA_V02 = "https://slsa.dev/provenance/v0.2"
SLSA_V1 = "https://slsa.dev/provenance/v1"
# A mode=max statement of a large build runs to a few hundred KiB; past this it is not read at all.
MAX_STATEMENT_BYTES = 4 * 2**20


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
        provenance: dict[str, dict[str, Any]] = {}  # by the digest of the platform manifest it is about
        for descriptor in index.get("manifests") or []:
            if descriptor.get("mediaType") not in MANIFEST_MEDIA_TYPES:
                continue  # nested indexes: not platform images
            if about := _attests(descriptor):
                attestation, found = self._attestation(repository, descriptor)
                if attestation is not None:
                    children.append(attestation)
                if found and "predicate" not in provenance.get(about, {}):
                    provenance[about] = found  # a second attestation manifest does not undo the first
                continue
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
        if provenance:
            children = [
                dataclasses.replace(child, provenance=provenance[child.digest])
                if child.digest in provenance
                else child
                for child in children
            ]
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

    # --- attestations (BuildKit) ------------------------------------------------------------------

    def _attestation(
        self, repository: str, descriptor: dict[str, Any]
    ) -> tuple[RemoteArtifact | None, dict[str, Any]]:
        """The attestation manifest (stored like any child, with its descriptor's reference annotations)
        and the provenance it gives the platform manifest it is about; a manifest that cannot be read
        is left out, with a note."""
        digest = str(descriptor["digest"])
        try:
            manifest, media_type = self._manifest(repository, digest)
            record = self._image(
                repository, digest, media_type, manifest, platform=_platform(descriptor.get("platform"))
            )
        except RateLimited:
            raise  # a rate limit the session could not wait out ends the run; never a note
        except ConnectorError as exc:
            return None, {"notes": [f"attestation manifest {digest} could not be read ({exc})"]}
        references = {
            key: str(value)
            for key, value in (descriptor.get("annotations") or {}).items()
            if key in (REFERENCE_TYPE, REFERENCE_DIGEST)
        }
        record = dataclasses.replace(record, annotations={**record.annotations, **references})
        return record, self._provenance(repository, digest, manifest)

    def _provenance(self, repository: str, digest: str, manifest: dict[str, Any]) -> dict[str, Any]:
        """The first readable SLSA provenance among an attestation manifest's statements, slimmed, with
        notes on those that could not be read. Other statements (SBOMs) are never fetched."""
        notes: list[str] = []
        for layer in manifest.get("layers") or []:
            annotations = layer.get("annotations") or {}
            if not str(annotations.get(PREDICATE_TYPE, "")).startswith(SLSA_PROVENANCE):
                continue
            where = f"provenance {layer.get('digest')} in attestation {digest}"
            try:
                slim = slim_provenance(self._statement(repository, layer))
            except RateLimited:
                raise
            except ConnectorError as exc:
                notes.append(f"{where} could not be read ({exc})")
                continue
            if slim is None:
                notes.append(f"{where} is not a SLSA v0.2 or v1 statement lineage can read")
                continue
            return {**slim, "notes": notes} if notes else slim
        return {"notes": notes} if notes else {}

    def _statement(self, repository: str, layer: dict[str, Any]) -> dict[str, Any]:
        digest = str(layer.get("digest", ""))
        size = layer.get("size")
        if not isinstance(size, int):
            raise PermanentError("its descriptor gives no size")
        if size > MAX_STATEMENT_BYTES:
            raise PermanentError(f"it is {size} bytes, more than the {MAX_STATEMENT_BYTES} Customs reads")
        body = self._blob(repository, digest, limit=MAX_STATEMENT_BYTES)
        _check_digest(body, digest, what=f"statement {repository}@{digest}")
        try:
            statement = json.loads(body)
        except ValueError:
            raise PermanentError("it is not JSON") from None
        if not isinstance(statement, dict):
            raise PermanentError("it is not a JSON object")
        return statement

    def _blob(self, repository: str, digest: str, *, limit: int) -> bytes:
        """A blob's bytes, given up past `limit` without reading the rest: a descriptor may lie."""
        with self._request(
            "GET", f"/v2/{repository}/blobs/{digest}", scope=_pull(repository), stream=True
        ) as response:
            return read_bounded(response, limit, what=f"blob {repository}@{digest}")

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
        self,
        method: str,
        path: str,
        *,
        scope: str,
        headers: dict[str, str] | None = None,
        stream: bool = False,
    ) -> requests.Response:
        url = path if path.startswith("http") else f"{self.config.url}{path}"
        response = self._send(method, url, scope, headers or {}, stream=stream)
        if response.status_code == 401 and (challenge := response.headers.get("WWW-Authenticate")):
            response.close()
            self._answer(challenge, scope)
            response = self._send(method, url, scope, headers or {}, stream=stream)
        if stream and not response.ok:
            _ = response.content  # an error's body is small: read for the message, freeing the connection
        raise_for_status(response)
        return response

    def _send(
        self, method: str, url: str, scope: str, headers: dict[str, str], *, stream: bool = False
    ) -> requests.Response:
        headers = dict(headers)
        auth = None
        if token := self._tokens.get(scope):
            headers["Authorization"] = f"Bearer {token}"
        elif getattr(self._local, "basic", False) and self.config.username:
            auth = (self.config.username, self._password())
        return self._session.request(method, url, headers=headers, auth=auth, stream=stream)

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


def _attests(descriptor: dict[str, Any]) -> str:
    """The platform manifest digest an index descriptor is BuildKit's attestation manifest for, or ""."""
    annotations = descriptor.get("annotations") or {}
    if annotations.get(REFERENCE_TYPE) != ATTESTATION_MANIFEST:
        return ""
    return str(annotations.get(REFERENCE_DIGEST) or "")


# --- SLSA provenance, cut to what lineage reads ------------------------------------------------------
#
# registries/policy/lineage/provenance.py (`provenance_base`) reads the images among the materials, the
# frontend and, with mode=max, the build definition's steps, walking each step's root filesystem back to
# the source the final stage starts from. Only that is kept: a statement is mostly what lineage never
# reads, and its build args, environment and source URLs may carry secrets the inventory must not.


def slim_provenance(statement: Mapping[str, Any]) -> dict[str, Any] | None:
    """A SLSA v0.2 or v1 statement with only what lineage reads, or None for any other statement.

    Raises PermanentError for a statement of the right type whose shape is not BuildKit's.
    """
    kind = statement.get("predicateType")
    predicate = statement.get("predicate")
    if not isinstance(kind, str) or not isinstance(predicate, Mapping):
        return None
    if kind.startswith(SLSA_V1):
        definition = _object(predicate.get("buildDefinition"))
        internal = _object(definition.get("internalParameters"))
        external = _object(definition.get("externalParameters"))
        slim = _drop_empty(
            {
                "resolvedDependencies": _images(definition.get("resolvedDependencies")),
                "internalParameters": {"buildConfig": _build_config(internal.get("buildConfig"))},
                "externalParameters": {"request": {"args": _frontend(_object(external.get("request")))}},
            }
        )
        return {"predicateType": kind, "predicate": {"buildDefinition": slim} if slim else {}}
    if kind.startswith(SLSA_V02):
        invocation = _object(predicate.get("invocation"))
        slim = _drop_empty(
            {
                "materials": _images(predicate.get("materials")),
                "buildConfig": _build_config(predicate.get("buildConfig")),
                "invocation": {"parameters": {"args": _frontend(_object(invocation.get("parameters")))}},
            }
        )
        return {"predicateType": kind, "predicate": slim}
    return None


def _object(value: Any) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PermanentError(f"a {type(value).__name__} where the statement has an object")
    return value


def _drop_empty(value: dict[str, Any]) -> dict[str, Any]:
    """Nested objects without their empty branches, as BuildKit leaves out what it does not know."""
    kept = {}
    for key, item in value.items():
        if isinstance(item, dict):
            item = _drop_empty(item)
        if item or item == 0:
            kept[key] = item
    return kept


def _images(materials: Any) -> list[dict[str, Any]]:
    """The docker images among the materials (git and http sources may carry credentials)."""
    if materials is None:
        return []
    if not isinstance(materials, list):
        raise PermanentError("its materials are not a list")
    images = []
    for material in materials:
        uri = material.get("uri") if isinstance(material, Mapping) else None
        if not isinstance(uri, str) or not uri.startswith("pkg:docker/"):
            continue
        digests = material.get("digest")
        sha256 = digests.get("sha256") if isinstance(digests, Mapping) else None
        images.append({"uri": uri, **({"digest": {"sha256": sha256}} if isinstance(sha256, str) else {})})
    return images


def _frontend(request: Mapping[str, Any]) -> dict[str, str]:
    source = _object(request.get("args")).get("source")
    return {"source": source} if isinstance(source, str) else {}


def _build_config(config: Any) -> dict[str, Any]:
    steps = _object(config).get("llbDefinition")
    if steps is None:
        return {}
    if not isinstance(steps, list):
        raise PermanentError("its build definition is not a list of steps")
    return {"llbDefinition": [_step(step) if isinstance(step, Mapping) else None for step in steps]}


def _step(step: Mapping[str, Any]) -> dict[str, Any]:
    """One LLB step: its id, inputs, and of its op only what says which input its root comes from."""
    inputs = step.get("inputs") or []
    if not isinstance(inputs, list) or not all(isinstance(each, str) for each in inputs):
        raise PermanentError("a step's inputs are not a list of names")
    op = _object(_object(step.get("op")).get("Op"))
    slim: dict[str, Any] = {"id": step.get("id") if isinstance(step.get("id"), str) else None}
    if inputs:
        slim["inputs"] = inputs
    kept: dict[str, Any] = {}
    if "source" in op:
        kept["source"] = {"identifier": _identifier(_object(op["source"]).get("identifier"))}
    elif "exec" in op:
        mounts = _list(_object(op["exec"]).get("mounts"))
        root = [_numbers(mount, "input") | {"dest": "/"} for mount in mounts if mount.get("dest") == "/"]
        kept["exec"] = {"mounts": root}
    elif "file" in op:
        actions = _list(_object(op["file"]).get("actions"))
        kept["file"] = {"actions": [_numbers(action, "input", "output") for action in actions]}
    elif "merge" in op:
        kept["merge"] = {
            "inputs": [_numbers(part, "input") for part in _list(_object(op["merge"]).get("inputs"))]
        }
    elif "diff" in op:
        kept["diff"] = {"lower": _numbers(_object(_object(op["diff"]).get("lower")), "input")}
    slim["op"] = {"Op": kept}
    return slim


def _list(value: Any) -> list[Mapping[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(each, Mapping) for each in value):
        raise PermanentError("a step's op holds something other than a list of objects")
    return value


def _numbers(value: Mapping[str, Any], *keys: str) -> dict[str, int]:
    """The named integer fields; LLB JSON leaves zero out, so an absent one stays absent."""
    found = {}
    for key in keys:
        if key not in value:
            continue
        number = value[key]
        if not isinstance(number, int) or isinstance(number, bool):
            raise PermanentError(f"a step's {key} is not a number")
        found[key] = number
    return found


def _identifier(identifier: Any) -> str:
    """An image source as written; any other source by its scheme alone (a git or http URL may
    carry a token), which is all lineage needs to know that no image starts that stage."""
    if not isinstance(identifier, str):
        raise PermanentError("a source step names no identifier")
    if not identifier or identifier.startswith("docker-image://"):
        return identifier
    return identifier.partition("://")[0][:32] + "://"


def read_bounded(response: requests.Response, limit: int, *, what: str) -> bytes:
    """A streamed body, given up past `limit` bytes without reading the rest: a descriptor may lie."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PermanentError(f"{what} is {declared} bytes, more than the {limit} Customs reads")
    parts: list[bytes] = []
    total = 0
    try:
        for part in response.iter_content(64 * 1024):
            total += len(part)
            if total > limit:
                raise PermanentError(f"{what} is more than the {limit} bytes Customs reads")
            parts.append(part)
    except (requests.RequestException, Urllib3Error, OSError) as exc:
        raise TransientError(f"{what}: the connection broke while reading it") from exc
    return b"".join(parts)
