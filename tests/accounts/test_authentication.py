"""Bearer tokens at the API's door: who gets in, who gets a 401, and what a token's scope allows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import services
from accounts.models import PersonalToken, User
from tests import factories

pytestmark = pytest.mark.django_db

ME = "/api/v1/me/"
INVALID = {"error": {"code": "authentication_failed", "message": "the token is invalid, expired or revoked"}}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_a_token_signs_its_owner_in_to_the_api(client: Client, reviewer: User) -> None:
    _, secret = factories.token(reviewer)
    response = client.get(ME, headers=bearer(secret))
    assert response.status_code == 200
    body = response.json()
    assert (body["username"], body["role"]) == (reviewer.username, "reviewer")


def test_the_scheme_is_case_insensitive_and_surrounding_space_is_ignored(
    client: Client, developer: User
) -> None:
    _, secret = factories.token(developer)
    response = client.get(ME, headers={"Authorization": f"bearer   {secret}  "})
    assert response.status_code == 200


def test_a_token_does_not_open_a_session(client: Client, developer: User) -> None:
    _, secret = factories.token(developer)
    client.get(ME, headers=bearer(secret))
    assert client.get(ME).status_code == 401  # the next call without the header is anonymous again


def _expire(token: PersonalToken, _: User) -> None:
    PersonalToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(minutes=1))


def _revoke(token: PersonalToken, owner: User) -> None:
    services.revoke_token(token, actor=owner)


def _depart(_: PersonalToken, owner: User) -> None:
    User.objects.filter(pk=owner.pk).update(status=User.Status.DEPARTED, departed_at=timezone.now())


def _disable(_: PersonalToken, owner: User) -> None:
    User.objects.filter(pk=owner.pk).update(status=User.Status.DISABLED)


def _deactivate(_: PersonalToken, owner: User) -> None:
    User.objects.filter(pk=owner.pk).update(is_active=False)


@pytest.mark.parametrize("spoil", [_expire, _revoke, _depart, _disable, _deactivate])
def test_a_token_that_no_longer_opens_the_door_gets_401(client: Client, admin: User, spoil: object) -> None:
    token, secret = factories.token(admin)
    assert client.get(ME, headers=bearer(secret)).status_code == 200
    spoil(token, admin)  # type: ignore[operator]
    response = client.get(ME, headers=bearer(secret))
    assert response.status_code == 401
    assert response.json() == INVALID
    assert response["WWW-Authenticate"] == 'Bearer realm="customs"'


@pytest.mark.parametrize(
    "forge",
    [
        lambda secret: secret[:-1] + ("A" if secret[-1] != "A" else "B"),  # right lookup, wrong secret
        lambda secret: secret[:12],  # the lookup prefix alone
        lambda secret: "cst_" + "x" * 43,  # a well-formed token nobody holds
        lambda secret: "not-a-customs-token",
        lambda secret: "",
    ],
)
def test_a_wrong_secret_gets_401_in_the_error_shape(client: Client, developer: User, forge: object) -> None:
    _, secret = factories.token(developer)
    response = client.get(ME, headers=bearer(forge(secret)))  # type: ignore[operator]
    assert response.status_code == 401
    assert response.json() == INVALID


def test_a_registry_token_does_not_open_the_api(client: Client, developer: User) -> None:
    token, secret = factories.token(developer, kind=PersonalToken.Kind.REGISTRY)
    response = client.get(ME, headers=bearer(secret))
    assert response.status_code == 401
    assert response.json() == INVALID
    token.refresh_from_db()
    assert token.last_used_at is None  # a refused attempt must not make the token look in use


def test_another_scheme_is_left_to_other_authenticators(client: Client, developer: User) -> None:
    _, secret = factories.token(developer)
    response = client.get(ME, headers={"Authorization": f"Token {secret}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_a_read_token_cannot_write(client: Client, developer: User) -> None:
    _, secret = factories.token(developer, scopes=["read"])
    assert client.get("/api/v1/tokens/", headers=bearer(secret)).status_code == 200
    response = client.post(
        "/api/v1/tokens/", {"name": "sneaky"}, content_type="application/json", headers=bearer(secret)
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert PersonalToken.objects.filter(name="sneaky").count() == 0


def test_a_write_token_can_write(client: Client, developer: User) -> None:
    _, secret = factories.token(developer, scopes=["read", "write"])
    response = client.post(
        "/api/v1/tokens/", {"name": "from-ci"}, content_type="application/json", headers=bearer(secret)
    )
    assert response.status_code == 201
    assert PersonalToken.objects.get(name="from-ci").owner == developer


def test_a_read_token_cannot_revoke_even_its_owners_tokens(client: Client, developer: User) -> None:
    target, _ = factories.token(developer)
    _, secret = factories.token(developer, scopes=["read"])
    response = client.post(f"/api/v1/tokens/{target.pk}/revoke/", headers=bearer(secret))
    assert response.status_code == 403
    target.refresh_from_db()
    assert target.revoked_at is None


def test_a_write_token_does_not_raise_its_owners_role(client: Client, developer: User) -> None:
    _, secret = factories.token(developer, scopes=["read", "write"])
    response = client.get("/api/v1/groups/", headers=bearer(secret))
    assert response.status_code == 403  # groups are for reviewers; the token narrows, never widens


def test_a_token_follows_its_owners_current_role(client: Client, reviewer: User) -> None:
    _, secret = factories.token(reviewer)
    assert client.get("/api/v1/groups/", headers=bearer(secret)).status_code == 200
    reviewer.memberships.all().delete()
    assert client.get("/api/v1/groups/", headers=bearer(secret)).status_code == 403


def test_api_use_writes_last_use_once_per_resolution(client: Client, developer: User) -> None:
    token, secret = factories.token(developer)
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert client.get(ME, headers=bearer(secret)).status_code == 200
    updates = [q for q in queries.captured_queries if q["sql"].startswith('UPDATE "accounts_personaltoken"')]
    assert len(updates) == 1
    token.refresh_from_db()
    assert token.last_used_at is not None
    assert timezone.now() - token.last_used_at < timedelta(minutes=1)
