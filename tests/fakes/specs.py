"""Vendor API descriptions in ../shared/specs, as validators for the fakes connectors are tested against.

A fake that drifts from the real service's shape makes a connector test pass against a registry
that does not exist. So every fake response goes through the vendor's own description of the
operation before a connector sees it, and a fake that answers in the wrong shape fails the test
that introduced it (../shared/docs/test-harness.md §10).

    HARBOR.validate("get", "/projects/{project_name}/repositories", body)
    ACR.validate("get", "/acr/v1/{name}/_tags", body)
    DOCKER_HUB.validate("get", "/v2/namespaces/{namespace}/repositories", body)

Known differences between a description and the live service are patched here, in one place,
each with the reason, so a fake can follow the live service without weakening any other check.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft4Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from tests.registries.harness import in_ci

SPECS = Path(__file__).resolve().parents[3] / "shared" / "specs"

Patch = Callable[[dict[str, Any]], None]


class FakeDrift(AssertionError):
    """A fake answered in a shape the vendor's description does not allow."""


def require_specs() -> Path:
    """The specs folder; a missing folder fails in CI (it is part of the checkout there) and skips by hand."""
    if not SPECS.is_dir():
        if in_ci():
            pytest.fail(f"{SPECS} is missing: the vendor API descriptions sit beside the project")
        pytest.skip(f"needs the vendor API descriptions in {SPECS}")
    return SPECS


def _nullable_to_type_list(node: Any) -> None:
    """Swagger 2.0 says `x-nullable: true`; JSON Schema says `type: [T, "null"]`."""
    if isinstance(node, dict):
        if node.get("x-nullable") is True and isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        for value in node.values():
            _nullable_to_type_list(value)
    elif isinstance(node, list):
        for value in node:
            _nullable_to_type_list(value)


def _template_regex(template: str) -> re.Pattern[str]:
    # A path parameter is one segment, except that repository names may hold slashes: those are
    # matched by the `.+` variant when the one-segment form finds nothing.
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$")


@dataclass
class SwaggerSpec:
    """A Swagger 2.0 description (Harbor, ACR data plane), checked with JSON Schema draft 4."""

    filename: str
    patches: tuple[Patch, ...] = ()
    _validators: dict[tuple[str, str, int], Draft4Validator] = field(default_factory=dict)

    @cached_property
    def document(self) -> dict[str, Any]:
        path = require_specs() / self.filename
        text = path.read_text()
        document: dict[str, Any] = yaml.safe_load(text) if path.suffix == ".yaml" else json.loads(text)
        _nullable_to_type_list(document)
        for patch in self.patches:
            patch(document)
        return document

    @property
    def base_path(self) -> str:
        return str(self.document.get("basePath", "")).rstrip("/")

    def operations(self) -> dict[str, dict[str, Any]]:
        # ACR keeps routes that differ only by query string under x-ms-paths.
        return {**self.document["paths"], **self.document.get("x-ms-paths", {})}

    def template_for(self, method: str, path: str) -> str:
        """The declared path template a concrete request path (with or without basePath) matches."""
        if self.base_path and path.startswith(self.base_path + "/"):
            path = path[len(self.base_path) :]
        candidates = [t for t, ops in self.operations().items() if method.lower() in ops]
        for template in sorted(candidates, key=len, reverse=True):
            if _template_regex(template.split("?", 1)[0]).match(path):
                return template
        raise FakeDrift(f"{method.upper()} {path} is not an operation in {self.filename}")

    def validator(self, method: str, template: str, status: int = 200) -> Draft4Validator:
        key = (method.lower(), template, status)
        if key not in self._validators:
            try:
                operation = self.operations()[template][method.lower()]
            except KeyError:
                raise FakeDrift(f"{method.upper()} {template} is not in {self.filename}") from None
            response = operation["responses"].get(str(status)) or operation["responses"].get("default")
            if response is None:
                raise FakeDrift(
                    f"{self.filename} declares no {status} answer for {method.upper()} {template}"
                )
            schema = dict(response.get("schema") or {})
            schema["definitions"] = self.document.get("definitions", {})
            self._validators[key] = Draft4Validator(schema, format_checker=FormatChecker())
        return self._validators[key]

    def validate(self, method: str, template: str, body: Any, status: int = 200) -> None:
        errors = sorted(self.validator(method, template, status).iter_errors(body), key=str)
        if errors:
            raise FakeDrift(_describe(f"{method.upper()} {template} in {self.filename}", errors))


def _describe(where: str, errors: list[ValidationError]) -> str:
    lines = [f"at {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors[:5]]
    return f"fake answer does not match {where}:\n  " + "\n  ".join(lines)


@dataclass
class OpenAPISpec:
    """An OpenAPI 3 description (Docker Hub), checked with openapi-core."""

    filename: str
    server: str
    patches: tuple[Patch, ...] = ()

    @cached_property
    def openapi(self) -> Any:
        from openapi_core import Config, OpenAPI

        document = yaml.safe_load((require_specs() / self.filename).read_text())
        for patch in self.patches:
            patch(document)
        # The published file does not pass OpenAPI's own validation (a dangling $ref), so only the
        # operations are used, never the document's self-check (test-harness.md §10.1).
        return OpenAPI.from_dict(document, config=Config(spec_validator_cls=None))  # type: ignore[arg-type]

    def validate(
        self, method: str, path: str, body: Any, status: int = 200, query: dict[str, str] | None = None
    ) -> None:
        from openapi_core.testing import MockRequest, MockResponse

        request = MockRequest(self.server, method.lower(), path, args=query or {})
        response = MockResponse(
            json.dumps(body).encode(), status_code=status, content_type="application/json"
        )
        try:
            self.openapi.validate_response(request, response)
        except Exception as exc:  # noqa: BLE001  (openapi-core raises several unrelated types)
            raise FakeDrift(
                f"fake answer does not match {method.upper()} {path} in {self.filename}: {exc}"
            ) from exc


def _hub_tag_images_is_a_list(document: dict[str, Any]) -> None:
    # The description types a tag's `images` as one object; the live service sends a list of them
    # (registry-apis.md §8.2). Accept the list, with the same item shape, so fakes follow the service.
    schemas = document["components"]["schemas"]
    tag = schemas.get("tag") or {}
    images = tag.get("properties", {}).get("images")
    if images is not None and images.get("type") != "array":
        tag["properties"]["images"] = {"type": "array", "items": copy.deepcopy(images)}


def _hub_page_links_are_nullable(document: dict[str, Any]) -> None:
    # Every Hub list is one paginator that sends `next`/`previous` as null on the edge pages; the
    # description says so for repositories (`page`) but types the other envelopes (PATs, OATs,
    # members, teams, team members) as plain strings (registry-apis.md §8.2, unverified live).
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            properties = node.get("properties")
            if isinstance(properties, dict):
                for name in ("next", "previous"):
                    link = properties.get(name)
                    if isinstance(link, dict) and link.get("type") == "string":
                        link["nullable"] = True
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)


