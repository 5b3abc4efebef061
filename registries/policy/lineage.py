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
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from operator import attrgetter, itemgetter
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from django.db import connection, transaction
from django.db.models import Field, QuerySet
from django.utils import timezone

from portal import bulkread, findings
from portal.findings import FindingKind, Observation, Severity
from registries.connectors.base import INDEX_MEDIA_TYPES
from registries.connectors.distribution import SLSA_V02, SLSA_V1
from registries.models import Artifact, ArtifactLineage, Registry, Repository, Tag
from registries.policy.catalog import Catalog, Entry, Judgement, Verdict
from registries.policy.references import InvalidReference, Reference, parse, with_default_tag

Method = ArtifactLineage.Method

BASE_NAME = "org.opencontainers.image.base.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"
ATTESTATION_PLATFORM = "unknown/unknown"  # BuildKit's attestation manifests (attestation-storage.md)
CHUNK = bulkread.CHUNK

# --- finding kinds ----------------------------------------------------------------------------------------
# Severities: a banned base is known-bad content (a vulnerable or compromised image someone decided
# nobody may run), so high. An unapproved base and a too-old base are policy breaches with unknown
# or ageing content: medium, like a stale credential. A deprecated base is still allowed and comes
# with its replacement: low, a nudge. An unknown base is missing evidence, not a breach (squashed
# and FROM scratch images are legitimately unknown by layers): info, so it is visible and counted
# without drowning the real breaches.

BASE_BANNED = findings.register(
    FindingKind(
        slug="base_banned",
        severity=Severity.HIGH,
        title="Built on a banned base image",
        explanation="The image's base is a catalog entry marked banned: rebuild it on the replacement.",
    )
)
BASE_UNAPPROVED = findings.register(
    FindingKind(
        slug="base_unapproved",
        severity=Severity.MEDIUM,
        title="Built on an unapproved base image",
        explanation="The image's base is not in the base-image catalog, or is a tag or digest the "
        "catalog entry does not allow.",
    )
)
BASE_TOO_OLD = findings.register(
    FindingKind(
        slug="base_too_old",
        severity=Severity.MEDIUM,
        title="Base image older than its maximum age",
        explanation="The base was built longer ago than its catalog entry allows: rebuild on a current "
        "image of the same base.",
    )
)
BASE_DEPRECATED = findings.register(
    FindingKind(
        slug="base_deprecated",
        severity=Severity.LOW,
        title="Built on a deprecated base image",
        explanation="Still allowed, but the catalog names a replacement to move to.",
    )
)
BASE_UNKNOWN = findings.register(
    FindingKind(
        slug="base_unknown",
        severity=Severity.INFO,
        title="Base image unknown",
        explanation="No base annotation, no provenance, and no catalog image whose layers the image "
        "starts with. Add the OCI base annotations to the build, or add the base to the catalog.",
    )
)
LINEAGE_KINDS = (BASE_BANNED, BASE_UNAPPROVED, BASE_TOO_OLD, BASE_DEPRECATED, BASE_UNKNOWN)
_VERDICT_KINDS = {
    Verdict.BANNED: BASE_BANNED,
    Verdict.UNAPPROVED: BASE_UNAPPROVED,
    Verdict.DEPRECATED: BASE_DEPRECATED,
}
# Worst first is what an index takes from its platforms, and what a catalog image with several tags
# is judged by at best (the content is the same whichever tag the build used).
_RANK = {Verdict.APPROVED: 0, Verdict.DEPRECATED: 1, Verdict.UNAPPROVED: 2, Verdict.BANNED: 3}


# --- the shapes decide() reads and returns -----------------------------------------------------------------


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
        """What an ArtifactLineage row stores (lineage._COLUMNS), to tell a changed decision from the same."""
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


# --- signal 1: OCI base annotations -----------------------------------------------------------------------


@dataclass(frozen=True)
class Annotated:
    """What a base annotation said: a reference (None when unusable) and why it was read that way."""

    reference: Reference | None
    digest: str  # base.digest as written, for a digest-only annotation
    notes: tuple[str, ...]


