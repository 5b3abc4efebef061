"""OIDC sign-in through Customs' verifying adapter, against a provider faked at the HTTP layer.

The provider's answers are real: discovery, JWKS and ID tokens signed with RSA keys made here.
Each attack rewrites one answer and expects a refusal with nothing created.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlparse

import jwt
import pytest
import requests
import responses
from allauth.socialaccount.models import SocialAccount
from cryptography.hazmat.primitives.asymmetric import rsa
from django.test import Client
from pytest_django import Settings

from accounts.models import DirectoryGroup, GroupMembership, PersonalToken, RoleBinding, Source, User
from accounts.roles import Role
from accounts.sso import providers_from_env
from portal.audit import AuditAction
from portal.models import AuditEvent
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_rate_limits")]

ISSUER = "https://idp.example.test"
CLIENT_ID = "customs"
LOGIN = "/accounts/oidc/corp/login/"
CALLBACK = "/accounts/oidc/corp/login/callback/"
ENV = {
    "CUSTOMS_OIDC_PROVIDERS": "corp",
    "CUSTOMS_OIDC_CORP_ISSUER": ISSUER,
    "CUSTOMS_OIDC_CORP_CLIENT_ID": CLIENT_ID,
    "CUSTOMS_OIDC_CORP_CLIENT_SECRET": "client-secret-for-tests-0123456789abcdef",
    "CUSTOMS_OIDC_CORP_NAME": "Corp sign-in",
    "CUSTOMS_OIDC_CORP_SCOPES": "openid profile email groups",
}


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class FakeProvider:
    """Answers like an OIDC provider; tests rewrite the next answer to attack Customs."""

    key: rsa.RSAPrivateKey = field(default_factory=_rsa)
    kid: str = "key-1"
    subject: str = "00u-alice"
    claims: dict[str, Any] = field(default_factory=dict)
    userinfo: dict[str, Any] | None = None
    token_hook: Any = None  # callable(claims, nonce) -> str: replaces the signed ID token
    nonce: str = ""

    def jwks(self) -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [public | {"kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def id_token_claims(self) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": ISSUER,
            "aud": CLIENT_ID,
            "sub": self.subject,
            "iat": now,
            "exp": now + 300,
            "nonce": self.nonce,
            "name": "Alice Example",
            "email": "alice@example.test",
        } | self.claims

    def sign(
        self, claims: dict[str, Any], key: rsa.RSAPrivateKey | None = None, kid: str | None = None
    ) -> str:
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": kid or self.kid})

    def token_response(self, request: Any) -> tuple[int, dict[str, str], str]:
        claims = self.id_token_claims()
        id_token = self.token_hook(claims) if self.token_hook else self.sign(claims)
        body = {
            "access_token": "access-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": id_token,
        }
        return 200, {}, json.dumps(body)

    def userinfo_response(self, request: Any) -> tuple[int, dict[str, str], str]:
        info = self.userinfo if self.userinfo is not None else {"sub": self.subject, "groups": ["g-staff"]}
        return 200, {}, json.dumps(info)

    def register(self, mock: responses.RequestsMock) -> None:
        mock.get(
            f"{ISSUER}/.well-known/openid-configuration",
            json={
                "issuer": ISSUER,
                "authorization_endpoint": f"{ISSUER}/auth",
                "token_endpoint": f"{ISSUER}/token",
                "userinfo_endpoint": f"{ISSUER}/me",
                "jwks_uri": f"{ISSUER}/jwks",
                "token_endpoint_auth_methods_supported": ["client_secret_post"],
                "id_token_signing_alg_values_supported": ["RS256"],
            },
        )
        mock.get(f"{ISSUER}/jwks", json=self.jwks())
        mock.add_callback(responses.POST, f"{ISSUER}/token", callback=self.token_response)
        mock.add_callback(responses.GET, f"{ISSUER}/me", callback=self.userinfo_response)


@pytest.fixture
def provider(settings: Settings) -> Iterator[FakeProvider]:
    settings.SOCIALACCOUNT_PROVIDERS = providers_from_env(ENV)
    fake = FakeProvider()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.register(mock)
        yield fake


def start(client: Client, provider: FakeProvider) -> dict[str, str]:
    """Begin a sign-in as the browser would (a POST) and return the authorisation request's query."""
    response = client.post(LOGIN)
    assert response.status_code == 302
    query = {k: v[0] for k, v in parse_qs(urlparse(response["Location"]).query).items()}
    provider.nonce = query.get("nonce", "")
    return query


