"""The mirror job against three real docker-registry servers: an upstream and two regions.

The upstream wants Basic credentials (the entry's own, stored encrypted), the eu region Basic
credentials from its Registry row, the us region the Docker token flow. Images are multi-platform
indexes built in memory (registries/demo/images.py). Each test reads the regions back through the
registry API: what the job recorded must be what the regions serve.
"""

from __future__ import annotations

import contextlib
import io
import re
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import responses
from celery import current_app
from django.core.management import CommandError, ManagementUtility, call_command
from django.db import connection, connections
from django.utils import timezone
from responses import matchers

from portal.models import AuditEvent
from registries.connectors.errors import ConfigError, ConnectorError
from registries.demo import images as im
from registries.mirror import jobs, tasks
from registries.mirror.client import RepositoryClient
from registries.mirror.copy import Endpoint, copy_image
from registries.models import BaseImage, BaseImageMirror, MirrorRun, MirrorSource, MirrorState, Registry
from tests import factories
from tests.certificates import LOOPBACK, loopback_tls_files
from tests.registries.conftest import StartRegistry
from tests.registries.harness import BASIC_PASSWORD, BASIC_USER, PUSHER, PUSHER_PASSWORD, RunningRegistry

pytestmark = pytest.mark.django_db

UPSTREAM_REPO = "library/python"
MIRROR_REPO = "base/python"
State = MirrorState.State


@dataclass
class Estate:
    """The three registries, their Registry rows, and one catalog entry mirrored into both regions."""

    upstream: RunningRegistry
    eu: RunningRegistry
    us: RunningRegistry
    eu_registry: Registry
    us_registry: Registry
    entry: BaseImage

    def push(self, tag: str, version: str) -> im.Index:
        index = im.multi_platform_image("python", version=version)
        self.upstream.pusher().push_index(UPSTREAM_REPO, index, tags=[tag])
        return index

    def held(self, region: RunningRegistry, tag: str) -> str | None:
        """The digest `tag` names in a region's mirror, or None."""
        response = region.pusher().request(
            "HEAD",
            f"/v2/{MIRROR_REPO}/manifests/{tag}",
            headers={"Accept": im.MANIFEST_ACCEPT},
            expect=(200, 404),
        )
        return response.headers["Docker-Content-Digest"] if response.status_code == 200 else None

    def states(self) -> dict[tuple[str, str], MirrorState]:
        rows = MirrorState.objects.filter(mirror__base_image=self.entry).select_related("mirror")
        return {(row.mirror.region, row.tag): row for row in rows}


def make_estate(start_registry: StartRegistry, *, tags: list[str] | None = None) -> Estate:
    upstream, eu, us = (
        start_registry(auth="basic"),
        start_registry(auth="basic"),
        start_registry(auth="token"),
    )
    eu_registry = factories.registry(
        name="cache-eu",
        endpoint=eu.url,
        region="eu-west",
        config={"username": BASIC_USER},
        secrets={"password": BASIC_PASSWORD},
        sync_enabled=False,
    )
    us_registry = factories.registry(
        name="cache-us",
        endpoint=us.url,
        region="us-east",
        config={"username": PUSHER},
        secrets={"password": PUSHER_PASSWORD},
        sync_enabled=False,
    )
    entry = BaseImage.objects.create(
        name=f"{upstream.host}/{UPSTREAM_REPO}", tags=tags or ["3.12-*", "3.13-*"]
    )
    for registry in (eu_registry, us_registry):
        BaseImageMirror.objects.create(
            base_image=entry, registry=registry, repository=MIRROR_REPO, region=registry.region
        )
    jobs.save_mirror_source(entry, actor=None, username=BASIC_USER, password=BASIC_PASSWORD)
    return Estate(upstream, eu, us, eu_registry, us_registry, entry)


@pytest.fixture
def estate(start_registry: StartRegistry) -> Estate:
    made = make_estate(start_registry)
    made.push("3.12-slim", "3.12.1")
    made.push("3.13-slim", "3.13.0")
    made.push("2.7-slim", "2.7.18")  # not allowed by the patterns: never mirrored
    return made


