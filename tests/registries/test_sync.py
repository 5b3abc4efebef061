"""The distribution connector and the sync engine against a real docker-registry, checked with skopeo."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from registries import services, sync
from registries.connectors.errors import AuthError
from registries.demo import images as im
from registries.models import (
    Artifact,
    ArtifactPresence,
    Registry,
    Replica,
    Repository,
    StagedArtifact,
    StagedTag,
    SyncRun,
    Tag,
)
from registries.sync import connector_for
from tests.registries.conftest import StartRegistry
from tests.registries.harness import RunningRegistry, Skopeo

pytestmark = pytest.mark.django_db


def connect(running: RunningRegistry, *, name: str = "local", **public: Any) -> Registry:
    registry = Registry(name=name, kind="distribution", endpoint=running.url)
    secrets: dict[str, str] = {}
    if running.credentials:
        public["username"], secrets["password"] = running.credentials[0], running.credentials[1]
    return services.save_registry(registry, actor=None, public=public, secrets=secrets)


def seed(running: RunningRegistry) -> dict[str, Any]:
    """A small estate: a base image, an image built on it (two tags), a Docker v2 image and two indexes."""
    pusher = running.pusher()
    base = im.base_image("debian", version="12")
    child = im.child_image(
        base,
        {"app/main.py": b"print('hi')\n"},
        base_name="docker.io/library/debian:12",
        labels={"team": "payments"},
    )
    legacy = im.base_image("busybox", format="docker")
    oci_index = im.multi_platform_image("alpine", version="3.20")
    docker_list = im.multi_platform_image("ubuntu", version="24.04", format="docker")
    pusher.push_image("library/debian", base, tags=["12"])
    pusher.push_image("payments/api", child, tags=["1.0", "latest"])
    pusher.push_image("library/busybox", legacy, tags=["1"])
    pusher.push_index("library/alpine", oci_index, tags=["3.20"])
    pusher.push_index("library/ubuntu", docker_list, tags=["24.04"])
    return {
        "base": base,
        "child": child,
        "legacy": legacy,
        "oci_index": oci_index,
        "docker_list": docker_list,
    }


def inventory(registry: Registry) -> dict[str, dict[str, str]]:
    """repository → {tag: digest}: the inventory as a plain value, to compare before and after."""
    result: dict[str, dict[str, str]] = {
        name: {} for name in Repository.objects.filter(registry=registry).values_list("name", flat=True)
    }
    for tag in Tag.objects.filter(repository__registry=registry).select_related("repository", "artifact"):
        result[tag.repository.name][tag.name] = tag.artifact.digest
    return result


# --- the connector --------------------------------------------------------------------------------


def test_the_connector_reads_what_was_pushed(registry: RunningRegistry, skopeo: Skopeo) -> None:
    pushed = seed(registry)
    connector = connector_for(connect(registry, page_size=2))  # pages of two: the Link header is followed
    names = [repository.name for repository in connector.repositories()]
    assert names == sorted(
        ["library/debian", "payments/api", "library/busybox", "library/alpine", "library/ubuntu"]
    )
    tags = {tag.name: tag.digest for tag in connector.tags("payments/api")}
    assert tags == {"1.0": pushed["child"].digest, "latest": pushed["child"].digest}
    raw = skopeo.inspect_raw(f"{registry.host}/payments/api:1.0")
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == pushed["child"].digest

    child = connector.artifact("payments/api", pushed["child"].digest)
    assert child.media_type == "application/vnd.oci.image.manifest.v1+json"
    assert str(child.platform) == "linux/amd64"
    assert child.layer_digests[:1] == pushed["base"].layer_digests  # built on the base
    assert child.annotations["org.opencontainers.image.base.name"] == "docker.io/library/debian:12"
    assert child.labels["team"] == "payments"
    assert len(child.diff_ids) == 2
    assert child.size == sum(blob.size for blob in pushed["child"].blobs)


@pytest.mark.parametrize("key", ["oci_index", "docker_list"])
def test_multi_platform_indexes_are_read_with_each_platform(registry: RunningRegistry, key: str) -> None:
    pushed = seed(registry)
    connector = connector_for(connect(registry))
    repository = "library/alpine" if key == "oci_index" else "library/ubuntu"
    index = connector.artifact(repository, pushed[key].digest)
    assert index.is_index
    assert sorted(str(child.platform) for child in index.children) == ["linux/amd64", "linux/arm64/v8"]
    assert {child.digest for child in index.children} == {image.digest for image in pushed[key].images}


def test_basic_auth_is_used_when_the_registry_asks(start_registry: StartRegistry) -> None:
    running = start_registry(auth="basic")
    seed(running)
    connector_for(connect(running)).check()
    assert "library/debian" in [r.name for r in connector_for(connect(running, name="b2")).repositories()]
    anonymous = Registry(name="anon", kind="distribution", endpoint=running.url)
    with pytest.raises(AuthError, match="username and password"):
        connector_for(anonymous).check()


def test_a_wrong_password_is_an_auth_error_with_a_clear_reason(basic_registry: RunningRegistry) -> None:
    registry = Registry(name="wrong", kind="distribution", endpoint=basic_registry.url)
    services.save_registry(registry, actor=None, public={"username": "customs"}, secrets={"password": "nope"})
    result = services.check_connection(registry)
    assert not result.ok
    assert "401" in result.reason


def test_bearer_token_authentication_follows_the_challenge(token_registry: RunningRegistry) -> None:
    pushed = seed(token_registry)
    registry = connect(token_registry)
    assert services.check_connection(registry).ok
    run = sync.sync_inventory(registry)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert inventory(registry)["payments/api"] == {
        "1.0": pushed["child"].digest,
        "latest": pushed["child"].digest,
    }


def test_a_refused_connection_says_so() -> None:
    registry = Registry(name="down", kind="distribution", endpoint="http://127.0.0.1:9")
    result = services.check_connection(registry)
    assert not result.ok
    assert "connection refused" in result.reason


# --- the sync engine ------------------------------------------------------------------------------


def test_a_sync_builds_the_inventory_from_the_registry(registry: RunningRegistry) -> None:
    pushed = seed(registry)
    connected = connect(registry)
    run = sync.sync_inventory(connected)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert inventory(connected) == {
        "library/debian": {"12": pushed["base"].digest},
        "payments/api": {"1.0": pushed["child"].digest, "latest": pushed["child"].digest},
        "library/busybox": {"1": pushed["legacy"].digest},
        "library/alpine": {"3.20": pushed["oci_index"].digest},
        "library/ubuntu": {"24.04": pushed["docker_list"].digest},
    }
    alpine = Artifact.objects.get(digest=pushed["oci_index"].digest)
    assert sorted(alpine.platforms.values_list("platform", flat=True)) == ["linux/amd64", "linux/arm64/v8"]
    api = Repository.objects.get(name="payments/api")
    assert (api.namespace, api.tag_count, api.artifact_count) == ("payments", 2, 1)
    child = Artifact.objects.get(digest=pushed["child"].digest)
    assert child.base_name == "docker.io/library/debian:12"
    assert child.base_digest == pushed["base"].digest
    assert (run.repositories_seen, run.tags_seen, run.repositories_added) == (5, 6, 5)
    assert not StagedTag.objects.exists()
    assert not StagedArtifact.objects.exists()


def test_a_re_sync_with_nothing_changed_fetches_no_manifest(registry: RunningRegistry) -> None:
    seed(registry)
    connected = connect(registry)
    sync.sync_inventory(connected)
    before = inventory(connected)
    again = sync.sync_inventory(connected)
    assert again.status == SyncRun.Status.SUCCEEDED
    assert (again.manifests_fetched, again.artifacts_added, again.artifacts_removed) == (0, 0, 0)
    assert inventory(connected) == before


def test_moved_tags_and_deleted_manifests_are_followed(registry: RunningRegistry) -> None:
    pushed = seed(registry)
    connected = connect(registry)
    sync.sync_inventory(connected)
    pusher = registry.pusher()
    newer = im.child_image(pushed["base"], {"app/main.py": b"print('v2')\n"})
    pusher.push_image("payments/api", newer, tags=["latest"])
    pusher.delete_manifest("library/busybox", pushed["legacy"].digest)
    run = sync.sync_inventory(connected)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    after = inventory(connected)
    assert after["payments/api"] == {"1.0": pushed["child"].digest, "latest": newer.digest}
    assert after["library/busybox"] == {}
    assert not Artifact.objects.filter(digest=pushed["legacy"].digest).exists()
    assert (run.artifacts_added, run.artifacts_removed) == (1, 1)


def test_one_sync_per_registry_at_a_time(registry: RunningRegistry) -> None:
    connected = connect(registry)
    assert sync.claim(connected, trigger="manual") is not None
    with pytest.raises(sync.AlreadySyncing):
        sync.sync_inventory(connected)


def test_secrets_are_encrypted_at_rest_and_never_in_the_public_config(
    basic_registry: RunningRegistry,
) -> None:
    from django.db import connection

    registry = connect(basic_registry)
    assert "password" not in registry.config
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret, config::text FROM registries_registry WHERE id = %s", [registry.pk])
        stored_secret, stored_config = cursor.fetchone()
    assert basic_registry.credentials
    assert basic_registry.credentials[1] not in stored_secret
    assert basic_registry.credentials[1] not in stored_config
    assert json.loads(Registry.objects.get(pk=registry.pk).secret) == {
        "password": basic_registry.credentials[1]
    }


def test_a_refused_sync_ends_failed_with_a_readable_error() -> None:
    registry = Registry(name="gone", kind="distribution", endpoint="http://127.0.0.1:9")
    services.save_registry(registry, actor=None, public={})
    run = sync.sync_inventory(registry)
    assert run.status == SyncRun.Status.FAILED
    assert "connection refused" in run.error
    assert Registry.objects.get(pk=registry.pk).syncing_since is None  # released for the next run


def test_a_replica_records_which_artifacts_it_holds(start_registry: StartRegistry, skopeo: Skopeo) -> None:
    primary, regional = start_registry(), start_registry()
    pushed = seed(primary)
    # The region has caught up on everything but the payments image.
    for repository, tag in [("library/debian", "12"), ("library/alpine", "3.20")]:
        skopeo.copy(f"{primary.host}/{repository}:{tag}", f"{regional.host}/{repository}:{tag}")
    registry = connect(primary)
    replica = Replica.objects.create(registry=registry, region="us-east", endpoint=regional.url)
    sync.sync_inventory(registry)
    run = sync.sync_replica(replica)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    held = set(ArtifactPresence.objects.filter(replica=replica).values_list("artifact__digest", flat=True))
    alpine_platforms = {image.digest for image in pushed["oci_index"].images}
    assert held == {pushed["base"].digest, pushed["oci_index"].digest} | alpine_platforms
    assert pushed["child"].digest not in held  # lagging behind in us-east

    skopeo.copy(f"{primary.host}/payments/api:1.0", f"{regional.host}/payments/api:1.0")
    sync.sync_replica(replica)
    assert ArtifactPresence.objects.filter(replica=replica, artifact__digest=pushed["child"].digest).exists()


def test_an_unreachable_replica_fails_its_own_run_and_keeps_what_was_known(registry: RunningRegistry) -> None:
    seed(registry)
    connected = connect(registry)
    sync.sync_inventory(connected)
    replica = Replica.objects.create(registry=connected, region="ap-south", endpoint=registry.url)
    sync.sync_replica(replica)
    known = ArtifactPresence.objects.filter(replica=replica).count()
    Replica.objects.filter(pk=replica.pk).update(endpoint="http://127.0.0.1:9")
    replica.refresh_from_db()
    run = sync.sync_replica(replica)
    assert run.status == SyncRun.Status.FAILED
    assert "connection refused" in run.error
    assert ArtifactPresence.objects.filter(replica=replica).count() == known > 0