def finish(client: Client, provider: FakeProvider, *, state: str | None = None) -> Any:
    query = start(client, provider)
    return client.get(CALLBACK, {"code": "auth-code", "state": state or query["state"]})


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def nothing_created(users_before: int) -> bool:
    return User.objects.count() == users_before and not SocialAccount.objects.exists()


# --- the happy path ------------------------------------------------------------------------------


def test_the_authorisation_request_uses_pkce_state_and_a_nonce(
    client: Client, provider: FakeProvider
) -> None:
    query = start(client, provider)
    assert query["response_type"] == "code"
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) >= 43
    assert len(query["state"]) >= 16
    assert len(query["nonce"]) >= 32
    assert set(query["scope"].split()) == {"openid", "profile", "email", "groups"}


def test_a_sign_in_creates_the_person_with_the_groups_the_provider_sent(
    client: Client, provider: FakeProvider
) -> None:
    provider.userinfo = {"sub": provider.subject, "groups": ["g-admins", "g-staff"]}
    response = finish(client, provider)
    assert response.status_code == 302
    assert signed_in(client)
    user = User.objects.get(external_id=provider.subject)
    assert (user.source, user.directory, user.display_name, user.email) == (
        Source.OIDC,
        "default",
        "Alice Example",
        "alice@example.test",
    )
    assert sorted(user.directory_groups.values_list("external_id", flat=True)) == ["g-admins", "g-staff"]
    assert user.groups_claim == User.GroupsClaim.COMPLETE
    event = AuditEvent.objects.get(action=AuditAction.GROUPS_SYNCED)
    assert event.detail["added"] == ["g-admins", "g-staff"]


def test_the_role_follows_the_groups_right_after_sign_in(client: Client, provider: FakeProvider) -> None:
    admins = factories.group(external_id="g-admins", display_name="Portal admins")
    RoleBinding.objects.create(group=admins, role=Role.ADMIN)
    provider.userinfo = {"sub": provider.subject, "groups": ["g-admins"]}
    finish(client, provider)
    assert client.get("/api/v1/me/").json()["role"] == "admin"


def test_the_next_sign_in_replaces_the_groups_added_and_removed(
    client: Client, provider: FakeProvider
) -> None:
    provider.userinfo = {"sub": provider.subject, "groups": ["g-admins", "g-staff"]}
    finish(client, provider)
    client.logout()
    provider.userinfo = {"sub": provider.subject, "groups": ["g-staff", "g-new"]}
    finish(client, provider)
    user = User.objects.get(external_id=provider.subject)
    assert sorted(user.directory_groups.values_list("external_id", flat=True)) == ["g-new", "g-staff"]
    last = AuditEvent.objects.filter(action=AuditAction.GROUPS_SYNCED).latest("sequence")
    assert (last.detail["added"], last.detail["removed"]) == (["g-new"], ["g-admins"])


def test_groups_in_the_id_token_are_read_when_userinfo_has_none(
    client: Client, provider: FakeProvider
) -> None:
    provider.userinfo = {"sub": provider.subject}
    provider.claims = {"groups": ["g-from-token"]}
    finish(client, provider)
    user = User.objects.get(external_id=provider.subject)
    assert list(user.directory_groups.values_list("external_id", flat=True)) == ["g-from-token"]


