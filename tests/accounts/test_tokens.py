"""Personal tokens in the service layer: minting, storage, limits, revocation and use."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import services, tokens
from accounts.models import PersonalToken, RobotToken, User
from portal.audit import AuditAction
from portal.errors import RequestRejected
from portal.models import AuditEvent
from tests import factories

pytestmark = pytest.mark.django_db

API = PersonalToken.Kind.API


def every_stored_value() -> str:
    """Every row of every table as text: what an attacker with a database dump would read."""
    tables = connection.introspection.table_names(include_views=False)
    with connection.cursor() as cursor:
        dumps: list[str] = []
        for table in tables:
            cursor.execute(f"SELECT t::text FROM {connection.ops.quote_name(table)} t")  # noqa: S608
            dumps.extend(row[0] for row in cursor.fetchall())
    return "\n".join(dumps)


def token_updates(queries: CaptureQueriesContext) -> list[str]:
    return [
        q["sql"] for q in queries.captured_queries if q["sql"].startswith('UPDATE "accounts_personaltoken"')
    ]


def test_a_minted_token_is_prefixed_and_its_digest_is_keyed() -> None:
    raw, lookup, digest = tokens.mint()
    assert raw.startswith("cst_")
    assert lookup == raw[:12]
    assert len(raw) > 40  # 32 random bytes, base64: far beyond guessing
    assert tokens.matches(raw, digest)
    assert not tokens.matches(raw + "x", digest)
    assert tokens.mint()[0] != raw


def test_the_digest_depends_on_the_server_key() -> None:
    raw, _, digest = tokens.mint()
    with override_settings(TOKEN_HMAC_KEY="another-key-of-at-least-32-characters!"):
        assert tokens.digest(raw) != digest  # a stolen digest table is useless without the key


def test_the_secret_is_stored_only_as_lookup_prefix_and_digest(developer: User) -> None:
    with CaptureQueriesContext(connection) as queries:
        issued = services.create_token(developer, actor=developer, name="laptop")
    token = PersonalToken.objects.get(pk=issued.token.pk)
    assert token.lookup == issued.secret[:12]
    assert token.digest == tokens.digest(issued.secret)
    stored = every_stored_value()
    assert issued.token.digest in stored  # the dump does include the token's row
    assert issued.secret not in stored
    # The part after the lookup prefix is the part that must stay secret; it never even reaches SQL.
    hidden = issued.secret[12:]
    assert all(hidden not in q["sql"] for q in queries.captured_queries)
    assert hidden not in stored


def test_the_secret_never_reaches_the_logs(developer: User, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    # A debug cursor makes Django log every query; the secret must not be in any of them either.
    with CaptureQueriesContext(connection):
        issued = services.create_token(developer, actor=developer, name="laptop")
        services.authenticate_token(issued.secret, kind=API)
        services.revoke_token(issued.token, actor=developer)
    assert any(r.name == "django.db.backends" for r in caplog.records)  # the capture saw the queries
    assert issued.secret[12:] not in caplog.text


def test_a_token_lasts_the_default_90_days_unless_told_otherwise(developer: User) -> None:
    before = timezone.now()
    token = services.create_token(developer, actor=developer, name="ci").token
    assert before + timedelta(days=90) <= token.expires_at <= timezone.now() + timedelta(days=90)
    short = services.create_token(developer, actor=developer, name="short", days=1).token
    assert short.expires_at - short.created_at == pytest.approx(timedelta(days=1), abs=timedelta(seconds=5))


def test_api_tokens_default_to_read_only_and_registry_tokens_to_the_registry_scope(developer: User) -> None:
    api = services.create_token(developer, actor=developer, name="api").token
    registry = services.create_token(developer, actor=developer, name="docker", kind="registry").token
    both = services.create_token(
        developer, actor=developer, name="rw", scopes=["write", "read", "write"]
    ).token
    assert (api.kind, api.scopes) == ("api", ["read"])
    assert (registry.kind, registry.scopes) == ("registry", ["registry"])
    assert both.scopes == ["read", "write"]  # sorted, no duplicates


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": ""}, "give the token a name"),
        ({"name": "   "}, "give the token a name"),
        ({"scopes": ["admin"]}, "api tokens accept the scopes read, write; not admin"),
        ({"scopes": ["read", "registry"]}, "not registry"),
        ({"kind": "registry", "scopes": ["write"]}, "registry tokens accept the scopes registry; not write"),
        ({"days": 0}, "a token lasts from 1 to 365 days"),
        ({"days": -5}, "a token lasts from 1 to 365 days"),
        ({"days": 366}, "a token lasts from 1 to 365 days"),
    ],
)
def test_impossible_token_requests_are_rejected_with_a_reason(
    developer: User, fields: dict[str, object], message: str
) -> None:
    fields.setdefault("name", "laptop")
    with pytest.raises(RequestRejected, match=message):
        services.create_token(developer, actor=developer, **fields)  # type: ignore[arg-type]
    assert not PersonalToken.objects.exists()
    assert not AuditEvent.objects.filter(action=AuditAction.TOKEN_CREATED).exists()


def test_the_longest_allowed_lifetime_is_accepted(developer: User) -> None:
    token = services.create_token(developer, actor=developer, name="yearly", days=365).token
    assert token.expires_at > timezone.now() + timedelta(days=364)


@pytest.mark.parametrize("status", [User.Status.DEPARTED, User.Status.DISABLED])
def test_people_who_are_not_active_get_no_token(status: str) -> None:
    person = factories.user(status=status)
    with pytest.raises(RequestRejected, match=f"is {status}; tokens can only be issued to active people"):
        services.create_token(person, actor=None, name="laptop")
    assert not PersonalToken.objects.exists()


def test_creating_a_token_is_audited_without_the_secret(developer: User, admin: User) -> None:
    issued = services.create_token(developer, actor=admin, name="laptop", scopes=["read", "write"])
    event = AuditEvent.objects.get(action=AuditAction.TOKEN_CREATED)
    assert event.actor_id == admin.pk
    assert (event.target_type, event.target_id) == ("accounts.personaltoken", str(issued.token.pk))
    assert event.detail["owner"] == developer.username
    assert event.detail["scopes"] == ["read", "write"]
    assert issued.secret[12:] not in str(event.detail) + event.target_label


def test_revoking_is_audited_once_and_safe_to_repeat(developer: User, admin: User) -> None:
    token, secret = factories.token(developer)
    assert services.revoke_token(token, actor=admin) is True
    assert token.revoked_at is not None
    first_revoked_at = token.revoked_at
    assert services.revoke_token(token, actor=admin) is False
    token.refresh_from_db()
    assert token.revoked_at == first_revoked_at  # the second call changed nothing
    events = AuditEvent.objects.filter(action=AuditAction.TOKEN_REVOKED)
    assert events.count() == 1
    event = events.get()
    assert (event.actor_id, event.target_id) == (admin.pk, str(token.pk))
    assert event.detail == {"owner": developer.username}
    assert services.authenticate_token(secret, kind=API) is None


def test_authenticate_returns_the_active_token_with_its_owner(developer: User) -> None:
    token, secret = factories.token(developer)
    found = services.authenticate_token(secret, kind=API)
    assert found is not None
    assert found.pk == token.pk
    assert found.owner == developer


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "cst_",
        "cst_short",
        "not-a-token-at-all-but-long-enough",
        "Bearer cst_abcdefghijklmnop",
        "cst_" + "x" * 43,  # token-shaped, but nobody holds it
    ],
)
def test_strings_that_are_not_tokens_authenticate_nobody(developer: User, raw: str) -> None:
    factories.token(developer)
    with CaptureQueriesContext(connection) as queries:
        assert services.authenticate_token(raw, kind=API) is None
    # Only strings shaped like a token cost a database read.
    assert len(queries) == (1 if tokens.looks_like_token(raw) else 0)


def test_a_token_authenticates_only_at_the_door_for_its_kind(developer: User) -> None:
    token, secret = factories.token(developer, kind=PersonalToken.Kind.REGISTRY)
    assert services.authenticate_token(secret, kind=API) is None
    token.refresh_from_db()
    assert token.last_used_at is None  # refused at the API: not a use
    found = services.authenticate_token(secret, kind=PersonalToken.Kind.REGISTRY)
    assert found is not None
    assert found.pk == token.pk


def test_a_right_lookup_with_a_wrong_secret_authenticates_nobody(developer: User) -> None:
    token, secret = factories.token(developer)
    forged = secret[:12] + "A" * (len(secret) - 12)
    assert services.authenticate_token(forged, kind=API) is None
    token.refresh_from_db()
    assert token.last_used_at is None  # a failed guess is not a use


def test_expired_and_revoked_tokens_authenticate_nobody(developer: User) -> None:
    expired, expired_secret = factories.token(developer)
    PersonalToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    revoked, revoked_secret = factories.token(developer)
    services.revoke_token(revoked, actor=developer)
    assert services.authenticate_token(expired_secret, kind=API) is None
    assert services.authenticate_token(revoked_secret, kind=API) is None


@pytest.mark.parametrize(
    "change", [{"status": User.Status.DEPARTED}, {"status": User.Status.DISABLED}, {"is_active": False}]
)
def test_tokens_of_people_who_left_or_were_disabled_authenticate_nobody(
    developer: User, change: dict[str, object]
) -> None:
    _, secret = factories.token(developer)
    User.objects.filter(pk=developer.pk).update(**change)
    assert services.authenticate_token(secret, kind=API) is None


def test_last_use_is_written_at_most_once_per_resolution(developer: User) -> None:
    token, secret = factories.token(developer)
    with CaptureQueriesContext(connection) as first:
        services.authenticate_token(secret, kind=API)
    with CaptureQueriesContext(connection) as again:
        for _ in range(5):
            services.authenticate_token(secret, kind=API)
    assert len(token_updates(first)) == 1
    assert token_updates(again) == []  # five more uses within the minute: reads only
    token.refresh_from_db()
    assert token.last_used_at is not None

    stale = timezone.now() - settings.TOKEN_LAST_USED_RESOLUTION - timedelta(seconds=1)
    PersonalToken.objects.filter(pk=token.pk).update(last_used_at=stale)
    with CaptureQueriesContext(connection) as later:
        services.authenticate_token(secret, kind=API)
    assert len(token_updates(later)) == 1
    token.refresh_from_db()
    assert token.last_used_at > stale


def test_the_active_filter_drops_revoked_and_expired_tokens(developer: User) -> None:
    live, _ = factories.token(developer)
    revoked, _ = factories.token(developer)
    expired, _ = factories.token(developer)
    services.revoke_token(revoked, actor=None)
    PersonalToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now())
    assert list(PersonalToken.objects.active()) == [live]
    states = {t.pk: t.state for t in PersonalToken.objects.all()}
    assert states == {live.pk: "active", revoked.pk: "revoked", expired.pk: "expired"}


def test_everyone_sees_their_own_tokens_and_reviewers_see_all(
    developer: User, reviewer: User, admin: User
) -> None:
    mine, _ = factories.token(developer)
    theirs, _ = factories.token(factories.user())
    assert list(PersonalToken.objects.visible_to(developer)) == [mine]
    assert set(PersonalToken.objects.visible_to(reviewer)) == {mine, theirs}
    assert set(PersonalToken.objects.visible_to(admin)) == {mine, theirs}


def _values(instance: Any) -> dict[str, Any]:
    return {field.attname: getattr(instance, field.attname) for field in type(instance)._meta.concrete_fields}


def test_fast_token_lookup_makes_the_instances_the_orm_would() -> None:
    owner = factories.user(directory_attributes={"department": "Payments", "manager": {"value": "m-1"}})
    token, secret = factories.token(owner, kind=PersonalToken.Kind.REGISTRY, scopes=["registry"])
    found = services.authenticate_token(secret, kind=PersonalToken.Kind.REGISTRY)
    assert found is not None
    expected = PersonalToken.objects.select_related("owner").get(pk=token.pk)
    assert _values(found) == _values(expected)
    assert _values(found.owner) == _values(expected.owner)  # JSON decoded, times aware, as the ORM does
    assert found.owner.directory_attributes["manager"] == {"value": "m-1"}
    assert not found._state.adding  # a row from the database: saving it updates, never inserts


def test_fast_robot_lookup_loads_the_group_and_refuses_an_orphan() -> None:
    group = factories.group()
    robot, secret = factories.robot(group)
    found = services.authenticate_robot(secret)
    assert found is not None
    assert _values(found) == _values(RobotToken.objects.get(pk=robot.pk))
    assert found.group == group
    assert found.group.display_name == group.display_name
    group.delete()  # the robot keeps its row, without a group
    assert services.authenticate_robot(secret) is None
