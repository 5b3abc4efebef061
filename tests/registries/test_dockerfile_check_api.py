"""POST /api/v1/base-images/check-dockerfile: the check's JSON for CI, 400 with one readable line for input
that is not a Dockerfile or a malformed payload, 413 past the size limit; developers and up, tokens work."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from accounts import services
from accounts.models import User
from registries.api import dockerfile_check
from registries.models import BaseImage
from tests import factories

pytestmark = pytest.mark.django_db

URL = reverse("api:base-image-check-dockerfile")


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def post(client: Client, payload: Any, **headers: str) -> Any:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    return client.post(URL, body, content_type="application/json", headers=headers)


@pytest.fixture(autouse=True)
def catalog() -> None:
    BaseImage.objects.create(name="docker.io/library/python", tags=["3.12-*"])
    BaseImage.objects.create(
        name="docker.io/library/node",
        tags=["18-*"],
        status=BaseImage.Status.DEPRECATED,
        replacement="docker.io/library/node:22-slim",
    )
    BaseImage.objects.create(name="docker.io/library/ubuntu", status=BaseImage.Status.BANNED)


def test_the_path_is_the_documented_one() -> None:
    assert URL == "/api/v1/base-images/check-dockerfile"


def test_a_ci_token_with_read_scope_gets_every_stage_judged(client: Client, developer: User) -> None:
    _, secret = factories.token(developer, scopes=["read"])
    dockerfile = (
        "ARG NODE=18-alpine\n"
        "FROM node:${NODE} AS assets\n"
        "FROM ubuntu:24.04 AS tools\n"
        "FROM assets AS again\n"
        "FROM python:3.12-slim\n"
    )

    response = post(client, {"dockerfile": dockerfile}, **bearer(secret))

    assert response.status_code == 200
    result = response.json()
    assert set(result) == {"compliant", "final_base", "stages"}
    assert result["compliant"] is False  # the banned builder stage counts
    assert result["final_base"] == "docker.io/library/python:3.12-slim"
    verdicts = [(s["line"], s["stage"], s["from_stage"], s["verdict"]) for s in result["stages"]]
    assert verdicts == [
        (2, "assets", None, "deprecated"),
        (3, "tools", None, "banned"),
        (4, "again", "assets", "stage"),
        (5, None, None, "approved"),
    ]
    assert result["stages"][0]["reference"] == "docker.io/library/node:18-alpine"
    assert "node:22-slim" in result["stages"][0]["message"]
    assert set(result["stages"][0]) == {
        "line",
        "image",
        "reference",
        "stage",
        "from_stage",
        "verdict",
        "message",
    }


def test_build_args_override_arg_defaults_and_unknown_ones_are_ignored(
    client: Client, developer: User
) -> None:
    client.force_login(developer)
    dockerfile = "ARG BASE=python:3.12-slim\nFROM ${BASE}\n"

    default = post(client, {"dockerfile": dockerfile}).json()
    overridden = post(
        client, {"dockerfile": dockerfile, "build_args": {"BASE": "python:3.11", "NOPE": "x"}}
    ).json()

    assert default["compliant"] is True
    assert default["final_base"] == "docker.io/library/python:3.12-slim"
    assert overridden["compliant"] is False
    assert overridden["stages"][0]["image"] == "python:3.11"
    assert overridden["stages"][0]["verdict"] == "unapproved"


def test_a_deprecated_base_is_a_warning_and_scratch_has_no_final_base(
    client: Client, developer: User
) -> None:
    client.force_login(developer)

    deprecated = post(client, {"dockerfile": "FROM node:18-slim\n"}).json()
    scratch = post(client, {"dockerfile": "FROM scratch\nCOPY app /app\n"}).json()

    assert deprecated["compliant"] is True
    assert deprecated["stages"][0]["verdict"] == "deprecated"
    assert scratch == {
        "compliant": True,
        "final_base": None,
        "stages": [
            {
                "line": 1,
                "image": "scratch",
                "reference": None,
                "stage": None,
                "from_stage": None,
                "verdict": "scratch",
                "message": scratch["stages"][0]["message"],
            }
        ],
    }


@pytest.mark.parametrize(
    "dockerfile", ["", "RUN echo hello\n", "FROM\n", "LABEL a=b\nFROM python:3.12-slim\n"]
)
def test_input_that_is_not_a_dockerfile_is_a_400_with_one_line(
    client: Client, developer: User, dockerfile: str
) -> None:
    client.force_login(developer)

    response = post(client, {"dockerfile": dockerfile})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["message"]
    assert "\n" not in error["message"]


@pytest.mark.parametrize(
    ("payload", "names"),
    [
        ({}, "dockerfile"),
        ({"dockerfile": None}, "dockerfile"),
        ({"dockerfile": ["FROM python:3.12-slim"]}, "dockerfile"),
        ({"dockerfile": "FROM python:3.12-slim\n", "build_args": ["BASE=x"]}, "build_args"),
        ({"dockerfile": "FROM python:3.12-slim\n", "build_args": {"BASE": ["x"]}}, "build_args"),
        (["FROM python:3.12-slim"], "non_field_errors"),
        ("{not json", None),
    ],
)
def test_a_malformed_payload_is_a_400_naming_what_is_wrong(
    client: Client, developer: User, payload: Any, names: str | None
) -> None:
    client.force_login(developer)

    response = post(client, payload)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"]
    if names:
        assert names in error["fields"]


def test_a_body_over_the_limit_is_a_413(client: Client, developer: User) -> None:
    client.force_login(developer)
    huge = "FROM python:3.12-slim\n" + "#" * dockerfile_check.MAX_BODY_BYTES

    response = post(client, {"dockerfile": huge})

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert "1 MB" in response.json()["error"]["message"]


def test_anonymous_and_revoked_tokens_get_a_401_and_get_is_not_allowed(
    client: Client, developer: User
) -> None:
    token, secret = factories.token(developer)
    services.revoke_token(token, actor=developer)

    assert post(client, {"dockerfile": "FROM scratch\n"}).status_code == 401
    assert post(client, {"dockerfile": "FROM scratch\n"}, **bearer(secret)).status_code == 401
    client.force_login(developer)
    assert client.get(URL).status_code == 405


@pytest.mark.parametrize("scopes", [["read"], ["write"], ["read", "write"]])
def test_every_api_token_scope_may_check(client: Client, reviewer: User, scopes: list[str]) -> None:
    _, secret = factories.token(reviewer, scopes=scopes)
    assert post(client, {"dockerfile": "FROM scratch\n"}, **bearer(secret)).status_code == 200


def test_the_schema_documents_the_endpoint(client: Client, developer: User) -> None:
    client.force_login(developer)
    schema = client.get(reverse("api:schema")).content.decode()
    assert "/api/v1/base-images/check-dockerfile:" in schema
    assert "v1_base_images_check_dockerfile" in schema
    assert "final_base" in schema