def test_group_overage_keeps_the_memberships_scim_gave(client: Client, provider: FakeProvider) -> None:
    person = factories.user(external_id=provider.subject, directory="default")
    scim_group = factories.group(external_id="g-scim", source=Source.SCIM)
    GroupMembership.objects.create(user=person, group=scim_group, source=Source.SCIM)
    provider.userinfo = {"sub": provider.subject}
    provider.claims = {
        "_claim_names": {"groups": "src1"},
        "_claim_sources": {"src1": {"endpoint": "https://graph"}},
    }
    finish(client, provider)
    person.refresh_from_db()
    assert person.groups_claim == User.GroupsClaim.OVERAGE
    assert list(person.directory_groups.values_list("external_id", flat=True)) == ["g-scim"]


def test_an_absent_groups_claim_changes_nothing(client: Client, provider: FakeProvider) -> None:
    provider.userinfo = {"sub": provider.subject, "groups": ["g-staff"]}
    finish(client, provider)
    client.logout()
    provider.userinfo = {"sub": provider.subject}
    finish(client, provider)
    user = User.objects.get(external_id=provider.subject)
    assert list(user.directory_groups.values_list("external_id", flat=True)) == ["g-staff"]


def test_a_person_scim_provisioned_is_linked_by_immutable_id(client: Client, provider: FakeProvider) -> None:
    provisioned = factories.user(username="alice", external_id=provider.subject, source=Source.SCIM)
    finish(client, provider)
    assert signed_in(client)
    assert client.session["_auth_user_id"] == str(provisioned.pk)
    assert User.objects.filter(external_id=provider.subject).count() == 1


def test_an_email_address_alone_never_links_to_an_existing_account(
    client: Client, provider: FakeProvider
) -> None:
    someone = factories.user(username="alice-local", external_id="another-id")
    someone.email = "alice@example.test"
    someone.save()
    finish(client, provider)
    assert client.session["_auth_user_id"] != str(someone.pk)
    assert User.objects.get(external_id=provider.subject).pk != someone.pk


@pytest.mark.parametrize("status", [User.Status.DISABLED, User.Status.DEPARTED])
def test_a_disabled_or_departed_person_cannot_sign_in(
    client: Client, provider: FakeProvider, status: str
) -> None:
    factories.user(external_id=provider.subject, status=status, is_active=False)
    response = finish(client, provider)
    assert response.status_code == 403
    assert not signed_in(client)
    assert not SocialAccount.objects.exists()


def test_password_sign_in_is_off_except_for_break_glass_once_a_provider_exists(
    client: Client, provider: FakeProvider, fast_passwords: None
) -> None:
    factories.user(username="carol", password="a-long-enough-password-1")
    admin = User.objects.create_superuser("admin", password="another-long-password-2")
    refused = client.post("/accounts/login/", {"login": "carol", "password": "a-long-enough-password-1"})
    assert refused.status_code == 200
    assert "identity provider" in refused.content.decode()
    assert not signed_in(client)
    allowed = client.post("/accounts/login/", {"login": "admin", "password": "another-long-password-2"})
    assert allowed.status_code == 302
    assert client.session["_auth_user_id"] == str(admin.pk)


def test_the_sign_in_page_lists_the_provider(client: Client, provider: FakeProvider) -> None:
    page = client.get("/accounts/login/").content.decode()
    assert "Sign in with Corp sign-in" in page
    assert LOGIN in page


# --- attacks: each refused, nothing created ------------------------------------------------------


def _alg_none(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, key=None, algorithm="none")  # type: ignore[arg-type]


def _unpublished_key(provider: FakeProvider) -> Any:
    return lambda claims: provider.sign(claims, key=_rsa())


def _unpublished_kid(provider: FakeProvider) -> Any:
    return lambda claims: provider.sign(claims, key=_rsa(), kid="attacker-key")


def _groups_added_after_signing(provider: FakeProvider) -> Any:
    def forge(claims: dict[str, Any]) -> str:
        header, _, signature = provider.sign(claims).split(".")
        payload = base64.urlsafe_b64encode(json.dumps(claims | {"groups": ["g-admins"]}).encode()).rstrip(
            b"="
        )
        return f"{header}.{payload.decode()}.{signature}"

    return forge


