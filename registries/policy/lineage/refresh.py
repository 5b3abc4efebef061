"""The refresh: decide the base of every artifact, store the decisions, reconcile the findings."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from portal import findings
from registries.models import Artifact, Registry
from registries.policy.catalog import Catalog
from registries.policy.lineage.base import ArtifactFacts
from registries.policy.lineage.deciding import decide
from registries.policy.lineage.findings import Subject, observe
from registries.policy.lineage.inventory import (
    RepositoryInfo,
    read_facts,
    read_repositories,
    read_stored_provenance,
)
from registries.policy.lineage.layers import CatalogImages
from registries.policy.lineage.storing import store


@dataclass
class RefreshResult:
    artifacts: int = 0
    catalog_images: int = 0
    written: int = 0
    by_method: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, findings.ReconcileResult] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # read and decide, store, findings

    @property
    def open_by_kind(self) -> dict[str, int]:
        return findings.open_by_kind(self.by_kind)


def refresh_lineage(registry: Registry | None = None, *, now: datetime | None = None) -> RefreshResult:
    """Decide the base of every artifact (of one registry, or everywhere), store it, reconcile findings.

    Catalog images are read from the whole inventory either way, and a registry that holds some is
    refreshed with every other (its images are their bases). Provenance is what sync kept
    (`Artifact.provenance`). Rows whose decision did not change are not written, so `decided_at`
    is when the current decision was first reached.
    """
    now = now or timezone.now()
    catalog = Catalog.load()
    repositories = read_repositories()
    if registry is not None and holds_catalog_images(registry, catalog, repositories):
        registry = None
    images = CatalogImages.load(catalog, repositories)
    artifacts = Artifact.objects.all()
    if registry is not None:
        artifacts = artifacts.filter(repository__registry=registry)
    subjects: dict[int, Subject] = {}

    def stream() -> Iterator[ArtifactFacts]:
        for repository_id, facts in read_facts(artifacts):
            where = repositories[repository_id]
            subjects[facts.pk] = Subject(facts.pk, facts.digest, facts.index_id, facts.platform, where)
            yield facts

    started = time.perf_counter()
    decisions = decide(stream(), catalog, images, provenance=read_stored_provenance(artifacts), now=now)
    result = RefreshResult(artifacts=len(decisions), catalog_images=images.count)
    for decision in decisions.values():
        result.by_method[decision.method] = result.by_method.get(decision.method, 0) + 1
    decided = time.perf_counter()
    result.written = store(decisions, now)
    stored = time.perf_counter()
    scope = f"registry-{registry.pk}" if registry is not None else ""
    for kind, observations in observe(decisions, subjects, catalog, now).items():
        result.by_kind[kind.slug] = findings.reconcile(kind, observations, scope=scope, now=now)
    result.seconds = {
        "decide": decided - started,
        "store": stored - decided,
        "findings": time.perf_counter() - stored,
    }
    return result


def holds_catalog_images(
    registry: Registry,
    catalog: Catalog | None = None,
    repositories: Mapping[int, RepositoryInfo] | None = None,
) -> bool:
    """Whether a registry keeps catalog images: its sync can change every other registry's lineage."""
    catalog = catalog if catalog is not None else Catalog.load()
    repositories = repositories if repositories is not None else read_repositories()
    return any(info.registry_id == registry.pk and info.entry(catalog) for info in repositories.values())