def blob_reads(registry: RunningRegistry, repository: str) -> list[str]:
    """The blob digests GET-read from `repository`, one per request, from the registry's access log."""
    uri = re.compile(rf'http\.request\.uri="/v2/{re.escape(repository)}/blobs/(sha256:[0-9a-f]+)"')
    reads = []
    for line in registry.log_text().splitlines():
        if "response completed" in line and "http.request.method=GET" in line and (found := uri.search(line)):
            reads.append(found.group(1))
    return reads


def spy_copies(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None, int]]:
    """Record each copy_image call the job makes: (reference, tag, how many destinations)."""
    calls: list[tuple[str, str | None, int]] = []
    real: Callable[..., Any] = copy_image

    def recording(source: Endpoint, reference: str, destinations: list[Endpoint], **kwargs: Any) -> Any:
        calls.append((reference, kwargs.get("tag"), len(destinations)))
        return real(source, reference, destinations, **kwargs)

    monkeypatch.setattr(jobs, "copy_image", recording)
    return calls


# --- Copying --------------------------------------------------------------------------------------------


def test_a_run_copies_each_allowed_tag_with_every_platform_into_every_region_reading_upstream_once(
    estate: Estate, monkeypatch: pytest.MonkeyPatch
) -> None:
    indexes = {"3.12-slim": im.multi_platform_image("python", version="3.12.1")}
    indexes["3.13-slim"] = im.multi_platform_image("python", version="3.13.0")
    copies = spy_copies(monkeypatch)

    outcome = jobs.mirror_entry(estate.entry)

    assert outcome.failures == []
    for region in (estate.eu, estate.us):
        pusher = region.pusher()
        assert pusher.tags(MIRROR_REPO) == ["3.12-slim", "3.13-slim"]  # 2.7-slim is not allowed
        for tag, index in indexes.items():
            served = pusher.get_manifest(MIRROR_REPO, tag)
            assert (served.digest, served.data) == (index.digest, index.manifest_bytes)
            for image in index.images:  # every platform, by digest, with every blob
                assert pusher.get_manifest(MIRROR_REPO, image.digest).data == image.manifest_bytes
                assert all(pusher.blob_exists(MIRROR_REPO, blob.digest) for blob in image.blobs)
    # One copy per tag, to both regions at once, by the digest the states record.
    assert sorted(copies) == [(indexes[t].digest, t, 2) for t in sorted(indexes)]
    reads = blob_reads(estate.upstream, UPSTREAM_REPO)
    wanted = {blob.digest for index in indexes.values() for image in index.images for blob in image.blobs}
    assert sorted(reads) == sorted(wanted)  # each upstream blob read exactly once for two regions
    states = estate.states()
    assert {key: row.state for key, row in states.items()} == {
        ("eu-west", "3.12-slim"): State.PRESENT,
        ("eu-west", "3.13-slim"): State.PRESENT,
        ("us-east", "3.12-slim"): State.PRESENT,
        ("us-east", "3.13-slim"): State.PRESENT,
    }
    for (_, tag), row in states.items():
        assert row.upstream_digest == row.mirrored_digest == indexes[tag].digest
        assert row.copied_at is not None
        assert row.reason == ""
    run = outcome.run
    assert run is not None
    assert run.status == MirrorRun.Status.SUCCEEDED
    assert (run.tags_seen, run.copies, run.failures) == (2, 4, 0)
    assert run.blobs_copied == 2 * len(wanted)
    assert run.bytes_sent > 0