ATTACKS: dict[str, Any] = {
    "alg none": lambda p: _alg_none,
    "signed by a key the provider does not publish": _unpublished_key,
    "signed by an unknown key id": _unpublished_kid,
    "groups claim added to the signed token": _groups_added_after_signing,
    "another issuer": lambda p: lambda c: p.sign(c | {"iss": "https://evil.example.test"}),
    "another client": lambda p: lambda c: p.sign(c | {"aud": "someone-else"}),
    "expired": lambda p: (
        lambda c: p.sign(c | {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200})
    ),
    "wrong nonce": lambda p: lambda c: p.sign(c | {"nonce": "not-the-one-we-sent"}),
    "no nonce": lambda p: lambda c: p.sign({k: v for k, v in c.items() if k != "nonce"}),
    "HMAC with the client secret": lambda p: (
        lambda c: jwt.encode(c, "client-secret-for-tests-0123456789abcdef", algorithm="HS256")
    ),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_forged_or_misdirected_id_token_is_refused(
    client: Client, provider: FakeProvider, attack: str
) -> None:
    users_before = User.objects.count()
    provider.token_hook = ATTACKS[attack](provider)
    provider.claims = {"groups": ["g-admins"]}
    response = finish(client, provider)
    assert not signed_in(client), attack
    assert response.status_code in (200, 400, 401, 403)
    assert nothing_created(users_before), attack
    assert not DirectoryGroup.objects.exists()


def test_userinfo_for_another_subject_is_refused(client: Client, provider: FakeProvider) -> None:
    users_before = User.objects.count()
    provider.userinfo = {"sub": "00u-mallory", "groups": ["g-admins"]}
    finish(client, provider)
    assert not signed_in(client)
    assert nothing_created(users_before)


def test_a_wrong_state_is_refused(client: Client, provider: FakeProvider) -> None:
    users_before = User.objects.count()
    response = finish(client, provider, state="a-state-this-browser-never-started")
    assert not signed_in(client)
    assert response.status_code in (200, 400, 401, 403)
    assert nothing_created(users_before)


def test_a_discovery_document_for_another_issuer_is_refused(client: Client, settings: Settings) -> None:
    settings.SOCIALACCOUNT_PROVIDERS = providers_from_env(ENV)
    with responses.RequestsMock() as mock:
        mock.get(
            f"{ISSUER}/.well-known/openid-configuration",
            json={
                "issuer": "https://evil.example.test",
                "authorization_endpoint": f"{ISSUER}/auth",
                "token_endpoint": f"{ISSUER}/token",
                "jwks_uri": f"{ISSUER}/jwks",
            },
        )
        response = client.post(LOGIN)
    assert response.status_code == 401  # allauth's sign-in error page, and no redirect to that provider
    assert "Location" not in response


def test_a_deactivated_persons_tokens_and_session_stop_at_once(
    client: Client, provider: FakeProvider
) -> None:
    from accounts.services import deactivate_user

    finish(client, provider)
    user = User.objects.get(external_id=provider.subject)
    _, secret = factories.token(user)
    assert client.get("/settings/").status_code == 200
    deactivate_user(user, actor=None, reason="left the company", departed=True)
    assert client.get("/settings/").status_code == 302  # the session no longer opens pages
    api = Client().get("/api/v1/me/", headers={"Authorization": f"Bearer {secret}"})
    assert api.status_code == 401
    assert not PersonalToken.objects.active().filter(owner=user).exists()


def test_a_provider_timing_out_during_the_code_exchange_shows_the_error_page(
    client: Client, provider: FakeProvider
) -> None:
    users_before = User.objects.count()

    def timeout(claims: dict[str, Any]) -> str:
        raise requests.exceptions.ReadTimeout("the provider did not answer")

    provider.token_hook = timeout
    response = finish(client, provider)
    assert response.status_code in (400, 401)  # allauth's sign-in error page, not a 500
    assert not signed_in(client)
    assert nothing_created(users_before)
