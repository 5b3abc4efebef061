"""/auth/token through Django's test client: authentication, grants, refusals and the JWT's shape."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.core.management import call_command
from django.test import Client, override_settings
from django.utils import timezone

from accounts import services as account_services
from accounts.models import PersonalToken, User
from accounts.roles import Role
from portal import metrics
from portal.audit import AuditAction
from portal.models import AuditEvent
from registries.models import Registry, TokenSigningKey
from registries.tokenserver import issue, keys
from tests import factories
from tests.registries.tokenserver.helpers import basic, registry_token, rule

pytestmark = pytest.mark.django_db

URL = "/auth/token"
SERVICE = "registry.test"


@pytest.fixture
def registry(signing_key: TokenSigningKey) -> Registry:
    return factories.registry(token_service=SERVICE)


@pytest.fixture
def pusher(registry: Registry) -> User:
    person, team = factories.user(), factories.group()
    factories.member(person, team)
    rule(team, registry, "team/**", "pull", "push")
    return person


@pytest.fixture
def reader(registry: Registry) -> User:
    person, team = factories.user(), factories.group()
    factories.member(person, team)
    rule(team, registry, "team/*", "pull")
    return person


def ask(client: Client, user: User | None, secret: str = "", **params: Any) -> Any:
    params.setdefault("service", SERVICE)
    headers = {"Authorization": basic(user.username, secret)} if user else {}
    return client.get(URL, params, headers=headers)


def access(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.content
    claims = jwt.decode(response.json()["token"], options={"verify_signature": False})
    return list(claims["access"])


def test_pusher_gets_pull_and_push(client: Client, pusher: User) -> None:
    response = ask(client, pusher, registry_token(pusher), scope="repository:team/app:pull,push")
    assert access(response) == [{"type": "repository", "name": "team/app", "actions": ["pull", "push"]}]


def test_reader_gets_the_intersection_and_the_refusal_is_audited(client: Client, reader: User) -> None:
    response = ask(client, reader, registry_token(reader), scope="repository:team/app:pull,push")
    assert access(response) == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
    event = AuditEvent.objects.get(action=AuditAction.REGISTRY_TOKEN_DENIED)
    assert event.actor_id == reader.pk
    assert event.detail["asked"] == ["repository:team/app:pull,push"]


def test_identical_refusals_are_audited_once_a_window_and_counted(
    client: Client, reader: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = registry_token(reader)
    for _ in range(3):
        ask(client, reader, secret, scope="repository:team/app:pull,push")
    ask(client, reader, secret, scope="repository:team/other:push")  # another refusal: its own event
    events = AuditEvent.objects.filter(action=AuditAction.REGISTRY_TOKEN_DENIED).order_by("sequence")
    assert [e.detail["asked"] for e in events] == [
        ["repository:team/app:pull,push"],
        ["repository:team/other:push"],
    ]
    assert metrics.REGISTRY_TOKENS.labels(service=SERVICE, outcome="partial")._value.get() >= 4  # all counted

    monkeypatch.setattr(issue.REFUSALS, "seconds", 0.0)  # the window is over
    ask(client, reader, secret, scope="repository:team/app:pull,push")
    last = AuditEvent.objects.filter(action=AuditAction.REGISTRY_TOKEN_DENIED).order_by("-sequence").first()
    assert last is not None
    assert last.detail["repeated_before"] == 2  # the two identical ones the first window held back


def test_outsider_gets_an_empty_access_list(client: Client, registry: Registry) -> None:
    outsider = factories.user()
    response = ask(client, outsider, registry_token(outsider), scope="repository:team/app:pull")
    assert access(response) == [{"type": "repository", "name": "team/app", "actions": []}]


def test_several_scopes_in_repeated_and_space_separated_parameters(client: Client, reader: User) -> None:
    secret = registry_token(reader)
    response = client.get(
        URL,
        {
            "service": SERVICE,
            "scope": ["repository:team/a:pull repository:other/b:pull", "repository:team/c:pull"],
        },
        headers={"Authorization": basic(reader.username, secret)},
    )
    assert [(a["name"], a["actions"]) for a in access(response)] == [
        ("team/a", ["pull"]),
        ("other/b", []),
        ("team/c", ["pull"]),
    ]


def test_a_host_prefixed_or_invalid_name_grants_nothing(client: Client, pusher: User) -> None:
    secret = registry_token(pusher)
    response = ask(
        client, pusher, secret, scope=["repository:host:5000/team/app:pull", "repository:Team/App:pull"]
    )
    assert [(a["name"], a["actions"]) for a in access(response)] == [
        ("host:5000/team/app", []),
        ("Team/App", []),
    ]


def test_star_asks_for_whatever_the_person_has_and_is_not_a_denial(client: Client, pusher: User) -> None:
    response = ask(client, pusher, registry_token(pusher), scope="repository:team/app:*")
    assert access(response)[0]["actions"] == ["pull", "push"]
    assert not AuditEvent.objects.filter(action=AuditAction.REGISTRY_TOKEN_DENIED).exists()


def test_catalog_is_for_admins_only(client: Client, registry: Registry, pusher: User) -> None:
    admin = factories.user_with_role(Role.ADMIN)
    assert access(ask(client, admin, registry_token(admin), scope="registry:catalog:*"))[0]["actions"] == [
        "*"
    ]
    assert access(ask(client, pusher, registry_token(pusher), scope="registry:catalog:*"))[0]["actions"] == []


def test_login_without_scope_gets_an_empty_token(client: Client, pusher: User) -> None:
    response = ask(client, pusher, registry_token(pusher), account=pusher.username)
    assert access(response) == []
    assert "refresh_token" not in response.json()


def test_granting_requests_are_counted_not_audited(client: Client, pusher: User) -> None:
    counter = metrics.REGISTRY_TOKENS.labels(service=SERVICE, outcome="granted")
    before = counter._value.get()
    ask(client, pusher, registry_token(pusher), scope="repository:team/app:pull")
    assert counter._value.get() == before + 1
    assert not AuditEvent.objects.filter(action=AuditAction.REGISTRY_TOKEN_DENIED).exists()


def test_the_response_shape(client: Client, pusher: User) -> None:
    with override_settings(REGISTRY_TOKEN_LIFETIME_SECONDS=120):
        body = ask(client, pusher, registry_token(pusher)).json()
    assert set(body) == {"token", "access_token", "expires_in", "issued_at"}
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 120
    assert body["issued_at"].endswith("Z")


@pytest.mark.parametrize("algorithm", ["ES256", "RS256"])
def test_the_jwt_verifies_with_the_published_certificate(
    client: Client, pusher: User, algorithm: str
) -> None:
    if algorithm == "RS256":
        keys.rotate(algorithm="RS256", actor=None)
    token = ask(client, pusher, registry_token(pusher), scope="repository:team/app:pull").json()["token"]
    header = jwt.get_unverified_header(token)
    signer = TokenSigningKey.objects.get(active=True)
    assert header["alg"] == algorithm
    assert header["typ"] == "JWT"
    assert header["kid"] == signer.kid
    certificate = x509.load_pem_x509_certificate(signer.certificate.encode())
    assert signer.certificate in keys.bundle()
    assert header["x5c"] == [keys.certificate_der_b64(signer)]
    public_key = certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    claims = jwt.decode(token, public_key, algorithms=[algorithm], audience=SERVICE, issuer="customs")
    assert claims["sub"] == pusher.username
    assert isinstance(claims["aud"], str)
    assert claims["exp"] - claims["iat"] == 300
    assert claims["nbf"] <= claims["iat"]
    assert claims["jti"]


def test_the_kid_is_the_libtrust_fingerprint(signing_key: TokenSigningKey) -> None:
    certificate = x509.load_pem_x509_certificate(signing_key.certificate.encode())
    kid = keys.libtrust_kid(certificate.public_key())
    assert signing_key.kid == kid
    assert len(kid) == 59
    assert kid.count(":") == 11


# --- refusals -----------------------------------------------------------------------------------


def test_unknown_service_is_a_400_in_the_registry_error_style(client: Client, pusher: User) -> None:
    response = ask(client, pusher, registry_token(pusher), service="nope")
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "UNSUPPORTED"


def test_bad_credentials_are_a_401_with_a_basic_challenge_and_audited(client: Client, pusher: User) -> None:
    response = ask(client, pusher, "cst_not-a-real-token-at-all")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Basic realm=")
    event = AuditEvent.objects.get(action=AuditAction.REGISTRY_TOKEN_DENIED)
    assert event.detail.pop("occurred_at")  # queued for a worker: when it happened travels with it
    assert event.detail == {"reason": "bad credentials", "username": pusher.username, "repeated_before": 0}


def test_someone_elses_username_is_refused(client: Client, pusher: User, reader: User) -> None:
    assert ask(client, reader, registry_token(pusher)).status_code == 401


def test_an_api_token_is_not_a_registry_token(client: Client, pusher: User) -> None:
    _, api_secret = factories.token(pusher)
    assert ask(client, pusher, api_secret).status_code == 401


def test_account_differing_from_the_basic_user_is_a_400(client: Client, pusher: User) -> None:
    assert ask(client, pusher, registry_token(pusher), account="someone-else").status_code == 400


def test_anonymous_gets_nothing(client: Client, registry: Registry) -> None:
    response = ask(client, None, scope="repository:team/app:pull")
    claims = jwt.decode(response.json()["token"], options={"verify_signature": False})
    assert claims["sub"] == ""
    assert claims["access"] == [{"type": "repository", "name": "team/app", "actions": []}]


def test_revoked_expired_and_departed_are_refused_at_once(client: Client, pusher: User) -> None:
    secret = registry_token(pusher)
    assert ask(client, pusher, secret).status_code == 200
    PersonalToken.objects.filter(owner=pusher).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert ask(client, pusher, secret).status_code == 401
    revoked, revoked_secret = factories.token(pusher, kind=PersonalToken.Kind.REGISTRY)
    account_services.revoke_token(revoked, actor=None)
    assert ask(client, pusher, revoked_secret).status_code == 401
    live = registry_token(pusher)
    account_services.deactivate_user(pusher, actor=None, reason="left", departed=True)
    assert ask(client, pusher, live).status_code == 401


def test_no_signing_key_is_a_503(client: Client) -> None:
    factories.registry(token_service=SERVICE)
    person = factories.user()
    assert ask(client, person, registry_token(person)).status_code == 503


# --- OAuth2 POST ----------------------------------------------------------------------------------


def test_password_grant_with_offline_access_returns_a_refresh_token(client: Client, reader: User) -> None:
    secret = registry_token(reader)
    form = {
        "grant_type": "password",
        "service": SERVICE,
        "client_id": "registry-client",
        "username": reader.username,
        "password": secret,
        "access_type": "offline",
        "scope": "repository:team/app:pull,push repository:other/x:pull",
    }
    body = client.post(URL, form).json()
    assert body["scope"] == "repository:team/app:pull"
    assert body["refresh_token"] == secret
    refreshed = client.post(
        URL, {"grant_type": "refresh_token", "service": SERVICE, "client_id": "c", "refresh_token": secret}
    )
    assert refreshed.status_code == 200
    assert refreshed.json()["refresh_token"] == secret


def test_refresh_grant_with_a_disabled_owner_is_a_401(client: Client, reader: User) -> None:
    secret = registry_token(reader)
    account_services.deactivate_user(reader, actor=None, reason="disabled")
    form = {"grant_type": "refresh_token", "service": SERVICE, "client_id": "c", "refresh_token": secret}
    assert client.post(URL, form).status_code == 401


def test_post_needs_a_client_id_and_a_known_grant_type(client: Client, reader: User) -> None:
    assert client.post(URL, {"grant_type": "password", "service": SERVICE}).status_code == 400
    assert client.post(URL, {"grant_type": "magic", "service": SERVICE, "client_id": "c"}).status_code == 400


# --- keys -----------------------------------------------------------------------------------------


def test_rotation_keeps_the_old_key_published_until_retired(signing_key: TokenSigningKey) -> None:
    new = keys.rotate(actor=None)
    assert keys.active() == new
    assert [k.kid for k in keys.published()] == [signing_key.kid, new.kid]
    with pytest.raises(keys.SigningKeyError):
        keys.retire(new.kid, actor=None)
    keys.retire(signing_key.kid, actor=None)
    assert keys.bundle() == new.certificate
    actions = list(AuditEvent.objects.order_by("sequence").values_list("action", flat=True))
    assert actions[-3:] == [
        AuditAction.TOKEN_SIGNING_KEY_CREATED,
        AuditAction.TOKEN_SIGNING_KEY_ROTATED,
        AuditAction.TOKEN_SIGNING_KEY_RETIRED,
    ]


def test_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    call_command("registry_token_keys", "generate", "--algorithm", "RS256")
    assert TokenSigningKey.objects.get(active=True).algorithm == "RS256"
    with pytest.raises(Exception, match="already active"):
        call_command("registry_token_keys", "generate")
    call_command("registry_token_keys", "rotate")
    call_command("registry_token_keys", "list")
    capsys.readouterr()
    call_command("registry_token_keys", "bundle")
    assert capsys.readouterr().out.count("BEGIN CERTIFICATE") == 2
