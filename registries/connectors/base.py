"""The connector interface: plain records out, typed configuration in, five kinds of failure.

A connector talks to one registry and never touches the database: registries/sync.py turns its
records into rows. Adding a registry kind means one module here and one entry in CONNECTORS.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, SecretStr


class Capability(enum.StrEnum):
    """What a connector can supply; pages and rules only ask for what it declares."""

    REPOSITORIES = "repositories"
    ARTIFACTS = "artifacts"
    PUSHED_AT = "pushed_at"
    PULLED_AT = "pulled_at"
    CREDENTIALS = "credentials"
    GRANTS = "grants"
    REPLICAS = "replicas"
    EVENTS = "events"


class ConnectorConfig(BaseModel):
    """Per-kind configuration. Secret fields are SecretStr: they print as stars and live encrypted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def secret_fields(cls) -> set[str]:
        return {name for name, f in cls.model_fields.items() if f.annotation in (SecretStr, SecretStr | None)}

    def public(self) -> dict[str, Any]:
        """Everything but the secrets: what templates, the API and logs may see."""
        return self.model_dump(mode="json", exclude=self.secret_fields())

    def secrets(self) -> dict[str, str]:
        """The secret values, for the encrypted column only."""
        values = {name: getattr(self, name) for name in self.secret_fields()}
        return {name: value.get_secret_value() for name, value in values.items() if value is not None}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(part for part in (self.os, self.architecture, self.variant) if part)


@dataclass(frozen=True)
class RemoteRepository:
    name: str


@dataclass(frozen=True)
class RemoteTag:
    name: str
    digest: str


@dataclass(frozen=True)
class RemoteArtifact:
    """One manifest (or index) by digest, with what its config and annotations say about it."""

    digest: str
    media_type: str
    size: int  # config plus layers, as the manifest's descriptors state them
    platform: Platform | None = None
    config_digest: str = ""
    layer_digests: tuple[str, ...] = ()
    diff_ids: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    created: datetime | None = None
    pushed_at: datetime | None = None
    last_pulled_at: datetime | None = None
    children: tuple[RemoteArtifact, ...] = ()  # the platform manifests of an index

    @property
    def is_index(self) -> bool:
        return bool(self.children) or self.media_type in INDEX_MEDIA_TYPES


OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_MEDIA_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})


_SUBMICROSECONDS = re.compile(r"(\.\d{6})\d+")


def parse_rfc3339(text: object) -> datetime | None:
    """An RFC 3339 timestamp as an aware datetime, or None; Go's nanoseconds are cut to microseconds."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(_SUBMICROSECONDS.sub(r"\1", text.replace("Z", "+00:00")))
    except ValueError:
        return None
    return moment if moment.tzinfo else None  # a time without a zone cannot be placed: treat as unknown


class Connector(Protocol):
    kind: ClassVar[str]
    label: ClassVar[str]
    config_class: ClassVar[type[ConnectorConfig]]
    capabilities: ClassVar[frozenset[Capability]]

    def check(self) -> None:
        """Return when the registry answers with these credentials; raise a ConnectorError otherwise."""

    def repositories(self) -> Iterator[RemoteRepository]:
        """Every repository, streamed page by page."""

    def tags(self, repository: str) -> list[RemoteTag]:
        """The repository's tags with the digest each points at."""

    def artifact(self, repository: str, digest: str) -> RemoteArtifact:
        """The manifest (or index, with its platform manifests) behind a digest."""
