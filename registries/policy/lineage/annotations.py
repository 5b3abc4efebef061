"""Signal 1: the OCI base annotations (`base.name`, `base.digest`), read and normalised."""

from __future__ import annotations

from dataclasses import dataclass

from registries.policy.lineage.base import ArtifactFacts
from registries.policy.references import InvalidReference, Reference, parse

BASE_NAME = "org.opencontainers.image.base.name"
BASE_DIGEST = "org.opencontainers.image.base.digest"


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


def annotation_sources(facts: ArtifactFacts) -> list[tuple[str, str, str]]:
    """The (base.name, base.digest, where) pairs an artifact's annotation is read from, in order."""
    # §A1 reads the index's annotations, then the manifest's, then the config's labels; decide()
    # gives a platform manifest its index's annotation, first, once it has read the index.
    where = "index annotation" if facts.is_index else "annotation"
    return [
        (facts.base_name, facts.base_digest, where),
        (facts.label_base_name, facts.label_base_digest, "config label"),
    ]