def read_annotation(name: str, digest: str, *, where: str) -> Annotated:
    """Normalise `base.name` (and fold `base.digest` into it); invalid values are ignored, with a note."""
    name, digest, notes = name.strip(), digest.strip(), []
    if not name:
        return Annotated(None, digest, ())
    try:
        reference = parse(name)
    except InvalidReference as exc:
        return Annotated(
            None, digest, (f"{where} base.name {name!r} is not a valid image reference ({exc}); ignored",)
        )
    if not name.startswith(f"{reference.domain}/{reference.path}"):
        notes.append(f"{where} base.name {name!r} is not fully qualified; read as {reference}")
    if digest and reference.digest and digest != reference.digest:
        notes.append(
            f"{where} base.digest {digest} disagrees with the digest in base.name; the name's is used"
        )
    elif digest and not reference.digest:
        try:
            reference = parse(f"{name}@{digest}")
        except InvalidReference:
            notes.append(f"{where} base.digest {digest!r} is not a valid digest; ignored")
    return Annotated(reference, "", tuple(notes))


def _annotation_sources(facts: ArtifactFacts) -> list[tuple[str, str, str]]:
    # §A1 reads the index's annotations, then the manifest's, then the config's labels; decide()
    # gives a platform manifest its index's annotation, first, once it has read the index.
    where = "index annotation" if facts.is_index else "annotation"
    return [
        (facts.base_name, facts.base_digest, where),
        (facts.label_base_name, facts.label_base_digest, "config label"),
    ]


# --- signal 2: SLSA provenance (BuildKit) -----------------------------------------------------------------

# Images BuildKit lists among the materials that are tools of the build, not what it builds on.
_TOOL_REPOSITORIES = frozenset({"docker.io/docker/buildkit-syft-scanner"})


@dataclass(frozen=True)
class ProvenanceBase:
    """The final stage's base as a provenance statement gives it; `reference` None means FROM scratch."""

    reference: Reference | None
    notes: tuple[str, ...] = ()


def provenance_base(statement: Mapping[str, Any]) -> ProvenanceBase | None:
    """The base an in-toto SLSA provenance statement from BuildKit names, or None when it cannot tell.

    With mode=max the build definition (LLB) is followed from the result back through each step's
    root filesystem to the image source the final stage started from; COPY --from and builder stages
    hang off other inputs and are not followed. With mode=min only `materials` exist, which list every
    image the build pulled (builder stages, COPY --from, the frontend): they decide only when exactly
    one image is left after the frontend and BuildKit's own tools are set aside.

    What is read here is what the distribution connector keeps (`slim_provenance`): change one, change
    the other.
    """
    predicate = statement.get("predicate")
    if not isinstance(predicate, Mapping):
        return None
    kind = str(statement.get("predicateType", ""))
    if kind.startswith(SLSA_V1):
        definition = predicate.get("buildDefinition") or {}
        materials = definition.get("resolvedDependencies") or []
        steps = ((definition.get("internalParameters") or {}).get("buildConfig") or {}).get("llbDefinition")
        frontend = ((definition.get("externalParameters") or {}).get("request") or {}).get("args") or {}
    elif kind.startswith(SLSA_V02):
        materials = predicate.get("materials") or []
        steps = (predicate.get("buildConfig") or {}).get("llbDefinition")
        frontend = ((predicate.get("invocation") or {}).get("parameters") or {}).get("args") or {}
    else:
        return None
    images = _material_images(materials)
    if steps:
        return _from_build_definition(steps, images)
    return _from_materials(images, str(frontend.get("source", "")))


@dataclass(frozen=True)
class StoredProvenance:
    """An artifact's provenance, read once: the base it names (None: it does not say), whether there
    was a statement at all, and the notes sync left on attestations it could not read."""

    base: ProvenanceBase | None
    stated: bool
    notes: tuple[str, ...] = ()


def read_provenance(statement: Mapping[str, Any]) -> StoredProvenance:
    """What a statement (or sync's notes in its place) says; a malformed one says nothing, with a note."""
    noted = statement.get("notes")
    notes = tuple(str(note) for note in noted) if isinstance(noted, list) else ()
    if "predicate" not in statement:
        return StoredProvenance(None, stated=False, notes=notes)
    try:
        base = provenance_base(statement)
    except (AttributeError, KeyError, TypeError, ValueError):
        # Registries hand us what anyone pushed: a statement BuildKit did not write is not a reason
        # for a whole refresh to fail.
        return StoredProvenance(None, stated=True, notes=(*notes, "its provenance statement is malformed"))
    return StoredProvenance(base, stated=True, notes=notes)


def _material_images(materials: Iterable[Any]) -> list[Reference]:
    """The docker images among the materials, with the digest BuildKit resolved each to."""
    images = []
    for material in materials:
        if not isinstance(material, Mapping) or not str(material.get("uri", "")).startswith("pkg:docker/"):
            continue
        digests = material.get("digest") or {}
        pinned = f"sha256:{digests['sha256']}" if isinstance(digests, Mapping) and "sha256" in digests else ""
        if (reference := _purl_reference(str(material["uri"]), pinned)) is not None:
            images.append(reference)
    return images


