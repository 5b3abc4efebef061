"""Identity providers from environment variables, the SAML SP metadata, and the admin's provider page."""

from __future__ import annotations

from typing import Any

import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from pytest_django import Settings

from accounts.models import User
from accounts.sso import providers_from_env
from portal import audit
from portal.audit import AuditAction
from tests.certificates import self_signed

OIDC = {
    "CUSTOMS_OIDC_PROVIDERS": "entra,okta",
    "CUSTOMS_OIDC_ENTRA_ISSUER": "https://login.microsoftonline.com/tenant-1/v2.0",
    "CUSTOMS_OIDC_ENTRA_CLIENT_ID": "entra-app",
    "CUSTOMS_OIDC_ENTRA_CLIENT_SECRET": "entra-secret",
    "CUSTOMS_OIDC_ENTRA_UID_CLAIM": "oid",
    "CUSTOMS_OIDC_ENTRA_FETCH_USERINFO": "false",
    "CUSTOMS_OIDC_OKTA_ISSUER": "https://corp.okta.example/oauth2/default",
    "CUSTOMS_OIDC_OKTA_CLIENT_ID": "okta-app",
    "CUSTOMS_OIDC_OKTA_CLIENT_SECRET": "okta-secret",
    "CUSTOMS_OIDC_OKTA_DIRECTORY": "okta",
}


def _certificate() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return self_signed(key, "test-idp", days=90).public_bytes(serialization.Encoding.PEM).decode()


def saml_env() -> dict[str, str]:
    return {
        "CUSTOMS_SAML_PROVIDERS": "corp",
        "CUSTOMS_SAML_CORP_NAME": "Corp SAML",
        "CUSTOMS_SAML_CORP_IDP_ENTITY_ID": "https://sts.windows.net/tenant-1/",
        "CUSTOMS_SAML_CORP_SSO_URL": "https://login.microsoftonline.com/tenant-1/saml2",
        "CUSTOMS_SAML_CORP_X509CERT": _certificate(),
        "CUSTOMS_SAML_CORP_SP_ENTITY_ID": "https://customs.example.com/saml/corp",
    }


def test_several_oidc_providers_with_their_own_claims() -> None:
    apps = providers_from_env(OIDC)["openid_connect"]
    assert providers_from_env(OIDC)["openid_connect"]["OAUTH_PKCE_ENABLED"] is True
    entra, okta = apps["APPS"]
    assert (entra["provider_id"], entra["client_id"], entra["secret"]) == (
        "entra",
        "entra-app",
        "entra-secret",
    )
    assert entra["settings"]["uid_field"] == "oid"
    assert entra["settings"]["fetch_userinfo"] is False
    assert entra["settings"]["oauth_pkce_enabled"] is True
    assert entra["settings"]["customs"]["algorithms"] == ["RS256"]
    assert okta["settings"]["customs"]["directory"] == "okta"
    assert okta["settings"]["token_auth_method"] == "client_secret_post"


