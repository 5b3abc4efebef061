"""One repository of one registry, as the copy engine talks to it over the OCI Distribution API.

Authentication follows the registry's challenge, like `docker` does: anonymous first; Basic when
the registry asks for it; otherwise the Docker token flow, with one bearer token for every scope
this client has been challenged for (a cross-repository mount adds `pull` on the other
repository). Every failure is one of the connector taxonomy's errors, and no message carries a
password, a token or an upload URL's query string (distribution signs its upload state there).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Collection, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings
from urllib3.exceptions import HTTPError as Urllib3Error

from portal.http import OutboundSession, describe_connection_error, outbound_session
from registries.connectors.base import OCI_INDEX
from registries.connectors.distribution import ACCEPT, read_bounded
from registries.connectors.errors import (
    AuthError,
    PermanentError,
    TransientError,
    json_object,
    raise_for_status,
)
from registries.demo.images import BearerChallenge, parse_bearer_challenge

# A manifest is a few kilobytes; the OCI spec lets registries refuse anything past 4 MiB. Reading
# an unbounded body into memory because a registry (or a proxy) sent one would break the
# "memory stays flat" promise, so anything larger is refused.
MAX_MANIFEST_BYTES = 4 * 2**20
# Refresh a bearer token this long before it expires: a streamed upload cannot be replayed after a
# 401, so it must start with a token that outlives the request's first bytes.
TOKEN_MARGIN_SECONDS = 30.0
# The final PUT of a large blob may wait while the registry moves and checks the upload.
COMMIT_READ_TIMEOUT = 300.0


@dataclass(frozen=True)
class Endpoint:
    """A repository in a registry, and who we are there.

    `mount_from` names other repositories of the same registry that may already hold some of the
    blobs (other mirrored base images, say): a blob missing here is mounted from the first one that
    has it instead of being uploaded.
    """

    url: str  # registry base URL, e.g. http://127.0.0.1:5001
    repository: str  # e.g. library/python
    username: str = ""  # basic or token auth; "" is anonymous
    password: str = field(default="", repr=False)  # never logged, never in exceptions
    mount_from: tuple[str, ...] = ()
    # False only for a connected registry whose admin switched TLS verification off (a lab registry
    # with a self-signed certificate); upstreams are always verified.
    verify_tls: bool = True

    @property
    def base_url(self) -> str:
        url = self.url.strip().rstrip("/")
        return url if "://" in url else f"https://{url}"

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).netloc

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}"


@dataclass(frozen=True)
class Manifest:
    """A manifest as a registry served it: exact bytes (the digest is theirs), and their media type."""

    digest: str
    media_type: str
    data: bytes = field(repr=False)

    def json(self) -> dict[str, Any]:
        try:
            document = json.loads(self.data)
        except ValueError:
            raise PermanentError(f"manifest {self.digest} is not JSON") from None
        if not isinstance(document, dict):
            raise PermanentError(f"manifest {self.digest} is not a JSON object")
        return document


def is_digest(reference: str) -> bool:
    algorithm, _, encoded = reference.partition(":")
    length = {"sha256": 64, "sha512": 128}.get(algorithm)
    return len(encoded) == length and all(c in "0123456789abcdef" for c in encoded)


def hasher_for(digest: str) -> Any:
    """A fresh hash object for the digest's algorithm; other algorithms are refused, not guessed."""
    algorithm = digest.partition(":")[0]
    if algorithm not in ("sha256", "sha512"):
        raise PermanentError(f"unsupported digest algorithm in {digest!r}")
    return hashlib.new(algorithm)


def digest_of(data: bytes, like: str = "sha256:") -> str:
    hasher = hasher_for(like)
    hasher.update(data)
    return f"{hasher.name}:{hasher.hexdigest()}"


