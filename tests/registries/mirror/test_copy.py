"""The copy engine against real docker-registry 2.8 servers: one upstream and two regions.

Images are built in memory (registries/demo/images.py), pushed upstream, copied with copy_image,
and then read back from each region through the registry API and skopeo: every platform, every
blob and every referrer must be there with the upstream's digests, and a tag must never name an
image that is not complete.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from portal.http import TransientError
from registries.connectors.errors import AuthError, NotFoundError
from registries.demo import images as im
from registries.mirror import DestinationResult, DigestMismatch, Endpoint, copy_image, fallback_tag, resolve
from registries.mirror import copy as engine
from registries.mirror.client import RepositoryClient
from tests.registries.conftest import StartRegistry
from tests.registries.harness import (
    READER,
    READER_PASSWORD,
    Notifications,
    RunningRegistry,
    Skopeo,
    WebhookSink,
    loopback_session,
    require_binary,
    wait_until_ready,
)

REPO = "library/app"
MIRROR = "mirror/app"
COSIGN_SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"
IN_TOTO = "application/vnd.in-toto+json"
EMPTY = im.Blob("application/vnd.oci.empty.v1+json", b"{}")


@pytest.fixture
def upstream(start_registry: StartRegistry) -> RunningRegistry:
    return start_registry()


@pytest.fixture
def eu(start_registry: StartRegistry) -> RunningRegistry:
    return start_registry()


@pytest.fixture
def us(start_registry: StartRegistry) -> RunningRegistry:
    return start_registry()


# --- building and reading -----------------------------------------------------------------------------


def two_platform_index(
    name: str, *, layers: int = 2, layer_size: int = 8 * 1024, version: str = "1", fmt: im.Format = "oci"
) -> im.Index:
    """An index of linux/amd64 and linux/arm64 images, each with its own incompressible layers."""
    images = []
    for platform in (im.LINUX_AMD64, im.LINUX_ARM64):
        built = [
            im.layer(
                {
                    f"data/{n}.bin": hashlib.shake_256(f"{name}/{version}/{platform}/{n}".encode()).digest(
                        layer_size
                    )
                }
            )
            for n in range(layers)
        ]
        images.append(im.build_image(built, format=fmt, platform=platform, labels={"version": version}))
    return im.build_index(images)


def blobs_of(index: im.Index) -> dict[str, im.Blob]:
    return {blob.digest: blob for image in index.images for blob in image.blobs}


def endpoint(registry: RunningRegistry, repository: str, **extra: Any) -> Endpoint:
    return Endpoint(registry.url, repository, **extra)


def tagged(registry: RunningRegistry, repository: str, tag: str) -> str | None:
    """The digest `tag` names in the registry, or None: read by HEAD, as a pull would."""
    response = registry.pusher().request(
        "HEAD", f"/v2/{repository}/manifests/{tag}", headers={"Accept": im.MANIFEST_ACCEPT}, expect=(200, 404)
    )
    return response.headers["Docker-Content-Digest"] if response.status_code == 200 else None


def has_blob(registry: RunningRegistry, repository: str, digest: str) -> bool:
    return registry.pusher().blob_exists(repository, digest)


def assert_complete(
    registry: RunningRegistry, repository: str, index: im.Index, tag: str, skopeo: Skopeo | None = None
) -> None:
    """The region serves the index under `tag` byte for byte, every platform by digest, and every blob."""
    pusher = registry.pusher()
    served = pusher.get_manifest(repository, tag)
    assert (served.digest, served.data) == (index.digest, index.manifest_bytes)
    for image in index.images:
        child = pusher.get_manifest(repository, image.digest)
        assert (child.digest, child.data) == (image.digest, image.manifest_bytes)
        for blob in image.blobs:
            assert has_blob(registry, repository, blob.digest), blob.digest
    if skopeo:  # an independent client sees the same bytes
        assert skopeo.inspect_raw(f"{registry.host}/{repository}:{tag}") == index.manifest_bytes


def ok(results: list[DestinationResult]) -> list[DestinationResult]:
    assert [result.error for result in results] == [""] * len(results)
    return results


# --- copying --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_copies_every_platform_and_blob_to_both_regions(
    upstream: RunningRegistry, eu: RunningRegistry, us: RunningRegistry, skopeo: Skopeo, fmt: im.Format
) -> None:
    index = two_platform_index("app", fmt=fmt)
    upstream.pusher().push_index(REPO, index, tags=["1.0"])
    messages: list[str] = []

    results = ok(
        copy_image(
            endpoint(upstream, REPO),
            "1.0",
            [endpoint(eu, MIRROR), endpoint(us, MIRROR)],
            progress=messages.append,
        )
    )

    blobs = blobs_of(index)
    for region, result in zip((eu, us), results, strict=True):
        assert_complete(region, MIRROR, index, "1.0", skopeo)
        assert result.digest == index.digest
        assert (result.blobs_copied, result.blobs_skipped, result.blobs_mounted) == (len(blobs), 0, 0)
        assert result.bytes_sent == sum(blob.size for blob in blobs.values())
        assert result.manifests_pushed == 3  # two platforms by digest, then the index by tag
    assert any(f"{eu.host}/{MIRROR}:1.0 is {index.digest}" in message for message in messages)


def copy_events(sink: WebhookSink, marker: str) -> list[dict[str, Any]]:
    """The upstream's events from the copy's own requests, up to a marker pull made after the copy.

    Events arrive in order, so once the marker's is in, every event of the copy is too.
    """
    sink.wait_for(lambda e: e["action"] == "pull" and e["target"].get("digest") == marker)
    events = [event for delivery in sink.deliveries for event in delivery.events]
    del sink.deliveries[:]
    return [event for event in events if event["request"]["useragent"].startswith("Customs/")]


def test_upstream_is_read_once_for_two_regions_and_not_at_all_when_nothing_changed(
    start_registry: StartRegistry, webhook_sink: WebhookSink, eu: RunningRegistry, us: RunningRegistry
) -> None:
    # The upstream reports every pull (manifest GET and HEAD, blob GET) to the sink.
    upstream = start_registry(
        notifications=Notifications(webhook_sink.url, ignore_actions=(), ignore_media_types=())
    )
    index = two_platform_index("app", layers=3, layer_size=256 * 1024)
    upstream.pusher().push_index(REPO, index, tags=["1.0"])
    regions = [endpoint(eu, MIRROR), endpoint(us, MIRROR)]

    ok(copy_image(endpoint(upstream, REPO), "1.0", regions))
    upstream.pusher().get_manifest(REPO, index.images[0].digest)  # the marker
    first = copy_events(webhook_sink, index.images[0].digest)
    ok(copy_image(endpoint(upstream, REPO), "1.0", regions))
    upstream.pusher().get_manifest(REPO, index.images[1].digest)
    second = copy_events(webhook_sink, index.images[1].digest)

    pulled_blobs = [
        event["target"]["digest"] for event in first if event["target"]["digest"] in blobs_of(index)
    ]
    assert sorted(pulled_blobs) == sorted(blobs_of(index))  # each blob once, though it went to two regions
    # Nothing new: one HEAD for the tag, and no manifest GET (Docker Hub would count each as a pull).
    assert [(event["request"]["method"], event["target"].get("tag")) for event in second] == [("HEAD", "1.0")]


def test_a_second_copy_sends_no_blob_bytes(upstream: RunningRegistry, eu: RunningRegistry) -> None:
    index = two_platform_index("app")
    upstream.pusher().push_index(REPO, index, tags=["1.0"])
    ok(copy_image(endpoint(upstream, REPO), "1.0", [endpoint(eu, MIRROR)]))

    [again] = ok(copy_image(endpoint(upstream, REPO), "1.0", [endpoint(eu, MIRROR)]))

    assert (again.bytes_sent, again.blobs_copied, again.manifests_pushed) == (0, 0, 0)
    assert again.blobs_skipped == len(blobs_of(index))
    assert again.digest == index.digest


def test_a_region_missing_some_blobs_gets_only_those(upstream: RunningRegistry, eu: RunningRegistry) -> None:
    index = two_platform_index("app")
    upstream.pusher().push_index(REPO, index, tags=["1.0"])
    arm = index.images[1]
    eu.pusher().push_image(MIRROR, arm)  # one platform is there already, by digest

    [result] = ok(copy_image(endpoint(upstream, REPO), "1.0", [endpoint(eu, MIRROR)]))

    assert_complete(eu, MIRROR, index, "1.0")
    assert result.blobs_skipped == len(arm.blobs)
    assert result.bytes_sent == sum(blob.size for blob in index.images[0].blobs)
    assert result.manifests_pushed == 2  # amd64 and the index; arm64 was there


def test_a_digest_is_copied_untagged(upstream: RunningRegistry, eu: RunningRegistry) -> None:
    index = two_platform_index("app")
    upstream.pusher().push_index(REPO, index, tags=["1.0"])

    [result] = ok(copy_image(endpoint(upstream, REPO), index.digest, [endpoint(eu, MIRROR)]))

    assert result.digest == index.digest
    assert tagged(eu, MIRROR, index.digest) == index.digest
    assert tagged(eu, MIRROR, "1.0") is None
    with pytest.raises(ValueError, match="neither a tag nor a digest"):
        copy_image(endpoint(upstream, REPO), index.digest, [endpoint(eu, MIRROR)], tag="1.0 final")


# --- resuming -----------------------------------------------------------------------------------------


@pytest.fixture
def one_blob_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blobs in a known order, in small chunks: "after N bytes" then falls mid-blob, deterministically."""
    monkeypatch.setattr(engine, "BLOB_CONCURRENCY", 1)
    monkeypatch.setattr(engine, "CHUNK_SIZE", 16 * 1024)


