"""Build OCI and Docker v2 images in memory, and push them through the OCI Distribution API.

No Docker engine is involved: layers are deterministic gzipped tars made from in-memory files,
configs and manifests are canonical JSON, so every digest is the same on every machine and run.
`make demo` fills registries with these images, and the real-registry tests assert on them.

Typical use::

    base = base_image("debian")
    app = child_image(base, {"app/VERSION": b"1.0\\n"}, base_name="127.0.0.1:5000/team/base:1")
    pusher = Pusher("http://127.0.0.1:5000", auth=("user", "secret"))
    pusher.push_image("team/base", base, tags=["1"])
    pusher.push_image("team/app", app, tags=["1.0"], mount_from="team/base")

Nothing here imports Django: the module runs inside tests, scripts and management commands alike.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urljoin

import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

# Send all four, always: distribution 2.8 answers 404 for OCI content whose type is missing here, and
# silently converts Docker content to schema1 (with a digest that exists nowhere else).
MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))

ANNOTATION_BASE_NAME = "org.opencontainers.image.base.name"
ANNOTATION_BASE_DIGEST = "org.opencontainers.image.base.digest"
ANNOTATION_CREATED = "org.opencontainers.image.created"

# A fixed default for `created`: a wall-clock time would change every digest on every run.
EPOCH = "1970-01-01T00:00:00Z"

Format = Literal["oci", "docker"]


@dataclass(frozen=True)
class MediaTypes:
    """The media types one image format uses for each kind of object."""

    manifest: str
    index: str
    config: str
    layer: str


FORMATS: dict[Format, MediaTypes] = {
    "oci": MediaTypes(OCI_MANIFEST, OCI_INDEX, OCI_CONFIG, OCI_LAYER),
    "docker": MediaTypes(DOCKER_MANIFEST, DOCKER_LIST, DOCKER_CONFIG, DOCKER_LAYER),
}


def sha256_digest(data: bytes) -> str:
    """The content address of `data`, as registries write it."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj: object) -> bytes:
    """One byte encoding per document, so the same content always has the same digest."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def rfc3339(moment: datetime | str) -> str:
    """`created` as OCI writes it; strings pass through unchanged."""
    if isinstance(moment, str):
        return moment
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- content ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Blob:
    """Bytes pushed to `/blobs/`: a layer or a config, addressed by the sha256 of the bytes."""

    media_type: str
    data: bytes = field(repr=False)
    digest: str = field(init=False)
    size: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", sha256_digest(self.data))
        object.__setattr__(self, "size", len(self.data))

    def descriptor(self) -> dict[str, Any]:
        """The OCI content descriptor a manifest uses to point at this blob."""
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Layer(Blob):
    """A gzipped tar layer; `diff_id` is the digest of the uncompressed tar, listed in the config.

    `created_by` becomes the layer's config `history` entry, as a Dockerfile step would.
    """

    diff_id: str
    created_by: str = ""


@dataclass(frozen=True)
class Platform:
    """Where an image runs; indexes and manifest lists select on it."""

    os: str = "linux"
    architecture: str = "amd64"
    variant: str | None = None

    def as_json(self) -> dict[str, str]:
        value = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            value["variant"] = self.variant
        return value

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


LINUX_AMD64 = Platform("linux", "amd64")
LINUX_ARM64 = Platform("linux", "arm64", "v8")


@dataclass(frozen=True)
class Image:
    """One platform's image: the exact manifest bytes, their digest, and the blobs they point at."""

    manifest_bytes: bytes = field(repr=False)
    digest: str
    media_type: str
    config: Blob
    layers: tuple[Layer, ...]
    platform: Platform

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads(self.manifest_bytes)  # type: ignore[no-any-return]

    @property
    def config_json(self) -> dict[str, Any]:
        return json.loads(self.config.data)  # type: ignore[no-any-return]

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.config_json["config"].get("Labels") or {})

    @property
    def blobs(self) -> tuple[Blob, ...]:
        """Config first, then layers: every blob the manifest references."""
        return (self.config, *self.layers)

    @property
    def layer_digests(self) -> tuple[str, ...]:
        return tuple(layer.digest for layer in self.layers)

    def descriptor(self) -> dict[str, Any]:
        """The entry an index or manifest list holds for this image, with its platform."""
        return {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.manifest_bytes),
            "platform": self.platform.as_json(),
        }


