"""Provenance from sync to lineage: BuildKit's attestation manifests read from a real docker-registry,
the SLSA statements kept (slimmed) on the platform manifests they are about, and lineage deciding by them.

The images are shaped as `docker buildx build --provenance=mode=max` pushes them
(docs/attestations/attestation-storage.md): an OCI index whose last descriptor is an attestation
manifest (platform unknown/unknown, `vnd.docker.reference.*` annotations), one in-toto statement per
layer, annotated with its predicate type.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from portal.http import OutboundSession
from portal.models import Finding
from registries import services, sync
from registries.connectors import distribution
from registries.connectors.distribution import slim_provenance
from registries.demo import images as im
from registries.models import Artifact, ArtifactLineage, BaseImage, Registry, SyncRun
from registries.policy import lineage
from tests.registries.harness import RunningRegistry
from tests.registries.policy import test_lineage as examples

IN_TOTO = "application/vnd.in-toto+json"
SLSA_V02 = "https://slsa.dev/provenance/v0.2"
SLSA_V1 = "https://slsa.dev/provenance/v1"
SPDX = "https://spdx.dev/Document"
# What a build leaks into a full statement and the inventory must not keep.
BUILD_SECRET = "ghp_NotARealTokenButShapedLikeOne0123456789"
APP = "team/app"


# --- building what buildx pushes ----------------------------------------------------------------------


@dataclass(frozen=True)
class Attested:
    index: im.Index  # its manifest bytes hold the attestation descriptors too
    images: tuple[im.Image, ...]
    attestations: tuple[im.Image, ...]  # one attestation manifest per image, same order
    statements: tuple[tuple[im.Blob, ...], ...]  # each attestation manifest's layers


def statement_blob(statement: dict[str, Any]) -> im.Blob:
    return im.Blob(IN_TOTO, json.dumps(statement, indent=2).encode())


def attestation_manifest(layers: list[tuple[str, im.Blob]]) -> im.Image:
    """An attestation manifest over in-toto blobs, each annotated with its predicate type."""
    config = im.Blob(
        im.OCI_CONFIG,
        im.canonical_json(
            {
                "architecture": "unknown",
                "os": "unknown",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": [blob.digest for _, blob in layers]},
            }
        ),
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": im.OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [
            {**blob.descriptor(), "annotations": {"in-toto.io/predicate-type": kind}} for kind, blob in layers
        ],
    }
    data = im.canonical_json(manifest)
    # im.Layer is the demo's blob-with-diff-id; the in-toto blobs are pushed through it unchanged.
    blobs = tuple(im.Layer(blob.media_type, blob.data, blob.digest) for _, blob in layers)
    return im.Image(
        data, im.sha256_digest(data), im.OCI_MANIFEST, config, blobs, im.Platform("unknown", "unknown")
    )


def attested_index(images: list[im.Image], statements: list[list[tuple[str, im.Blob]]]) -> Attested:
    attestations = [attestation_manifest(layers) for layers in statements]
    descriptors = [image.descriptor() for image in images] + [
        {
            "mediaType": im.OCI_MANIFEST,
            "digest": attestation.digest,
            "size": len(attestation.manifest_bytes),
            "annotations": {
                "vnd.docker.reference.digest": image.digest,
                "vnd.docker.reference.type": "attestation-manifest",
            },
            "platform": {"architecture": "unknown", "os": "unknown"},
        }
        for image, attestation in zip(images, attestations, strict=True)
    ]
    data = im.canonical_json({"schemaVersion": 2, "mediaType": im.OCI_INDEX, "manifests": descriptors})
    index = im.Index(data, im.sha256_digest(data), im.OCI_INDEX, tuple(images))
    return Attested(
        index,
        tuple(images),
        tuple(attestations),
        tuple(tuple(blob for _, blob in layers) for layers in statements),
    )


def push(running: RunningRegistry, repository: str, attested: Attested, tag: str) -> None:
    pusher = running.pusher()
    for image in (*attested.images, *attested.attestations):
        pusher.push_image(repository, image)
    pusher.push_manifest(repository, tag, attested.index.manifest_bytes, attested.index.media_type)


def on_base(base: im.Image, files: dict[str, bytes]) -> im.Image:
    """An image built FROM base, as BuildKit writes it: no base annotation, only the layer prefix."""
    return im.build_image(
        [*base.layers, im.layer(files)], platform=base.platform, history=base.config_json["history"]
    )


def squashed(platform: im.Platform, files: dict[str, bytes]) -> im.Image:
    """An image whose layers start with nothing the catalog holds."""
    return im.build_image([im.layer(files)], platform=platform)


# --- realistic statements ---------------------------------------------------------------------------


def purl(reference: str, platform: im.Platform) -> str:
    """BuildKit's util/purl: the namespace percent-encoded (a registry's port included)."""
    name, _, tag = reference.rpartition(":")
    *namespace, last = name.split("/")
    path = "/".join(part.replace(":", "%3A") for part in [*namespace, last])
    return f"pkg:docker/{path}@{tag}?platform={str(platform).replace('/', '%2F')}"


def llb(base: str, base_digest: str) -> list[dict[str, Any]]:
    """BuildKit's LLB (as provenance mode=max records it) for:
    FROM golang:1.22 AS build / RUN --mount=type=secret go build (env carries a token) /
    FROM <base> / RUN apt-get install / COPY --from=build /app /app."""

    def step(index: int, op: dict[str, Any] | None, *inputs: str) -> dict[str, Any]:
        made: dict[str, Any] = {
            "id": f"step{index}",
            "op": {"Op": op, "platform": {"Architecture": "amd64", "OS": "linux"}, "constraints": {}},
        }
        if inputs:
            made["inputs"] = list(inputs)
        return made

    golang = f"docker-image://docker.io/library/golang:1.22@{examples.GOLANG_DIGEST}"
    build = {
        "meta": {
            "args": ["/bin/sh", "-c", "go build -o /app ."],
            "env": ["PATH=/usr/local/go/bin", f"GITHUB_TOKEN={BUILD_SECRET}"],
            "cwd": "/src",
        },
        "mounts": [
            {"dest": "/"},
            {"input": -1, "dest": "/run/secrets/netrc", "output": -1, "mountType": 3},
        ],
    }
    install = {
        "meta": {"args": ["/bin/sh", "-c", "apt-get install -y ca-certificates"]},
        "mounts": [{"dest": "/"}],
    }
    copy_app = {"secondaryInput": 1, "Action": {"copy": {"src": "/app", "dest": "/app"}}}
    return [
        step(0, {"source": {"identifier": golang}}),
        step(
            1,
            {
                "source": {
                    "identifier": f"git://x-access-token:{BUILD_SECRET}@github.com/example/app.git#main",
                    "attrs": {"git.authheadersecret": "GIT_AUTH_HEADER"},
                }
            },
        ),
        step(2, {"exec": build}, "step0:0", "step1:0"),
        step(3, {"source": {"identifier": f"docker-image://{base}@{base_digest}"}}),
        step(4, {"exec": install}, "step3:0"),
        step(5, {"file": {"actions": [copy_app]}}, "step4:0", "step2:0"),
        step(6, None, "step5:0"),
    ]


def materials(base: str, base_digest: str, platform: im.Platform) -> list[dict[str, Any]]:
    return [
        {"uri": purl("docker/dockerfile:1", platform), "digest": {"sha256": examples.FRONTEND_DIGEST[7:]}},
        {"uri": purl("golang:1.22", platform), "digest": {"sha256": examples.GOLANG_DIGEST[7:]}},
        {"uri": purl(base, platform), "digest": {"sha256": base_digest[7:]}},
        {
            "uri": f"https://x-access-token:{BUILD_SECRET}@github.com/example/app.git#main",
            "digest": {"sha1": "5" * 40},
        },
    ]


def v02(subject: im.Image, base: str, base_digest: str) -> dict[str, Any]:
    """What BuildKit 0.12 writes with --provenance=mode=max."""
    return {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": SLSA_V02,
        "subject": [{"name": f"pkg:docker/{APP}@1.0", "digest": {"sha256": subject.digest[7:]}}],
        "predicate": {
            "builder": {"id": "https://github.com/example/app/actions/runs/1"},
            "buildType": "https://mobyproject.org/buildkit@v1",
            "materials": materials(base, base_digest, subject.platform),
            "invocation": {
                "configSource": {"entryPoint": "Dockerfile"},
                "parameters": {
                    "frontend": "gateway.v0",
                    "args": {"source": "docker/dockerfile:1", "build-arg:GITHUB_TOKEN": BUILD_SECRET},
                    "secrets": [{"id": "netrc"}],
                    "locals": [{"name": "context"}],
                },
                "environment": {"platform": str(subject.platform)},
            },
            "buildConfig": {"llbDefinition": llb(base, base_digest), "digestMapping": {"sha256:0": "step0"}},
            "metadata": {
                "buildInvocationID": "x",
                "completeness": {"parameters": True, "environment": True, "materials": False},
                "reproducible": False,
                "https://mobyproject.org/buildkit@v1#metadata": {
                    "vcs": {"source": "https://github.com/example/app"}
                },
            },
        },
    }


def v1(subject: im.Image, base: str, base_digest: str) -> dict[str, Any]:
    """What BuildKit 0.13+ writes with --provenance=mode=max,version=v1."""
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "predicateType": SLSA_V1,
        "subject": [{"name": f"pkg:docker/{APP}@1.0", "digest": {"sha256": subject.digest[7:]}}],
        "predicate": {
            "buildDefinition": {
                "buildType": "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md",
                "externalParameters": {
                    "configSource": {"path": "Dockerfile"},
                    "request": {
                        "frontend": "gateway.v0",
                        "args": {"source": "docker/dockerfile:1", "build-arg:GITHUB_TOKEN": BUILD_SECRET},
                    },
                },
                "internalParameters": {
                    "buildConfig": {"llbDefinition": llb(base, base_digest)},
                    "builderPlatform": "linux/amd64",
                },
                "resolvedDependencies": materials(base, base_digest, subject.platform),
            },
            "runDetails": {"builder": {"id": ""}, "metadata": {"invocationID": "x"}},
        },
    }


def sbom() -> im.Blob:
    return statement_blob(
        {
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": SPDX,
            "predicate": {"spdxVersion": "SPDX-2.3"},
        }
    )


# --- fixtures -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estate:
    running: RunningRegistry
    base: im.Index
    entry: BaseImage

    @property
    def base_name(self) -> str:
        return f"{self.running.host}/base/debian:12"


@pytest.fixture
def estate(registry: RunningRegistry, db: None) -> Estate:
    """A registry holding the catalog's debian base (two platforms) under base/debian:12."""
    base = im.multi_platform_image("debian", version="12")
    registry.pusher().push_index("base/debian", base, tags=["12"])
    entry = BaseImage.objects.create(name=f"{registry.host}/base/debian", tags=["12*"])
    return Estate(registry, base, entry)


