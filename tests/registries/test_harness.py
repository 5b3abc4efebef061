"""The harness and the image builder against a real docker-registry 2.8.2, cross-checked with skopeo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from registries.demo.images import (
    ANNOTATION_BASE_DIGEST,
    ANNOTATION_BASE_NAME,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    LINUX_ARM64,
    MANIFEST_ACCEPT,
    OCI_INDEX,
    OCI_MANIFEST,
    BearerChallenge,
    Image,
    Index,
    Pusher,
    RegistryError,
    base_image,
    build_image,
    built_on,
    child_image,
    layer,
    multi_platform_image,
    parse_bearer_challenge,
    sha256_digest,
)
from tests.registries.conftest import StartRegistry
from tests.registries.harness import (
    PUSHER,
    READER,
    READER_PASSWORD,
    Notifications,
    RunningRegistry,
    Skopeo,
    WebhookSink,
    in_ci,
    loopback_session,
)

SPECS = Path(__file__).resolve().parents[3] / "shared" / "specs" / "oci-image-spec-v1.1.1-schema"


def get(registry: RunningRegistry, path: str, **headers: str) -> requests.Response:
    """A raw anonymous GET, so tests see exactly what the registry answers."""
    return loopback_session().get(registry.url + path, headers=headers, timeout=10)


# --- the builder on its own -----------------------------------------------------------------------


def test_builds_are_byte_for_byte_reproducible() -> None:
    assert base_image("debian").manifest_bytes == base_image("debian").manifest_bytes
    assert base_image("debian").digest != base_image("debian", version="2").digest
    # Pinned: a tarfile or JSON change that breaks determinism shows up here, not as flaky digests.
    assert layer({"etc/os-release": b"ID=customs\n"}).diff_id == (
        "sha256:e800639655629b505c3b7861f486f3d85b36a003d04d54336bb9587ca138e9f1"
    )


def oci_validators() -> dict[str, Draft4Validator]:
    if not SPECS.is_dir():
        if in_ci():
            pytest.fail(f"{SPECS} is missing")
        pytest.skip(f"needs the OCI schemas in {SPECS}")
    schemas = {p.name: json.loads(p.read_text()) for p in SPECS.glob("*.json")}
    # The schemas name each other by relative file name under opencontainers.org ids.
    # mypy's attrs support misses the `retrieve` alias of Registry's private `_retrieve` field.
    store: Registry[Any] = Registry(  # type: ignore[call-arg]
        retrieve=lambda uri: Resource.from_contents(schemas[uri.rsplit("/", 1)[-1]], DRAFT4)
    )
    return {
        name: Draft4Validator(schemas[f"{name}-schema.json"], registry=store)
        for name in ("image-manifest", "image-index", "config")
    }


def test_oci_output_satisfies_the_oci_schemas() -> None:
    validators = oci_validators()
    base = base_image("debian")
    child = child_image(base, {"app/VERSION": b"1\n"}, base_name="127.0.0.1:5000/team/base:1")
    index = multi_platform_image("alpine")
    for image in (base, child, *index.images):
        validators["image-manifest"].validate(image.manifest)
        validators["config"].validate(image.config_json)
    validators["image-index"].validate(index.manifest)


def test_child_layers_start_with_the_base_layers() -> None:
    for fmt in ("oci", "docker"):
        base = base_image("debian", format=fmt)
        child = child_image(base, {"app/VERSION": b"1\n"})
        assert child.layer_digests[:1] == base.layer_digests
        assert len(child.layers) == 2
        diff_ids = child.config_json["rootfs"]["diff_ids"]
        assert diff_ids[:1] == base.config_json["rootfs"]["diff_ids"]
        assert child.config_json["history"][:1] == base.config_json["history"]
        assert built_on(child, base)
        assert not built_on(base, child)
        assert child.labels["org.opencontainers.image.version"] == "1"  # inherited, as FROM does


def test_parses_bearer_challenges() -> None:
    header = (
        'Bearer realm="http://127.0.0.1:1/token",service="svc",'
        'scope="repository:a/child:pull,push repository:a/base:pull",error="insufficient_scope"'
    )
    assert parse_bearer_challenge(header) == BearerChallenge(
        "http://127.0.0.1:1/token",
        "svc",
        ("repository:a/child:pull,push", "repository:a/base:pull"),
        "insufficient_scope",
    )
    assert parse_bearer_challenge('Basic realm="x"') is None


# --- anonymous registry ---------------------------------------------------------------------------


def assert_served(registry: RunningRegistry, repo: str, ref: str, image: Image | Index, accept: str) -> None:
    response = get(registry, f"/v2/{repo}/manifests/{ref}", Accept=accept)
    assert response.status_code == 200, response.text
    assert response.content == image.manifest_bytes
    assert response.headers["Content-Type"] == image.media_type
    assert response.headers["Docker-Content-Digest"] == image.digest


def test_oci_image_round_trip(registry: RunningRegistry, skopeo: Skopeo) -> None:
    image = base_image("debian", labels={"team": "platform"})
    assert registry.pusher().push_image("team/base", image, tags=["1.0"]) == image.digest

    assert_served(registry, "team/base", "1.0", image, OCI_MANIFEST)
    assert_served(registry, "team/base", image.digest, image, MANIFEST_ACCEPT)
    # 2.8 hides OCI manifests from clients that do not ask for them.
    assert get(registry, "/v2/team/base/manifests/1.0").status_code == 404
    config = get(registry, f"/v2/team/base/blobs/{image.config.digest}")
    assert json.loads(config.content)["config"]["Labels"]["team"] == "platform"

    raw = skopeo.inspect_raw(f"{registry.host}/team/base:1.0")
    assert raw == image.manifest_bytes
    assert sha256_digest(raw) == image.digest


def test_docker_v2_image_round_trip(registry: RunningRegistry, skopeo: Skopeo) -> None:
    image = base_image("debian", format="docker")
    registry.pusher().push_image("team/legacy", image, tags=["1.0"])

    assert_served(registry, "team/legacy", "1.0", image, DOCKER_MANIFEST)
    # Without the v2 type in Accept, 2.8 converts to schema1 under a digest that exists nowhere else.
    schema1 = get(registry, "/v2/team/legacy/manifests/1.0")
    assert schema1.status_code == 200
    assert schema1.headers["Docker-Content-Digest"] != image.digest

    assert skopeo.inspect_raw(f"{registry.host}/team/legacy:1.0") == image.manifest_bytes


@pytest.mark.parametrize(("fmt", "index_type"), [("oci", OCI_INDEX), ("docker", DOCKER_LIST)])
def test_two_platform_index(registry: RunningRegistry, skopeo: Skopeo, fmt: Any, index_type: str) -> None:
    index = multi_platform_image("alpine", format=fmt)
    assert index.media_type == index_type
    assert [m["platform"]["architecture"] for m in index.manifest["manifests"]] == ["amd64", "arm64"]
    registry.pusher().push_index("team/multi", index, tags=["3.20"])

    assert_served(registry, "team/multi", "3.20", index, index_type)
    for image in index.images:
        assert_served(registry, "team/multi", image.digest, image, image.media_type)
        assert skopeo.inspect_raw(f"{registry.host}/team/multi@{image.digest}") == image.manifest_bytes
    assert skopeo.inspect_raw(f"{registry.host}/team/multi:3.20") == index.manifest_bytes


def test_catalog_pages_with_relative_link(registry: RunningRegistry) -> None:
    pusher, image = registry.pusher(), base_image("busybox")
    names = [f"page/repo{i}" for i in range(5)]
    for name in names:
        pusher.push_image(name, image, tags=["latest"], mount_from="page/repo0")

    first = get(registry, "/v2/_catalog?n=2")
    assert first.json() == {"repositories": names[:2]}
    assert first.headers["Link"] == '</v2/_catalog?last=page%2Frepo1&n=2>; rel="next"'
    assert get(registry, "/v2/_catalog?n=2&last=page/repo3").json() == {"repositories": names[4:]}
    last = get(registry, "/v2/_catalog?n=1&last=page/repo3")
    assert last.json() == {"repositories": names[4:]}
    assert "Link" not in last.headers
    assert pusher.catalog(page_size=2) == names


def test_tags_list(registry: RunningRegistry) -> None:
    pusher, image = registry.pusher(), base_image("debian")
    pusher.push_image("team/app", image, tags=["b", "a", "c"])
    body = get(registry, "/v2/team/app/tags/list").json()
    assert body["name"] == "team/app"
    assert sorted(body["tags"]) == ["a", "b", "c"]
    assert pusher.tags("team/app") == ["a", "b", "c"]
    assert get(registry, "/v2/team/nothing/tags/list").json()["errors"][0]["code"] == "NAME_UNKNOWN"


def test_delete_by_digest_removes_every_tag(registry: RunningRegistry) -> None:
    pusher, image = registry.pusher(), base_image("debian")
    pusher.push_image("team/app", image, tags=["1.0", "latest"])

    with pytest.raises(RegistryError) as refused:
        pusher.request("DELETE", "/v2/team/app/manifests/latest", expect=[202])
    assert refused.value.status == 400  # by tag: DIGEST_INVALID on 2.8
    pusher.delete_manifest("team/app", image.digest)

    for ref in ("1.0", "latest", image.digest):
        assert get(registry, f"/v2/team/app/manifests/{ref}", Accept=MANIFEST_ACCEPT).status_code == 404
    assert get(registry, "/v2/team/app/tags/list").json()["tags"] is None  # null, not []
    assert pusher.tags("team/app") == []
    assert pusher.catalog() == ["team/app"]  # the catalog never shrinks


def test_child_image_lineage_on_the_wire(registry: RunningRegistry) -> None:
    pusher = registry.pusher()
    base = base_image("debian")
    child = child_image(base, {"app/VERSION": b"1.0\n"}, base_name=f"{registry.host}/team/base:1")
    pusher.push_image("team/base", base, tags=["1"])
    assert pusher.push_blob("team/app", base.layers[0], mount_from="team/base") == "mounted"
    pusher.push_image("team/app", child, tags=["1.0"], mount_from="team/base")

    served = json.loads(pusher.get_manifest("team/app", "1.0").data)
    base_served = json.loads(pusher.get_manifest("team/base", "1").data)
    assert served["layers"][: len(base_served["layers"])] == base_served["layers"]
    assert served["annotations"][ANNOTATION_BASE_DIGEST] == base.digest
    assert served["annotations"][ANNOTATION_BASE_NAME] == f"{registry.host}/team/base:1"


# --- authentication -------------------------------------------------------------------------------


def test_basic_auth_refuses_without_credentials(basic_registry: RunningRegistry, skopeo: Skopeo) -> None:
    image = base_image("debian")
    refused = get(basic_registry, "/v2/")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Basic realm="customs-test"'
    with pytest.raises(RegistryError) as anonymous:
        basic_registry.pusher(anonymous=True).push_image("team/app", image, tags=["1"])
    assert anonymous.value.status == 401
    with pytest.raises(RegistryError):
        basic_registry.pusher(auth=("customs", "wrong")).ping()

    basic_registry.pusher().push_image("team/app", image, tags=["1"])
    raw = skopeo.inspect_raw(f"{basic_registry.host}/team/app:1", creds=basic_registry.credentials)
    assert raw == image.manifest_bytes


def test_token_auth_challenge_flow(token_registry: RunningRegistry) -> None:
    server = token_registry.token_server
    assert server is not None
    challenge = parse_bearer_challenge(
        get(token_registry, "/v2/team/app/tags/list").headers["WWW-Authenticate"]
    )
    assert challenge == BearerChallenge(server.realm, "customs-test", ("repository:team/app:pull",))

    pusher, base = token_registry.pusher(), base_image("debian")
    pusher.push_image("team/base", base, tags=["1"])
    assert pusher.push_blob("team/app", base.layers[0], mount_from="team/base") == "mounted"
    assert pusher.catalog() == ["team/app", "team/base"]
    # The registry's challenge lists actions in no fixed order (push,pull or pull,push): compare sets.
    asked = {_normalised(scope) for request in server.requests for scope in request.scopes}
    assert "repository:team/base:pull,push" in asked
    assert {"repository:team/app:pull,push", "repository:team/base:pull"} <= asked  # the mount
    assert "registry:catalog:*" in asked
    assert {request.user for request in server.requests} == {PUSHER}


def test_token_auth_denies_what_the_token_lacks(token_registry: RunningRegistry) -> None:
    server = token_registry.token_server
    assert server is not None
    image = base_image("debian")
    token_registry.pusher().push_image("team/app", image, tags=["1"])

    reader = token_registry.pusher(auth=(READER, READER_PASSWORD))
    assert reader.get_manifest("team/app", "1").digest == image.digest
    with pytest.raises(RegistryError) as denied:
        reader.push_image("team/other", image)
    assert denied.value.status == 401  # 2.8 answers 401 insufficient_scope, never 403
    with pytest.raises(RegistryError):
        token_registry.pusher(auth=(READER, "wrong")).ping()


def test_pusher_takes_a_token_source(token_registry: RunningRegistry) -> None:
    server = token_registry.token_server
    assert server is not None
    seen: list[BearerChallenge] = []

    def tokens(challenge: BearerChallenge) -> str:
        seen.append(challenge)
        return server.mint(server.access_for(PUSHER, challenge.scopes), subject="robot", x5c=True)

    image = base_image("debian")
    Pusher(token_registry.url, auth=tokens).push_image("team/app", image, tags=["1"])
    assert seen[0].scopes == ("repository:team/app:pull",)  # the first HEAD on a blob
    assert token_registry.pusher().tags("team/app") == ["1"]


# --- two registries, skopeo, notifications --------------------------------------------------------


def test_skopeo_copies_to_a_replica_keeping_digests(
    registry: RunningRegistry, token_registry: RunningRegistry, skopeo: Skopeo
) -> None:
    index = multi_platform_image("alpine", format="oci")
    registry.pusher().push_index("team/multi", index, tags=["1"])

    skopeo.copy(
        f"{registry.host}/team/multi:1",
        f"{token_registry.host}/team/multi:1",
        dest_creds=token_registry.credentials,
    )
    replica = token_registry.pusher()
    assert replica.get_manifest("team/multi", "1").digest == index.digest
    assert replica.get_manifest("team/multi", index.images[1].digest).data == index.images[1].manifest_bytes


def test_push_event_reaches_the_sink(start_registry: StartRegistry, webhook_sink: WebhookSink) -> None:
    registry = start_registry(
        notifications=Notifications(webhook_sink.url, authorization="Bearer hook-secret")
    )
    image = build_image([layer({"app/VERSION": b"1\n"})], platform=LINUX_ARM64)
    registry.pusher().push_image("team/app", image, tags=["1.0"])

    event = webhook_sink.wait_for(lambda e: e["action"] == "push" and e["target"].get("tag") == "1.0")
    assert event["target"]["repository"] == "team/app"
    assert event["target"]["digest"] == image.digest
    assert event["target"]["mediaType"] == OCI_MANIFEST
    delivery = webhook_sink.deliveries[-1]
    assert delivery.headers["Authorization"] == "Bearer hook-secret"
    assert delivery.headers["Content-Type"] == "application/vnd.docker.distribution.events.v1+json"


def _normalised(scope: str) -> str:
    """A scope with its actions sorted, so the same request always reads the same."""
    head, _, actions = scope.rpartition(":")
    return f"{head}:{','.join(sorted(actions.split(',')))}"
