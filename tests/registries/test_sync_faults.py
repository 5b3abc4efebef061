"""Faults half-way through a sync leave the previous inventory exactly as it was.

The registry here is faked at the HTTP layer (a registry cannot be made to fail on cue), answering
with real manifests and configs from the image builder; one answer at a time is then broken.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
import requests
import responses

from registries import services, sync
from registries.demo import images as im
from registries.models import Registry, SyncRun, Tag

pytestmark = pytest.mark.django_db

URL = "https://faulty.registry.test"
Answer = tuple[int, dict[str, str], bytes] | Exception


@dataclass
class FakeRegistry:
    """Routes "METHOD /path?query" to an answer; tests replace one, or queue some, to inject faults."""

    answers: dict[str, Answer] = field(default_factory=dict)
    # Answered once each, in order, before the routed answer: a fault that then goes away.
    queued: dict[str, list[Answer]] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)

    def serve(
        self, key: str, status: int = 200, body: Any = b"", headers: dict[str, str] | None = None
    ) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.answers[key] = (status, headers or {}, data)

    def image(self, repository: str, tags: list[str], image: im.Image) -> None:
        for tag in tags:
            self.serve(
                f"HEAD /v2/{repository}/manifests/{tag}", headers={"Docker-Content-Digest": image.digest}
            )
        self.serve(
            f"GET /v2/{repository}/manifests/{image.digest}",
            body=image.manifest_bytes,
            headers={"Content-Type": image.media_type},
        )
        self.serve(f"GET /v2/{repository}/blobs/{image.config.digest}", body=image.config.data)
        self.serve(f"GET /v2/{repository}/tags/list", body={"name": repository, "tags": tags})

    def __call__(self, request: Any) -> tuple[int, dict[str, str], bytes]:
        path = request.url.removeprefix(URL)
        key = f"{request.method} {path}"
        self.hits[key] = self.hits.get(key, 0) + 1
        queued = self.queued.get(key)
        answer = (
            queued.pop(0)
            if queued
            else self.answers.get(key, (404, {}, b'{"errors":[{"code":"NOT_FOUND"}]}'))
        )
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture(name="fake")
def fake_fixture() -> Iterator[FakeRegistry]:
    registry = FakeRegistry()
    registry.serve("GET /v2/")
    registry.serve(
        "GET /v2/_catalog?n=2",
        body={"repositories": ["a/one", "a/two"]},
        headers={"Link": f'</v2/_catalog?last={quote("a/two", safe="")}&n=2>; rel="next"'},
    )
    registry.serve("GET /v2/_catalog?last=a%2Ftwo&n=2", body={"repositories": ["a/three"]})
    for number, name in enumerate(["a/one", "a/two", "a/three"]):
        registry.image(name, ["1", "2"], im.base_image(name.replace("/", "-"), version=str(number)))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for method in ("GET", "HEAD"):
            mock.add_callback(method, re.compile(re.escape(URL) + r"/.*"), callback=registry)
        yield registry


@pytest.fixture
def synced(fake: FakeRegistry) -> Registry:
    registry = services.save_registry(
        Registry(name="faulty", kind="distribution", endpoint=URL), actor=None, public={"page_size": 2}
    )
    assert sync.sync_inventory(registry).status == SyncRun.Status.SUCCEEDED
    return registry


def snapshot(registry: Registry) -> list[tuple[str, str, str]]:
    tags = Tag.objects.filter(repository__registry=registry).select_related("repository", "artifact")
    return sorted((t.repository.name, t.name, t.artifact.digest) for t in tags)


def change_upstream(fake: FakeRegistry) -> None:
    """A new tag in the first repository, so a sync would have something to change."""
    fake.image("a/one", ["1", "2", "3"], im.base_image("a-one", version="new"))


FAULTS: dict[str, tuple[str, Answer, str]] = {
    "500 on a later catalog page": ("GET /v2/_catalog?last=a%2Ftwo&n=2", (500, {}, b"oops"), "500 from"),
    "a timeout": ("GET /v2/a/three/tags/list", requests.exceptions.ConnectTimeout("slow"), "timed out"),
    "malformed JSON": ("GET /v2/a/two/tags/list", (200, {}, b"{not json"), "malformed JSON"),
    "a truncated manifest": (
        "GET /v2/a/one/manifests/",
        (200, {}, b'{"schemaVersion": 2, "medi'),
        "do not match",
    ),
    "429 asking to wait an hour": (
        "GET /v2/a/two/tags/list",
        (429, {"Retry-After": "3600"}, b""),
        "429 from https://faulty.registry.test/v2/a/two/tags/list; it asks to wait 3600 s",
    ),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_fault_leaves_the_inventory_as_it_was(fake: FakeRegistry, synced: Registry, fault: str) -> None:
    before = snapshot(synced)
    change_upstream(fake)
    key, answer, message = FAULTS[fault]
    if key.endswith("/manifests/"):
        new_digest = fake.answers["HEAD /v2/a/one/manifests/3"][1]["Docker-Content-Digest"]  # type: ignore[index]
        key += new_digest
    fake.answers[key] = answer
    run = sync.sync_inventory(synced)
    assert run.status == SyncRun.Status.FAILED
    assert message in run.error
    assert snapshot(synced) == before
    assert Registry.objects.get(pk=synced.pk).syncing_since is None


def test_a_short_retry_after_on_a_tag_listing_is_waited_out_and_only_that_request_sent_again(
    fake: FakeRegistry, synced: Registry
) -> None:
    waits: list[float] = []
    change_upstream(fake)
    fake.hits.clear()
    fake.queued["GET /v2/a/two/tags/list"] = [(429, {"Retry-After": "7"}, b"")]
    run = sync.sync_inventory(synced, sleep=waits.append)  # read in a pool thread
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert waits == [7.0]
    assert ("a/one", "3") in [(repo, tag) for repo, tag, _ in snapshot(synced)]
    listings = {key: hits for key, hits in fake.hits.items() if key.endswith("/tags/list")}
    assert listings == {f"GET /v2/a/{n}/tags/list": 2 if n == "two" else 1 for n in ("one", "two", "three")}
    assert fake.hits["GET /v2/_catalog?n=2"] == 1


def test_a_manifest_is_fetched_only_when_its_digest_is_new(fake: FakeRegistry, synced: Registry) -> None:
    fake.hits.clear()
    change_upstream(fake)
    run = sync.sync_inventory(synced)
    manifest_gets = [key for key in fake.hits if key.startswith("GET ") and "/manifests/" in key]
    assert run.manifests_fetched == 1
    assert len(manifest_gets) == 1
