"""The API's common ground: one error shape, pagination, filtering and a schema that validates."""

from __future__ import annotations

import pytest
import yaml
from django.test import Client

from accounts.models import User
from portal import audit
from portal.audit import AuditAction, Target
from tests import factories

pytestmark = pytest.mark.django_db


def test_unauthenticated_calls_get_401_in_the_error_shape(client: Client) -> None:
    response = client.get("/api/v1/findings/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="customs"'
    assert response.json() == {
        "error": {"code": "not_authenticated", "message": "Authentication credentials were not provided."}
    }


def test_forbidden_calls_get_403_in_the_error_shape(client: Client, developer: User) -> None:
    client.force_login(developer)
    response = client.get("/api/v1/audit-events/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_missing_objects_get_404_in_the_error_shape(client: Client, reviewer: User) -> None:
    client.force_login(reviewer)
    response = client.get("/api/v1/findings/999999/")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "not found"}}


def test_invalid_input_names_the_field(client: Client, reviewer: User) -> None:
    client.force_login(reviewer)
    finding = factories.finding()
    response = client.post(
        f"/api/v1/findings/{finding.pk}/suppress/", {"until": "not-a-date"}, content_type="application/json"
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert set(error["fields"]) == {"until", "justification"}
    assert error["message"].startswith("until: ")


def test_a_rejected_request_is_a_400_with_the_services_message(client: Client, reviewer: User) -> None:
    client.force_login(reviewer)
    finding = factories.finding()
    response = client.post(
        f"/api/v1/findings/{finding.pk}/suppress/",
        {"until": factories.days_from_now(-1).isoformat(), "justification": "accepted"},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "the suppression must end in the future"
    finding.refresh_from_db()
    assert finding.suppressed_until is None  # nothing changed


def test_lists_are_paginated_with_a_caller_chosen_page_size(client: Client, reviewer: User) -> None:
    for _ in range(7):
        factories.finding()
    client.force_login(reviewer)
    body = client.get("/api/v1/findings/?page_size=3&page=2").json()
    assert body["count"] == 7
    assert len(body["results"]) == 3
    assert body["next"] is not None
    assert body["previous"] is not None


def test_audit_events_filter_by_actor_action_and_target(client: Client, reviewer: User, admin: User) -> None:
    audit.record(
        admin, AuditAction.ROLE_BINDING_CREATED, target=Target("accounts.rolebinding", "1", "SRE → Admin")
    )
    audit.record(None, AuditAction.FINDINGS_RECONCILED)
    client.force_login(reviewer)
    by_actor = client.get(f"/api/v1/audit-events/?actor={admin.username}").json()["results"]
    by_action = client.get("/api/v1/audit-events/?action=role_binding.").json()["results"]
    by_target = client.get("/api/v1/audit-events/?target=SRE").json()["results"]
    assert [e["action"] for e in by_actor] == ["role_binding.create"]
    assert [e["action"] for e in by_action] == ["role_binding.create"]
    assert [e["target_label"] for e in by_target] == ["SRE → Admin"]


def test_findings_filter_by_state(client: Client, reviewer: User) -> None:
    open_one = factories.finding()
    factories.finding(resolved_at=factories.days_from_now(-1))
    client.force_login(reviewer)
    ids = [f["id"] for f in client.get("/api/v1/findings/?state=open").json()["results"]]
    assert ids == [open_one.pk]


def test_the_openapi_schema_describes_every_endpoint_and_bearer_auth(client: Client, developer: User) -> None:
    client.force_login(developer)
    response = client.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert schema["openapi"].startswith("3.")
    for path in (
        "/api/v1/me/",
        "/api/v1/tokens/",
        "/api/v1/tokens/{id}/revoke/",
        "/api/v1/findings/",
        "/api/v1/audit-events/",
        "/api/v1/role-bindings/",
        "/api/v1/groups/",
    ):
        assert path in schema["paths"], path
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A Customs API token (cst_…)",
    }


def test_interactive_docs_load_their_assets_locally(client: Client, developer: User) -> None:
    client.force_login(developer)
    page = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in page
    for cdn in ("cdn.", "unpkg", "jsdelivr"):
        assert cdn not in page
