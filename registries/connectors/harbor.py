"""Harbor v2: repositories and artifacts with push and pull times from the REST API, manifests from /v2.

Harbor serves two APIs on one host. Its REST API (`/api/v2.0`) knows what distribution cannot tell:
when each artifact was pushed and last pulled, and (later) robots, members and webhooks. Manifests,
configs and layers come through the registry API at `/v2/`, behind Harbor's token service, by the
same code as any distribution registry, so lineage and digest checks work alike everywhere.

Authenticate with a robot account (`robot$customs`, system level, with list and read on
repositories and artifacts) or an admin; the same credentials work for both APIs.
"""

from __future__ import annotations

import dataclasses
import threading
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
from registries.connectors.errors import raise_for_status

API = "/api/v2.0"


class HarborConfig(ConnectorConfig):
    url: str
    username: str
    password: SecretStr
    verify_tls: bool = True
    page_size: int = 100

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        # The same rules as a distribution endpoint: Harbor's /v2/ lives at the same address.
        return DistributionConfig.model_validate({"url": value}).url

    @field_validator("page_size")
    @classmethod
    def _page_size(cls, value: int) -> int:
        if not 1 <= value <= 100:  # Harbor caps page_size at 100
            raise ValueError("page size must be between 1 and 100")
        return value


class HarborConnector:
    kind: ClassVar[str] = "harbor"
    label: ClassVar[str] = "Harbor"
    config_class: ClassVar[type[ConnectorConfig]] = HarborConfig
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.REPOSITORIES,
            Capability.ARTIFACTS,
            Capability.PUSHED_AT,
            Capability.PULLED_AT,
        }
    )

    def __init__(self, config: HarborConfig) -> None:
        self.config = config
        self._local = threading.local()
        self._registry = DistributionConnector(
            DistributionConfig(
                url=config.url,
                username=config.username,
                password=config.password,
                verify_tls=config.verify_tls,
            )
        )

    # --- the interface ---------------------------------------------------------------------------

    def check(self) -> None:
        # One page of one project: proves the address and that these credentials are accepted.
        self._get(f"{API}/projects", params={"page": 1, "page_size": 1})
        self._registry.check()

    def repositories(self) -> Iterator[RemoteRepository]:
        for item in self._pages(f"{API}/repositories"):
            yield RemoteRepository(name=str(item["name"]))

    def tags(self, repository: str) -> list[RemoteTag]:
        tags = [
            RemoteTag(name=str(tag["name"]), digest=str(artifact["digest"]))
            for artifact in self._pages(self._artifacts_path(repository), {"with_tag": "true"})
            for tag in artifact.get("tags") or []
        ]
        return sorted(tags, key=lambda tag: tag.name)

    def resolve(self, repository: str, reference: str) -> str:
        return self._registry.resolve(repository, reference)

    def artifact(self, repository: str, digest: str) -> RemoteArtifact:
        details = self._get(
            f"{self._artifacts_path(repository)}/{digest}", params={"with_tag": "false"}
        ).json()
        record = self._registry.artifact(repository, digest)
        return dataclasses.replace(
            record,
            pushed_at=_harbor_time(details.get("push_time")),
            last_pulled_at=_harbor_time(details.get("pull_time")),
        )

    # --- HTTP ------------------------------------------------------------------------------------

    def _artifacts_path(self, repository: str) -> str:
        project, _, name = repository.partition("/")
        # Harbor decodes path segments once more than usual: nested names are encoded twice.
        encoded = quote(quote(name, safe=""), safe="")
        return f"{API}/projects/{quote(project, safe='')}/repositories/{encoded}/artifacts"

    @property
    def _session(self) -> OutboundSession:
        session: OutboundSession | None = getattr(self._local, "session", None)
        if session is None:
            session = outbound_session(purpose="harbor")
            session.auth = (self.config.username, self.config.password.get_secret_value())
            session.headers["X-Is-Resource-Name"] = "true"  # a numeric project name is still a name
            if not self.config.verify_tls:
                session.verify = False  # an admin's explicit choice for a lab registry
            self._local.session = session
        return session

    def _get(self, path: str, params: dict[str, Any] | None = None) -> requests.Response:
        url = path if path.startswith("http") else f"{self.config.url}{path}"
        response = self._session.get(url, params=params)
        raise_for_status(response)
        return response

    def _pages(self, path: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of a paged list, following Harbor's Link header rather than counting pages."""
        url: str | None = path
        query: dict[str, Any] | None = {**(params or {}), "page": 1, "page_size": self.config.page_size}
        while url:
            response = self._get(url, params=query)
            items = _json_list(response)
            yield from items
            link = requests.utils.parse_header_links(response.headers.get("Link", ""))
            following = next((entry["url"] for entry in link if entry.get("rel") == "next"), None)
            url = urljoin(self.config.url + "/", following) if following else None
            query = None  # the link carries the filters and the page


def _json_list(response: requests.Response) -> list[dict[str, Any]]:
    try:
        body = response.json()
    except ValueError:
        raise TransientError(f"{response.url.split('?', 1)[0]} answered with malformed JSON") from None
    if not isinstance(body, list):
        raise TransientError(f"{response.url.split('?', 1)[0]} answered with unexpected JSON")
    return [item for item in body if isinstance(item, dict)]


def _harbor_time(value: object) -> datetime | None:
    """Harbor writes year 1 for "never" (a Go zero time) rather than null."""
    moment = parse_rfc3339(value)
    return None if moment is None or moment.year <= 1 else moment