def _hub_pat_expiry_is_nullable(document: dict[str, Any]) -> None:
    # A personal access token made with "no expiration" has no expiry date: the service sends
    # `expires_at: null` (unverified), as it does for organisation tokens, whose field is nullable.
    token = document["components"]["schemas"]["accessToken"]["properties"]
    token["expires_at"]["nullable"] = True


def _hub_members_list_is_an_envelope(document: dict[str, Any]) -> None:
    # The description types the members list as an array of paginated envelopes; the service answers
    # with one envelope {count, next, previous, results} (registry-apis.md §8.4, unverified). Accept
    # either, so the connector is tested against both shapes.
    answer = document["paths"]["/v2/orgs/{org_name}/members"]["get"]["responses"]["200"]
    media = answer["content"]["application/json"]
    media["schema"] = {"oneOf": [media["schema"], {"$ref": "#/components/schemas/org_member_paginated"}]}


def _hub_repository_teams_listing(document: dict[str, Any]) -> None:
    # Only POST (give a team a permission) is described on a repository's `groups`; the Hub UI lists
    # the teams with a GET on the same path (registry-apis.md §8.4, unverified). Its shape here is
    # the common envelope of the POST's RepositoryGroup entries; the connector needs only
    # group_name and permission from each (group_id when present).
    operations = document["paths"]["/v2/repositories/{namespace}/{repository}/groups"]
    operations["get"] = {
        "summary": "List the teams with a permission on a repository (not in the published file)",
        "responses": {
            "200": {
                "description": "OK",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "count": {"type": "number"},
                                "next": {"type": "string", "nullable": True},
                                "previous": {"type": "string", "nullable": True},
                                "results": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/RepositoryGroup"},
                                },
                            },
                        }
                    }
                },
            }
        },
    }


def _hub_status_codes_are_strings(document: dict[str, Any]) -> None:
    # A few operations (GetRepository among them) write their status codes unquoted, which YAML reads
    # as integers; OpenAPI keys responses by strings, and openapi-core finds none of them otherwise.
    for operations in document["paths"].values():
        for operation in operations.values():
            if isinstance(operation, dict) and isinstance(operation.get("responses"), dict):
                operation["responses"] = {
                    str(code): answer for code, answer in operation["responses"].items()
                }


HARBOR = SwaggerSpec("harbor-v2.0-swagger.yaml")
ACR = SwaggerSpec("acr-dataplane-2021-07-01.json")
DOCKER_HUB = OpenAPISpec(
    "dockerhub-api-latest.yaml",
    server="https://hub.docker.com",
    patches=(
        _hub_tag_images_is_a_list,
        _hub_page_links_are_nullable,
        _hub_pat_expiry_is_nullable,
        _hub_members_list_is_an_envelope,
        _hub_repository_teams_listing,
        _hub_status_codes_are_strings,
    ),
)


def arm_example(name: str, status: int = 200) -> Any:
    """The response body of one ARM example (acr-mgmt-examples), as a golden fixture."""
    document = json.loads((require_specs() / "acr-mgmt-examples" / f"{name}.json").read_text())
    return copy.deepcopy(document["responses"][str(status)]["body"])


def arm_example_names() -> list[str]:
    return sorted(p.stem for p in (require_specs() / "acr-mgmt-examples").glob("*.json"))


@dataclass
class BotocoreSpec:
    """A botocore model (ECR, IAM) from ../shared/specs, checking parsed answers (test-harness.md §10.4).

    The copy in ../shared/specs is the reference, not the installed botocore's own model: the two
    can differ, and a fake must match the pinned one.
    """

    filename: str
    service_name: str

    @cached_property
    def model(self) -> Any:
        from botocore.model import ServiceModel

        document = json.loads((require_specs() / self.filename).read_text())
        return ServiceModel(document, service_name=self.service_name)

    def validate(self, operation: str, parsed: dict[str, Any]) -> None:
        from botocore.exceptions import ParamValidationError
        from botocore.validate import validate_parameters

        body = {key: value for key, value in parsed.items() if key != "ResponseMetadata"}
        shape = self.model.operation_model(operation).output_shape
        if shape is None:
            return
        try:
            validate_parameters(body, shape)
        except ParamValidationError as exc:
            raise FakeDrift(f"fake answer does not match {operation} in {self.filename}: {exc}") from None


ECR_MODEL = BotocoreSpec("aws-ecr-2015-09-21-service-2.json", "ecr")
IAM_MODEL = BotocoreSpec("aws-iam-2010-05-08-service-2.json", "iam")
