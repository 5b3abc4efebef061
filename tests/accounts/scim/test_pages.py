"""The admins' SCIM page: tokens shown once, revoked with a button, recent requests listed."""

from __future__ import annotations

from django.test import Client
from django.urls import reverse

from accounts.models import ScimRequest, ScimToken, User
from portal.models import AuditEvent
from tests.accounts.scim.conftest import Scim, connection


def test_creating_a_token_shows_the_secret_once(client: Client, admin: User) -> None:
    client.force_login(admin)
    response = client.post(reverse("scim_admin:tokens"), {"name": "Entra prod", "directory": "corp"})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    token = ScimToken.objects.get(name="Entra prod")
    secret = response.context["issued"].secret
    assert secret.startswith("csp_")
    assert secret in response.content.decode()
    assert (token.directory, token.created_by) == ("corp", admin)
    again = client.get(reverse("scim_admin:tokens"))
    assert secret not in again.content.decode()
    assert token.lookup in again.content.decode()
    assert "no-store" not in again.get("Cache-Control", "")
    assert AuditEvent.objects.filter(action="scim_token.create", actor_id=admin.pk).exists()
    # And it works.
    scim = Scim(client=Client(), secret=secret, token=token)
    assert scim.get("/Users").status == 200


def test_duplicate_names_and_bad_directories_are_form_errors(client: Client, admin: User) -> None:
    client.force_login(admin)
    connection(client, name="taken")
    dup = client.post(reverse("scim_admin:tokens"), {"name": "Taken", "directory": "corp"})
    assert "already exists" in dup.content.decode()
    bad = client.post(reverse("scim_admin:tokens"), {"name": "x", "directory": "no spaces"})
    assert bad.status_code == 200
    assert bad.context["form"].errors["directory"]
    assert ScimToken.objects.count() == 1


def test_revoking_from_the_page(client: Client, admin: User) -> None:
    scim = connection(Client(), name="okta")
    client.force_login(admin)
    response = client.post(reverse("scim_admin:token_revoke", kwargs={"token_id": scim.token.pk}))
    assert response.status_code == 302
    assert ScimToken.objects.get(pk=scim.token.pk).revoked_at is not None
    assert scim.get("/Users").status == 401
    assert AuditEvent.objects.filter(action="scim_token.revoke", actor_id=admin.pk).count() == 1
    page = client.get(reverse("scim_admin:tokens")).content.decode()
    assert "revoked" in page
    assert "Revoke SCIM token okta" not in page


def test_the_page_lists_recent_requests_with_results(client: Client, admin: User) -> None:
    scim = connection(Client(), name="entra", directory="corp")
    scim.get("/Users")
    scim.get("/Users/nope")
    client.force_login(admin)
    page = client.get(reverse("scim_admin:tokens")).content.decode()
    assert "GET /scim/v2/Users/nope" in page
    assert "no such user" in page
    assert "404" in page
    assert scim.secret not in page


def test_only_fifty_requests_are_shown(client: Client, admin: User) -> None:
    scim = connection(Client(), name="busy")
    ScimRequest.objects.bulk_create(
        ScimRequest(token=scim.token, method="GET", path=f"/scim/v2/Users/{n}", status=200) for n in range(60)
    )
    client.force_login(admin)
    assert len(client.get(reverse("scim_admin:tokens")).context["requests"]) == 50


def test_reviewers_may_not_see_or_revoke(client: Client, reviewer: User) -> None:
    scim = connection(Client(), name="guarded")
    client.force_login(reviewer)
    assert client.get(reverse("scim_admin:tokens")).status_code == 403
    assert (
        client.post(reverse("scim_admin:token_revoke", kwargs={"token_id": scim.token.pk})).status_code == 403
    )
    assert ScimToken.objects.get(pk=scim.token.pk).revoked_at is None