def test_a_second_run_finds_everything_present_and_copies_nothing(
    estate: Estate, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs.mirror_entry(estate.entry)
    first_checked = {key: row.checked_at for key, row in estate.states().items()}
    copies = spy_copies(monkeypatch)

    outcome = jobs.mirror_entry(estate.entry)

    assert copies == []
    assert outcome.run is not None
    assert (outcome.run.copies, outcome.run.bytes_sent) == (0, 0)
    states = estate.states()
    assert {row.state for row in states.values()} == {State.PRESENT}
    assert all(states[key].checked_at > first_checked[key] for key in states)


def test_an_upstream_tag_that_moved_is_stale_until_the_next_run_copies_it(estate: Estate) -> None:
    jobs.mirror_entry(estate.entry)
    old = estate.held(estate.eu, "3.12-slim")
    moved = estate.push("3.12-slim", "3.12.2")

    checked = jobs.mirror_entry(estate.entry, dry_run=True)

    assert checked.run is not None
    assert checked.run.dry_run
    assert checked.run.copies == 0
    states = estate.states()
    for region in ("eu-west", "us-east"):
        stale = states[(region, "3.12-slim")]
        assert (stale.state, stale.upstream_digest, stale.mirrored_digest) == (State.STALE, moved.digest, old)
        assert "upstream moved 3.12-slim" in stale.reason
        assert states[(region, "3.13-slim")].state == State.PRESENT
    assert estate.held(estate.eu, "3.12-slim") == old  # a dry run copies nothing

    jobs.mirror_entry(estate.entry)

    states = estate.states()
    assert {(k, row.state, row.mirrored_digest) for k, row in states.items() if k[1] == "3.12-slim"} == {
        (("eu-west", "3.12-slim"), State.PRESENT, moved.digest),
        (("us-east", "3.12-slim"), State.PRESENT, moved.digest),
    }
    assert estate.held(estate.eu, "3.12-slim") == estate.held(estate.us, "3.12-slim") == moved.digest


def test_a_region_that_is_down_fails_with_the_reason_and_the_other_region_is_filled(estate: Estate) -> None:
    estate.us.stop()

    outcome = jobs.mirror_entry(estate.entry)

    states = estate.states()
    for tag in ("3.12-slim", "3.13-slim"):
        assert states[("eu-west", tag)].state == State.PRESENT
        failed = states[("us-east", tag)]
        assert failed.state == State.FAILED
        assert "connection refused" in failed.reason
    assert estate.eu.pusher().tags(MIRROR_REPO) == ["3.12-slim", "3.13-slim"]
    assert outcome.run is not None
    assert outcome.run.status == MirrorRun.Status.FAILED
    assert outcome.run.failures == 2
    assert outcome.run.copies == 2
    assert all("in us-east" in failure and "connection refused" in failure for failure in outcome.failures)


def test_a_region_that_refuses_our_credentials_fails_alone(estate: Estate) -> None:
    estate.us_registry.set_secrets({"password": "not-the-password"})
    estate.us_registry.save()

    jobs.mirror_entry(estate.entry)

    states = estate.states()
    assert states[("us-east", "3.12-slim")].state == State.FAILED
    assert "refused" in states[("us-east", "3.12-slim")].reason
    assert "not-the-password" not in states[("us-east", "3.12-slim")].reason
    assert states[("eu-west", "3.12-slim")].state == State.PRESENT


@responses.activate
def test_the_tag_list_is_read_page_by_page_and_signature_tags_are_not_images(db: None) -> None:
    # distribution 2.8 ignores `n` (one page, always), so pages are shaped as GHCR and Docker Hub send them.
    base = "https://ghcr.io/v2/acme/base/tags/list"
    pages = [
        (
            f"{base}?n=1000",
            ["3.12-slim", "sha256-" + "a" * 64 + ".sig"],
            "</v2/acme/base/tags/list?last=x&n=1000>",
        ),
        (f"{base}?last=x&n=1000", ["3.13-slim", "2.7", "sha256-" + "b" * 64], ""),
    ]
    for url, tags, link in pages:
        headers = {"Link": f'{link}; rel="next"'} if link else {}
        match = [matchers.query_string_matcher(url.partition("?")[2])]
        responses.get(
            url.partition("?")[0], json={"name": "acme/base", "tags": tags}, headers=headers, match=match
        )
    entry = BaseImage.objects.create(name="ghcr.io/acme/base", tags=["3.*", "sha256-*"])
    client = RepositoryClient(jobs.upstream_endpoint(entry), actions="pull")

    listed = jobs.upstream_tags(client)

    assert len(listed) == 5
    assert jobs.allowed_tags(entry, listed) == ["3.12-slim", "3.13-slim"]


def test_a_region_filter_leaves_the_other_regions_alone(estate: Estate) -> None:
    outcome = jobs.mirror_entry(estate.entry, region="eu-west")

    assert outcome.run is not None
    assert outcome.run.region == "eu-west"
    assert {region for region, _ in estate.states()} == {"eu-west"}
    assert estate.held(estate.us, "3.12-slim") is None


def test_pinned_digests_keep_only_the_tags_that_name_one(estate: Estate) -> None:
    pinned = im.multi_platform_image("python", version="3.13.0").digest
    estate.entry.digests = [pinned]
    estate.entry.save()

    jobs.mirror_entry(estate.entry)

    assert {tag for _, tag in estate.states()} == {"3.13-slim"}
    assert estate.eu.pusher().tags(MIRROR_REPO) == ["3.13-slim"]


def test_a_tag_gone_upstream_loses_its_state_but_not_its_copy(estate: Estate) -> None:
    jobs.mirror_entry(estate.entry)
    gone = im.multi_platform_image("python", version="3.13.0").digest
    estate.upstream.pusher().delete_manifest(UPSTREAM_REPO, gone)

    jobs.mirror_entry(estate.entry)

    assert {tag for _, tag in estate.states()} == {"3.12-slim"}
    assert estate.held(estate.eu, "3.13-slim") == gone  # deployments may still pull it: nothing is deleted


def test_an_unreadable_upstream_fails_the_run_and_keeps_every_state(estate: Estate) -> None:
    jobs.mirror_entry(estate.entry)
    before = {key: (row.state, row.checked_at) for key, row in estate.states().items()}
    estate.upstream.stop()

    outcome = jobs.mirror_entry(estate.entry)

    assert outcome.run is not None
    assert outcome.run.status == MirrorRun.Status.FAILED
    assert outcome.run.error.startswith(f"upstream {estate.entry.name}: ")
    assert "connection refused" in outcome.run.error
    assert {key: (row.state, row.checked_at) for key, row in estate.states().items()} == before


def test_a_run_stopped_by_a_bug_reads_as_failed_and_frees_its_entry(
    estate: Estate, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(jobs, "copy_image", broken)

    with pytest.raises(RuntimeError):
        jobs.mirror_entry(estate.entry)

    run = MirrorRun.objects.get()
    assert (run.status, run.error) == (
        MirrorRun.Status.FAILED,
        "stopped by an unexpected error; the worker's log has it",
    )
    assert run.finished_at is not None
    jobs.claim(estate.entry, region="", trigger=MirrorRun.Trigger.SCHEDULE, dry_run=False)


def test_entries_without_patterns_or_banned_are_not_mirrored(estate: Estate) -> None:
    estate.entry.tags = []
    estate.entry.save()
    assert "no tag patterns" in jobs.mirror_entry(estate.entry).note
    estate.entry.tags, estate.entry.status = ["3.*"], BaseImage.Status.BANNED
    estate.entry.save()
    assert jobs.mirror_entry(estate.entry).note.startswith("banned")
    assert not MirrorRun.objects.exists()


# --- One run at a time, and runs on a schedule --------------------------------------------------------------


def test_an_entry_held_by_another_run_is_reported_not_waited_for(db: None) -> None:
    entry = BaseImage.objects.create(name="docker.io/library/busybox", tags=["1.*"])
    BaseImageMirror.objects.create(base_image=entry, registry=factories.registry(), repository="base/busybox")
    MirrorRun.objects.create(base_image=entry)

    with pytest.raises(jobs.AlreadyMirroring):
        jobs.mirror_entry(entry)
    (outcome,) = jobs.mirror_catalog([entry])

    assert outcome.run is None
    assert "being mirrored by another run" in outcome.note
    assert MirrorRun.objects.count() == 1


def test_runs_whose_worker_died_are_freed(db: None) -> None:
    entry = BaseImage.objects.create(name="docker.io/library/busybox", tags=["1.*"])
    old = MirrorRun.objects.create(base_image=entry, started_at=timezone.now() - timedelta(hours=7))

    assert jobs.free_stuck_runs(older_than=timedelta(hours=6)) == 1

    old.refresh_from_db()
    assert old.status == MirrorRun.Status.FAILED
    assert "worker stopped" in old.error
    jobs.claim(entry, region="", trigger=MirrorRun.Trigger.SCHEDULE, dry_run=False)  # claimable again


def test_due_entries_are_those_with_mirrors_not_run_within_the_interval(db: None) -> None:
    def entry(name: str, **fields: Any) -> BaseImage:
        made = BaseImage.objects.create(name=f"docker.io/library/{name}", tags=["*"], **fields)
        BaseImageMirror.objects.create(
            base_image=made, registry=factories.registry(), repository=f"base/{name}"
        )
        return made

    never, recent, old = entry("never"), entry("recent"), entry("old")
    running = entry("running")
    entry("banned", status=BaseImage.Status.BANNED)
    BaseImage.objects.create(name="docker.io/library/unmirrored", tags=["*"])
    MirrorRun.objects.create(base_image=recent, status=MirrorRun.Status.SUCCEEDED)
    MirrorRun.objects.create(
        base_image=old, status=MirrorRun.Status.FAILED, started_at=timezone.now() - timedelta(hours=2)
    )
    MirrorRun.objects.create(base_image=running, started_at=timezone.now() - timedelta(hours=2))

    due = jobs.due_entries(interval=timedelta(hours=1))

    assert due == [never, old]  # not the banned one, nor the one mirrored recently or running


def test_schedule_mirrors_queues_due_entries(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = BaseImage.objects.create(name="docker.io/library/busybox", tags=["1.*"])
    BaseImageMirror.objects.create(base_image=entry, registry=factories.registry(), repository="base/busybox")
    queued: list[tuple[Any, ...]] = []
    monkeypatch.setattr(tasks.mirror_entry, "apply_async", lambda args, **options: queued.append(args))

    assert tasks.schedule_mirrors.apply().get() == 1

    assert queued == [(entry.pk,)]


def test_a_catalog_change_queues_a_run_of_that_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    queued: list[tuple[Any, ...]] = []
    monkeypatch.setattr(tasks.mirror_entry, "delay", lambda *args: queued.append(args))

    tasks.mirror_after_catalog_change(42)

    assert queued == [(42, MirrorRun.Trigger.CATALOG)]


def test_the_task_mirrors_the_entry_and_asks_for_a_sync_of_its_mirrors(
    estate: Estate, monkeypatch: pytest.MonkeyPatch
) -> None:
    Registry.objects.filter(pk__in=[estate.eu_registry.pk, estate.us_registry.pk]).update(sync_enabled=True)
    sent: list[tuple[str, list[Any]]] = []
    monkeypatch.setattr(
        current_app, "send_task", lambda name, args, *_, **options: sent.append((name, list(args)))
    )

    tasks.mirror_entry.apply(args=(estate.entry.pk, MirrorRun.Trigger.CATALOG))

    run = MirrorRun.objects.get(base_image=estate.entry)
    assert (run.trigger, run.status) == (MirrorRun.Trigger.CATALOG, MirrorRun.Status.SUCCEEDED)
    assert estate.held(estate.us, "3.13-slim") is not None
    assert sorted(sent) == sorted(
        ("registries.tasks.sync_registry", [pk]) for pk in (estate.eu_registry.pk, estate.us_registry.pk)
    )
    tasks.mirror_entry.apply(args=(estate.entry.pk + 1000,))  # a deleted entry: nothing, quietly


# --- Where and as whom ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "endpoint", "config", "secrets", "login"),
    [
        (
            "distribution",
            "https://r.example.test",
            {"username": "u"},
            {"password": "p"},
            ("https://r.example.test", "u", "p"),
        ),
        ("distribution", "https://r.example.test", {}, {}, ("https://r.example.test", "", "")),
        (
            "harbor",
            "https://h.example.test",
            {"username": "robot$m"},
            {"password": "p"},
            ("https://h.example.test", "robot$m", "p"),
        ),
        (
            "quay",
            "https://quay.example.test",
            {"namespaces": "acme", "registry_username": "acme+mirror"},
            {"token": "t", "registry_password": "p"},
            ("https://quay.example.test", "acme+mirror", "p"),
        ),
        (
            "dockerhub",
            "https://hub.docker.com",
            {"namespace": "acme", "username": "acmebot"},
            {"token": "pat"},
            ("https://registry-1.docker.io", "acmebot", "pat"),
        ),
        (
            "acr",
            "https://acme.azurecr.io",
            {"tenant_id": "t", "client_id": "app", "subscription_id": "s", "resource_group": "g"},
            {"client_secret": "sp-secret"},
            ("https://acme.azurecr.io", "app", "sp-secret"),
        ),
        (
            "acr",
            "https://acme.azurecr.io",
            {"username": "mirror-token"},
            {"password": "p"},
            ("https://acme.azurecr.io", "mirror-token", "p"),
        ),
    ],
)
def test_each_supported_kind_signs_in_to_its_registry_api_as_its_connector_does(
    kind: str, endpoint: str, config: dict[str, str], secrets: dict[str, str], login: tuple[str, str, str]
) -> None:
    registry = factories.registry(kind=kind, endpoint=endpoint, config=config, secrets=secrets)

    made = jobs.registry_endpoint(registry, "base/python", mount_from=["base/debian"])

    assert (made.url, made.username, made.password) == login
    assert (made.repository, made.mount_from) == ("base/python", ("base/debian",))
    assert "password" not in repr(made)  # the secret stays out of logs and tracebacks


@pytest.fixture
def lab_registry(tmp_path: Path) -> Iterator[str]:
    """An HTTPS /v2/ on loopback with a self-signed certificate, knowing no manifest."""
    cert, key = loopback_tls_files(tmp_path, "lab-registry")

    class NoManifests(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), NoManifests)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://{LOOPBACK}:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")  # what the admin chose
@pytest.mark.parametrize("verify_tls", [True, False])
def test_a_distribution_registry_without_tls_verification_is_mirrored_into_as_its_connector_reads_it(
    lab_registry: str, verify_tls: bool
) -> None:
    registry = factories.registry(
        kind="distribution", endpoint=lab_registry, config={"verify_tls": verify_tls}
    )

    made = jobs.registry_endpoint(registry, "base/python")
    client = RepositoryClient(made, actions="pull,push")

    assert made.verify_tls is verify_tls
    if verify_tls:
        with pytest.raises(ConnectorError, match="certificate"):
            client.manifest_digest("3.12")
    else:
        assert client.manifest_digest("3.12") is None  # reached over TLS: the registry has no such tag


@pytest.mark.parametrize("kind", ["ecr", "gar"])
def test_kinds_without_a_registry_password_say_so(kind: str) -> None:
    registry = factories.registry(kind=kind, name=f"{kind}-eu")

    with pytest.raises(
        jobs.UnsupportedRegistry, match=f"{kind}-eu: Customs cannot mirror into .* registries yet"
    ):
        jobs.registry_endpoint(registry, "base/python")


def test_a_mirror_in_a_registry_customs_cannot_write_fails_with_the_reason(estate: Estate) -> None:
    ecr = factories.registry(kind="ecr", name="cache-ap", region="ap-south")
    BaseImageMirror.objects.create(
        base_image=estate.entry, registry=ecr, repository=MIRROR_REPO, region="ap-south"
    )

    jobs.mirror_entry(estate.entry)

    states = estate.states()
    assert states[("ap-south", "3.12-slim")].state == State.FAILED
    assert "cannot mirror into AWS ECR registries yet" in states[("ap-south", "3.12-slim")].reason
    assert states[("eu-west", "3.12-slim")].state == State.PRESENT


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("docker.io/library/python", "https://registry-1.docker.io"),
        ("ghcr.io/acme/base", "https://ghcr.io"),
        ("127.0.0.1:5001/library/python", "http://127.0.0.1:5001"),
        ("localhost:5000/team/base", "http://localhost:5000"),
    ],
)
def test_an_entry_is_read_from_its_own_registry_anonymously_by_default(db: None, name: str, url: str) -> None:
    entry = BaseImage.objects.create(name=name)

    made = jobs.upstream_endpoint(entry)

    assert (made.url, made.repository, made.username, made.password) == (url, name.split("/", 1)[1], "", "")