def _purl_reference(purl: str, pinned: str) -> Reference | None:
    """`pkg:docker/<namespace>/<name>@<tag>?digest=…` (BuildKit's util/purl) as a reference."""
    path, _, query = purl.removeprefix("pkg:docker/").partition("?")
    path, _, version = path.partition("@")
    name = "/".join(unquote(part) for part in path.split("/"))
    digest = pinned or (parse_qs(query).get("digest") or [""])[0]
    text = name + (
        f"@{unquote(version)}" if version.startswith("sha256:") else f":{unquote(version)}" if version else ""
    )
    if digest and "@" not in text:
        text += f"@{digest}"
    try:
        return parse(text)
    except InvalidReference:
        return None


def _from_materials(images: list[Reference], frontend: str) -> ProvenanceBase | None:
    skipped = set(_TOOL_REPOSITORIES)
    if frontend:
        with contextlib.suppress(InvalidReference):  # a frontend we cannot read is not set aside
            skipped.add(parse(frontend).repository)
    candidates = [image for image in images if image.repository not in skipped]
    if len(candidates) != 1:
        return None  # several stages or COPY --from images: mode=min cannot say which is the base
    return ProvenanceBase(
        candidates[0], ("provenance without a build definition (mode=min): its only image",)
    )


def _from_build_definition(steps: Any, images: list[Reference]) -> ProvenanceBase | None:
    if not isinstance(steps, list) or not steps:
        return None
    identifier = _final_source(steps)
    if identifier is None:
        return None
    if identifier == "":
        return ProvenanceBase(None, ("provenance: the final stage starts FROM scratch",))
    if not identifier.startswith("docker-image://"):
        return None  # a final stage rooted in a context or git source: no image to name
    try:
        reference = parse(identifier.removeprefix("docker-image://"))
    except InvalidReference:
        return None
    if reference.digest is None:
        pinned = next(
            (image for image in images if image.repository == reference.repository and image.digest), None
        )
        if pinned is not None:
            reference = parse(f"{identifier.removeprefix('docker-image://')}@{pinned.digest}")
    return ProvenanceBase(reference)


def _final_source(steps: list[Any]) -> str | None:
    """The source identifier the result's root filesystem descends from; "" for scratch; None if unreadable.

    LLB JSON (solver/pb/ops.proto) omits zero values: a missing `input`/`output` is 0; -1 is scratch.
    """
    by_id = {step.get("id"): step for step in steps if isinstance(step, Mapping)}
    current, output = steps[-1].get("id") if isinstance(steps[-1], Mapping) else None, 0
    for _ in range(len(by_id) + 1):  # a malformed, cyclic graph must not loop for ever
        step = by_id.get(current)
        if step is None:
            return None
        op = (step.get("op") or {}).get("Op") or {}
        if "source" in op:
            return str(op["source"].get("identifier", ""))
        inputs = step.get("inputs") or []
        chosen = _root_input(op, len(inputs), output)
        if chosen is None or chosen < 0:
            return ""
        if chosen >= len(inputs):
            return None
        current, _, index = str(inputs[chosen]).partition(":")
        output = int(index or 0)
    return None


def _root_input(op: Mapping[str, Any], count: int, output: int) -> int | None:
    """Which of a step's inputs its root filesystem (for output `output`) is built on; None: none."""
    if "exec" in op:
        mounts = op["exec"].get("mounts") or []
        root = next((mount for mount in mounts if mount.get("dest") == "/"), None)
        return int(root.get("input", 0)) if root is not None else None
    if "file" in op:
        actions = op["file"].get("actions") or []
        action = next((a for a in actions if int(a.get("output", 0)) == output), None)
        for _ in range(len(actions) + 1):
            if action is None:
                return None
            chosen = int(action.get("input", 0))
            if chosen < count:  # an input of the step (or -1, scratch)
                return chosen
            # At or past the step's inputs: the output of an earlier action of the same step.
            position = chosen - count
            action = actions[position] if position < len(actions) else None
        return None
    if "merge" in op:
        parts = op["merge"].get("inputs") or []
        return int(parts[0].get("input", 0)) if parts else None
    if "diff" in op:
        return int((op["diff"].get("lower") or {}).get("input", 0))
    return 0 if count else None  # the result vertex (no op) and anything else: the first input


# --- signal 3: the layer chains of catalog images --------------------------------------------------------

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


# --- deciding ---------------------------------------------------------------------------------------------

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
        named = self.by_annotation(_annotation_sources(facts), facts.platform, notes)
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
    if (annotated := decider.by_annotation(_annotation_sources(index), "", notes)) is not None:
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


