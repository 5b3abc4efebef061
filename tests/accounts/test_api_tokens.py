"""/api/v1/tokens/: the secret comes back once, at creation, and revocation follows who may do it."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from django.test import Client

from accounts.models import PersonalToken, User
from portal.audit import AuditAction
from portal.models import AuditEvent
from tests import factories

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

pytestmark = pytest.mark.django_db

TOKENS = "/api/v1/tokens/"


def lifetime_days(token: PersonalToken) -> int:
    # Rounded: the expiry is computed a moment before the row's created_at default is taken.
    return round((token.expires_at - token.created_at) / timedelta(days=1))


def create(client: Client, **body: Any) -> Response:
    return client.post(TOKENS, body, content_type="application/json")


def test_the_create_response_carries_the_secret_exactly_once(client: Client, developer: User) -> None:
    client.force_login(developer)
    response = create(client, name="laptop", scopes=["read", "write"], days=30)
    assert response.status_code == 201
    body = response.json()
    secret = body["secret"]
    assert secret.startswith("cst_")
    assert response.content.decode().count(secret) == 1
    token = PersonalToken.objects.get(pk=body["id"])
    assert (token.owner, token.name, token.scopes) == (developer, "laptop", ["read", "write"])
    assert body["lookup"] == token.lookup == secret[:12]
    assert body["state"] == "active"
    assert lifetime_days(token) == 30


def test_lists_and_details_never_carry_the_secret(client: Client, developer: User) -> None:
    client.force_login(developer)
    body = create(client, name="laptop").json()
    secret, token_id = body["secret"], body["id"]
    hidden = secret[12:]
    responses = [
        client.get(TOKENS),
        client.get(f"{TOKENS}{token_id}/"),
        client.get(f"{TOKENS}?kind=api&ordering=-created_at"),
        client.post(f"{TOKENS}{token_id}/revoke/"),
    ]
    for response in responses:
        assert response.status_code == 200
        assert hidden not in response.content.decode()
        assert "secret" not in json.dumps(response.json())
        assert "digest" not in json.dumps(response.json())


def test_the_secret_stays_out_of_the_logs(
    client: Client, developer: User, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client.force_login(developer)
    secret = create(client, name="laptop").json()["secret"]
    client.get("/api/v1/me/", headers={"Authorization": f"Bearer {secret}"})
    client.get("/api/v1/me/", headers={"Authorization": f"Bearer {secret}x"})  # a 401 is logged
    assert "Unauthorized" in caplog.text
    assert secret[12:] not in caplog.text


def test_a_new_token_is_read_only_and_lasts_90_days_by_default(client: Client, developer: User) -> None:
    client.force_login(developer)
    body = create(client, name="laptop").json()
    token = PersonalToken.objects.get(pk=body["id"])
    assert (body["kind"], body["scopes"]) == ("api", ["read"])
    assert lifetime_days(token) == 90


def test_a_registry_token_can_be_created_for_docker_login(client: Client, developer: User) -> None:
    client.force_login(developer)
    body = create(client, name="docker", kind="registry").json()
    assert (body["kind"], body["scopes"]) == ("registry", ["registry"])


# "invalid": the serializer refused a field; "rejected": the token service refused the request.
@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        ({"name": ""}, "invalid", "name: This field may not be blank."),
        ({}, "invalid", "name: This field is required."),
        ({"name": "x", "days": 366}, "rejected", "a token lasts from 1 to 365 days"),
        ({"name": "x", "days": 0}, "invalid", "days: Ensure this value is greater than or equal to 1."),
        (
            {"name": "x", "scopes": ["admin"]},
            "rejected",
            "api tokens accept the scopes read, write; not admin",
        ),
        ({"name": "x", "kind": "ssh"}, "invalid", 'kind: "ssh" is not a valid choice.'),
    ],
)
def test_impossible_requests_get_400_with_a_reason(
    client: Client, developer: User, body: dict[str, Any], code: str, message: str
) -> None:
    client.force_login(developer)
    response = create(client, **body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["message"]) == (code, message)
    assert not PersonalToken.objects.filter(owner=developer).exists()


def test_a_token_is_always_issued_to_the_caller(client: Client, admin: User, developer: User) -> None:
    client.force_login(admin)
    body = create(client, name="for-someone", owner=developer.username).json()
    assert body["owner"] == admin.username  # unknown fields are ignored, never obeyed


def test_developers_list_only_their_own_tokens_and_reviewers_all(
    client: Client, developer: User, reviewer: User
) -> None:
    mine, _ = factories.token(developer)
    theirs, _ = factories.token(factories.user())
    client.force_login(developer)
    assert [t["id"] for t in client.get(TOKENS).json()["results"]] == [mine.pk]
    assert client.get(f"{TOKENS}{theirs.pk}/").status_code == 404
    client.force_login(reviewer)
    assert {t["id"] for t in client.get(TOKENS).json()["results"]} == {mine.pk, theirs.pk}


def test_an_owner_revokes_their_token(client: Client, developer: User) -> None:
    token, _ = factories.token(developer)
    client.force_login(developer)
    response = client.post(f"{TOKENS}{token.pk}/revoke/")
    assert response.status_code == 200
    assert response.json()["state"] == "revoked"
    assert response.json()["revoked_at"] is not None
    event = AuditEvent.objects.get(action=AuditAction.TOKEN_REVOKED)
    assert (event.actor_id, event.target_id) == (developer.pk, str(token.pk))


def test_revoking_twice_answers_the_same_and_audits_once(client: Client, developer: User) -> None:
    token, _ = factories.token(developer)
    client.force_login(developer)
    first = client.post(f"{TOKENS}{token.pk}/revoke/")
    second = client.post(f"{TOKENS}{token.pk}/revoke/")
    assert first.status_code == second.status_code == 200
    assert first.json()["revoked_at"] == second.json()["revoked_at"]
    assert AuditEvent.objects.filter(action=AuditAction.TOKEN_REVOKED).count() == 1


def test_an_admin_revokes_someone_elses_token(client: Client, admin: User, developer: User) -> None:
    token, secret = factories.token(developer)
    client.force_login(admin)
    assert client.post(f"{TOKENS}{token.pk}/revoke/").status_code == 200
    token.refresh_from_db()
    assert token.revoked_at is not None
    event = AuditEvent.objects.get(action=AuditAction.TOKEN_REVOKED)
    assert event.actor_id == admin.pk
    assert event.detail == {"owner": developer.username}
    client.logout()
    assert client.get("/api/v1/me/", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


def test_a_reviewer_sees_but_cannot_revoke_someone_elses_token(
    client: Client, reviewer: User, developer: User
) -> None:
    token, _ = factories.token(developer)
    client.force_login(reviewer)
    assert client.get(f"{TOKENS}{token.pk}/").status_code == 200
    response = client.post(f"{TOKENS}{token.pk}/revoke/")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    token.refresh_from_db()
    assert token.revoked_at is None
    assert not AuditEvent.objects.filter(action=AuditAction.TOKEN_REVOKED).exists()


def test_an_outsider_cannot_even_find_someone_elses_token(client: Client, developer: User) -> None:
    token, _ = factories.token(developer)
    client.force_login(factories.user())
    response = client.post(f"{TOKENS}{token.pk}/revoke/")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "not found"}}
    token.refresh_from_db()
    assert token.revoked_at is None