class RepositoryClient:
    """Requests to one repository, authenticated as its endpoint says; safe to share between threads.

    `actions` is what the copy needs here: "pull" upstream, "pull,push" in a region. Each thread
    gets its own HTTP session from portal.http (timeouts, proxies, the deny list); the token is
    shared.
    """

    def __init__(self, endpoint: Endpoint, *, actions: str, purpose: str = "mirror") -> None:
        self.endpoint = endpoint
        self.base_url = endpoint.base_url
        self.repository = endpoint.repository.strip("/")
        self._purpose = purpose
        self._local = threading.local()
        self._lock = threading.Lock()
        self._scopes: set[str] = {f"repository:{self.repository}:{actions}"}
        self._token: str | None = None
        self._token_expires = 0.0
        self._challenge: BearerChallenge | None = None
        self._basic = False

    # --- requests ---------------------------------------------------------------------------------

    def path(self, tail: str) -> str:
        return f"{self.base_url}/v2/{self.repository}/{tail}"

    def request(
        self,
        method: str,
        url: str,
        *,
        expect: Collection[int],
        headers: Mapping[str, str] | None = None,
        replayable: bool = True,
        **kwargs: Any,
    ) -> requests.Response:
        """One call; a challenge is answered and the call made again, unless its body is a stream.

        Statuses outside `expect` raise the taxonomy's error for them.
        """
        url = urljoin(self.base_url + "/", url)
        if not replayable:
            self._refresh_if_expiring()
        response, used = self._send(method, url, headers, kwargs)
        if response.status_code == 401 and replayable and self._answer(response, used):
            response.close()
            response, _ = self._send(method, url, headers, kwargs)
        if response.status_code not in expect:
            try:
                raise_for_status(response)
                raise PermanentError(f"{method} {_where(url)} answered {response.status_code}")
            finally:
                response.close()
        return response

    def _send(
        self, method: str, url: str, headers: Mapping[str, str] | None, kwargs: dict[str, Any]
    ) -> tuple[requests.Response, str]:
        """The response, and the credential it went with: the token, "basic", or ""."""
        sent = dict(headers or {})
        auth, used = None, ""
        with self._lock:
            token, basic = self._token, self._basic
        if token:
            sent["Authorization"], used = f"Bearer {token}", token
        elif basic:
            auth, used = (self.endpoint.username, self.endpoint.password), "basic"
        # Only GETs follow redirects (blob downloads go to storage); requests drops our
        # Authorization header when the redirect leaves the registry's host.
        kwargs.setdefault("allow_redirects", method == "GET")
        return self.session.request(method, url, headers=sent, auth=auth, **kwargs), used

    @property
    def session(self) -> OutboundSession:
        session: OutboundSession | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = outbound_session(purpose=self._purpose)
            if not self.endpoint.verify_tls:
                session.verify = False
        return session

    # --- authentication ---------------------------------------------------------------------------

    def _answer(self, response: requests.Response, used: str) -> bool:
        """Take what a 401 asks for; False when there is nothing new to try (the 401 stands).

        `used` is the credential the refused request carried: threads race, and a request sent
        before another thread logged in must simply be sent again.
        """
        header = response.headers.get("WWW-Authenticate", "")
        scheme = header.strip().partition(" ")[0].lower()
        if scheme == "basic":
            if not self.endpoint.username or used == "basic":
                return False  # no credentials, or these very ones were refused
            with self._lock:
                self._basic = True
            return True
        challenge = parse_bearer_challenge(header)
        if challenge is None:
            return False
        with self._lock:
            if self._token and self._token != used:
                return True  # another thread fetched a token meanwhile: try with that one
            wanted = self._scopes | set(challenge.scopes)
            if challenge.error == "insufficient_scope" and wanted == self._scopes and used:
                return False  # the token already asked for all of this: the account lacks the right
            self._scopes = wanted
            self._challenge = challenge
            self._fetch_token(challenge)
        return True

    def _refresh_if_expiring(self) -> None:
        with self._lock:
            if (
                self._token
                and self._challenge
                and time.monotonic() > self._token_expires - TOKEN_MARGIN_SECONDS
            ):
                self._fetch_token(self._challenge)

    def _fetch_token(self, challenge: BearerChallenge) -> None:
        # Called with the lock held: one refresh at a time, and every thread then uses its result.
        params = [("scope", scope) for scope in sorted(self._scopes)]
        if challenge.service:
            params.append(("service", challenge.service))
        auth = None
        if self.endpoint.username:
            params.append(("account", self.endpoint.username))
            auth = (self.endpoint.username, self.endpoint.password)
        response = self.session.get(challenge.realm, params=params, auth=auth)
        if response.status_code == 401:
            who = f"user {self.endpoint.username!r}" if self.endpoint.username else "anonymous access"
            raise AuthError(f"the token server {_where(challenge.realm)} refused {who}")
        raise_for_status(response)
        body = json_object(response)
        token = body.get("token") or body.get("access_token")
        if not token:
            raise AuthError(f"the token server {_where(challenge.realm)} answered without a token")
        try:
            lifetime = max(60.0, float(body.get("expires_in") or 60))  # the spec's default and minimum
        except (TypeError, ValueError):
            lifetime = 60.0
        self._token, self._token_expires = str(token), time.monotonic() + lifetime

    # --- manifests --------------------------------------------------------------------------------

    def manifest_digest(self, reference: str) -> str | None:
        """The digest a tag (or digest) names here; None when the registry has no such manifest."""
        response = self.request(
            "HEAD", self.path(f"manifests/{reference}"), expect=(200, 404), headers={"Accept": ACCEPT}
        )
        response.close()
        if response.status_code == 404:
            return None
        digest = response.headers.get("Docker-Content-Digest", "")
        if is_digest(digest):
            return digest
        # Some registries omit the header on HEAD: the manifest's own hash is the digest.
        return self.get_manifest(reference).digest

    def get_manifest(self, reference: str, *, accept: str = ACCEPT) -> Manifest:
        """The manifest bytes, checked against `reference` when it is a digest; NotFoundError when absent."""
        response = self.request(
            "GET", self.path(f"manifests/{reference}"), expect=(200,), headers={"Accept": accept}, stream=True
        )
        with response:
            data = read_bounded(response, MAX_MANIFEST_BYTES, what=f"manifest {reference}")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        if is_digest(reference):
            actual = digest_of(data, reference)
            if actual != reference:
                raise DigestMismatch(f"{self.endpoint}: manifest {reference} arrived as {actual}")
            return Manifest(reference, media_type, data)
        return Manifest(digest_of(data), media_type, data)

    def put_manifest(self, reference: str, manifest: Manifest) -> requests.Response:
        """PUT by tag or digest; the registry must store exactly our bytes."""
        response = self.request(
            "PUT",
            self.path(f"manifests/{reference}"),
            expect=(201,),
            data=manifest.data,
            headers={"Content-Type": manifest.media_type},
        )
        response.close()
        stored = response.headers.get("Docker-Content-Digest", "")
        if stored and stored != manifest.digest:
            raise PermanentError(f"{self.endpoint} stored manifest {manifest.digest} as {stored}")
        return response

    def has_manifest(self, digest: str) -> bool:
        response = self.request(
            "HEAD", self.path(f"manifests/{digest}"), expect=(200, 404), headers={"Accept": ACCEPT}
        )
        response.close()
        return response.status_code == 200

    def referrers(self, digest: str) -> list[dict[str, Any]] | None:
        """The referrers API's answer for `digest` (every page), or None when the registry has no such API."""
        found: list[dict[str, Any]] = []
        url: str | None = self.path(f"referrers/{digest}")
        while url:
            # 404 is the spec's signal for "no API here: use the tag schema"; older registries that
            # do not know the route at all answer 400 or 405 instead.
            response = self.request("GET", url, expect=(200, 400, 404, 405), headers={"Accept": OCI_INDEX})
            with response:
                if response.status_code != 200:
                    return None
                body = json_object(response)
            found += [each for each in body.get("manifests") or [] if isinstance(each, dict)]
            following = response.links.get("next", {}).get("url")
            url = urljoin(self.base_url + "/", following) if following else None
        return found

    # --- blobs ------------------------------------------------------------------------------------

    def has_blob(self, digest: str, *, repository: str | None = None) -> bool:
        where = f"{self.base_url}/v2/{repository or self.repository}/blobs/{digest}"
        response = self.request("HEAD", where, expect=(200, 404))
        response.close()
        return response.status_code == 200

    def blob_chunks(self, digest: str, chunk_size: int) -> Generator[bytes, None, None]:
        """The blob's bytes as they arrive, unverified (the caller hashes them); errors are TransientError."""
        response = self.request("GET", self.path(f"blobs/{digest}"), expect=(200,), stream=True)
        with response:
            try:
                yield from response.iter_content(chunk_size)
            except (requests.RequestException, Urllib3Error, OSError) as exc:
                reason = (
                    describe_connection_error(exc) if isinstance(exc, requests.RequestException) else str(exc)
                )
                raise TransientError(f"reading {digest} from {self.endpoint}: {reason}") from exc

    def start_upload(self, *, mount: str | None = None, source: str | None = None) -> tuple[bool, str]:
        """(mounted, upload URL): POST …/uploads/, asking for a cross-repository mount when `mount` is set.

        A registry that cannot mount opens a plain upload instead (202), which the caller then uses.
        """
        params = {"mount": mount, "from": source} if mount and source else None
        response = self.request("POST", self.path("blobs/uploads/"), expect=(201, 202), params=params)
        response.close()
        if response.status_code == 201:
            return True, ""
        location = response.headers.get("Location")
        if not location:
            raise PermanentError(f"{self.endpoint} opened an upload without a Location")
        return False, urljoin(self.base_url + "/", location)

    def send_chunk(self, location: str, body: Iterable[bytes], size: int) -> str:
        """Stream `size` bytes into the upload (one PATCH); returns the upload's next URL."""
        response = self.request(
            "PATCH",
            location,
            expect=(202,),
            data=_SizedBody(body, size),
            headers={"Content-Type": "application/octet-stream"},
            replayable=False,
        )
        response.close()
        return urljoin(self.base_url + "/", response.headers.get("Location") or location)

    def commit_upload(self, location: str, digest: str) -> None:
        """Close the upload as `digest`; the registry checks the bytes against it (400 DIGEST_INVALID)."""
        response = self.request(
            "PUT",
            location,
            expect=(201,),
            params={"digest": digest},
            data=b"",
            headers={"Content-Type": "application/octet-stream"},
            timeout=(settings.OUTBOUND_TIMEOUT, max(COMMIT_READ_TIMEOUT, settings.OUTBOUND_TIMEOUT)),
        )
        response.close()

    def cancel_upload(self, location: str) -> None:
        """Best effort: a registry drops abandoned uploads by itself after a while anyway."""
        with contextlib.suppress(TransientError, PermanentError):
            self.request("DELETE", location, expect=(204, 202, 404)).close()


class _SizedBody:
    """A streamed body of known length: requests sends Content-Length for it, not chunked encoding.

    Every registry takes a PATCH with a length; not all take chunked transfer encoding.
    """

    def __init__(self, chunks: Iterable[bytes], size: int) -> None:
        self._chunks, self._size = chunks, size

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)


class DigestMismatch(TransientError):
    """Bytes that do not hash to the digest that names them: a broken transfer or a lying registry.

    Transient: a proxy or a dropped connection is the usual cause, and the next run fetches again.
    """


def _where(url: str) -> str:
    return url.split("?", 1)[0]


__all__ = [
    "DigestMismatch",
    "Endpoint",
    "Manifest",
    "RepositoryClient",
    "digest_of",
    "hasher_for",
    "is_digest",
]
