"""Bearer tokens per connection, and the request log the SCIM page shows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import ScimRequest, ScimToken, User
from accounts.scim import services
from tests import factories
from tests.accounts.scim.conftest import BASE, Scim, error_of, new_user


def test_missing_token_is_401_with_a_scim_error(client: Client, db: None) -> None:
    response = client.get(f"{BASE}/Users")
    assert response.status_code == 401
    assert response["Content-Type"].startswith("application/scim+json")
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["status"] == "401"
    assert not ScimRequest.objects.exists()  # no credentials at all: not worth a row


def test_basic_auth_or_a_session_is_no_substitute(scim: Scim, client: Client, admin: User) -> None:
    client.force_login(admin)
    assert client.get(f"{BASE}/Users").status_code == 401
    assert client.get(f"{BASE}/Users", HTTP_AUTHORIZATION=f"Basic {scim.secret}").status_code == 401


def test_revoked_token_is_401(scim: Scim) -> None:
    assert scim.get("/Users").status == 200
    assert services.revoke_token(scim.token, actor=None)
    assert not services.revoke_token(scim.token, actor=None)  # already revoked: nothing to do
    reply = scim.get("/Users")
    assert reply.status == 401
    assert error_of(reply) == ("401", None)


def test_a_token_with_the_right_lookup_but_wrong_secret_is_401(scim: Scim) -> None:
    forged = Scim(client=scim.client, secret=scim.secret[:-4] + "AAAA", token=scim.token)
    assert forged.get("/Users").status == 401
    assert ScimRequest.objects.filter(token=None, status=401).count() == 1


def test_requests_are_logged_without_bodies_or_secrets(scim: Scim) -> None:
    scim.post("/Users", new_user("logged@corp.example", password="hunter2-password"))
    scim.post("/Users", new_user("LOGGED@corp.example"))
    rows = list(ScimRequest.objects.order_by("at", "pk"))
    assert [(r.method, r.path, r.status) for r in rows] == [
        ("POST", "/scim/v2/Users", 201),
        ("POST", "/scim/v2/Users", 409),
    ]
    assert rows[0].token == scim.token
    assert rows[0].summary.startswith("created user ")
    assert rows[1].summary == "uniqueness: userName is taken"
    logged = " ".join(f"{r.path} {r.summary}" for r in rows)
    for secret in ("hunter2-password", scim.secret, "logged@corp.example"):
        assert secret not in logged


def test_query_strings_are_not_logged(scim: Scim) -> None:
    scim.get('/Users?filter=userName eq "private@corp.example"')
    assert ScimRequest.objects.get().path == "/scim/v2/Users"


def test_last_used_is_written_at_most_once_a_minute(scim: Scim) -> None:
    scim.get("/Users")
    first = ScimToken.objects.get(pk=scim.token.pk).last_used_at
    assert first is not None
    scim.get("/Users")
    assert ScimToken.objects.get(pk=scim.token.pk).last_used_at == first
    ScimToken.objects.filter(pk=scim.token.pk).update(last_used_at=timezone.now() - timedelta(minutes=2))
    scim.get("/Users")
    later = ScimToken.objects.get(pk=scim.token.pk).last_used_at
    assert later is not None
    assert later > first


def test_tokens_are_stored_as_digests(scim: Scim) -> None:
    token = ScimToken.objects.get(pk=scim.token.pk)
    assert scim.secret.startswith("csp_")
    assert token.lookup == scim.secret[:12]
    assert scim.secret not in (token.digest, token.lookup)


def test_a_personal_token_does_not_open_scim(scim: Scim, developer: User) -> None:
    _, personal = factories.token(developer)
    assert Scim(client=scim.client, secret=personal, token=scim.token).get("/Users").status == 401


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_wrong_method_is_405(scim: Scim, method: str) -> None:
    reply = scim.send(method.upper(), "/Users", {})
    assert reply.status == 405
    assert error_of(reply)[0] == "405"


def test_csrf_does_not_apply(scim: Scim) -> None:
    scim.client = Client(enforce_csrf_checks=True)
    assert scim.post("/Users", new_user("csrf@corp.example")).status == 201
