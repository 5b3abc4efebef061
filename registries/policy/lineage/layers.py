"""Signal 3: the inventory's catalog images, their layer chains in a trie that finds the longest prefix."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from portal import bulkread
from registries.connectors.base import INDEX_MEDIA_TYPES
from registries.models import Artifact, Tag
from registries.policy.catalog import Catalog
from registries.policy.lineage.base import ATTESTATION_PLATFORM, CatalogImage, Decision
from registries.policy.lineage.inventory import RepositoryInfo, read_repositories

_END = ""  # a trie node's key for its Terminal; no layer digest is ""


@dataclass(eq=False)
class Terminal:
    """Where catalog chains end in the trie: the images with exactly this chain, and (once decided)
    what "built on this chain" decides, so 100,000 images on 200 bases make 200 decisions, not 100,000."""

    depth: int
    images: list[CatalogImage] = field(default_factory=list)
    decision: Decision | None = None


class ChainIndex:
    """A trie of catalog images' layer chains: one walk finds the longest chain that prefixes another."""

    def __init__(self) -> None:
        self._root: dict[str, Any] = {}

    def add(self, chain: tuple[str, ...], image: CatalogImage) -> None:
        if not chain:
            return  # an image with no layers prefixes everything and proves nothing
        node = self._root
        for layer in chain:
            node = node.setdefault(layer, {})
        node.setdefault(_END, Terminal(len(chain))).images.append(image)

    def longest_prefix(self, chain: tuple[str, ...]) -> Terminal | None:
        """The deepest catalog chain that is a strict prefix of `chain`: an image is not its own base."""
        node, found = self._root, None
        for depth in range(len(chain) - 1):
            child: dict[str, Any] | None = node.get(chain[depth])
            if child is None:
                break
            node = child
            found = node.get(_END, found)
        return found


@dataclass
class CatalogImages:
    """The inventory's catalog images, indexed by layer chain, digest and tag."""

    by_diff_ids: ChainIndex = field(default_factory=ChainIndex)
    by_layers: ChainIndex = field(default_factory=ChainIndex)
    by_digest: dict[str, list[CatalogImage]] = field(default_factory=lambda: defaultdict(list))
    by_tag: dict[tuple[int, str], list[CatalogImage]] = field(default_factory=lambda: defaultdict(list))
    count: int = 0

    def add(self, image: CatalogImage, diff_ids: tuple[str, ...], layer_digests: tuple[str, ...]) -> None:
        self.count += 1
        self.by_diff_ids.add(diff_ids, image)
        self.by_layers.add(layer_digests, image)
        self.by_digest[image.digest].append(image)
        if image.index_digest:
            self.by_digest[image.index_digest].append(image)
        for tag in image.tags:
            self.by_tag[(image.entry_id, tag)].append(image)

    @classmethod
    def load(
        cls, catalog: Catalog, repositories: Mapping[int, RepositoryInfo] | None = None
    ) -> CatalogImages:
        """Read every catalog image in the inventory: four queries, whatever the estate's size."""
        repositories = repositories if repositories is not None else read_repositories()
        entries = {
            pk: entry for pk, info in repositories.items() if (entry := info.entry(catalog)) is not None
        }
        images = cls()
        if not entries:
            return images
        tags: dict[int, list[str]] = defaultdict(list)
        for artifact_id, name in Tag.objects.filter(repository_id__in=list(entries)).values_list(
            "artifact_id", "name"
        ):
            tags[artifact_id].append(name)
        rows = Artifact.objects.filter(repository_id__in=list(entries)).exclude(
            media_type__in=INDEX_MEDIA_TYPES
        )
        fields = (
            "pk",
            "repository_id",
            "digest",
            "index_id",
            "platform",
            "diff_ids",
            "layer_digests",
            "created",
        )
        found = list(bulkread.rows(rows.exclude(platform=ATTESTATION_PLATFORM).order_by(), fields))
        above = {row["index_id"] for row in found if row["index_id"]}
        index_digests = (
            dict(Artifact.objects.filter(pk__in=above).values_list("pk", "digest")) if above else {}
        )
        for row in found:
            entry = entries[row["repository_id"]]
            holder = row["index_id"] or row["pk"]  # tags point at the index of a multi-platform image
            image = CatalogImage(
                pk=row["pk"],
                entry_id=entry.id,
                digest=row["digest"],
                index_digest=index_digests.get(row["index_id"], ""),
                platform=row["platform"],
                tags=tuple(sorted(tags.get(holder, ()))),
                created=row["created"],
                canonical=repositories[row["repository_id"]].name() == entry.name,
            )
            images.add(image, tuple(row["diff_ids"] or ()), tuple(row["layer_digests"] or ()))
        return images