# --- reading the inventory --------------------------------------------------------------------------------


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


# --- the refresh: decisions stored, findings reconciled -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Subject:
    """What a finding needs to know of the artifact it is about."""

    pk: int
    digest: str
    index_id: int | None
    platform: str
    where: RepositoryInfo

    @property
    def label(self) -> str:
        return f"{self.where.registry_name}: {self.where.path}@{self.digest[:19]}"


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


# Decision.row's order; the one place lineage names ArtifactLineage's columns.
_COLUMNS = ("method", "base_reference", "base_digest", "base_image", "matched_layers", "base_created")
_ROW_ATTRIBUTES = tuple(f"{name}_id" if name == "base_image" else name for name in _COLUMNS)


def store(decisions: Mapping[int, Decision], now: datetime, *, set_based: bool | None = None) -> int:
    """Write the decisions that are new or changed, in bulk; returns how many were written.

    On PostgreSQL the decisions are copied into a temporary table and one statement inserts or
    updates the rows that differ: at 100,000 artifacts that is a third of the time of bulk_create
    (which builds a model instance per row) plus reading the stored rows back to compare. Elsewhere
    (SQLite, the embedded default) the stored rows are compared in Python and bulk_create upserts.
    """
    if set_based is None:
        set_based = connection.vendor == "postgresql"
    with transaction.atomic():
        return _store_set_based(decisions, now) if set_based else _store_by_rows(decisions, now)


def _column(name: str) -> str:
    field = ArtifactLineage._meta.get_field(name)
    assert isinstance(field, Field)
    return connection.ops.quote_name(field.column)


_STAGE = "customs_lineage_decisions"


def _store_set_based(decisions: Mapping[int, Decision], now: datetime) -> int:
    columns = ["artifact", *_COLUMNS, "decided_at"]
    names = ", ".join(_column(name) for name in columns)
    table = connection.ops.quote_name(ArtifactLineage._meta.db_table)
    key = _column("artifact")
    changed = " OR ".join(f"l.{_column(name)} IS DISTINCT FROM s.{_column(name)}" for name in _COLUMNS)
    updates = ", ".join(f"{_column(name)} = EXCLUDED.{_column(name)}" for name in (*_COLUMNS, "decided_at"))
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE {_STAGE} (LIKE {table})")
        with cursor.cursor.copy(f"COPY {_STAGE} ({names}) FROM STDIN") as copy:
            for pk, decision in decisions.items():
                copy.write_row((pk, *decision.row, now))
        cursor.execute(
            f"INSERT INTO {table} ({names}) SELECT {', '.join(f's.{_column(n)}' for n in columns)} "  # noqa: S608
            f"FROM {_STAGE} s LEFT JOIN {table} l ON l.{key} = s.{key} WHERE l.{key} IS NULL OR {changed} "
            f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
        )
        written = int(cursor.rowcount)
        cursor.execute(f"DROP TABLE {_STAGE}")
    return written


def _store_by_rows(decisions: Mapping[int, Decision], now: datetime) -> int:
    stored = ArtifactLineage.objects.filter(artifact_id__in=list(decisions)).values_list(
        "artifact_id", *_ROW_ATTRIBUTES
    )
    existing = {row[0]: row[1:] for row in stored.iterator(CHUNK)}
    changed = [
        ArtifactLineage(
            artifact_id=pk, decided_at=now, **dict(zip(_ROW_ATTRIBUTES, decision.row, strict=True))
        )
        for pk, decision in decisions.items()
        if existing.get(pk) != decision.row
    ]
    ArtifactLineage.objects.bulk_create(
        changed,
        batch_size=2000,
        update_conflicts=True,
        unique_fields=["artifact"],
        update_fields=[*_COLUMNS, "decided_at"],
    )
    return len(changed)


Hit = tuple[FindingKind, str, dict[str, Any]]  # kind, summary, evidence


