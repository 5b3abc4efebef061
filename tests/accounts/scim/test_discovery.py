"""ServiceProviderConfig, ResourceTypes and Schemas, and the endpoints we advertise as unsupported."""

from __future__ import annotations

import pytest

from tests.accounts.scim.conftest import ENTERPRISE, GROUP_SCHEMA, USER_SCHEMA, Scim, error_of


def test_service_provider_config_says_what_we_support(scim: Scim) -> None:
    body = scim.get("/ServiceProviderConfig").body
    assert body["patch"] == {"supported": True}
    assert body["bulk"]["supported"] is False
    assert body["etag"] == {"supported": False}
    assert body["filter"] == {"supported": True, "maxResults": 200}
    assert body["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    assert body["meta"]["location"] == "http://testserver/scim/v2/ServiceProviderConfig"


def test_resource_types_list_users_with_the_enterprise_extension_and_groups(scim: Scim) -> None:
    body = scim.get("/ResourceTypes").body
    assert body["totalResults"] == 2
    by_id = {r["id"]: r for r in body["Resources"]}
    assert by_id["User"]["endpoint"] == "/Users"
    assert by_id["User"]["schema"] == USER_SCHEMA
    assert by_id["User"]["schemaExtensions"] == [{"schema": ENTERPRISE, "required": False}]
    assert by_id["Group"]["schema"] == GROUP_SCHEMA
    assert scim.get("/ResourceTypes/Group").body["endpoint"] == "/Groups"
    assert scim.get("/ResourceTypes/Nope").status == 404


def test_schemas_describe_the_core_and_enterprise_attributes(scim: Scim) -> None:
    body = scim.get("/Schemas").body
    assert {s["id"] for s in body["Resources"]} == {USER_SCHEMA, GROUP_SCHEMA, ENTERPRISE}
    user = scim.get(f"/Schemas/{USER_SCHEMA}").body
    user_name = next(a for a in user["attributes"] if a["name"] == "userName")
    assert (user_name["required"], user_name["uniqueness"], user_name["caseExact"]) == (True, "server", False)
    assert scim.get(f"/Schemas/{ENTERPRISE.upper()}").status == 200  # URNs are case-insensitive
    assert scim.get("/Schemas/urn:nope").status == 404


@pytest.mark.parametrize("path", ["/Bulk", "/.search", "/Me"])
def test_unsupported_endpoints_answer_501(scim: Scim, path: str) -> None:
    reply = scim.send("POST", path, {})
    assert reply.status == 501
    assert error_of(reply) == ("501", None)


def test_discovery_needs_the_token_too(scim: Scim) -> None:
    scim.secret = ""
    assert scim.get("/ServiceProviderConfig").status == 401
