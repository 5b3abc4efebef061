"""What every part of lineage shares: the artifact and catalog-image shapes decide() reads, its Decision."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from portal import bulkread
from registries.connectors.base import INDEX_MEDIA_TYPES
from registries.models import ArtifactLineage
from registries.policy.catalog import Judgement

Method = ArtifactLineage.Method
ATTESTATION_PLATFORM = "unknown/unknown"  # BuildKit's attestation manifests (attestation-storage.md)
CHUNK = bulkread.CHUNK


@dataclass(frozen=True, slots=True)
class ArtifactFacts:
    """One artifact as lineage reads it (plain values: 100,000 of them are read per refresh)."""

    pk: int
    digest: str
    media_type: str = ""
    index_id: int | None = None
    platform: str = ""
    diff_ids: tuple[str, ...] = ()
    layer_digests: tuple[str, ...] = ()
    base_name: str = ""  # the manifest's (or index's) annotations, as sync copies them
    base_digest: str = ""
    label_base_name: str = ""  # the config's labels
    label_base_digest: str = ""

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_MEDIA_TYPES

    @property
    def is_attestation(self) -> bool:
        return self.platform == ATTESTATION_PLATFORM


@dataclass(frozen=True, slots=True)
class CatalogImage:
    """A platform manifest (or single-platform image) stored in a catalog entry's repository or mirror."""

    pk: int
    entry_id: int
    digest: str
    index_digest: str
    platform: str
    tags: tuple[str, ...]
    created: datetime | None
    canonical: bool  # in the entry's own repository, not a mirror


@dataclass(frozen=True, slots=True)
class Decision:
    method: str
    reference: str = ""  # normalised, parseable (admission re-reads it); "" when unknown or FROM scratch
    repository: str = ""
    tag: str | None = None
    base_digest: str = ""
    entry_id: int | None = None
    matched_layers: int = 0
    base_created: datetime | None = None
    judgement: Judgement | None = None
    notes: tuple[str, ...] = ()
    base_index_digest: str = ""  # the matched catalog image's index, for an index's own decision

    @property
    def row(self) -> tuple[Any, ...]:
        """What an ArtifactLineage row stores (storing._COLUMNS): a changed decision differs here."""
        return (
            self.method,
            self.reference[:600],
            self.base_digest[:100],
            self.entry_id,
            self.matched_layers,
            self.base_created,
        )


def unknown(*notes: str) -> Decision:
    return Decision(Method.UNKNOWN, notes=tuple(notes))