@dataclass(frozen=True)
class Index:
    """A multi-platform image: an OCI index or a Docker manifest list, and its child images."""

    manifest_bytes: bytes = field(repr=False)
    digest: str
    media_type: str
    images: tuple[Image, ...]

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads(self.manifest_bytes)  # type: ignore[no-any-return]


# --- building -----------------------------------------------------------------------------------


def tar_bytes(files: Mapping[str, bytes]) -> bytes:
    """An uncompressed PAX tar of `files`, byte-for-byte reproducible (sorted, mtime 0, root-owned)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in sorted(files):
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(files[path]), 0, 0o644
            archive.addfile(info, io.BytesIO(files[path]))
    return buffer.getvalue()


def layer(files: Mapping[str, bytes], *, media_type: str = OCI_LAYER, created_by: str | None = None) -> Layer:
    """A gzipped tar layer holding `files` (path → content); the image format may retype it."""
    raw = tar_bytes(files)
    step = created_by or f"COPY {' '.join(sorted(files))} /"
    # mtime=0: the gzip header would otherwise carry the current time and change the digest.
    return Layer(media_type, gzip.compress(raw, mtime=0), sha256_digest(raw), step)


def build_image(
    layers: Sequence[Layer],
    *,
    format: Format = "oci",
    platform: Platform = LINUX_AMD64,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    created: datetime | str = EPOCH,
    history: Sequence[Mapping[str, Any]] = (),
) -> Image:
    """An image manifest over `layers`, with a config carrying labels, platform, diff_ids and history.

    `history` holds entries for leading layers that came from elsewhere (a base image); the
    remaining layers get one entry each from their `created_by`. Annotations are standard on OCI
    manifests; distribution also stores them on Docker v2 manifests, which real builds never do.
    """
    types = FORMATS[format]
    typed = tuple(replace(each, media_type=types.layer) for each in layers)
    steps = [dict(entry) for entry in history]
    covered = sum(not entry.get("empty_layer") for entry in steps)  # ENV, LABEL…: steps without layers
    steps += [{"created": rfc3339(created), "created_by": each.created_by} for each in typed[covered:]]
    config = Blob(types.config, canonical_json(_config(typed, platform, labels, created, steps)))
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": types.manifest,
        "config": config.descriptor(),
        "layers": [each.descriptor() for each in typed],
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    data = canonical_json(manifest)
    return Image(data, sha256_digest(data), types.manifest, config, typed, platform)


def _config(
    layers: Sequence[Layer],
    platform: Platform,
    labels: Mapping[str, str] | None,
    created: datetime | str,
    history: list[dict[str, Any]],
) -> dict[str, Any]:
    # `history` is optional in the OCI spec, but distribution 2.8 cannot convert a Docker v2
    # image without it for schema1 clients (400 MANIFEST_INVALID "empty history"), and every
    # real build writes it.
    return {
        **platform.as_json(),
        "created": rfc3339(created),
        "config": {"Labels": dict(labels or {})},
        "rootfs": {"type": "layers", "diff_ids": [each.diff_id for each in layers]},
        "history": history,
    }


def build_index(
    images: Sequence[Image], *, format: Format | None = None, annotations: Mapping[str, str] | None = None
) -> Index:
    """An OCI index or Docker manifest list over `images`, one `platform` entry each.

    The format defaults to that of the first image; a Docker list may only hold Docker manifests.
    """
    if not images:
        raise ValueError("an index needs at least one image")
    chosen = format or ("docker" if images[0].media_type == DOCKER_MANIFEST else "oci")
    if chosen == "docker" and any(image.media_type != DOCKER_MANIFEST for image in images):
        raise ValueError("a Docker manifest list can only hold Docker v2 manifests")
    media_type = FORMATS[chosen].index
    index: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [image.descriptor() for image in images],
    }
    if annotations:
        index["annotations"] = dict(annotations)
    data = canonical_json(index)
    return Index(data, sha256_digest(data), media_type, tuple(images))


def base_image(
    name: str,
    *,
    version: str = "1",
    format: Format = "oci",
    platform: Platform = LINUX_AMD64,
    labels: Mapping[str, str] | None = None,
    created: datetime | str = EPOCH,
) -> Image:
    """A one-layer "distribution" image; name, version and platform all change its layer digest."""
    os_release = f"ID={name}\nVERSION_ID={version}\n".encode()
    files = {"etc/os-release": os_release, "etc/customs-platform": f"{platform}\n".encode()}
    annotations = {ANNOTATION_CREATED: rfc3339(created)} if format == "oci" else None
    return build_image(
        [layer(files, created_by=f"ADD {name}-{version}-rootfs.tar /")],
        format=format,
        platform=platform,
        labels={"org.opencontainers.image.version": version, **(labels or {})},
        annotations=annotations,
        created=created,
    )


def bulky_image(name: str, *, layers: int = 10, layer_size: int = 2 * 2**20, format: Format = "oci") -> Image:
    """An image of `layers` layers, each one file of `layer_size` pseudo-random bytes; same every run.

    For transfer benchmarks: SHAKE-256 output does not compress, so every layer costs its full
    size on the wire and on disk, as real binaries roughly do.
    """
    built = [
        layer(
            {f"data/{index:03d}.bin": hashlib.shake_256(f"{name}/{index}".encode()).digest(layer_size)},
            created_by=f"ADD {name}-{index}.bin /data/",
        )
        for index in range(layers)
    ]
    return build_image(built, format=format)


def child_image(
    base: Image,
    files: Mapping[str, bytes],
    *,
    base_name: str | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    created: datetime | str = EPOCH,
) -> Image:
    """An image built `FROM base`: the base's layers first, then one layer of `files`.

    Same format and platform as the base, and the base's labels are inherited, as a Dockerfile
    build does. OCI children also carry the base.name/base.digest annotations (base.name only
    when given); Docker v2 children, like real ones, record their lineage only in the layer prefix.
    """
    format: Format = "docker" if base.media_type == DOCKER_MANIFEST else "oci"
    lineage: dict[str, str] = {}
    if format == "oci":
        lineage = {ANNOTATION_BASE_DIGEST: base.digest, ANNOTATION_CREATED: rfc3339(created)}
        if base_name:
            lineage[ANNOTATION_BASE_NAME] = base_name
    return build_image(
        [*base.layers, layer(files)],
        format=format,
        platform=base.platform,
        labels={**base.labels, **(labels or {})},
        annotations={**lineage, **(annotations or {})} or None,
        created=created,
        history=base.config_json.get("history", []),
    )


def multi_platform_image(
    name: str,
    platforms: Iterable[Platform] = (LINUX_AMD64, LINUX_ARM64),
    *,
    version: str = "1",
    format: Format = "oci",
    created: datetime | str = EPOCH,
) -> Index:
    """A base image for each platform, wrapped in an OCI index or Docker manifest list."""
    images = [
        base_image(name, version=version, format=format, platform=each, created=created) for each in platforms
    ]
    return build_index(images, format=format)


def built_on(child: Image, base: Image) -> bool:
    """True when `child`'s layers start with all of `base`'s: the lineage test for images."""
    prefix = base.layer_digests
    return len(child.layers) > len(prefix) and child.layer_digests[: len(prefix)] == prefix


# --- pushing ------------------------------------------------------------------------------------


class RegistryError(Exception):
    """The registry answered something other than what the protocol step expects."""

    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        # Drop the query string: upload URLs carry the registry's signed upload state there.
        super().__init__(f"{method} {url.split('?', 1)[0]} → {status}: {body[:500]}")
        self.status = status


@dataclass(frozen=True)
class BearerChallenge:
    """A parsed `WWW-Authenticate: Bearer realm=…,service=…,scope=…` header."""

    realm: str
    service: str | None = None
    scopes: tuple[str, ...] = ()
    error: str | None = None


# A challenge parameter: name="quoted value" or name=token (RFC 7235 allows both).
_CHALLENGE_PARAM = re.compile(r'(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def parse_bearer_challenge(header: str) -> BearerChallenge | None:
    """The Bearer challenge in a `WWW-Authenticate` value, or None for Basic or garbage."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    params = {m[1].lower(): m[2] or m[3] for m in _CHALLENGE_PARAM.finditer(rest)}
    if not params.get("realm"):
        return None
    # Several scopes come space-separated in one parameter (e.g. a cross-repository mount).
    scopes = tuple(params.get("scope", "").split())
    return BearerChallenge(params["realm"], params.get("service"), scopes, params.get("error"))


