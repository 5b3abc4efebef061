"""Signal 2: the base a BuildKit SLSA provenance statement (v0.2 or v1) names for the final stage."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from registries.connectors.distribution import SLSA_V02, SLSA_V1
from registries.policy.references import InvalidReference, Reference, parse

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