def observe(
    decisions: Mapping[int, Decision], subjects: Mapping[int, Subject], catalog: Catalog, now: datetime
) -> dict[FindingKind, list[Observation]]:
    """The findings the decisions call for, on what tags point at: images, and indexes by platform."""
    platforms: dict[int, list[tuple[str, Decision]]] = defaultdict(list)
    for pk, subject in subjects.items():
        if subject.index_id is not None and pk in decisions:
            platforms[subject.index_id].append((subject.platform, decisions[pk]))
    # Most artifacts share a decision with many others (one per catalog image they are built on), so
    # what a decision calls for is worked out once per distinct decision.
    hits_of: dict[Decision, list[Hit]] = {}

    def hits(decision: Decision) -> list[Hit]:
        if (known := hits_of.get(decision)) is None:
            known = hits_of[decision] = _hits(decision, catalog, now)
        return known

    observed: dict[FindingKind, list[Observation]] = {kind: [] for kind in LINEAGE_KINDS}
    for pk, decision in decisions.items():
        found = subjects.get(pk)
        if found is None or found.index_id is not None:
            continue
        if parts := sorted(platforms.get(pk, []), key=itemgetter(0)):
            for kind, by_platform in _by_kind(parts, hits).items():
                observed[kind].append(_index_observation(kind, found, by_platform))
        else:
            for kind, summary, evidence in hits(decision):
                observed[kind].append(_observation(found, summary, evidence))
    return observed


def _hits(decision: Decision, catalog: Catalog, now: datetime) -> list[Hit]:
    """The kinds of finding a decision calls for, each with its summary and evidence."""
    evidence = _evidence(decision, catalog)
    if decision.method == Method.UNKNOWN:
        reason = decision.notes[-1] if decision.notes else "no signal"
        return [(BASE_UNKNOWN, f"base image unknown ({reason})", evidence)]
    found: list[Hit] = []
    judgement = decision.judgement
    if judgement is not None and (kind := _VERDICT_KINDS.get(judgement.verdict)):
        found.append((kind, judgement.message, evidence))
    entry = catalog.entry(decision.entry_id) if decision.entry_id is not None else None
    if entry is not None and entry.max_age_days is not None and decision.base_created is not None:
        age = now - decision.base_created
        if age > timedelta(days=entry.max_age_days):
            summary = f"its base {decision.reference} is {age.days} days old (at most {entry.max_age_days})"
            found.append(
                (
                    BASE_TOO_OLD,
                    summary,
                    {**evidence, "age_days": age.days, "max_age_days": entry.max_age_days},
                )
            )
    return found


def _by_kind(
    parts: list[tuple[str, Decision]], hits: Callable[[Decision], list[Hit]]
) -> dict[FindingKind, list[tuple[str, str, dict[str, Any]]]]:
    grouped: dict[FindingKind, list[tuple[str, str, dict[str, Any]]]] = defaultdict(list)
    for platform, decision in parts:
        for kind, summary, evidence in hits(decision):
            grouped[kind].append((platform, summary, evidence))
    return grouped


def _observation(subject: Subject, summary: str, evidence: dict[str, Any]) -> Observation:
    label = subject.label
    return Observation(
        subject_key=f"registry-{subject.where.registry_id}/artifact-{subject.pk}",
        summary=f"{label}: {summary}",
        subject_type="registries.artifact",
        subject_id=str(subject.pk),
        subject_label=label,
        detail={"artifact": subject.pk, **evidence},
    )


def _index_observation(
    kind: FindingKind, subject: Subject, by_platform: list[tuple[str, str, dict[str, Any]]]
) -> Observation:
    """One finding per image a tag names, however many platforms it has; each platform's evidence."""
    platform, summary, evidence = by_platform[0]
    said = f"{platform}: {summary}" if len(by_platform) == 1 else f"{len(by_platform)} platforms, {summary}"
    observation = _observation(subject, said, evidence)
    observation.detail["platforms"] = {name: platform_evidence for name, _, platform_evidence in by_platform}
    return observation


def _evidence(decision: Decision, catalog: Catalog) -> dict[str, Any]:
    entry = catalog.entry(decision.entry_id) if decision.entry_id is not None else None
    evidence: dict[str, Any] = {
        "method": decision.method,
        "base_reference": decision.reference or None,
        "base_digest": decision.base_digest or None,
        "base_entry": entry.name if entry else None,
        "matched_layers": decision.matched_layers,
        "base_created": decision.base_created.isoformat() if decision.base_created else None,
        "notes": list(decision.notes),
    }
    if decision.judgement is not None:
        evidence["verdict"] = str(decision.judgement.verdict)
        evidence["replacement"] = decision.judgement.replacement or None
    return evidence


def holds_catalog_images(
    registry: Registry,
    catalog: Catalog | None = None,
    repositories: Mapping[int, RepositoryInfo] | None = None,
) -> bool:
    """Whether a registry keeps catalog images: its sync can change every other registry's lineage."""
    catalog = catalog if catalog is not None else Catalog.load()
    repositories = repositories if repositories is not None else read_repositories()
    return any(info.registry_id == registry.pk and info.entry(catalog) for info in repositories.values())
