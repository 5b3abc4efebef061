"""Docker Hub: one organisation's (or user's) repositories and tags, with last push and pull times.

Docker Hub splits itself over two hosts. The Hub API (`hub.docker.com`) lists repositories and tags
and knows when each tag was last pushed and pulled; it wants a short-lived JWT obtained from
`POST /v2/auth/token` with a personal or organisation access token. Manifests, configs and layers
come from the registry (`registry-1.docker.io`) through the Docker token flow with the same
username and access token, read by the distribution connector so digests are checked alike.

Manifests are resolved with HEAD, which Docker Hub does not count against pull rate limits.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote, urljoin

import requests
from pydantic import SecretStr, field_validator

from portal.http import OutboundSession, TransientError, outbound_session
from registries.connectors.base import (
    Capability,
    ConnectorConfig,
    RemoteArtifact,
    RemoteRepository,
    RemoteTag,
    parse_rfc3339,
)
from registries.connectors.distribution import DistributionConfig, DistributionConnector
from registries.connectors.errors import AuthError, ConfigError, RateLimited, raise_for_status

HUB = "https://hub.docker.com"
REGISTRY = "https://registry-1.docker.io"
# The Hub's JWT lives 10 minutes; renew a little before, so a long listing never sends a dead one.
JWT_LIFETIME_SECONDS = 9 * 60


def _http_url(value: str) -> str:
    return DistributionConfig.model_validate({"url": value}).url


class DockerHubConfig(ConnectorConfig):
    url: str = HUB
    namespace: str
    username: str
    token: SecretStr
    registry_url: str = REGISTRY
    page_size: int = 100

    @field_validator("url", "registry_url")
    @classmethod
    def _urls(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        value = value.strip().lower()
        if not value or "/" in value:
            raise ValueError("the namespace is one organisation or user name, e.g. acme")
        return value

    @field_validator("page_size")
    @classmethod
    def _page_size(cls, value: int) -> int:
        if not 1 <= value <= 100:  # the Hub API caps page_size at 100
            raise ValueError("page size must be between 1 and 100")
        return value


class DockerHubConnector:
    kind: ClassVar[str] = "dockerhub"
    label: ClassVar[str] = "Docker Hub"
    config_class: ClassVar[type[ConnectorConfig]] = DockerHubConfig
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.REPOSITORIES, Capability.ARTIFACTS, Capability.PUSHED_AT, Capability.PULLED_AT}
    )

    def __init__(self, config: DockerHubConfig) -> None:
        self.config = config
        self._local = threading.local()
        self._jwt: tuple[str, float] | None = None  # (token, monotonic time it was issued)
        self._jwt_lock = threading.Lock()
        # (repository, digest) → (last pushed, last pulled) as the tag listing reported them: the
        # Hub keeps times per tag, and an artifact's are those of the tags pointing at it.
        self._times: dict[tuple[str, str], tuple[datetime | None, datetime | None]] = {}
        self._registry = DistributionConnector(
            DistributionConfig(url=config.registry_url, username=config.username, password=config.token)
        )

    # --- the interface ---------------------------------------------------------------------------

    def check(self) -> None:
        self._get(self._namespace_path(), params={"page_size": 1})
        self._registry.check()

    def repositories(self) -> Iterator[RemoteRepository]:
        for item in self._pages(self._namespace_path()):
            yield RemoteRepository(name=f"{self.config.namespace}/{item['name']}")

    def tags(self, repository: str) -> list[RemoteTag]:
        tags = []
        for item in self._pages(f"{self._repository_path(repository)}/tags"):
            # The live Hub sends the tag's own digest; the published description does not have it.
            digest = item.get("digest")
            if not (isinstance(digest, str) and digest.startswith("sha256:")):
                digest = self._registry.resolve(repository, str(item["name"]))
            self._note_times(repository, digest, item)
            tags.append(RemoteTag(name=str(item["name"]), digest=digest))
        return sorted(tags, key=lambda tag: tag.name)

    def resolve(self, repository: str, reference: str) -> str:
        return self._registry.resolve(repository, reference)

    def artifact(self, repository: str, digest: str) -> RemoteArtifact:
        record = self._registry.artifact(repository, digest)
        pushed, pulled = self._times.get((repository, digest), (None, None))
        return dataclasses.replace(record, pushed_at=pushed, last_pulled_at=pulled)

    # --- paths and times -------------------------------------------------------------------------

    def _namespace_path(self) -> str:
        return f"/v2/namespaces/{quote(self.config.namespace, safe='')}/repositories"

    def _repository_path(self, repository: str) -> str:
        namespace, _, name = repository.partition("/")
        if namespace != self.config.namespace or not name:
            raise ConfigError(f"{repository} is not in the namespace {self.config.namespace}")
        return f"{self._namespace_path()}/{quote(name, safe='')}"

    def _note_times(self, repository: str, digest: str, tag: dict[str, Any]) -> None:
        pushed, pulled = parse_rfc3339(tag.get("tag_last_pushed")), parse_rfc3339(tag.get("tag_last_pulled"))
        known_pushed, known_pulled = self._times.get((repository, digest), (None, None))
        self._times[repository, digest] = (_latest(pushed, known_pushed), _latest(pulled, known_pulled))

    # --- HTTP ------------------------------------------------------------------------------------

    @property
    def _session(self) -> OutboundSession:
        session: OutboundSession | None = getattr(self._local, "session", None)
        if session is None:
            session = outbound_session(purpose="docker hub")
            self._local.session = session
        return session

    def _bearer(self, *, renew: bool = False) -> str:
        with self._jwt_lock:
            if renew or self._jwt is None or time.monotonic() - self._jwt[1] > JWT_LIFETIME_SECONDS:
                response = self._session.post(
                    f"{self.config.url}/v2/auth/token",
                    json={"identifier": self.config.username, "secret": self.config.token.get_secret_value()},
                )
                _raise_for_status(response)
                token = _json(response).get("access_token")
                if not isinstance(token, str) or not token:
                    raise AuthError("Docker Hub answered the sign-in without an access token")
                self._jwt = (token, time.monotonic())
            return self._jwt[0]

    def _get(self, path: str, params: dict[str, Any] | None = None) -> requests.Response:
        url = path if path.startswith("http") else f"{self.config.url}{path}"
        response = self._session.get(
            url, params=params, headers={"Authorization": f"Bearer {self._bearer()}"}
        )
        if response.status_code == 401:  # the JWT died early (revoked, clock): one fresh sign-in
            token = self._bearer(renew=True)
            response = self._session.get(url, params=params, headers={"Authorization": f"Bearer {token}"})
        _raise_for_status(response)
        return response

    def _pages(self, path: str) -> Iterator[dict[str, Any]]:
        """Every result of a paged list, following the `next` URL the Hub gives."""
        url: str | None = path
        params: dict[str, Any] | None = {"page_size": self.config.page_size}
        while url:
            body = _json(self._get(url, params=params))
            yield from (item for item in body.get("results") or [] if isinstance(item, dict))
            following = body.get("next")
            url = (
                urljoin(self.config.url + "/", following)
                if isinstance(following, str) and following
                else None
            )
            params = None  # the link carries the page and its size


def _raise_for_status(response: requests.Response) -> None:
    # Older Hub answers say when to come back as an epoch in X-Retry-After, not as Retry-After.
    if response.status_code == 429 and "Retry-After" not in response.headers:
        epoch = response.headers.get("X-Retry-After", "")
        if epoch.isdigit():
            raise RateLimited(
                f"429 from {response.url.split('?', 1)[0]}", retry_after=max(0.0, int(epoch) - time.time())
            )
    raise_for_status(response)


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise TransientError(f"{response.url.split('?', 1)[0]} answered with malformed JSON") from None
    if not isinstance(body, dict):
        raise TransientError(f"{response.url.split('?', 1)[0]} answered with unexpected JSON")
    return body


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return max((moment for moment in (a, b) if moment is not None), default=None)
