"""The validators catch fakes that drift from the vendors' descriptions, and accept faithful ones."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes.specs import (
    ACR,
    DOCKER_HUB,
    HARBOR,
    FakeDrift,
    OpenAPISpec,
    arm_example,
    arm_example_names,
)

HARBOR_ARTIFACT: dict[str, Any] = {
    "id": 7,
    "type": "IMAGE",
    "media_type": "application/vnd.oci.image.manifest.v1+json",
    "manifest_media_type": "application/vnd.oci.image.manifest.v1+json",
    "project_id": 2,
    "repository_id": 4,
    "digest": "sha256:" + "a" * 64,
    "size": 2048,
    "push_time": "2026-11-01T10:00:00.000Z",
    "pull_time": "0001-01-01T00:00:00.000Z",
    "tags": [{"id": 1, "name": "v1", "push_time": "2026-11-01T10:00:00.000Z", "immutable": False}],
}

ACR_TAGS: dict[str, Any] = {
    "registry": "myregistry.azurecr.io",
    "imageName": "team/app",
    "tags": [
        {
            "name": "v1",
            "digest": "sha256:" + "b" * 64,
            "createdTime": "2026-11-01T10:00:00.0000000Z",
            "lastUpdateTime": "2026-11-01T10:00:00.0000000Z",
            "changeableAttributes": {
                "deleteEnabled": True,
                "writeEnabled": True,
                "readEnabled": True,
                "listEnabled": True,
            },
        }
    ],
}

HUB_TAGS: dict[str, Any] = {
    "count": 1,
    "next": None,
    "previous": None,
    "results": [
        {
            "id": 1,
            "name": "latest",
            "full_size": 1024,
            "last_updated": "2026-11-01T10:00:00.000000Z",
            "tag_last_pushed": "2026-11-01T10:00:00.000000Z",
            "tag_last_pulled": "2026-11-20T10:00:00.000000Z",
            "status": "active",
            "images": [
                {"architecture": "amd64", "os": "linux", "digest": "sha256:" + "c" * 64, "size": 1024}
            ],
        }
    ],
}

ARTIFACTS = "/projects/{project_name}/repositories/{repository_name}/artifacts"


def test_a_faithful_harbor_artifact_list_passes() -> None:
    HARBOR.validate("get", ARTIFACTS, [HARBOR_ARTIFACT])


@pytest.mark.parametrize(
    ("field", "value", "complaint"),
    [("size", "2048", "is not of type 'integer'"), ("push_time", "yesterday", "is not a 'date-time'")],
)
def test_harbor_fields_of_the_wrong_type_or_format_are_caught(field: str, value: str, complaint: str) -> None:
    with pytest.raises(FakeDrift, match=complaint):
        HARBOR.validate("get", ARTIFACTS, [{**HARBOR_ARTIFACT, field: value}])


def test_harbor_nullable_fields_accept_null_and_others_do_not() -> None:
    # x-nullable in Swagger 2.0 is rewritten to a type list rather than weakening the fake.
    repository = {"id": 4, "project_id": 2, "name": "library/app", "creation_time": None}
    HARBOR.validate("get", "/projects/{project_name}/repositories", [repository])
    with pytest.raises(FakeDrift, match="None is not of type 'string'"):
        HARBOR.validate("get", "/projects/{project_name}/repositories", [{**repository, "name": None}])


def test_concrete_paths_find_their_template_with_or_without_the_base_path() -> None:
    assert HARBOR.template_for("get", "/api/v2.0/projects/library/repositories/app/artifacts") == ARTIFACTS
    assert HARBOR.template_for("GET", "/projects/library/repositories") == (
        "/projects/{project_name}/repositories"
    )
    with pytest.raises(FakeDrift, match="not an operation"):
        HARBOR.template_for("get", "/projects/library/secrets")


def test_a_faithful_acr_tag_list_passes_and_missing_fields_are_named() -> None:
    ACR.validate("get", "/acr/v1/{name}/_tags", ACR_TAGS)
    broken = {**ACR_TAGS, "tags": [{"name": "v1"}]}
    with pytest.raises(FakeDrift, match="'digest' is a required property"):
        ACR.validate("get", "/acr/v1/{name}/_tags", broken)


def test_docker_hub_tags_follow_the_live_service_and_wrong_types_fail() -> None:
    DOCKER_HUB.validate("get", "/v2/namespaces/acme/repositories/app/tags", HUB_TAGS)
    wrong = {**HUB_TAGS, "count": "one"}
    with pytest.raises(FakeDrift):
        DOCKER_HUB.validate("get", "/v2/namespaces/acme/repositories/app/tags", wrong)


def test_an_operation_the_vendor_does_not_have_is_drift() -> None:
    with pytest.raises(FakeDrift):
        HARBOR.validate("get", "/projects/{project_name}/secrets", [])
    with pytest.raises(FakeDrift):
        DOCKER_HUB.validate("get", "/v2/made-up", {})


@pytest.mark.parametrize("name", ["2023-07-01-RegistryGet", "2023-07-01-ScopeMapCreate"])
def test_arm_examples_serve_as_golden_fixtures(name: str) -> None:
    assert name in arm_example_names()
    body = arm_example(name)
    assert body["id"].startswith("/subscriptions/")
    assert body["type"].startswith("Microsoft.ContainerRegistry/registries")


def test_the_docker_hub_images_patch_is_what_admits_a_list() -> None:
    # Without the patch the published description refuses what the live service sends.
    unpatched = OpenAPISpec("dockerhub-api-latest.yaml", server="https://hub.docker.com")
    with pytest.raises(FakeDrift):
        unpatched.validate("get", "/v2/namespaces/acme/repositories/app/tags", HUB_TAGS)