def test_no_variables_configure_no_provider() -> None:
    assert providers_from_env({}) == {}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"CUSTOMS_OIDC_ENTRA_ISSUER": "http://login.example/v2.0"}, "must be an https:// URL"),
        ({"CUSTOMS_OIDC_ENTRA_CLIENT_SECRET": ""}, "CUSTOMS_OIDC_ENTRA_CLIENT_SECRET is required"),
        ({"CUSTOMS_OIDC_ENTRA_ALGORITHMS": "RS256,none"}, "none not allowed"),
        ({"CUSTOMS_OIDC_ENTRA_ALGORITHMS": "HS256"}, "HS256 not allowed"),
        ({"CUSTOMS_OIDC_PROVIDERS": "Entra"}, "is not an id"),
        ({"CUSTOMS_OIDC_PROVIDERS": "entra,entra"}, "names a provider twice"),
    ],
)
def test_bad_provider_configuration_stops_startup_with_a_clear_message(
    override: dict[str, str], message: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        providers_from_env(OIDC | override)


def test_plain_http_is_allowed_only_when_tests_ask_for_it() -> None:
    env = OIDC | {"CUSTOMS_OIDC_ENTRA_ISSUER": "http://127.0.0.1:9000", "CUSTOMS_OIDC_ALLOW_HTTP": "true"}
    assert (
        providers_from_env(env)["openid_connect"]["APPS"][0]["settings"]["server_url"]
        == "http://127.0.0.1:9000"
    )


def test_saml_requires_signed_assertions_and_pins_the_sp_entity_id() -> None:
    app = providers_from_env(saml_env())["saml"]["APPS"][0]
    assert app["provider_id"] == "https://sts.windows.net/tenant-1/"
    assert app["client_id"] == "corp"
    advanced = app["settings"]["advanced"]
    assert advanced["strict"] is True
    assert advanced["want_assertion_signed"] is True
    assert advanced["reject_idp_initiated_sso"] is True
    assert app["settings"]["sp"] == {"entity_id": "https://customs.example.com/saml/corp"}
    # Entra's group claim URI by default, read whole (never through attribute_mapping, which keeps one value).
    assert (
        app["settings"]["customs"]["groups_claim"]
        == "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"
    )
    assert "groups" not in app["settings"]["attribute_mapping"]


@pytest.mark.django_db
def test_sp_metadata_is_served_at_a_stable_url_with_the_pinned_entity_id(
    client: Client, settings: Settings
) -> None:
    settings.SOCIALACCOUNT_PROVIDERS = providers_from_env(saml_env())
    settings.ALLOWED_HOSTS = ["customs.example.com"]
    response = client.get("/accounts/saml/corp/metadata/", headers={"Host": "customs.example.com"})
    body = response.content.decode()
    assert response.status_code == 200
    assert 'entityID="https://customs.example.com/saml/corp"' in body
    assert "http://customs.example.com/accounts/saml/corp/acs/" in body
    assert 'WantAssertionsSigned="true"' in body


# --- the admin's provider page ---------------------------------------------------------------------


@pytest.fixture
def configured(settings: Settings) -> dict[str, Any]:
    env = OIDC | saml_env()
    settings.SOCIALACCOUNT_PROVIDERS = providers_from_env(env)
    return env


@pytest.mark.django_db
def test_the_provider_page_lists_each_provider_with_what_to_register(
    client: Client, admin: User, configured: dict[str, Any]
) -> None:
    client.force_login(admin)
    page = client.get("/settings/identity/").content.decode()
    assert "https://login.microsoftonline.com/tenant-1/v2.0" in page
    assert "http://testserver/accounts/oidc/entra/login/callback/" in page
    assert "http://testserver/accounts/saml/corp/metadata/" in page
    assert "https://sts.windows.net/tenant-1/" in page
    for secret in ("entra-secret", "okta-secret"):
        assert secret not in page


@pytest.mark.django_db
@responses.activate
def test_checking_an_oidc_provider_reads_discovery_and_keys(
    client: Client, admin: User, configured: dict[str, Any]
) -> None:
    issuer = "https://login.microsoftonline.com/tenant-1/v2.0"
    responses.get(
        f"{issuer}/.well-known/openid-configuration", json={"issuer": issuer, "jwks_uri": f"{issuer}/keys"}
    )
    responses.get(f"{issuer}/keys", json={"keys": [{"kty": "RSA", "kid": "a", "use": "sig"}]})
    client.force_login(admin)
    fragment = client.post("/settings/identity/oidc/entra/check/").content.decode()
    assert "1 signing key(s) published" in fragment


@pytest.mark.django_db
@responses.activate
def test_a_provider_naming_another_issuer_fails_the_check(
    client: Client, admin: User, configured: dict[str, Any]
) -> None:
    issuer = "https://login.microsoftonline.com/tenant-1/v2.0"
    responses.get(f"{issuer}/.well-known/openid-configuration", json={"issuer": "https://evil.example"})
    client.force_login(admin)
    fragment = client.post("/settings/identity/oidc/entra/check/").content.decode()
    assert "✗" in fragment
    assert "https://evil.example" in fragment


@pytest.mark.django_db
def test_checking_a_saml_provider_reports_its_certificate_expiry(
    client: Client, admin: User, configured: dict[str, Any]
) -> None:
    client.force_login(admin)
    fragment = client.post("/settings/identity/saml/corp/check/").content.decode()
    assert "✓ signing certificate CN=test-idp expires" in fragment
    assert "(89 days)" in fragment or "(90 days)" in fragment


@pytest.mark.django_db
def test_the_dashboard_shows_break_glass_sign_ins(client: Client, reviewer: User) -> None:
    admin = User.objects.create_superuser("admin")
    audit.record(admin, AuditAction.SIGNED_IN, target=admin, source="local", break_glass=True)
    audit.record(reviewer, AuditAction.SIGNED_IN, target=reviewer, source="oidc", break_glass=False)
    client.force_login(reviewer)
    page = client.get("/").content.decode()
    section = page.split('id="break-glass-heading"', 1)[1].split("</section>", 1)[0]
    assert "admin" in section
    assert reviewer.username not in section