def upstream_breaks(monkeypatch: pytest.MonkeyPatch, *, on_read: int, after: int) -> list[str]:
    """The `on_read`-th blob read upstream breaks after `after` bytes; returns the digests read, in order."""
    original = RepositoryClient.blob_chunks
    reads: list[str] = []

    def breaking(self: RepositoryClient, digest: str, chunk_size: int) -> Iterator[bytes]:
        reads.append(digest)
        sent = 0
        for chunk in original(self, digest, chunk_size):
            if len(reads) == on_read and sent >= after:
                raise TransientError(f"reading {digest}: connection reset (injected)")
            sent += len(chunk)
            yield chunk

    monkeypatch.setattr(RepositoryClient, "blob_chunks", breaking)
    return reads


def test_a_transfer_cut_upstream_resumes_without_resending_finished_blobs(
    upstream: RunningRegistry,
    eu: RunningRegistry,
    us: RunningRegistry,
    monkeypatch: pytest.MonkeyPatch,
    one_blob_at_a_time: None,
) -> None:
    index = two_platform_index("app", layers=3, layer_size=64 * 1024)
    upstream.pusher().push_index(REPO, index, tags=["1.0"])
    regions = [endpoint(eu, MIRROR), endpoint(us, MIRROR)]
    reads = upstream_breaks(monkeypatch, on_read=4, after=16 * 1024)

    with pytest.raises(TransientError, match="injected"):
        copy_image(endpoint(upstream, REPO), "1.0", regions)

    blobs = blobs_of(index)
    finished, broken = reads[:3], reads[3]
    for region in (eu, us):
        assert tagged(region, MIRROR, "1.0") is None  # no tag on a half-copied image
        assert tagged(region, MIRROR, index.digest) is None
        assert {digest for digest in blobs if has_blob(region, MIRROR, digest)} == set(finished)
        assert not has_blob(region, MIRROR, broken)  # its upload was never committed

    monkeypatch.undo()  # upstream mends
    results = ok(copy_image(endpoint(upstream, REPO), "1.0", regions))

    for region, result in zip((eu, us), results, strict=True):
        assert_complete(region, MIRROR, index, "1.0")
        assert result.blobs_skipped == 3
        assert result.blobs_copied == len(blobs) - 3
        assert result.bytes_sent == sum(blob.size for digest, blob in blobs.items() if digest not in finished)


