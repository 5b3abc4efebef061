"""The token server's memory: repeats cost no query, and any committed change is forgotten at once.

The first tests run inside a transaction with the listener stood in for; the last ones commit for
real against PostgreSQL, with the real LISTEN connection, through every way access changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import jwt
import pytest
from django.test import Client
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries, Settings

from accounts import services as account_services
from accounts.models import GroupMembership, PersonalToken, User
from registries.models import AccessRule, Registry, TokenSigningKey
from registries.tokenserver.memory import MEMORY
from tests import factories
from tests.registries.tokenserver.helpers import basic, forgotten_after, registry_token, rule

URL = "/auth/token"
SERVICE = "registry.memory.test"
SCOPE = "repository:team/app:pull,push"


def granted(client: Client, person: User, secret: str, scope: str = SCOPE) -> list[str]:
    response = client.get(
        URL, {"service": SERVICE, "scope": scope}, headers={"Authorization": basic(person.username, secret)}
    )
    if response.status_code == 401:
        return ["refused"]
    assert response.status_code == 200, response.content
    claims = jwt.decode(response.json()["token"], options={"verify_signature": False})
    return [action for entry in claims["access"] for action in entry["actions"]]


@pytest.fixture
def remembering(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory on, the listener taken as connected: inside a test transaction nothing would notify."""
    settings.REGISTRY_TOKEN_CACHE_SECONDS = 10
    monkeypatch.setattr(MEMORY, "active", lambda: True)


@pytest.fixture
def pusher() -> tuple[User, str]:
    person, team = factories.user(), factories.group()
    factories.member(person, team)
    rule(team, factories.registry(token_service=SERVICE), "team/**", "pull", "push")
    return person, registry_token(person)


@pytest.mark.django_db
@pytest.mark.usefixtures("signing_key", "remembering")
def test_a_repeated_request_reads_nothing_from_the_database(
    client: Client, pusher: tuple[User, str], django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    person, secret = pusher
    assert granted(client, person, secret) == ["pull", "push"]
    with django_assert_num_queries(0):
        assert granted(client, person, secret) == ["pull", "push"]
    # The secret is still checked on every request, remembered row or not.
    assert granted(client, person, secret[:-1] + ("A" if secret[-1] != "A" else "B")) == ["refused"]


@pytest.mark.django_db
@pytest.mark.usefixtures("signing_key", "remembering")
def test_nothing_is_remembered_past_the_first_rule_to_expire(
    client: Client, pusher: tuple[User, str]
) -> None:
    person, secret = pusher
    team = GroupMembership.objects.get(user=person).group
    AccessRule.objects.filter(group=team).update(expires_at=timezone.now() + timedelta(seconds=1))
    assert granted(client, person, secret) == ["pull", "push"]
    time.sleep(1.1)  # the rule lapses; nothing in the database changes, so nothing notifies
    assert granted(client, person, secret) == []


@pytest.mark.django_db
@pytest.mark.usefixtures("signing_key", "remembering")
def test_a_change_noticed_while_loading_is_not_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    loads = []

    def load() -> str:
        loads.append(1)
        MEMORY.forget_all()  # a notice arrives while the database is being read
        return "value read before the change"

    assert MEMORY.recall(("probe",), load, until=lambda _: None) == "value read before the change"
    MEMORY.recall(("probe",), load, until=lambda _: None)
    assert len(loads) == 2


@pytest.mark.django_db
def test_without_a_listener_nothing_is_remembered(
    client: Client,
    settings: Settings,
    signing_key: TokenSigningKey,
    pusher: tuple[User, str],
    monkeypatch: pytest.MonkeyPatch,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    settings.REGISTRY_TOKEN_CACHE_SECONDS = 10
    monkeypatch.setattr(MEMORY, "active", lambda: False)
    person, secret = pusher
    granted(client, person, secret)
    with django_assert_num_queries(2):  # the token and owner, then the rules: read again
        granted(client, person, secret)


# --- committed for real, with the real listener ---------------------------------------------------


@pytest.fixture
def listening(settings: Settings) -> None:
    settings.REGISTRY_TOKEN_CACHE_SECONDS = 60
    assert MEMORY.wait_until_listening(), "the LISTEN connection did not come up"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("listening", "signing_key")
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("revoke the token", ["refused"]),
        ("revoke with a bulk update", ["refused"]),
        ("remove the membership", []),
        ("depart the person", ["refused"]),
        ("delete the rule", []),
        ("narrow the rule to pull", ["pull"]),
    ],
)
def test_every_committed_change_is_refused_at_the_next_request(
    client: Client, pusher: tuple[User, str], change: str, expected: list[str]
) -> None:
    person, secret = pusher
    assert granted(client, person, secret) == ["pull", "push"]
    assert granted(client, person, secret) == ["pull", "push"]  # now from memory
    token = PersonalToken.objects.get(owner=person)
    team = GroupMembership.objects.get(user=person).group
    changes: dict[str, Callable[[], Any]] = {
        "revoke the token": lambda: account_services.revoke_token(token, actor=None),
        "revoke with a bulk update": lambda: PersonalToken.objects.filter(pk=token.pk).revoke(),
        "remove the membership": lambda: GroupMembership.objects.filter(user=person).delete(),
        "depart the person": lambda: account_services.deactivate_user(
            person, actor=None, reason="left", departed=True
        ),
        "delete the rule": lambda: AccessRule.objects.filter(group=team).delete(),
        "narrow the rule to pull": lambda: AccessRule.objects.filter(group=team).update(can_push=False),
    }
    forgotten_after(changes[change])
    assert granted(client, person, secret) == expected


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("listening", "signing_key")
def test_writes_that_change_no_decision_leave_the_memory_alone(
    client: Client, pusher: tuple[User, str]
) -> None:
    person, secret = pusher
    granted(client, person, secret)
    before = MEMORY.generation
    PersonalToken.objects.filter(owner=person).update(last_used_at=timezone.now())
    User.objects.filter(pk=person.pk).update(last_login=timezone.now())
    GroupMembership.objects.filter(user=person).update(synced_at=timezone.now())
    Registry.objects.filter(token_service=SERVICE).update(name="renamed")
    time.sleep(0.3)  # time enough for a notice, were one sent
    assert MEMORY.generation == before