@pytest.fixture
def requests_made(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every (method, URL) the portal sends, in order."""
    made: list[tuple[str, str]] = []
    send = OutboundSession.request

    def spy(self: OutboundSession, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        made.append((str(method), str(url)))
        return send(self, method, url, *args, **kwargs)

    monkeypatch.setattr(OutboundSession, "request", spy)
    return made


def connect(running: RunningRegistry) -> Registry:
    return services.save_registry(
        Registry(name="apps", kind="distribution", endpoint=running.url), actor=None, public={}, secrets={}
    )


def synced(running: RunningRegistry) -> Registry:
    registry = connect(running)
    run = sync.sync_inventory(registry)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    return registry


def decided(digest: str) -> ArtifactLineage:
    return ArtifactLineage.objects.get(artifact__repository__name=APP, artifact__digest=digest)


def blob_gets(made: list[tuple[str, str]], digest: str) -> int:
    return sum(1 for method, url in made if method == "GET" and url.endswith(f"/blobs/{digest}"))


# --- sync keeps provenance; lineage decides by it -------------------------------------------------------


def test_sync_keeps_buildkit_provenance_and_lineage_decides_the_base_by_it(
    estate: Estate, requests_made: list[tuple[str, str]]
) -> None:
    amd64, arm64 = estate.base.images
    base_digest = estate.base.digest  # BuildKit pins the index a tag resolved to
    images = [on_base(amd64, {"app": b"amd64\n"}), on_base(arm64, {"app": b"arm64\n"})]
    provenance_amd64 = statement_blob(v02(images[0], estate.base_name, base_digest))
    provenance_arm64 = statement_blob(v1(images[1], estate.base_name, base_digest))
    attested = attested_index(
        images,
        [[(SPDX, sbom()), (SLSA_V02, provenance_amd64)], [(SLSA_V1, provenance_arm64), (SPDX, sbom())]],
    )
    push(estate.running, APP, attested, "1.0")

    registry = synced(estate.running)

    stored = {
        a.digest: a for a in Artifact.objects.filter(repository__registry=registry, repository__name=APP)
    }
    assert stored[images[0].digest].provenance["predicateType"] == SLSA_V02
    assert stored[images[1].digest].provenance["predicateType"] == SLSA_V1
    for attestation, image in zip(attested.attestations, images, strict=True):
        kept = stored[attestation.digest]
        assert (kept.platform, kept.index_id, kept.provenance) == (
            "unknown/unknown",
            stored[attested.index.digest].pk,
            {},
        )
        assert kept.annotations["vnd.docker.reference.digest"] == image.digest
        assert kept.annotations["vnd.docker.reference.type"] == "attestation-manifest"
    # The statements said more than lineage reads, a token among it: none of that is kept.
    assert BUILD_SECRET.encode() in provenance_amd64.data
    assert BUILD_SECRET.encode() in provenance_arm64.data
    assert BUILD_SECRET not in json.dumps([a.provenance for a in stored.values()])
    assert "builder" not in stored[images[0].digest].provenance["predicate"]
    # Each provenance statement fetched once; the SBOMs never (lineage has no use for them).
    assert blob_gets(requests_made, provenance_amd64.digest) == 1
    assert blob_gets(requests_made, provenance_arm64.digest) == 1
    assert blob_gets(requests_made, sbom().digest) == 0

    result = lineage.refresh_lineage()

    assert result.by_method.get("provenance") == 3  # both platforms and the index they agree on
    expected = f"{estate.base_name}@{base_digest}"
    for digest in (images[0].digest, images[1].digest, attested.index.digest):
        row = decided(digest)
        assert (row.method, row.base_reference, row.base_image_id) == (
            "provenance",
            expected,
            estate.entry.pk,
        )
    assert not ArtifactLineage.objects.filter(artifact__platform="unknown/unknown").exists()


def test_without_the_stored_provenance_the_same_images_are_decided_by_their_layers(estate: Estate) -> None:
    """The control for the test above: what lineage says when sync kept nothing."""
    amd64, _ = estate.base.images
    image = on_base(amd64, {"app": b"amd64\n"})
    attested = attested_index(
        [image], [[(SLSA_V02, statement_blob(v02(image, estate.base_name, estate.base.digest)))]]
    )
    push(estate.running, APP, attested, "1.0")
    synced(estate.running)
    Artifact.objects.update(provenance={})

    lineage.refresh_lineage()

    assert (decided(image.digest).method, decided(image.digest).base_image_id) == ("layers", estate.entry.pk)


# --- an attestation that cannot be read ---------------------------------------------------------------


def corrupt(running: RunningRegistry, blob: im.Blob) -> None:
    """Flip the stored bytes (same length): the registry serves them under the old digest."""
    stored = (
        Path(running.config_path).parent
        / "data/docker/registry/v2/blobs/sha256"
        / blob.digest[7:9]
        / blob.digest[7:]
        / "data"
    )
    stored.write_bytes(bytes(byte ^ 0xFF for byte in stored.read_bytes()))


def delete(running: RunningRegistry, blob: im.Blob) -> None:
    running.pusher().request("DELETE", f"/v2/{APP}/blobs/{blob.digest}", expect=[202])


@pytest.mark.parametrize(
    ("damage", "built_on_base", "method", "said"),
    [
        ("missing", True, "layers", "404"),
        ("corrupt", True, "layers", "do not match the digest"),
        ("corrupt", False, "unknown", "do not match the digest"),
        ("too large", True, "layers", "more than the 64 Customs reads"),
        ("not json", False, "unknown", "it is not JSON"),
    ],
)
def test_an_unreadable_attestation_is_noted_and_the_sync_goes_on(
    estate: Estate,
    monkeypatch: pytest.MonkeyPatch,
    requests_made: list[tuple[str, str]],
    damage: str,
    built_on_base: bool,
    method: str,
    said: str,
) -> None:
    amd64, _ = estate.base.images
    image = on_base(amd64, {"app": b"1\n"}) if built_on_base else squashed(amd64.platform, {"app": b"1\n"})
    statement = statement_blob(v02(image, estate.base_name, estate.base.digest))
    if damage == "not json":
        statement = im.Blob(IN_TOTO, b"\x1f\x8b not a statement")
    attested = attested_index([image], [[(SLSA_V02, statement)]])
    push(estate.running, APP, attested, "1.0")
    if damage == "missing":
        delete(estate.running, statement)
    elif damage == "corrupt":
        corrupt(estate.running, statement)
    elif damage == "too large":
        monkeypatch.setattr(distribution, "MAX_STATEMENT_BYTES", 64)

    registry = synced(estate.running)

    kept = Artifact.objects.get(repository__registry=registry, digest=image.digest)
    assert "predicate" not in kept.provenance
    [note] = kept.provenance["notes"]
    assert statement.digest in note
    assert said in note
    assert Artifact.objects.filter(
        repository__registry=registry, digest=attested.attestations[0].digest
    ).exists()
    assert blob_gets(requests_made, statement.digest) == (0 if damage == "too large" else 1)

    lineage.refresh_lineage()

    row = decided(image.digest)
    assert row.method == method
    assert row.base_image_id == (estate.entry.pk if built_on_base else None)
    assert decided(attested.index.digest).method == method
    if method == "unknown":  # the finding says why provenance did not decide
        index = Artifact.objects.get(repository__registry=registry, digest=attested.index.digest)
        finding = Finding.objects.get(kind="base_unknown", subject_id=str(index.pk), resolved_at=None)
        assert any(statement.digest in line for line in finding.detail["notes"])


def test_a_missing_attestation_manifest_leaves_it_out_and_keeps_the_image(estate: Estate) -> None:
    amd64, _ = estate.base.images
    image = on_base(amd64, {"app": b"1\n"})
    attested = attested_index(
        [image], [[(SLSA_V02, statement_blob(v02(image, estate.base_name, estate.base.digest)))]]
    )
    push(estate.running, APP, attested, "1.0")
    estate.running.pusher().delete_manifest(APP, attested.attestations[0].digest)

    registry = synced(estate.running)

    held = set(
        Artifact.objects.filter(repository__registry=registry, repository__name=APP).values_list(
            "digest", flat=True
        )
    )
    assert held == {attested.index.digest, image.digest}
    [note] = Artifact.objects.get(digest=image.digest, repository__registry=registry).provenance["notes"]
    assert attested.attestations[0].digest in note


# --- requests: only what the index says is there ---------------------------------------------------------


def test_an_index_without_attestations_costs_no_more_requests(
    registry: RunningRegistry, requests_made: list[tuple[str, str]], db: None
) -> None:
    index = im.multi_platform_image("alpine", version="3.20")
    registry.pusher().push_index(APP, index, tags=["1"])
    connector = sync.connector_for(connect(registry))

    read = connector.artifact(APP, index.digest)

    expected = [("GET", f"{registry.url}/v2/{APP}/manifests/{index.digest}")]
    for image in index.images:
        expected += [
            ("GET", f"{registry.url}/v2/{APP}/manifests/{image.digest}"),
            ("GET", f"{registry.url}/v2/{APP}/blobs/{image.config.digest}"),
        ]
    assert requests_made == expected
    assert [child.provenance for child in read.children] == [{}, {}]


def test_an_attestation_without_provenance_fetches_no_statement(
    registry: RunningRegistry, requests_made: list[tuple[str, str]], db: None
) -> None:
    image = squashed(im.LINUX_AMD64, {"app": b"1\n"})
    attested = attested_index([image], [[(SPDX, sbom())]])
    push(registry, APP, attested, "1")

    read = sync.connector_for(connect(registry)).artifact(APP, attested.index.digest)

    assert [child.digest for child in read.children] == [image.digest, attested.attestations[0].digest]
    assert [child.provenance for child in read.children] == [{}, {}]
    assert len(requests_made) == 5  # the index, and each manifest with its config
    assert blob_gets(requests_made, sbom().digest) == 0


# --- the slimmed statement decides as the whole one does -------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        examples.statement_v02(examples.multi_stage_llb()),
        examples.statement_v02(examples.multi_stage_llb(from_scratch=True)),
        examples.statement_v02(),
        examples.statement_v1("pkg:docker/python@3.12-slim?platform=linux%2Famd64"),
        examples.statement_v1("pkg:docker/registry.corp.test/base/debian@12-slim"),
        v02(im.base_image("x"), "registry.corp.test/base/debian:12", examples.ALPINE_DIGEST),
        v1(im.base_image("x"), "registry.corp.test/base/debian:12", examples.ALPINE_DIGEST),
    ],
    ids=["v02-max", "v02-scratch", "v02-min", "v1-min", "v1-min-corp", "v02-max-secret", "v1-max-secret"],
)
def test_the_slimmed_statement_names_the_same_base_as_the_whole_one(statement: dict[str, Any]) -> None:
    slim = slim_provenance(statement)
    assert slim is not None
    assert lineage.provenance_base(slim) == lineage.provenance_base(statement)
    assert len(json.dumps(slim)) < len(json.dumps(statement))
    assert BUILD_SECRET not in json.dumps(slim)


def test_a_statement_that_is_not_slsa_is_not_kept() -> None:
    assert slim_provenance(json.loads(sbom().data)) is None


def test_a_malformed_statement_is_noted_not_a_failed_refresh() -> None:
    statement = examples.statement_v02(examples.multi_stage_llb())
    statement["predicate"]["buildConfig"]["llbDefinition"][-1]["inputs"] = ["step6:first"]
    read = lineage.read_provenance(statement)
    assert (read.stated, read.base, read.notes) == (True, None, ("its provenance statement is malformed",))
    decision = examples.decide_one(examples.app(1, "x"), provenance={1: statement})
    assert decision.method == "unknown"
    assert "its provenance does not say which image the final stage starts from" in decision.notes