TokenSource = Callable[[BearerChallenge], str]
"""Returns a bearer token good for the challenge's scopes."""

Auth = tuple[str, str] | TokenSource | None
"""No auth, (user, password), or a TokenSource for bearer-only registries."""


def token_fetcher(
    credentials: tuple[str, str] | None = None,
    *,
    session: requests.Session | None = None,
    timeout: float = 10.0,
) -> TokenSource:
    """A TokenSource that asks the challenge's realm, as the distribution token spec says."""
    http = session or _default_session()

    def fetch(challenge: BearerChallenge) -> str:
        params = [("scope", scope) for scope in challenge.scopes]
        if challenge.service:
            params.append(("service", challenge.service))
        if credentials:
            params.append(("account", credentials[0]))
        response = http.get(challenge.realm, params=params, auth=credentials, timeout=timeout)
        if response.status_code != 200:
            raise RegistryError("GET", challenge.realm, response.status_code, response.text)
        body = response.json()
        # The spec allows either name; Docker's own server sends both, others only one.
        return str(body.get("token") or body["access_token"])

    return fetch


def _default_session() -> requests.Session:
    session = requests.Session()
    # trust_env off: a stray HTTP_PROXY or ~/.netrc must not reroute or re-authenticate our calls.
    session.trust_env = False
    session.headers["User-Agent"] = "Customs-demo"
    return session