def restart(registry: RunningRegistry, request: pytest.FixtureRequest) -> RunningRegistry:
    """The same registry again: same port, same storage directory, a new process."""
    binary = require_binary("docker-registry", "docker-registry", override="REGISTRY_BIN")
    log = registry.log_path.open("ab")
    process = subprocess.Popen(
        [binary, "serve", str(registry.config_path)], stdout=log, stderr=subprocess.STDOUT
    )
    again = RunningRegistry(
        registry.url, registry.port, registry.config_path, registry.log_path, process, _log=log
    )
    request.addfinalizer(again.stop)
    wait_until_ready(again)
    return again


def test_a_region_killed_mid_copy_fails_alone_and_resumes(
    upstream: RunningRegistry,
    eu: RunningRegistry,
    us: RunningRegistry,
    one_blob_at_a_time: None,
    request: pytest.FixtureRequest,
) -> None:
    index = two_platform_index("app", layers=3, layer_size=64 * 1024)
    upstream.pusher().push_index(REPO, index, tags=["1.0"])
    regions = [endpoint(eu, MIRROR), endpoint(us, MIRROR)]
    uploaded: list[str] = []

    def kill_eu_after_two_blobs(message: str) -> None:
        if message.startswith(f"{eu.host}/{MIRROR}: uploaded "):
            uploaded.append(message)
            if len(uploaded) == 2:
                eu.process.kill()  # SIGKILL: no chance to finish anything
                eu.process.wait()

    first = copy_image(endpoint(upstream, REPO), "1.0", regions, progress=kill_eu_after_two_blobs)

    assert first[0].digest == ""
    assert isinstance(first[0].failure, TransientError)
    assert eu.host in first[0].error
    assert first[1].error == ""
    assert first[1].digest == index.digest
    assert_complete(us, MIRROR, index, "1.0")
    eu_again = restart(eu, request)
    assert tagged(eu_again, MIRROR, "1.0") is None  # the tag never pointed at the incomplete image
    assert sum(has_blob(eu_again, MIRROR, digest) for digest in blobs_of(index)) == 2

    second = ok(copy_image(endpoint(upstream, REPO), "1.0", regions))

    assert_complete(eu_again, MIRROR, index, "1.0")
    assert (second[0].blobs_skipped, second[0].blobs_copied) == (2, len(blobs_of(index)) - 2)
    assert (second[1].blobs_skipped, second[1].bytes_sent, second[1].manifests_pushed) == (
        len(blobs_of(index)),
        0,
        0,
    )


