"""Lineage: every path that decides an artifact's base (annotation, provenance, layer prefix, unknown),
the findings it raises and resolves, the reverse lookup, and that a second run decides the same.

The deciding tests build a catalog and its images in memory (no database); the refresh tests store
an inventory and a catalog and check the rows and findings a refresh leaves.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from portal.models import Finding
from registries.models import Artifact, ArtifactLineage, BaseImage, BaseImageMirror, Registry, Repository
from registries.policy import lineage
from registries.policy.catalog import Catalog, Entry, Verdict
from registries.policy.lineage import ArtifactFacts, CatalogImage, CatalogImages, ChainIndex, Decision
from tests import factories

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha(label: str) -> str:
    return "sha256:" + hashlib.sha256(label.encode()).hexdigest()


def chain(*labels: str) -> tuple[str, ...]:
    return tuple(sha(f"layer {label}") for label in labels)


# --- an in-memory catalog: debian (approved, max 180 days), python on debian (approved), node
# (deprecated), alpine (banned); python is kept in a regional mirror ---------------------------------------

DEBIAN = Entry(1, "registry.corp.test/base/debian", ("12*",), frozenset(), "approved", "", 180)
PYTHON = Entry(2, "docker.io/library/python", ("3.12-*",), frozenset(), "approved", "", None)
NODE = Entry(
    3, "registry.corp.test/base/node", (), frozenset(), "deprecated", "registry.corp.test/base/node:22", None
)
ALPINE = Entry(
    4, "registry.corp.test/base/alpine", (), frozenset(), "banned", "registry.corp.test/base/debian:12", None
)


def memory_catalog() -> Catalog:
    return Catalog([DEBIAN, PYTHON, NODE, ALPINE], {"mirror.eu.test/hub/python": PYTHON.id})


def image(
    pk: int,
    entry: Entry,
    layers: tuple[str, ...],
    tags: tuple[str, ...],
    *,
    created: datetime | None = None,
    **more: Any,
) -> tuple[CatalogImage, tuple[str, ...]]:
    fields: dict[str, Any] = {
        "digest": sha(f"image {pk}"),
        "index_digest": "",
        "platform": "linux/amd64",
        "created": created or NOW - timedelta(days=10),
        "canonical": True,
    } | more
    return CatalogImage(pk=pk, entry_id=entry.id, tags=tags, **fields), layers


DEBIAN_12 = image(101, DEBIAN, chain("d1", "d2"), ("12-slim",))
PYTHON_312 = image(102, PYTHON, chain("d1", "d2", "p1", "p2"), ("3.12-slim",), canonical=False)
NODE_18 = image(103, NODE, chain("n1", "n2"), ("18",))
ALPINE_314 = image(104, ALPINE, chain("a1"), ("3.14",))


def memory_images(*extra: tuple[CatalogImage, tuple[str, ...]]) -> CatalogImages:
    images = CatalogImages()
    for catalog_image, layers in (DEBIAN_12, PYTHON_312, NODE_18, ALPINE_314, *extra):
        images.add(catalog_image, layers, ())
    return images


def decide_one(facts: ArtifactFacts, **keywords: Any) -> Decision:
    images = keywords.pop("images", None) or memory_images()
    return lineage.decide([facts], memory_catalog(), images, now=NOW, **keywords)[facts.pk]


def app(pk: int = 1, *layers: str, **fields: Any) -> ArtifactFacts:
    return ArtifactFacts(
        pk=pk,
        digest=sha(f"app {pk}"),
        media_type=MANIFEST,
        platform="linux/amd64",
        diff_ids=chain(*layers),
        **fields,
    )


# --- layer prefix ---------------------------------------------------------------------------------------


def test_the_longest_catalog_chain_that_prefixes_the_image_is_its_base() -> None:
    decision = decide_one(app(1, "d1", "d2", "p1", "p2", "x1"))

    assert decision.method == "layers"
    assert decision.entry_id == PYTHON.id  # not debian, whose two layers also start the image
    assert decision.matched_layers == 4
    assert decision.reference == f"docker.io/library/python:3.12-slim@{PYTHON_312[0].digest}"
    assert decision.judgement is not None
    assert decision.judgement.verdict == Verdict.APPROVED
    assert decision.base_created == PYTHON_312[0].created


def test_a_shorter_catalog_chain_decides_when_the_longer_one_is_not_a_prefix() -> None:
    decision = decide_one(app(1, "d1", "d2", "p1", "other"))

    assert (decision.method, decision.entry_id, decision.matched_layers) == ("layers", DEBIAN.id, 2)
    assert decision.reference == f"registry.corp.test/base/debian:12-slim@{DEBIAN_12[0].digest}"


def test_an_image_whose_chain_equals_a_catalog_image_is_not_built_on_it() -> None:
    # The catalog image itself (and a re-tag of it) has the same chain: it is not its own base.
    assert decide_one(app(1, "d1", "d2")).method == "unknown"
    python_itself = decide_one(app(1, "d1", "d2", "p1", "p2"))
    assert (python_itself.entry_id, python_itself.matched_layers) == (DEBIAN.id, 2)


def test_one_shared_first_layer_is_not_a_match() -> None:
    decision = decide_one(app(1, "d1", "x"))

    assert decision.method == "unknown"
    assert "no catalog image's layers start it" in decision.notes[-1]


def test_compressed_layer_digests_are_used_only_without_diff_ids() -> None:
    images = CatalogImages()
    images.add(DEBIAN_12[0], DEBIAN_12[1], chain("gz-d1", "gz-d2"))
    without_diff_ids = ArtifactFacts(pk=1, digest=sha("a"), layer_digests=chain("gz-d1", "gz-d2", "gz-x"))
    with_other_diff_ids = ArtifactFacts(
        pk=2, digest=sha("b"), diff_ids=chain("x", "y", "z"), layer_digests=chain("gz-d1", "gz-d2", "gz-x")
    )

    decisions = lineage.decide([without_diff_ids, with_other_diff_ids], memory_catalog(), images, now=NOW)

    assert (decisions[1].method, decisions[1].entry_id) == ("layers", DEBIAN.id)
    assert decisions[2].method == "unknown"  # diffIDs were read and match nothing: they are the truth


def test_identical_chains_in_two_entries_are_ambiguous() -> None:
    copy_of_debian = image(105, NODE, DEBIAN_12[1], ("copy",))

    decision = decide_one(app(1, "d1", "d2", "x"), images=memory_images(copy_of_debian))

    assert decision.method == "unknown"
    assert "ambiguous" in decision.notes[-1]
    assert DEBIAN.name in decision.notes[-1]


def test_mirror_copies_of_one_entry_prefer_the_best_judged_tag() -> None:
    # The same python content under an allowed and a disallowed tag: allowed, whichever the build named.
    latest_only = image(106, PYTHON, PYTHON_312[1], ("latest",), digest=sha("python latest"))

    decision = decide_one(app(1, "d1", "d2", "p1", "p2", "x"), images=memory_images(latest_only))

    assert decision.judgement is not None
    assert decision.judgement.verdict == Verdict.APPROVED
    assert ":3.12-slim@" in decision.reference


def test_the_chain_index_walks_without_comparing_images_pairwise() -> None:
    index = ChainIndex()
    index.add(chain("a"), DEBIAN_12[0])
    index.add(chain("a", "b", "c"), PYTHON_312[0])

    def depth(layers: tuple[str, ...]) -> int:
        found = index.longest_prefix(layers)
        return found.depth if found else 0

    assert depth(chain("a", "b", "c", "d")) == 3
    assert depth(chain("a", "b", "c")) == 1  # strict: not the equal chain
    assert depth(chain("a", "b")) == 1
    assert depth(chain("a")) == 0
    assert depth(()) == 0


def test_each_platform_of_an_index_is_decided_and_the_index_takes_what_they_agree_on() -> None:
    python_index = sha("python index")
    amd64 = image(110, PYTHON, chain("d1", "d2", "p1"), ("3.12-slim",), index_digest=python_index)
    arm64 = image(
        111,
        PYTHON,
        chain("e1", "e2", "q1"),
        ("3.12-slim",),
        index_digest=python_index,
        platform="linux/arm64",
    )
    images = memory_images(amd64, arm64)
    artifacts = [
        ArtifactFacts(pk=10, digest=sha("app index"), media_type=INDEX),
        ArtifactFacts(
            pk=11,
            digest=sha("app amd64"),
            index_id=10,
            platform="linux/amd64",
            diff_ids=chain("d1", "d2", "p1", "x"),
        ),
        ArtifactFacts(
            pk=12,
            digest=sha("app arm64"),
            index_id=10,
            platform="linux/arm64",
            diff_ids=chain("e1", "e2", "q1", "y"),
        ),
        ArtifactFacts(
            pk=13,
            digest=sha("app attestation"),
            index_id=10,
            platform="unknown/unknown",
            diff_ids=chain("intoto"),
        ),
    ]

    decisions = lineage.decide(artifacts, memory_catalog(), images, now=NOW)

    assert decisions[11].base_digest == amd64[0].digest
    assert decisions[12].base_digest == arm64[0].digest
    assert 13 not in decisions  # an attestation manifest is not an image
    assert (decisions[10].method, decisions[10].entry_id) == ("layers", PYTHON.id)
    assert decisions[10].reference == f"docker.io/library/python:3.12-slim@{python_index}"
    assert decisions[10].base_digest == python_index


def test_an_index_whose_platforms_disagree_is_unknown_itself() -> None:
    artifacts = [
        ArtifactFacts(pk=10, digest=sha("app index"), media_type=INDEX),
        ArtifactFacts(
            pk=11, digest=sha("a"), index_id=10, platform="linux/amd64", diff_ids=chain("d1", "d2", "x")
        ),
        ArtifactFacts(
            pk=12, digest=sha("b"), index_id=10, platform="linux/arm64", diff_ids=chain("n1", "n2", "x")
        ),
    ]

    decisions = lineage.decide(artifacts, memory_catalog(), memory_images(), now=NOW)

    assert decisions[11].entry_id == DEBIAN.id
    assert decisions[12].entry_id == NODE.id
    assert decisions[10].method == "unknown"
    assert "different bases" in decisions[10].notes[-1]


def test_platforms_that_find_the_same_base_two_ways_agree() -> None:
    # One platform names its base (an annotation), the other is found by its layers: one base.
    artifacts = [
        ArtifactFacts(pk=10, digest=sha("app index"), media_type=INDEX),
        ArtifactFacts(
            pk=11,
            digest=sha("a"),
            index_id=10,
            platform="linux/amd64",
            diff_ids=chain("d1", "d2", "x"),
            base_name="registry.corp.test/base/debian:12-slim",
        ),
        ArtifactFacts(
            pk=12, digest=sha("b"), index_id=10, platform="linux/arm64", diff_ids=chain("d1", "d2", "y")
        ),
    ]

    decisions = lineage.decide(artifacts, memory_catalog(), memory_images(), now=NOW)

    assert (decisions[11].method, decisions[12].method) == ("annotation", "layers")
    assert decisions[10].entry_id == DEBIAN.id


# --- annotations ----------------------------------------------------------------------------------------


def test_a_base_annotation_decides_before_layers_and_is_normalised() -> None:
    digest = DEBIAN_12[0].digest
    facts = app(1, "n1", "n2", "x", base_name="registry.corp.test/base/debian:12-slim", base_digest=digest)

    decision = decide_one(facts)

    assert (decision.method, decision.entry_id) == ("annotation", DEBIAN.id)
    assert decision.reference == f"registry.corp.test/base/debian:12-slim@{digest}"
    assert decision.base_created == DEBIAN_12[0].created  # the inventory's copy of that digest
    assert any(note.startswith("conflict") for note in decision.notes)  # its layers say node


def test_an_unqualified_annotation_is_read_as_docker_reads_it_and_flagged() -> None:
    decision = decide_one(app(1, base_name="python:3.12-slim"))

    assert decision.reference == "docker.io/library/python:3.12-slim"
    assert decision.judgement is not None
    assert decision.judgement.verdict == Verdict.APPROVED
    assert decision.base_created == PYTHON_312[0].created  # what the tag points at now
    assert any("not fully qualified" in note for note in decision.notes)


def test_an_annotation_without_a_tag_means_latest() -> None:
    decision = decide_one(app(1, base_name="docker.io/library/python"))

    assert decision.reference == "docker.io/library/python:latest"
    assert decision.judgement is not None
    assert decision.judgement.verdict == Verdict.UNAPPROVED


def test_an_invalid_annotation_is_ignored_and_said() -> None:
    by_layers = decide_one(app(1, "d1", "d2", "x", base_name="Ubuntu:22.04"))
    nothing_else = decide_one(app(2, base_name="Ubuntu:22.04"))

    assert (by_layers.method, by_layers.entry_id) == ("layers", DEBIAN.id)
    assert any("'Ubuntu:22.04' is not a valid image reference" in note for note in by_layers.notes)
    assert nothing_else.method == "unknown"
    assert any("not a valid image reference" in note for note in nothing_else.notes)


def test_a_digest_only_annotation_is_resolved_through_the_catalog_images() -> None:
    known = decide_one(app(1, base_digest=PYTHON_312[0].digest))
    unknown_digest = decide_one(app(2, "d1", "d2", "x", base_digest=sha("elsewhere")))

    assert (known.method, known.entry_id) == ("annotation", PYTHON.id)
    assert known.judgement is not None
    assert known.judgement.verdict == Verdict.APPROVED
    assert unknown_digest.method == "layers"
    assert any("alone names no catalog image" in note for note in unknown_digest.notes)


def test_annotation_sources_go_index_then_manifest_then_config_label() -> None:
    index = ArtifactFacts(
        pk=10, digest=sha("index"), media_type=INDEX, base_name="registry.corp.test/base/node:18"
    )
    child = ArtifactFacts(
        pk=11,
        digest=sha("child"),
        index_id=10,
        platform="linux/amd64",
        base_name="registry.corp.test/base/debian:12",
    )
    label_only = ArtifactFacts(
        pk=12, digest=sha("label"), label_base_name="registry.corp.test/base/alpine:3.14"
    )

    decisions = lineage.decide([index, child, label_only], memory_catalog(), memory_images(), now=NOW)

    assert decisions[11].entry_id == NODE.id  # the index's annotation comes first (§A1)
    assert decisions[10].entry_id == NODE.id
    assert (decisions[12].method, decisions[12].entry_id) == ("annotation", ALPINE.id)
    assert decisions[12].judgement is not None
    assert decisions[12].judgement.verdict == Verdict.BANNED


def test_an_index_read_after_its_platforms_still_comes_first() -> None:
    node_index = ArtifactFacts(
        pk=10, digest=sha("index"), media_type=INDEX, base_name="registry.corp.test/base/node:18"
    )
    on_debian = ArtifactFacts(
        pk=11, digest=sha("child"), index_id=10, platform="linux/amd64", diff_ids=chain("d1", "d2", "x")
    )

    decisions = lineage.decide([on_debian, node_index], memory_catalog(), memory_images(), now=NOW)

    assert (decisions[11].method, decisions[11].entry_id) == ("annotation", NODE.id)
    assert any(note.startswith("conflict: its layers start with") for note in decisions[11].notes)


def test_an_invalid_index_annotation_leaves_the_platforms_own() -> None:
    index = ArtifactFacts(pk=10, digest=sha("index"), media_type=INDEX, base_name="Not A Reference")
    child = ArtifactFacts(
        pk=11,
        digest=sha("child"),
        index_id=10,
        platform="linux/amd64",
        base_name="registry.corp.test/base/debian:12",
    )

    decisions = lineage.decide([index, child], memory_catalog(), memory_images(), now=NOW)

    assert (decisions[11].method, decisions[11].entry_id) == ("annotation", DEBIAN.id)
    assert any("'Not A Reference' is not a valid image reference" in note for note in decisions[11].notes)
    assert decisions[10].entry_id == DEBIAN.id  # the index agrees with its one platform


# --- provenance -----------------------------------------------------------------------------------------

GOLANG_DIGEST = "sha256:" + "1" * 64
ALPINE_DIGEST = "sha256:" + "2" * 64
FRONTEND_DIGEST = "sha256:" + "3" * 64


def _step(index: int, op: dict[str, Any] | None, *inputs: str) -> dict[str, Any]:
    step: dict[str, Any] = {
        "id": f"step{index}",
        "op": {"Op": op, "platform": {"Architecture": "amd64", "OS": "linux"}, "constraints": {}},
    }
    if inputs:
        step["inputs"] = list(inputs)
    return step


def multi_stage_llb(*, from_scratch: bool = False) -> list[dict[str, Any]]:
    """BuildKit's LLB for: FROM golang:1.22 AS build / WORKDIR /src / COPY . . / RUN go build -o /app .
    / FROM alpine:3.20 (or scratch) / COPY --from=build /app /app. Zero values are left out, as Go's
    JSON encoding of ops.proto leaves them out; -1 is no input (scratch)."""
    if from_scratch:
        final = _step(
            6, {"file": {"actions": [{"input": -1, "Action": {"copy": {"src": "/app"}}}]}}, "step4:0"
        )
    else:
        copy_app = {"secondaryInput": 1, "Action": {"copy": {"src": "/app", "dest": "/app"}}}
        final = _step(6, {"file": {"actions": [copy_app]}}, "step5:0", "step4:0")
    build = {
        "meta": {"args": ["/bin/sh", "-c", "go build -o /app ."], "cwd": "/src"},
        "mounts": [{"dest": "/"}],
    }
    return [
        _step(0, {"source": {"identifier": f"docker-image://docker.io/library/golang:1.22@{GOLANG_DIGEST}"}}),
        _step(1, {"source": {"identifier": "local://context", "attrs": {"local.unique": "x"}}}),
        _step(
            2,
            {"file": {"actions": [{"Action": {"mkdir": {"path": "/src", "makeParents": True}}}]}},
            "step0:0",
        ),
        _step(
            3,
            {"file": {"actions": [{"secondaryInput": 1, "Action": {"copy": {"src": "/", "dest": "/src/"}}}]}},
            "step2:0",
            "step1:0",
        ),
        _step(4, {"exec": build}, "step3:0"),
        _step(5, {"source": {"identifier": f"docker-image://docker.io/library/alpine:3.20@{ALPINE_DIGEST}"}}),
        final,
        _step(7, None, "step6:0"),
    ]


def statement_v02(llb: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    predicate: dict[str, Any] = {
        "builder": {"id": "https://github.com/example/app/actions/runs/1"},
        "buildType": "https://mobyproject.org/buildkit@v1",
        "materials": [
            {
                "uri": "pkg:docker/docker/dockerfile@1?platform=linux%2Famd64",
                "digest": {"sha256": FRONTEND_DIGEST[7:]},
            },
            {"uri": "pkg:docker/golang@1.22?platform=linux%2Famd64", "digest": {"sha256": GOLANG_DIGEST[7:]}},
            {"uri": "pkg:docker/alpine@3.20?platform=linux%2Famd64", "digest": {"sha256": ALPINE_DIGEST[7:]}},
        ],
        "invocation": {
            "configSource": {"entryPoint": "Dockerfile"},
            "parameters": {
                "frontend": "gateway.v0",
                "args": {"source": "docker/dockerfile:1"},
                "locals": [{"name": "context"}],
            },
            "environment": {"platform": "linux/amd64"},
        },
        "metadata": {
            "completeness": {"parameters": True, "environment": True, "materials": False},
            "reproducible": False,
        },
    }
    if llb is not None:
        predicate["buildConfig"] = {"llbDefinition": llb}
    return {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": [{"name": "_", "digest": {"sha256": "4" * 64}}],
        "predicate": predicate,
    }


def statement_v1(*images: str) -> dict[str, Any]:
    dependencies = [
        {
            "uri": "pkg:docker/docker/dockerfile@1?platform=linux%2Famd64",
            "digest": {"sha256": FRONTEND_DIGEST[7:]},
        },
        {"uri": "https://github.com/example/app.git#refs/heads/main", "digest": {"sha1": "5" * 40}},
    ] + [{"uri": uri, "digest": {"sha256": "6" * 64}} for uri in images]
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "predicateType": "https://slsa.dev/provenance/v1",
        "subject": [{"name": "_", "digest": {"sha256": "4" * 64}}],
        "predicate": {
            "buildDefinition": {
                "buildType": "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md",
                "externalParameters": {
                    "request": {"frontend": "gateway.v0", "args": {"source": "docker/dockerfile:1"}}
                },
                "internalParameters": {"builderPlatform": "linux/amd64"},
                "resolvedDependencies": dependencies,
            },
            "runDetails": {"builder": {"id": ""}, "metadata": {"invocationID": "x"}},
        },
    }


def test_provenance_with_a_build_definition_names_the_final_stage_not_the_builder() -> None:
    found = lineage.provenance_base(statement_v02(multi_stage_llb()))

    assert found is not None
    assert found.reference is not None
    assert str(found.reference) == f"docker.io/library/alpine:3.20@{ALPINE_DIGEST}"


def test_provenance_of_a_final_stage_from_scratch_says_there_is_no_base() -> None:
    found = lineage.provenance_base(statement_v02(multi_stage_llb(from_scratch=True)))

    assert found is not None
    assert found.reference is None


def test_provenance_without_a_build_definition_decides_only_with_one_image() -> None:
    several = lineage.provenance_base(statement_v02())  # golang and alpine: which one is the base?
    single = lineage.provenance_base(statement_v1("pkg:docker/python@3.12-slim?platform=linux%2Famd64"))
    elsewhere = lineage.provenance_base(statement_v1("pkg:docker/registry.corp.test/base/debian@12-slim"))

    assert several is None
    assert single is not None
    assert str(single.reference) == "docker.io/library/python:3.12-slim@sha256:" + "6" * 64
    assert elsewhere is not None
    assert elsewhere.reference is not None
    assert elsewhere.reference.repository == "registry.corp.test/base/debian"


def test_provenance_that_is_not_slsa_names_nothing() -> None:
    sbom = {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://spdx.dev/Document",
        "predicate": {},
    }

    assert lineage.provenance_base(sbom) is None


def test_provenance_decides_after_annotations_and_before_layers() -> None:
    on_debian_layers = app(1, "d1", "d2", "x")
    also_annotated = app(2, "d1", "d2", "x", base_name="registry.corp.test/base/node:18")
    statement = statement_v02(multi_stage_llb())
    catalog, images = memory_catalog(), memory_images()

    decisions = lineage.decide(
        [on_debian_layers, also_annotated], catalog, images, provenance={1: statement, 2: statement}, now=NOW
    )

    assert decisions[1].method == "provenance"
    assert decisions[1].reference == f"docker.io/library/alpine:3.20@{ALPINE_DIGEST}"
    assert decisions[1].judgement is not None
    assert decisions[1].judgement.verdict == Verdict.UNAPPROVED
    assert decisions[2].method == "annotation"


def test_provenance_from_scratch_is_decided_with_no_base() -> None:
    decision = decide_one(app(1, "x"), provenance={1: statement_v02(multi_stage_llb(from_scratch=True))})

    assert (decision.method, decision.reference, decision.entry_id) == ("provenance", "", None)


# --- refresh: rows, findings, reverse lookup ------------------------------------------------------------


@pytest.fixture
def estate(db: None) -> dict[str, Any]:
    """A corporate registry holding the debian, node and alpine entries, a regional mirror holding
    python, and an application registry."""
    corp = factories.registry(name="corp", endpoint="https://registry.corp.test")
    mirror = factories.registry(name="mirror-eu", endpoint="https://mirror.eu.test")
    apps = factories.registry(name="apps", endpoint="https://apps.test")
    entries = {
        "debian": BaseImage.objects.create(
            name="registry.corp.test/base/debian", tags=["12*"], max_age_days=180
        ),
        "python": BaseImage.objects.create(name="docker.io/library/python", tags=["3.12-*"]),
        "node": BaseImage.objects.create(
            name="registry.corp.test/base/node",
            status="deprecated",
            replacement="registry.corp.test/base/node:22",
        ),
        "alpine": BaseImage.objects.create(
            name="registry.corp.test/base/alpine",
            status="banned",
            replacement="registry.corp.test/base/debian:12",
        ),
    }
    BaseImageMirror.objects.create(base_image=entries["python"], registry=mirror, repository="hub/python")
    now = timezone.now()
    stored = {
        "debian": stored_image(
            corp, "base/debian", "12-slim", chain("d1", "d2"), created=now - timedelta(days=200)
        ),
        "python": stored_image(
            mirror, "hub/python", "3.12-slim", chain("d1", "d2", "p1"), created=now - timedelta(days=5)
        ),
        "node": stored_image(corp, "base/node", "18", chain("n1"), created=now - timedelta(days=5)),
        "alpine": stored_image(corp, "base/alpine", "3.14", chain("a1"), created=now - timedelta(days=5)),
    }
    return {"corp": corp, "mirror": mirror, "apps": apps, "entries": entries, "stored": stored}


def stored_image(
    of: Registry, repository: str, tag: str | None, layers: tuple[str, ...], **fields: Any
) -> Artifact:
    holder = Repository.objects.filter(registry=of, name=repository).first() or factories.repository(
        of, name=repository
    )
    made = factories.artifact(holder, diff_ids=list(layers), platform="linux/amd64", **fields)
    if tag:
        factories.tag(made, name=tag)
    return made


def open_findings(kind: str) -> dict[str, Finding]:
    return {finding.subject_id: finding for finding in Finding.objects.filter(kind=kind, resolved_at=None)}


def test_refresh_stores_a_lineage_row_for_every_artifact(estate: dict[str, Any]) -> None:
    on_python = stored_image(estate["apps"], "team/api", "1", chain("d1", "d2", "p1", "x"))
    unknown = stored_image(estate["apps"], "team/squashed", "1", chain("flat"))

    result = lineage.refresh_lineage()

    row = ArtifactLineage.objects.get(artifact=on_python)
    assert (row.method, row.base_image, row.matched_layers) == ("layers", estate["entries"]["python"], 3)
    assert row.base_reference == f"docker.io/library/python:3.12-slim@{estate['stored']['python'].digest}"
    assert row.base_created == estate["stored"]["python"].created
    assert ArtifactLineage.objects.get(artifact=unknown).method == "unknown"
    # The python image in the mirror is itself built on debian; debian's own base is unknown.
    assert (
        ArtifactLineage.objects.get(artifact=estate["stored"]["python"]).base_image
        == estate["entries"]["debian"]
    )
    assert result.artifacts == Artifact.objects.count() == ArtifactLineage.objects.count()
    assert result.catalog_images == 4


def test_findings_for_each_verdict_with_their_severity_and_evidence(estate: dict[str, Any]) -> None:
    on_node = stored_image(estate["apps"], "team/web", "1", chain("n1", "x"))
    on_alpine = stored_image(estate["apps"], "team/tool", "1", chain("a1", "x"))
    elsewhere = factories.artifact(
        factories.repository(estate["apps"], name="team/cli"),
        base_name="quay.io/someone/base:1",
        diff_ids=chain("q"),
    )
    squashed = stored_image(estate["apps"], "team/flat", "1", chain("flat"))

    lineage.refresh_lineage()

    deprecated = open_findings("base_deprecated")[str(on_node.pk)]
    assert deprecated.severity == "low"
    assert deprecated.detail["replacement"] == "registry.corp.test/base/node:22"
    assert deprecated.key == f"base_deprecated:registry-{estate['apps'].pk}/artifact-{on_node.pk}"
    assert deprecated.scope == f"registry-{estate['apps'].pk}"
    banned = open_findings("base_banned")[str(on_alpine.pk)]
    assert (banned.severity, banned.detail["method"]) == ("high", "layers")
    unapproved = open_findings("base_unapproved")[str(elsewhere.pk)]
    assert (unapproved.severity, unapproved.detail["base_reference"]) == ("medium", "quay.io/someone/base:1")
    assert open_findings("base_unknown")[str(squashed.pk)].severity == "info"


def test_a_base_older_than_its_maximum_age_is_a_finding(estate: dict[str, Any]) -> None:
    on_old_debian = stored_image(estate["apps"], "team/old", "1", chain("d1", "d2", "x"))
    on_python = stored_image(estate["apps"], "team/new", "1", chain("d1", "d2", "p1", "x"))

    lineage.refresh_lineage()

    too_old = open_findings("base_too_old")
    assert too_old[str(on_old_debian.pk)].detail["max_age_days"] == 180
    assert too_old[str(on_old_debian.pk)].detail["age_days"] >= 200
    assert str(on_python.pk) not in too_old  # python has no maximum age

    BaseImage.objects.filter(pk=estate["entries"]["debian"].pk).update(max_age_days=365)
    lineage.refresh_lineage()
    assert str(on_old_debian.pk) not in open_findings("base_too_old")


def test_a_base_built_at_the_epoch_has_no_age(estate: dict[str, Any]) -> None:
    Artifact.objects.filter(pk=estate["stored"]["debian"].pk).update(created=datetime(1970, 1, 1, tzinfo=UTC))
    on_debian = stored_image(estate["apps"], "team/repro", "1", chain("d1", "d2", "x"))

    lineage.refresh_lineage()

    assert ArtifactLineage.objects.get(artifact=on_debian).base_created is None
    assert str(on_debian.pk) not in open_findings("base_too_old")


def test_findings_resolve_when_the_catalog_changes(estate: dict[str, Any]) -> None:
    on_node = stored_image(estate["apps"], "team/web", "1", chain("n1", "x"))
    lineage.refresh_lineage()
    assert str(on_node.pk) in open_findings("base_deprecated")

    BaseImage.objects.filter(pk=estate["entries"]["node"].pk).update(status="approved")
    result = lineage.refresh_lineage()

    assert result.by_kind["base_deprecated"].resolved == 1
    assert str(on_node.pk) not in open_findings("base_deprecated")


def test_an_index_gets_one_finding_listing_its_platforms(estate: dict[str, Any]) -> None:
    repository = factories.repository(estate["apps"], name="team/multi")
    index = factories.artifact(repository, media_type=INDEX)
    factories.tag(index, name="1")
    for platform, layers in (("linux/amd64", chain("a1", "x")), ("linux/arm64", chain("a1", "y"))):
        factories.artifact(repository, index=index, platform=platform, diff_ids=list(layers))
    factories.artifact(repository, index=index, platform="unknown/unknown", diff_ids=list(chain("intoto")))

    lineage.refresh_lineage()

    banned = Finding.objects.filter(
        kind="base_banned",
        subject_id__in=[str(pk) for pk in repository.artifacts.values_list("pk", flat=True)],
    )
    assert [finding.subject_id for finding in banned] == [str(index.pk)]
    assert sorted(banned[0].detail["platforms"]) == ["linux/amd64", "linux/arm64"]
    assert ArtifactLineage.objects.get(artifact=index).base_image == estate["entries"]["alpine"]
    assert not ArtifactLineage.objects.filter(artifact__platform="unknown/unknown").exists()


def test_a_second_refresh_decides_the_same_and_writes_nothing(estate: dict[str, Any]) -> None:
    stored_image(estate["apps"], "team/api", "1", chain("d1", "d2", "p1", "x"))
    stored_image(estate["apps"], "team/web", "1", chain("n1", "x"))
    first = lineage.refresh_lineage()
    rows = {
        row.pk: (row.method, row.base_reference, row.base_image_id, row.decided_at)
        for row in ArtifactLineage.objects.all()
    }

    second = lineage.refresh_lineage()

    assert first.written == len(rows)
    assert second.written == 0
    assert {
        row.pk: (row.method, row.base_reference, row.base_image_id, row.decided_at)
        for row in ArtifactLineage.objects.all()
    } == rows
    assert second.by_kind["base_deprecated"].refreshed == 1
    assert not second.by_kind["base_deprecated"].opened
    assert not second.by_kind["base_deprecated"].reopened


def test_a_changed_decision_is_rewritten_in_place(estate: dict[str, Any]) -> None:
    on_python = stored_image(estate["apps"], "team/api", "1", chain("d1", "d2", "p1", "x"))
    lineage.refresh_lineage()
    estate["stored"]["python"].delete()  # the mirror lost its copy: debian is the longest match left

    result = lineage.refresh_lineage()

    row = ArtifactLineage.objects.get(artifact=on_python)
    assert (row.base_image, row.matched_layers) == (estate["entries"]["debian"], 2)
    assert result.written >= 1


def test_a_registry_refresh_leaves_other_registries_findings_alone(estate: dict[str, Any]) -> None:
    other = factories.registry(name="other", endpoint="https://other.test")
    here = stored_image(estate["apps"], "team/web", "1", chain("n1", "x"))
    there = stored_image(other, "team/web", "1", chain("n1", "y"))
    lineage.refresh_lineage()
    Artifact.objects.filter(pk=here.pk).delete()

    lineage.refresh_lineage(estate["apps"])

    assert set(open_findings("base_deprecated")) == {str(there.pk)}


def test_an_annotation_in_the_inventory_is_judged_by_the_catalog(estate: dict[str, Any]) -> None:
    digest = estate["stored"]["python"].digest
    annotated = factories.artifact(
        factories.repository(estate["apps"], name="team/annotated"),
        base_name="docker.io/library/python:3.11-slim",
        base_digest=digest,
        diff_ids=list(chain("z")),
    )

    lineage.refresh_lineage()

    row = ArtifactLineage.objects.get(artifact=annotated)
    assert (row.method, row.base_reference) == ("annotation", f"docker.io/library/python:3.11-slim@{digest}")
    assert row.base_image == estate["entries"]["python"]
    assert "3.11-slim is not allowed" in open_findings("base_unapproved")[str(annotated.pk)].summary


def test_a_lineage_row_of_a_deleted_entry_keeps_the_image(estate: dict[str, Any]) -> None:
    on_node = stored_image(estate["apps"], "team/web", "1", chain("n1", "x"))
    lineage.refresh_lineage()

    estate["entries"]["node"].delete()
    lineage.refresh_lineage()

    row = ArtifactLineage.objects.get(artifact=on_node)
    assert (row.method, row.base_image) == ("unknown", None)
    assert str(on_node.pk) in open_findings("base_unknown")


def test_the_row_by_row_store_writes_what_the_set_based_one_does(estate: dict[str, Any]) -> None:
    # SQLite (the embedded default) takes the bulk_create path; the suite runs on PostgreSQL, so it
    # is asked for here by name.
    on_python = stored_image(estate["apps"], "team/api", "1", chain("d1", "d2", "p1", "x"))
    on_node = stored_image(estate["apps"], "team/web", "1", chain("n1", "x"))
    catalog = Catalog.load()
    chosen = Artifact.objects.filter(pk__in=[on_python.pk, on_node.pk])
    decisions = lineage.decide((facts for _, facts in lineage.read_facts(chosen)), catalog)
    now = timezone.now()

    assert lineage.store(decisions, now, set_based=False) == 2
    assert lineage.store(decisions, now, set_based=False) == 0
    rows = {row.artifact_id: (row.base_image_id, row.matched_layers) for row in ArtifactLineage.objects.all()}
    assert rows == {
        on_python.pk: (estate["entries"]["python"].pk, 3),
        on_node.pk: (estate["entries"]["node"].pk, 1),
    }

    changed = {on_node.pk: lineage.unknown("gone")}
    assert lineage.store(changed, now, set_based=False) == 1
    assert ArtifactLineage.objects.get(artifact=on_node).method == "unknown"
    assert lineage.store(changed, now, set_based=True) == 0  # both paths agree on what is unchanged


def test_registries_holding_catalog_images_are_known(estate: dict[str, Any]) -> None:
    # A sync of such a registry can change every other registry's lineage: its refresh is a full one.
    assert lineage.holds_catalog_images(estate["mirror"])
    assert lineage.holds_catalog_images(estate["corp"])
    assert not lineage.holds_catalog_images(estate["apps"])