@dataclass(frozen=True)
class FetchedManifest:
    """A manifest as the registry served it."""

    data: bytes = field(repr=False)
    media_type: str
    digest: str


BlobOutcome = Literal["present", "mounted", "uploaded"]


class Pusher:
    """Pushes images to one registry over the OCI Distribution API, and reads them back.

    `auth` is None, a (user, password) pair, or a TokenSource. A pair is sent as HTTP Basic and,
    when the registry answers with a Bearer challenge instead, exchanged at its token realm, as
    `docker login` does. Tokens are kept and reused until the registry challenges again.
    Pass `session` to route calls through the portal's outbound session.
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: Auth = None,
        session: requests.Session | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session or _default_session()
        self._timeout = timeout
        self._basic = auth if isinstance(auth, tuple) else None
        self._tokens: TokenSource = (
            auth if callable(auth) else token_fetcher(self._basic, session=self._session, timeout=timeout)
        )
        self._bearer: str | None = None

    def request(
        self, method: str, url: str, *, expect: Iterable[int] = (), **kwargs: Any
    ) -> requests.Response:
        """One call, answering a Bearer challenge once; raises RegistryError unless in `expect`."""
        url = urljoin(self.base_url + "/", url)
        response = self._send(method, url, **kwargs)
        challenge = parse_bearer_challenge(response.headers.get("WWW-Authenticate", ""))
        if response.status_code == 401 and challenge:
            self._bearer = self._tokens(challenge)
            response = self._send(method, url, **kwargs)
        allowed = set(expect)
        if allowed and response.status_code not in allowed:
            raise RegistryError(method, url, response.status_code, response.text)
        return response

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        auth = None
        if self._bearer:
            headers["Authorization"] = f"Bearer {self._bearer}"
        else:
            auth = self._basic
        return self._session.request(
            method, url, headers=headers, auth=auth, timeout=self._timeout, allow_redirects=False, **kwargs
        )

    def ping(self) -> None:
        """Raise RegistryError unless `/v2/` accepts our credentials."""
        self.request("GET", "/v2/", expect=[200])

    def blob_exists(self, repository: str, digest: str) -> bool:
        response = self.request("HEAD", f"/v2/{repository}/blobs/{digest}", expect=[200, 404])
        return response.status_code == 200

    def push_blob(self, repository: str, blob: Blob, *, mount_from: str | None = None) -> BlobOutcome:
        """Upload `blob` unless the repository has it; with `mount_from`, try a cross-repo mount first."""
        if self.blob_exists(repository, blob.digest):
            return "present"
        uploads = f"/v2/{repository}/blobs/uploads/"
        params = {"mount": blob.digest, "from": mount_from} if mount_from else None
        # 201: mounted. 202: the registry could not mount and opened a normal upload instead.
        started = self.request("POST", uploads, params=params, expect=[201, 202])
        if started.status_code == 201:
            return "mounted"
        # One PUT with the whole body: 2.8 accepts a body on the POST but silently drops it.
        location = urljoin(self.base_url + "/", started.headers["Location"])
        self.request(
            "PUT",
            location,
            params={"digest": blob.digest},
            data=blob.data,
            headers={"Content-Type": "application/octet-stream"},
            expect=[201],
        )
        return "uploaded"

    def push_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        """PUT a manifest by tag or digest; returns the registry's digest, checked against ours."""
        response = self.request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            data=data,
            headers={"Content-Type": media_type},
            expect=[201],
        )
        digest = response.headers.get("Docker-Content-Digest", "")
        if digest != sha256_digest(data):
            raise RegistryError(
                "PUT", response.url, 201, f"registry stored {digest}, not {sha256_digest(data)}"
            )
        return digest

    def push_image(
        self, repository: str, image: Image, *, tags: Iterable[str] = (), mount_from: str | None = None
    ) -> str:
        """Blobs first (a manifest naming a missing blob is refused), then the manifest per tag.

        Without tags the manifest is pushed by digest only, leaving it untagged.
        """
        for blob in image.blobs:
            self.push_blob(repository, blob, mount_from=mount_from)
        for reference in [*tags] or [image.digest]:
            self.push_manifest(repository, reference, image.manifest_bytes, image.media_type)
        return image.digest

    def push_index(
        self, repository: str, index: Index, *, tags: Iterable[str] = (), mount_from: str | None = None
    ) -> str:
        """Every child image by digest, then the index itself per tag (or by digest)."""
        for image in index.images:
            self.push_image(repository, image, mount_from=mount_from)
        for reference in [*tags] or [index.digest]:
            self.push_manifest(repository, reference, index.manifest_bytes, index.media_type)
        return index.digest

    def get_manifest(
        self, repository: str, reference: str, *, accept: str = MANIFEST_ACCEPT
    ) -> FetchedManifest:
        """The manifest as served for `accept`; the digest is the registry's Docker-Content-Digest."""
        response = self.request(
            "GET", f"/v2/{repository}/manifests/{reference}", headers={"Accept": accept}, expect=[200]
        )
        return FetchedManifest(
            response.content,
            response.headers.get("Content-Type", ""),
            response.headers.get("Docker-Content-Digest", ""),
        )

    def delete_manifest(self, repository: str, digest: str) -> None:
        """Delete by digest (distribution refuses delete by tag); every tag on it goes too."""
        self.request("DELETE", f"/v2/{repository}/manifests/{digest}", expect=[202])

    def tags(self, repository: str) -> list[str]:
        """The repository's tags, sorted; distribution lists them unsorted, and `null` when none."""
        body = self.request("GET", f"/v2/{repository}/tags/list", expect=[200]).json()
        return sorted(body.get("tags") or [])

    def catalog(self, *, page_size: int = 100) -> list[str]:
        """Every repository name, following the catalog's `Link: <…>; rel="next"` pages."""
        names: list[str] = []
        url: str | None = f"/v2/_catalog?n={page_size}"
        while url:
            response = self.request("GET", url, expect=[200])
            names.extend(response.json().get("repositories") or [])
            url = response.links.get("next", {}).get("url")
        return names