def test_a_blob_that_does_not_match_its_digest_is_committed_nowhere(
    upstream: RunningRegistry, eu: RunningRegistry, us: RunningRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = two_platform_index("app", layers=1, layer_size=64 * 1024)
    upstream.pusher().push_index(REPO, index, tags=["1.0"])
    victim = index.images[0].layers[0].digest
    original = RepositoryClient.blob_chunks

    def corrupting(self: RepositoryClient, digest: str, chunk_size: int) -> Iterator[bytes]:
        for chunk in original(self, digest, chunk_size):
            yield bytes([chunk[0] ^ 1]) + chunk[1:] if digest == victim else chunk  # a proxy flips a bit

    monkeypatch.setattr(RepositoryClient, "blob_chunks", corrupting)

    with pytest.raises(DigestMismatch, match=victim):
        copy_image(endpoint(upstream, REPO), "1.0", [endpoint(eu, MIRROR), endpoint(us, MIRROR)])

    for region in (eu, us):
        assert not has_blob(region, MIRROR, victim)
        assert tagged(region, MIRROR, "1.0") is None


# --- mounts, moved tags, regions down -------------------------------------------------------------------


def test_blobs_another_mirrored_repository_holds_are_mounted(
    upstream: RunningRegistry, eu: RunningRegistry
) -> None:
    base = im.base_image("debian")
    child = im.child_image(base, {"app/VERSION": b"1.0\n"})
    upstream.pusher().push_image("library/debian", base, tags=["12"])
    upstream.pusher().push_image(REPO, child, tags=["1.0"])
    ok(copy_image(endpoint(upstream, "library/debian"), "12", [endpoint(eu, "mirror/debian")]))

    [result] = ok(
        copy_image(
            endpoint(upstream, REPO),
            "1.0",
            [endpoint(eu, MIRROR, mount_from=("mirror/other", "mirror/debian"))],
        )
    )

    assert (result.blobs_mounted, result.blobs_copied) == (1, 2)  # the base layer; config and app layer
    assert result.bytes_sent == child.config.size + child.layers[-1].size
    assert has_blob(eu, MIRROR, base.layers[0].digest)
    assert eu.pusher().get_manifest(MIRROR, "1.0").data == child.manifest_bytes


def test_a_moved_upstream_tag_is_followed(upstream: RunningRegistry, eu: RunningRegistry) -> None:
    old, new = two_platform_index("app", version="1"), two_platform_index("app", version="2")
    upstream.pusher().push_index(REPO, old, tags=["3"])
    ok(copy_image(endpoint(upstream, REPO), "3", [endpoint(eu, MIRROR)]))
    upstream.pusher().push_index(REPO, new, tags=["3"])

    assert resolve(endpoint(upstream, REPO), "3") == new.digest
    assert tagged(eu, MIRROR, "3") == old.digest  # stale until the next copy
    [result] = ok(copy_image(endpoint(upstream, REPO), "3", [endpoint(eu, MIRROR)]))

    assert result.digest == new.digest
    assert_complete(eu, MIRROR, new, "3")


def test_resolve_names_a_missing_tag(upstream: RunningRegistry) -> None:
    upstream.pusher().push_index(REPO, two_platform_index("app"), tags=["1.0"])

    with pytest.raises(NotFoundError, match="library/app:nope"):
        resolve(endpoint(upstream, REPO), "nope")


def test_a_region_down_fails_only_that_region(
    upstream: RunningRegistry, eu: RunningRegistry, us: RunningRegistry
) -> None:
    index = two_platform_index("app")
    upstream.pusher().push_index(REPO, index, tags=["1.0"])
    us.stop()

    results = copy_image(endpoint(upstream, REPO), "1.0", [endpoint(eu, MIRROR), endpoint(us, MIRROR)])

    assert results[0].error == ""
    assert results[0].digest == index.digest
    assert_complete(eu, MIRROR, index, "1.0")
    assert results[1].digest == ""
    assert isinstance(results[1].failure, TransientError)
    assert us.url in results[1].error
    assert "connection refused" in results[1].error


# --- referrers: signatures and attestations ----------------------------------------------------------


@dataclass(frozen=True)
class Artifact:
    """An OCI artifact attached to a subject: a signature or an attestation, as cosign or oras write them."""

    data: bytes
    digest: str
    artifact_type: str
    blobs: tuple[im.Blob, ...]

    def descriptor(self) -> dict[str, Any]:
        return {
            "mediaType": im.OCI_MANIFEST,
            "digest": self.digest,
            "size": len(self.data),
            "artifactType": self.artifact_type,
        }


def artifact(subject: im.Image | im.Index, artifact_type: str, payload: bytes) -> Artifact:
    content = im.Blob(artifact_type, payload)
    manifest = {
        "schemaVersion": 2,
        "mediaType": im.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": EMPTY.descriptor(),
        "layers": [content.descriptor()],
        "subject": {
            "mediaType": subject.media_type,
            "digest": subject.digest,
            "size": len(subject.manifest_bytes),
        },
    }
    data = im.canonical_json(manifest)
    return Artifact(data, im.sha256_digest(data), artifact_type, (EMPTY, content))


def push_artifact(pusher: im.Pusher, repository: str, attached: Artifact) -> None:
    for blob in attached.blobs:
        pusher.push_blob(repository, blob)
    pusher.push_manifest(repository, attached.digest, attached.data, im.OCI_MANIFEST)


def listed_referrers(registry: RunningRegistry, repository: str, subject: str) -> list[str]:
    """The digests in the subject's tag-schema index, as a client without a referrers API reads them."""
    if tagged(registry, repository, fallback_tag(subject)) is None:
        return []
    index = json.loads(registry.pusher().get_manifest(repository, fallback_tag(subject)).data)
    return [entry["digest"] for entry in index["manifests"]]


def attach(registry: RunningRegistry, repository: str, subject: str, attached: Artifact) -> None:
    """Push `attached` and list it under the subject's `sha256-<hex>` tag: the tag schema, as 2.8 needs."""
    pusher = registry.pusher()
    push_artifact(pusher, repository, attached)
    listed = []
    if tagged(registry, repository, fallback_tag(subject)):
        listed = json.loads(pusher.get_manifest(repository, fallback_tag(subject)).data)["manifests"]
    index = im.canonical_json(
        {"schemaVersion": 2, "mediaType": im.OCI_INDEX, "manifests": [*listed, attached.descriptor()]}
    )
    pusher.push_manifest(repository, fallback_tag(subject), index, im.OCI_INDEX)


def test_signatures_and_attestations_follow_through_the_tag_schema(
    upstream: RunningRegistry, eu: RunningRegistry, us: RunningRegistry
) -> None:
    index = two_platform_index("app")
    upstream.pusher().push_index(REPO, index, tags=["1.0"])
    signature = artifact(index, COSIGN_SIG, b'{"critical":{"image":{"docker-manifest-digest":"x"}}}')
    sbom = artifact(index.images[0], IN_TOTO, b'{"predicateType":"https://spdx.dev/Document"}')
    attach(upstream, REPO, index.digest, signature)
    attach(upstream, REPO, index.images[0].digest, sbom)
    # eu already lists someone else's signature for the index; it must stay listed.
    theirs = artifact(index, COSIGN_SIG, b'{"signed-by":"the eu team"}')
    attach(eu, MIRROR, index.digest, theirs)

    results = ok(copy_image(endpoint(upstream, REPO), "1.0", [endpoint(eu, MIRROR), endpoint(us, MIRROR)]))

    for region, result in zip((eu, us), results, strict=True):
        assert_complete(region, MIRROR, index, "1.0")
        assert result.referrers_copied == 2
        for attached in (signature, sbom):
            assert region.pusher().get_manifest(MIRROR, attached.digest).data == attached.data
            assert all(has_blob(region, MIRROR, blob.digest) for blob in attached.blobs)
        assert listed_referrers(region, MIRROR, index.images[0].digest) == [sbom.digest]
    assert listed_referrers(us, MIRROR, index.digest) == [signature.digest]
    assert listed_referrers(eu, MIRROR, index.digest) == [theirs.digest, signature.digest]

    again = ok(copy_image(endpoint(upstream, REPO), "1.0", [endpoint(eu, MIRROR)]))
    assert (again[0].referrers_copied, again[0].manifests_pushed) == (0, 0)  # nothing listed twice
    assert listed_referrers(eu, MIRROR, index.digest) == [theirs.digest, signature.digest]


class ReferrersProxy:
    """A registry with the OCI 1.1 referrers API: a loopback proxy in front of a real docker-registry 2.8.

    No registry packaged for Debian has the API, so this adds it: manifests pushed through the proxy
    with a `subject` are indexed and answered with `OCI-Subject`, and GET …/referrers/<digest>
    answers from that index. Every other request gets the real registry's answer.
    """

    def __init__(self, registry: RunningRegistry) -> None:
        self.target = registry.url
        self.referrers: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.seen: list[tuple[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self.url = f"http://{self.host}"
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        self.seen.append((method, path.split("?", 1)[0]))
        name, _, rest = path.removeprefix("/v2/").partition("/referrers/")
        if method == "GET" and rest:
            listed = self.referrers.get((name, rest.split("?", 1)[0]), [])
            index = {"schemaVersion": 2, "mediaType": im.OCI_INDEX, "manifests": listed}
            return 200, {"Content-Type": im.OCI_INDEX}, json.dumps(index).encode()
        forwarded = {
            k: v for k, v in headers.items() if k.lower() not in ("host", "content-length", "connection")
        }
        # The registry writes absolute Locations from Host: keep them pointing at the proxy.
        forwarded["Host"] = self.host
        response = loopback_session().request(
            method, self.target + path, headers=forwarded, data=body, allow_redirects=False, timeout=30
        )
        answered = {
            k: v for k, v in response.headers.items() if k.lower() not in ("connection", "transfer-encoding")
        }
        if method == "PUT" and "/manifests/" in path and response.status_code == 201:
            manifest = json.loads(body)
            if subject := manifest.get("subject"):
                repository = path.removeprefix("/v2/").partition("/manifests/")[0]
                descriptor = {
                    "mediaType": manifest["mediaType"],
                    "digest": response.headers["Docker-Content-Digest"],
                    "size": len(body),
                    "artifactType": manifest.get("artifactType") or manifest["config"]["mediaType"],
                }
                self.referrers.setdefault((repository, subject["digest"]), []).append(descriptor)
                answered["OCI-Subject"] = subject["digest"]
        return response.status_code, answered, response.content

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers, data = proxy.answer(
                    self.command, self.path, dict(self.headers.items()), body
                )
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() != "content-length":
                        self.send_header(key, value)
                length = headers.get("Content-Length") if self.command == "HEAD" else str(len(data))
                self.send_header("Content-Length", length or "0")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def proxies() -> Iterator[Callable[[RunningRegistry], ReferrersProxy]]:
    started: list[ReferrersProxy] = []

    def start(registry: RunningRegistry) -> ReferrersProxy:
        started.append(ReferrersProxy(registry))
        return started[-1]

    yield start
    for proxy in started:
        proxy.stop()


def test_the_referrers_api_is_used_where_a_registry_answers_it(
    upstream: RunningRegistry,
    eu: RunningRegistry,
    us: RunningRegistry,
    proxies: Callable[[RunningRegistry], ReferrersProxy],
) -> None:
    source, eu_api = proxies(upstream), proxies(eu)
    index = two_platform_index("app")
    pusher = im.Pusher(source.url)
    pusher.push_index(REPO, index, tags=["1.0"])
    signature = artifact(index, COSIGN_SIG, b'{"critical":{}}')
    push_artifact(pusher, REPO, signature)  # the API lists it: no tag-schema index upstream

    results = ok(
        copy_image(Endpoint(source.url, REPO), "1.0", [Endpoint(eu_api.url, MIRROR), endpoint(us, MIRROR)])
    )

    assert ("GET", f"/v2/{REPO}/referrers/{index.digest}") in source.seen
    assert not [path for _, path in source.seen if "/manifests/sha256-" in path]  # no tag-schema lookups
    assert [result.referrers_copied for result in results] == [1, 1]
    # eu indexes referrers itself: it gets the signature, and no tag-schema index beside it.
    assert eu_api.referrers[(MIRROR, index.digest)] == [signature.descriptor()]
    assert tagged(eu, MIRROR, fallback_tag(index.digest)) is None
    # us (distribution 2.8) has no API: there the tag schema lists it.
    assert listed_referrers(us, MIRROR, index.digest) == [signature.digest]
    assert us.pusher().get_manifest(MIRROR, signature.digest).data == signature.data


# --- credentials ----------------------------------------------------------------------------------------


def test_token_and_basic_auth_with_a_mount_across_token_scopes(start_registry: StartRegistry) -> None:
    upstream, eu, us = (
        start_registry(auth="token"),
        start_registry(auth="token"),
        start_registry(auth="basic"),
    )
    assert upstream.credentials
    assert eu.credentials
    assert us.credentials
    index = two_platform_index("app")
    upstream.pusher().push_index(REPO, index, tags=["1.0"])
    eu.pusher().push_index("mirror/base", index)  # eu holds the blobs in another repository already
    source = Endpoint(upstream.url, REPO, READER, READER_PASSWORD)  # pull is all the upstream grants
    eu_endpoint = Endpoint(eu.url, MIRROR, *eu.credentials, mount_from=("mirror/base",))

    results = ok(copy_image(source, "1.0", [eu_endpoint, Endpoint(us.url, MIRROR, *us.credentials)]))

    assert_complete(eu, MIRROR, index, "1.0")
    assert_complete(us, MIRROR, index, "1.0")
    # The mount needed a token for pull on mirror/base as well as pull,push on mirror/app.
    assert (results[0].blobs_mounted, results[0].bytes_sent) == (len(blobs_of(index)), 0)
    assert eu.token_server
    assert any(
        {f"repository:{MIRROR}:pull,push", "repository:mirror/base:pull"} <= set(asked.scopes)
        for asked in eu.token_server.requests
    )
    assert results[1].blobs_copied == len(blobs_of(index))


def test_refused_credentials_are_named_without_the_password(start_registry: StartRegistry) -> None:
    upstream, eu, us = (
        start_registry(auth="token"),
        start_registry(auth="basic"),
        start_registry(auth="token"),
    )
    assert upstream.credentials
    assert eu.credentials
    assert us.credentials
    upstream.pusher().push_index(REPO, two_platform_index("app"), tags=["1.0"])
    secret = "not-the-password-0451"
    source = Endpoint(upstream.url, REPO, *upstream.credentials)
    messages: list[str] = []

    results = copy_image(
        source,
        "1.0",
        [
            Endpoint(eu.url, MIRROR, eu.credentials[0], secret),
            Endpoint(us.url, MIRROR, us.credentials[0], secret),
        ],
        progress=messages.append,
    )
    with pytest.raises(AuthError) as refused:
        copy_image(
            Endpoint(upstream.url, REPO, upstream.credentials[0], secret), "1.0", [Endpoint(us.url, MIRROR)]
        )

    assert all(isinstance(result.failure, AuthError) and result.digest == "" for result in results)
    assert "401" in results[0].error  # htpasswd: the registry itself refuses
    assert "refused user 'pusher'" in results[1].error  # token auth: the token server refuses
    assert "refused user 'pusher'" in str(refused.value)
    shown = [*messages, *(result.error for result in results), *map(repr, results), str(refused.value)]
    assert not [text for text in shown if secret in text]
