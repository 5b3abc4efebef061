"""A SCIM client for the tests: bearer token, SCIM media type, JSON bodies."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from accounts.models import ScimToken
from accounts.scim import services
from tests import factories

BASE = "/scim/v2"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class Scim:
    """Speaks to /scim/v2 as one provisioning connection."""

    client: Client
    secret: str
    token: ScimToken

    def send(
        self, method: str, path: str, body: Any = None, *, media: str = "application/scim+json"
    ) -> Reply:
        headers = {"HTTP_AUTHORIZATION": f"Bearer {self.secret}"} if self.secret else {}
        data = json.dumps(body) if body is not None else ""
        call = getattr(self.client, method.lower())
        response = (
            call(BASE + path, data=data, content_type=media, **headers)
            if method != "GET"
            else call(BASE + path, **headers)
        )
        parsed = json.loads(response.content) if response.content else None
        return Reply(response.status_code, parsed, dict(response.headers))

    def get(self, path: str) -> Reply:
        return self.send("GET", path)

    def post(self, path: str, body: Any) -> Reply:
        return self.send("POST", path, body)

    def put(self, path: str, body: Any) -> Reply:
        return self.send("PUT", path, body)

    def patch(self, path: str, *operations: dict[str, Any]) -> Reply:
        return self.send("PATCH", path, patch_op(*operations))

    def delete(self, path: str) -> Reply:
        return self.send("DELETE", path)


def patch_op(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


def new_user(user_name: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schemas": [USER_SCHEMA],
        "userName": user_name,
        "externalId": extra.pop("externalId", factories.unique("ext")),
        "name": {"givenName": "Ada", "familyName": "Lovelace"},
        "emails": [{"value": user_name, "type": "work", "primary": True}],
        "active": True,
    }
    body.update(extra)
    return body


def connection(client: Client, *, name: str | None = None, directory: str = "default") -> Scim:
    issued = services.create_token(
        name=name or factories.unique("scim"), directory_name=directory, actor=None
    )
    return Scim(client=client, secret=issued.secret, token=issued.token)


@pytest.fixture
def scim(db: None) -> Scim:
    return connection(Client(), directory="corp")


@pytest.fixture
def other_scim(db: None) -> Scim:
    """A second connection, for another directory (tenant)."""
    return connection(Client(), directory="partner")


def error_of(reply: Reply) -> tuple[str, str | None]:
    """(status, scimType) of a SCIM error body, checking its shape on the way."""
    assert reply.body["schemas"] == [ERROR]
    assert isinstance(reply.body["status"], str)
    assert reply.body["status"] == str(reply.status)
    return reply.body["status"], reply.body.get("scimType")
