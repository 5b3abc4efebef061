"""Lineage: what every artifact in the inventory is built on, how Customs decided it, and the findings.

The signals are consulted in the order of ../shared/docs/base-images-and-tokens.md §A1; the first that
names a base decides, and the method says which one it was:

1. annotation: `org.opencontainers.image.base.name` / `.base.digest`, read from the image index's
   annotations, then the platform manifest's, then the config's labels (the first of the three that
   has either key). Normalised like docker/distribution; a value that is not a valid reference is
   ignored, and the decision says so.
2. provenance: a BuildKit SLSA provenance statement (v0.2 `materials` and `buildConfig`, v1
   `resolvedDependencies` and `internalParameters.buildConfig`). Sync reads it from the index's
   attestation manifest and keeps it, cut to what is read here, on the platform manifest it is about
   (`Artifact.provenance`, with sync's notes on attestations it could not read); refresh_lineage
   reads that column only for the rows that have one.
3. layers: the longest catalog image whose whole layer chain is a strict prefix of the artifact's.
   Catalog images are the inventory's artifacts in a catalog entry's repository or one of its
   regional mirrors. Chains are looked up in a trie, so 100,000 artifacts cost 100,000 walks of a
   few dict lookups each, however many catalog images there are; nothing is compared pairwise.
4. unknown: never read as approved, never as unapproved; a finding of its own says so.

An image index is decided from its own annotation when it has one, else from its platform
manifests when they agree (their base's index digest becomes the index's base digest). Findings are
raised on what tags point at (single-platform images and indexes); an index's finding lists its
platforms. Attestation manifests (platform `unknown/unknown`, §A1 signal 2) are not images and get
no lineage.

The modules, in the order a refresh meets them: inventory (repositories, artifact facts and stored
provenance, read in bulk), annotations, provenance and layers (the three signals; layers also loads
the catalog images), deciding, storing and findings (the kinds and what decisions call for), with
refresh holding the entry points; base holds the shapes they all share. Callers import from this
package only.
"""

from __future__ import annotations

from registries.policy.lineage.annotations import BASE_DIGEST, BASE_NAME, Annotated, read_annotation
from registries.policy.lineage.base import (
    ATTESTATION_PLATFORM,
    CHUNK,
    ArtifactFacts,
    CatalogImage,
    Decision,
    Method,
    unknown,
)
from registries.policy.lineage.deciding import decide
from registries.policy.lineage.findings import (
    BASE_BANNED,
    BASE_DEPRECATED,
    BASE_TOO_OLD,
    BASE_UNAPPROVED,
    BASE_UNKNOWN,
    LINEAGE_KINDS,
    Hit,
    Subject,
    observe,
)
from registries.policy.lineage.inventory import (
    FACT_FIELDS,
    RepositoryInfo,
    read_facts,
    read_repositories,
    read_stored_provenance,
)
from registries.policy.lineage.layers import CatalogImages, ChainIndex, Terminal
from registries.policy.lineage.provenance import (
    ProvenanceBase,
    StoredProvenance,
    provenance_base,
    read_provenance,
)
from registries.policy.lineage.refresh import RefreshResult, holds_catalog_images, refresh_lineage
from registries.policy.lineage.storing import store

__all__ = [
    "ATTESTATION_PLATFORM",
    "BASE_BANNED",
    "BASE_DEPRECATED",
    "BASE_DIGEST",
    "BASE_NAME",
    "BASE_TOO_OLD",
    "BASE_UNAPPROVED",
    "BASE_UNKNOWN",
    "CHUNK",
    "FACT_FIELDS",
    "LINEAGE_KINDS",
    "Annotated",
    "ArtifactFacts",
    "CatalogImage",
    "CatalogImages",
    "ChainIndex",
    "Decision",
    "Hit",
    "Method",
    "ProvenanceBase",
    "RefreshResult",
    "RepositoryInfo",
    "StoredProvenance",
    "Subject",
    "Terminal",
    "decide",
    "holds_catalog_images",
    "observe",
    "provenance_base",
    "read_annotation",
    "read_facts",
    "read_provenance",
    "read_repositories",
    "read_stored_provenance",
    "refresh_lineage",
    "store",
    "unknown",
]
