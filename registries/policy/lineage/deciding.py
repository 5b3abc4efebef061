"""Deciding each artifact's base from the signals in §A1's order, and an index's from its platforms."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from operator import attrgetter
from typing import Any

from django.utils import timezone

from registries.policy.catalog import Catalog, Judgement, Verdict
from registries.policy.lineage.annotations import annotation_sources, read_annotation
from registries.policy.lineage.base import ArtifactFacts, CatalogImage, Decision, Method, unknown
from registries.policy.lineage.layers import CatalogImages, Terminal
from registries.policy.lineage.provenance import StoredProvenance, read_provenance
from registries.policy.references import Reference, parse, with_default_tag

# Worst first is what an index takes from its platforms, and what a catalog image with several tags
# is judged by at best (the content is the same whichever tag the build used).
_RANK = {Verdict.APPROVED: 0, Verdict.DEPRECATED: 1, Verdict.UNAPPROVED: 2, Verdict.BANNED: 3}


_NO_SIGNAL = "no base annotation, no provenance, and no catalog image's layers start it"


@dataclass
class _Decider:
    catalog: Catalog
    images: CatalogImages
    provenance: Mapping[int, Mapping[str, Any] | StoredProvenance]
    now: datetime
    _judged: dict[int, tuple[Reference, Judgement]] = field(default_factory=dict)
    _named_memo: dict[tuple[str, Reference, str], Decision] = field(default_factory=dict)

    def decide(self, facts: ArtifactFacts) -> tuple[Decision, Decision | None]:
        """The decision, and what the layers alone say (kept to re-decide by the index's annotation)."""
        notes: list[str] = []
        layered = self.by_layers(facts)
        named = self.by_annotation(annotation_sources(facts), facts.platform, notes)
        return self.settle(named or self.by_provenance(facts, notes), layered, notes), layered

    def settle(self, decision: Decision | None, layered: Decision | None, notes: list[str]) -> Decision:
        """Layers decide when nothing earlier did; when something did, a disagreement is noted (§A1)."""
        if decision is None:
            decision = layered
        elif layered is not None and _conflict(decision, layered):
            notes.append(f"conflict: its layers start with the catalog image {layered.reference}")
        if decision is None:
            return unknown(*notes, _NO_SIGNAL)
        return _with_notes(decision, notes)

    # signal 1

    def by_annotation(
        self, sources: Iterable[tuple[str, str, str]], platform: str, notes: list[str]
    ) -> Decision | None:
        """The first usable annotation source; an unusable one is skipped, with a note saying why."""
        for name, digest, where in sources:
            if not (name or digest):
                continue
            said = read_annotation(name, digest, where=where)
            notes.extend(said.notes)
            if said.reference is not None:
                return self._named(Method.ANNOTATION, with_default_tag(said.reference), platform)
            if said.digest and (image := _same_platform(self.images.by_digest.get(said.digest), platform)):
                notes.append(f"{where} has only base.digest: the catalog image {image.digest}")
                return self._catalog_image(Method.ANNOTATION, image, 0)
            if said.digest:
                notes.append(f"{where} base.digest {said.digest} alone names no catalog image; ignored")
        return None

    # signal 2

    def by_provenance(self, facts: ArtifactFacts, notes: list[str]) -> Decision | None:
        given = self.provenance.get(facts.pk)
        if given is None:
            return None
        stored = given if isinstance(given, StoredProvenance) else read_provenance(given)
        notes.extend(stored.notes)
        if not stored.stated:
            return None
        found = stored.base
        if found is None:
            notes.append("its provenance does not say which image the final stage starts from")
            return None
        notes.extend(found.notes)
        if found.reference is None:
            # FROM scratch: no base at all, which only provenance can prove (§A1 layer matching rules).
            return Decision(Method.PROVENANCE)
        return self._named(Method.PROVENANCE, found.reference, facts.platform)

    # signal 3

    def by_layers(self, facts: ArtifactFacts) -> Decision | None:
        if facts.diff_ids:
            terminal = self.images.by_diff_ids.longest_prefix(facts.diff_ids)
        else:
            # Compressed digests change with a re-push; used only where no diffIDs were read.
            terminal = self.images.by_layers.longest_prefix(facts.layer_digests)
        if terminal is None:
            return None
        if terminal.decision is None:
            terminal.decision = self._terminal(terminal)
        return terminal.decision

    def _terminal(self, terminal: Terminal) -> Decision:
        entries = sorted({image.entry_id for image in terminal.images})
        if len(entries) > 1:
            names = ", ".join(self._entry_name(entry_id) for entry_id in entries)
            return unknown(
                f"ambiguous: its first {terminal.depth} layers are a catalog image of each of {names}"
            )
        return self._catalog_image(Method.LAYERS, self._best(terminal.images), terminal.depth)

    # judging

    def _named(self, method: str, reference: Reference, platform: str) -> Decision:
        """A base named by annotation or provenance: judged as named; its age from the inventory's copy."""
        key = (method, reference, platform)
        if (known := self._named_memo.get(key)) is None:
            known = self._named_memo[key] = self._judge_named(method, reference, platform)
        return known

    def _judge_named(self, method: str, reference: Reference, platform: str) -> Decision:
        judgement = self.catalog.judge(reference)
        image = None
        if reference.digest:
            image = _same_platform(self.images.by_digest.get(reference.digest), platform)
        elif judgement.entry_id is not None and reference.tag:
            # Only a tag: the image it points at now is the newest the build can have used, so the
            # age read from it is at most the real one (never a false "too old").
            image = _same_platform(self.images.by_tag.get((judgement.entry_id, reference.tag)), platform)
        if reference.tag is None and image is not None and judgement.verdict == Verdict.UNAPPROVED:
            _, judgement = self._judge_image(image)  # a digest only: judged by the tags it carries
        return Decision(
            method,
            reference=str(reference),
            repository=reference.repository,
            tag=reference.tag,
            base_digest=reference.digest or "",
            entry_id=judgement.entry_id,
            base_created=self._plausible(image.created) if image else None,
            judgement=judgement,
            base_index_digest=image.index_digest if image else "",
        )

    def _catalog_image(self, method: str, image: CatalogImage, depth: int) -> Decision:
        reference, judgement = self._judge_image(image)
        return Decision(
            method,
            reference=str(reference),
            repository=reference.repository,
            tag=reference.tag,
            base_digest=reference.digest or image.digest,
            entry_id=image.entry_id,
            matched_layers=depth,
            base_created=self._plausible(image.created),
            judgement=judgement,
            base_index_digest=image.index_digest,
        )

    def _judge_image(self, image: CatalogImage) -> tuple[Reference, Judgement]:
        """The image under its best tag: the content is the same whichever of its tags a build named."""
        if (known := self._judged.get(image.pk)) is not None:
            return known
        entry = self.catalog.entry(image.entry_id)
        assert entry is not None
        # Judged by the index digest when that is the one the entry pins (§A2: both kinds are pinned).
        pinned = image.index_digest and image.index_digest in entry.digests
        digest = image.index_digest if pinned else image.digest
        names = [f"{entry.name}:{tag}@{digest}" for tag in image.tags] or [f"{entry.name}@{digest}"]
        judged = min(
            ((reference, self.catalog.judge(reference)) for reference in map(parse, names)),
            key=lambda pair: _RANK[pair[1].verdict],
        )
        self._judged[image.pk] = judged
        return judged

    def _best(self, images: list[CatalogImage]) -> CatalogImage:
        # Several images of one entry share the chain (mirror copies, a tag re-pushed with a new
        # config): the best judged, then the entry's own repository, then the newest, then by digest.
        def key(image: CatalogImage) -> tuple[int, bool, float, str]:
            created = image.created.timestamp() if image.created else 0.0
            return (_RANK[self._judge_image(image)[1].verdict], not image.canonical, -created, image.digest)

        return min(images, key=key)

    def _entry_name(self, entry_id: int) -> str:
        entry = self.catalog.entry(entry_id)
        return entry.name if entry else f"entry #{entry_id}"

    def _plausible(self, created: datetime | None) -> datetime | None:
        # §A2: the epoch (reproducible builds) and the future mean "unknown".
        if created is None or created.year <= 1970 or created > self.now:
            return None
        return created


def _same_platform(images: list[CatalogImage] | None, platform: str) -> CatalogImage | None:
    if not images:
        return None
    return next((image for image in images if image.platform == platform), images[0])


def _conflict(decision: Decision, layered: Decision) -> bool:
    """§A1 conflicts: the layers name another catalog entry, or another digest, than the decision."""
    if decision is layered or layered.method == Method.UNKNOWN:
        return False
    if decision.entry_id != layered.entry_id:
        return True
    digests = {layered.base_digest, layered.base_index_digest}
    return bool(decision.base_digest) and decision.base_digest not in digests


def _with_notes(decision: Decision, notes: list[str]) -> Decision:
    if not notes:
        return decision
    return replace(decision, notes=tuple(dict.fromkeys([*decision.notes, *notes])))


@dataclass(frozen=True, slots=True)
class _Platform:
    platform: str
    pk: int
    decision: Decision
    layered: Decision | None


def decide(
    artifacts: Iterable[ArtifactFacts],
    catalog: Catalog,
    images: CatalogImages | None = None,
    *,
    provenance: Mapping[int, Mapping[str, Any] | StoredProvenance] | None = None,
    now: datetime | None = None,
) -> dict[int, Decision]:
    """Decide the base of every artifact (attestation manifests excepted), by artifact pk.

    Rows may come in any order (a stream): a platform manifest is decided on its own, and again
    from its index's base annotation, which comes first (§A1), once the index has been read.
    `provenance` maps a platform manifest's pk to its in-toto provenance statement (or that statement
    already read), where one is known. `images` defaults to the inventory's catalog images.
    """
    if images is None:
        images = CatalogImages.load(catalog)
    decider = _Decider(catalog, images, provenance or {}, now or timezone.now())
    decisions: dict[int, Decision] = {}
    platforms: dict[int, list[_Platform]] = defaultdict(list)
    indexes: list[ArtifactFacts] = []
    for facts in artifacts:
        if facts.is_attestation:
            continue
        if facts.is_index:
            indexes.append(facts)  # decided from its platforms, once they all are
            continue
        decision, layered = decider.decide(facts)
        decisions[facts.pk] = decision
        if facts.index_id is not None:
            platforms[facts.index_id].append(_Platform(facts.platform, facts.pk, decision, layered))
    for index in indexes:
        below = sorted(platforms.get(index.pk, []), key=attrgetter("platform"))
        if index.base_name or index.base_digest:
            below = [_by_index_annotation(decider, index, part) for part in below]
            decisions.update((part.pk, part.decision) for part in below)
        decisions[index.pk] = _index_decision(
            decider, index, [(part.platform, part.decision) for part in below]
        )
    return decisions


def _by_index_annotation(decider: _Decider, index: ArtifactFacts, part: _Platform) -> _Platform:
    notes: list[str] = []
    source = (index.base_name, index.base_digest, "index annotation")
    named = decider.by_annotation([source], part.platform, notes)
    if named is None:
        # An unusable index annotation is skipped: what the platform said for itself stands.
        return replace(part, decision=_with_notes(part.decision, notes))
    return replace(part, decision=decider.settle(named, part.layered, notes))


def _index_decision(
    decider: _Decider, index: ArtifactFacts, platforms: list[tuple[str, Decision]]
) -> Decision:
    """An index's own annotation, else what its platform manifests agree on."""
    notes: list[str] = []
    if (annotated := decider.by_annotation(annotation_sources(index), "", notes)) is not None:
        return _with_notes(annotated, notes)
    if not platforms:
        return unknown(*notes, "no platform manifest of this index is stored")
    decisions = [decision for _, decision in platforms]
    first = decisions[0]
    # The same base found two ways (one platform's provenance, another's layers) is agreement.
    if any((d.entry_id, d.repository) != (first.entry_id, first.repository) for d in decisions):
        said = "; ".join(f"{platform}: {d.reference or d.method}" for platform, d in platforms)
        return unknown(*notes, f"its platforms are built on different bases ({said})")
    if first.method == Method.UNKNOWN:
        return unknown(*notes, *(note for d in decisions for note in d.notes))
    return _with_notes(_agreed(decisions), notes)


def _agreed(decisions: list[Decision]) -> Decision:
    """One decision for an index whose platforms name the same base (each by its platform digest)."""
    first = decisions[0]
    digests = {d.base_digest for d in decisions}
    index_digests = {d.base_index_digest for d in decisions}
    if len(digests) == 1:
        digest = first.base_digest
    else:
        # The base's own index, when every platform matched a platform of it; else no digest.
        digest = first.base_index_digest if len(index_digests) == 1 else ""
    reference = first.repository + (f":{first.tag}" if first.tag else "") + (f"@{digest}" if digest else "")
    created = [d.base_created for d in decisions if d.base_created is not None]
    judged = [d.judgement for d in decisions if d.judgement is not None]
    return Decision(
        first.method,
        reference=reference if first.repository else "",
        repository=first.repository,
        tag=first.tag,
        base_digest=digest,
        entry_id=first.entry_id,
        matched_layers=min(d.matched_layers for d in decisions),
        base_created=min(created) if created else None,  # an index is as old as its oldest platform's base
        judgement=max(judged, key=lambda j: _RANK[j.verdict]) if judged else None,
        notes=tuple(dict.fromkeys(note for d in decisions for note in d.notes)),
        base_index_digest=digest,
    )
