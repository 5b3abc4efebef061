"""Reading the inventory: its repositories, each artifact's facts and the provenance sync kept, streamed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.db.models import QuerySet

from portal import bulkread
from registries.models import Artifact, Repository
from registries.policy.catalog import Catalog, Entry
from registries.policy.lineage.annotations import BASE_DIGEST, BASE_NAME
from registries.policy.lineage.base import CHUNK, ArtifactFacts
from registries.policy.lineage.provenance import StoredProvenance, read_provenance
from registries.policy.references import InvalidReference, parse


@dataclass(frozen=True, slots=True)
class RepositoryInfo:
    registry_id: int
    registry_name: str
    host: str  # the registry's host as catalog mirrors are keyed ("registry.corp:5000")
    kind: str
    path: str  # the repository's name in its registry

    def name(self) -> str:
        """The repository's normalised name, `docker.io/library/python` for Docker Hub's official images."""
        host = "docker.io" if self.kind == "dockerhub" else self.host
        try:
            return parse(f"{host}/{self.path}").repository
        except InvalidReference:
            return f"{host}/{self.path}"

    def entry(self, catalog: Catalog) -> Entry | None:
        return catalog.entry_for(f"{self.host}/{self.path}") or catalog.entry_for(self.name())


def read_repositories() -> dict[int, RepositoryInfo]:
    rows = Repository.objects.values_list(
        "pk", "name", "registry_id", "registry__name", "registry__endpoint", "registry__kind"
    )
    return {
        pk: RepositoryInfo(
            registry, registry_name, (urlsplit(endpoint).netloc or endpoint).lower(), kind, name
        )
        for pk, name, registry, registry_name, endpoint, kind in rows.iterator(CHUNK)
    }


FACT_FIELDS = (
    "pk",
    "repository_id",
    "digest",
    "media_type",
    "index_id",
    "platform",
    "diff_ids",
    "layer_digests",
    "base_name",
    "base_digest",
    "labels",
)


def read_stored_provenance(artifacts: QuerySet[Artifact]) -> dict[int, StoredProvenance]:
    """The provenance sync kept, each statement read as it streams past (a mode=max statement is
    kilobytes; what it says is a reference). Only platform manifests of an index carry one (BuildKit
    attests through the index), so the column is read for those alone, and only where it is set."""
    holders = artifacts.filter(index__isnull=False).exclude(provenance={}).order_by()
    return {
        row["pk"]: read_provenance(row["provenance"]) for row in bulkread.rows(holders, ("pk", "provenance"))
    }


def read_facts(artifacts: QuerySet[Artifact]) -> Iterator[tuple[int, ArtifactFacts]]:
    """(repository pk, facts) for each artifact, streamed."""
    for row in bulkread.rows(artifacts.order_by(), FACT_FIELDS):
        labels = row["labels"] or {}
        yield (
            row["repository_id"],
            ArtifactFacts(
                pk=row["pk"],
                digest=row["digest"],
                media_type=row["media_type"],
                index_id=row["index_id"],
                platform=row["platform"],
                diff_ids=tuple(row["diff_ids"] or ()),
                layer_digests=tuple(row["layer_digests"] or ()),
                base_name=row["base_name"],
                base_digest=row["base_digest"],
                label_base_name=str(labels.get(BASE_NAME, "")),
                label_base_digest=str(labels.get(BASE_DIGEST, "")),
            ),
        )