def test_an_entry_borrows_the_credentials_of_the_connected_registry_at_its_host(db: None) -> None:
    factories.registry(
        kind="harbor",
        endpoint="https://harbor.example.test",
        config={"username": "robot$r"},
        secrets={"password": "hp"},
    )
    factories.registry(
        kind="dockerhub",
        endpoint="https://hub.docker.com",
        config={"namespace": "acme", "username": "acmebot"},
        secrets={"token": "pat"},
    )

    harbor = jobs.upstream_endpoint(BaseImage.objects.create(name="harbor.example.test/base/python"))
    hub = jobs.upstream_endpoint(BaseImage.objects.create(name="docker.io/library/python"))

    assert (harbor.url, harbor.repository, harbor.username, harbor.password) == (
        "https://harbor.example.test",
        "base/python",
        "robot$r",
        "hp",
    )
    assert (hub.url, hub.repository, hub.username, hub.password) == (
        "https://registry-1.docker.io",
        "library/python",
        "acmebot",
        "pat",
    )


def test_an_entrys_own_upstream_credentials_win_and_are_encrypted_at_rest(db: None) -> None:
    factories.registry(
        kind="distribution",
        endpoint="https://mirror.gcr.example",
        config={"username": "x"},
        secrets={"password": "y"},
    )
    entry = BaseImage.objects.create(name="mirror.gcr.example/library/python")

    jobs.save_mirror_source(
        entry,
        actor=None,
        endpoint="https://cache.example.test/",
        username="hubuser",
        password="dckr_pat_secret",
    )

    made = jobs.upstream_endpoint(entry)
    assert (made.url, made.username, made.password) == (
        "https://cache.example.test",
        "hubuser",
        "dckr_pat_secret",
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM registries_mirrorsource WHERE base_image_id = %s", [entry.pk])
        (stored,) = cursor.fetchone()
    assert "dckr_pat_secret" not in stored
    assert stored
    jobs.save_mirror_source(entry, actor=None, endpoint="https://cache.example.test", username="hubuser")
    assert MirrorSource.objects.get(base_image=entry).password == "dckr_pat_secret"  # None keeps it
    assert "dckr_pat_secret" not in str(list(AuditEvent.objects.values_list("detail", flat=True)))


def test_a_registry_with_a_broken_config_lends_no_credentials(db: None) -> None:
    factories.registry(kind="harbor", endpoint="https://harbor.example.test", config={})  # no username
    with pytest.raises(ConfigError):
        jobs.registry_endpoint(Registry.objects.get(), "x")

    made = jobs.upstream_endpoint(BaseImage.objects.create(name="harbor.example.test/base/python"))

    assert (made.username, made.password) == ("", "")


# --- The command ---------------------------------------------------------------------------------------


def run_command(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    """manage.py mirror_base_images as a shell runs it: (exit status, stdout, stderr)."""
    # run_from_argv closes every connection at the end, the test's own included.
    monkeypatch.setattr(connections, "close_all", lambda: None)
    out, err = io.StringIO(), io.StringIO()
    status = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            ManagementUtility(["manage.py", "mirror_base_images", *args]).execute()
        except SystemExit as exc:
            status = int(exc.code or 0)
    return status, out.getvalue(), err.getvalue()


def test_the_command_shows_progress_and_exits_zero_when_every_copy_succeeds(
    estate: Estate, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out, err = run_command(monkeypatch, "--entry", estate.entry.name)

    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert (
        lines[0]
        == f"{estate.entry.name}: 2 of 3 upstream tags allowed (3.12-*, 3.13-*); mirrors: eu-west, us-east"
    )
    assert "  3.12-slim sha256:" in out
    assert ": eu-west missing, us-east missing" in out
    assert re.search(r"^  3\.13-slim → us-east: present \(\d+ blobs copied", out, re.MULTILINE)
    assert lines[-1].startswith("1 of 1 entries mirrored: 4 copies, 0 failures, ")
    assert MirrorRun.objects.get().trigger == MirrorRun.Trigger.COMMAND


def test_the_command_exits_non_zero_with_one_readable_line_when_a_region_fails(
    estate: Estate, monkeypatch: pytest.MonkeyPatch
) -> None:
    estate.us.stop()

    status, out, err = run_command(monkeypatch, "--entry", estate.entry.name)

    assert status == 1
    assert err.count("\n") == 1  # one line
    assert err.startswith("CommandError: 2 failed: ")
    assert f"{estate.entry.name}:3.12-slim in us-east: " in err
    assert "connection refused" in err
    assert "  3.12-slim → eu-west: present" in out


def test_the_command_mirrors_only_the_region_asked_for(estate: Estate) -> None:
    call_command("mirror_base_images", "--region", "us-east", stdout=io.StringIO())

    assert {region for region, _ in estate.states()} == {"us-east"}


def test_the_command_refuses_unknown_entries_and_regions(estate: Estate) -> None:
    with pytest.raises(CommandError, match="no catalog entry named 'python' has mirrors"):
        call_command("mirror_base_images", "--entry", "python")
    with pytest.raises(CommandError, match="no mirror is in region 'mars'; regions: eu-west, us-east"):
        call_command("mirror_base_images", "--region", "mars")
