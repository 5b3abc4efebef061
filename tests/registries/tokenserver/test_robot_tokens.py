"""/auth/token with robot tokens: exactly the group's rules, as `robot$<name>`, never the catalog."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import jwt
import pytest
from django.test import Client
from django.utils import timezone

from accounts import services as account_services
from accounts.models import DirectoryGroup, PersonalToken, RobotToken, User
from accounts.roles import Role
from portal.audit import AuditAction
from portal.models import AuditEvent
from registries.effective import robot_access
from registries.models import Registry, TokenSigningKey
from tests import factories
from tests.registries.tokenserver.helpers import basic, registry_token, rule

pytestmark = pytest.mark.django_db

URL = "/auth/token"
SERVICE = "registry.robots.test"


@pytest.fixture
def registry(signing_key: TokenSigningKey) -> Registry:
    return factories.registry(token_service=SERVICE)


@pytest.fixture
def ci_group(registry: Registry) -> DirectoryGroup:
    group = factories.group(display_name="CI")
    rule(group, registry, "team/**", "pull", "push")
    return group


@pytest.fixture
def robot(ci_group: DirectoryGroup, registry: Registry) -> tuple[RobotToken, str]:
    # Made by an admin who personally reaches far more than the group: none of it may leak to the robot.
    creator = factories.user_with_role(Role.ADMIN)
    wide = factories.group()
    factories.member(creator, wide)
    rule(wide, registry, "**", "pull", "push", "delete")
    issued = account_services.create_robot_token(ci_group, actor=creator, name="ci-team")
    return issued.robot, issued.secret


def ask(client: Client, username: str, secret: str, **params: Any) -> Any:
    params.setdefault("service", SERVICE)
    return client.get(URL, params, headers={"Authorization": basic(username, secret)})


def claims(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.content
    return dict(jwt.decode(response.json()["token"], options={"verify_signature": False}))


def actions(response: Any) -> list[tuple[str, list[str]]]:
    return [(a["name"], a["actions"]) for a in claims(response)["access"]]


def test_a_robot_gets_its_groups_rules_as_robot_dollar_name(
    client: Client, robot: tuple[RobotToken, str]
) -> None:
    found, secret = robot
    response = ask(client, "robot$ci-team", secret, scope="repository:team/app:pull,push")
    assert claims(response)["sub"] == "robot$ci-team"
    assert actions(response) == [("team/app", ["pull", "push"])]
    found.refresh_from_db()
    assert found.last_used_at is not None


def test_a_robot_gets_nothing_beyond_its_group(client: Client, robot: tuple[RobotToken, str]) -> None:
    _, secret = robot
    response = ask(
        client,
        "robot$ci-team",
        secret,
        scope=["repository:other/app:pull", "repository:team/app:delete", "repository:team/app:*"],
    )
    assert actions(response) == [("other/app", []), ("team/app", []), ("team/app", ["pull", "push"])]


def test_a_robot_never_gets_the_catalog(client: Client, robot: tuple[RobotToken, str]) -> None:
    _, secret = robot
    response = ask(client, "robot$ci-team", secret, scope="registry:catalog:*")
    assert actions(response) == [("catalog", [])]


def test_a_robots_denial_is_audited_with_no_actor_and_the_robot_named(
    client: Client, robot: tuple[RobotToken, str], registry: Registry
) -> None:
    _, secret = robot
    ask(client, "robot$ci-team", secret, scope="repository:team/app:pull,delete")
    event = AuditEvent.objects.get(action=AuditAction.REGISTRY_TOKEN_DENIED)
    assert event.actor_id is None
    assert event.target_id == str(registry.pk)
    assert event.detail["robot"] == "robot$ci-team"
    assert event.detail["asked"] == ["repository:team/app:pull,delete"]
    assert event.detail["granted"] == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
    assert secret[12:] not in str(event.detail)


@pytest.mark.parametrize("username", ["ci-team", "robot$other", "ROBOT$ci-team", "robot$ci-team ", ""])
def test_the_username_must_be_the_robots(
    client: Client, robot: tuple[RobotToken, str], username: str
) -> None:
    _, secret = robot
    response = ask(client, username, secret, scope="repository:team/app:pull")
    assert response.status_code == 401
    event = AuditEvent.objects.get(action=AuditAction.REGISTRY_TOKEN_DENIED)
    assert event.detail.pop("occurred_at")  # queued for a worker: when it happened travels with it
    assert event.detail == {"reason": "bad credentials", "username": username, "repeated_before": 0}


def test_a_persons_name_with_a_robot_secret_and_a_robot_name_with_a_persons_secret_are_refused(
    client: Client, robot: tuple[RobotToken, str], ci_group: DirectoryGroup
) -> None:
    _, robot_secret = robot
    person = factories.user()
    factories.member(person, ci_group)
    person_secret = registry_token(person)
    assert ask(client, person.username, robot_secret).status_code == 401
    assert ask(client, "robot$ci-team", person_secret).status_code == 401
    assert ask(client, person.username, person_secret).status_code == 200


def test_revoked_expired_and_groupless_robots_are_refused_at_once(
    client: Client, registry: Registry, ci_group: DirectoryGroup
) -> None:
    revoked, revoked_secret = factories.robot(ci_group, name="revoked")
    expired, expired_secret = factories.robot(ci_group, name="expired")
    orphan_group = factories.group()
    rule(orphan_group, registry, "team/**", "pull")
    _, orphan_secret = factories.robot(orphan_group, name="orphan")
    for name, secret in (("revoked", revoked_secret), ("expired", expired_secret), ("orphan", orphan_secret)):
        assert ask(client, f"robot${name}", secret).status_code == 200
    account_services.revoke_robot_token(revoked, actor=None)
    RobotToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    orphan_group.delete()
    for name, secret in (("revoked", revoked_secret), ("expired", expired_secret), ("orphan", orphan_secret)):
        assert ask(client, f"robot${name}", secret).status_code == 401
    assert (
        AuditEvent.objects.filter(
            action=AuditAction.REGISTRY_TOKEN_DENIED, detail__reason="bad credentials"
        ).count()
        == 3
    )


def test_the_oauth_password_and_refresh_grants_take_a_robot(
    client: Client, robot: tuple[RobotToken, str]
) -> None:
    found, secret = robot
    form = {
        "grant_type": "password",
        "service": SERVICE,
        "client_id": "ci",
        "username": "robot$ci-team",
        "password": secret,
        "access_type": "offline",
        "scope": "repository:team/app:pull,push registry:catalog:*",
    }
    body = client.post(URL, form).json()
    assert body["scope"] == "repository:team/app:pull,push"
    assert body["refresh_token"] == secret
    refresh = {"grant_type": "refresh_token", "service": SERVICE, "client_id": "ci", "refresh_token": secret}
    assert client.post(URL, refresh).status_code == 200
    account_services.revoke_robot_token(found, actor=None)
    assert client.post(URL, refresh).status_code == 401


def test_people_keep_their_own_access_alongside_robots(
    client: Client, robot: tuple[RobotToken, str], ci_group: DirectoryGroup
) -> None:
    person = factories.user()
    factories.member(person, ci_group)
    response = ask(client, person.username, registry_token(person), scope="repository:team/app:pull")
    assert claims(response)["sub"] == person.username
    assert actions(response) == [("team/app", ["pull"])]


# --- robot_access: the evidence behind a robot's grant --------------------------------------------


def test_robot_access_carries_the_rules_as_evidence(
    robot: tuple[RobotToken, str], registry: Registry, ci_group: DirectoryGroup
) -> None:
    found, _ = robot
    extra = rule(ci_group, registry, "team/app", "delete")
    access = robot_access(found, registry, "team/app")
    assert access.actions == frozenset({"pull", "push", "delete"})
    assert {e.rule_id for e in access.evidence} >= {extra.pk}
    assert {e.group_id for e in access.evidence} == {ci_group.external_id}
    assert all(e.membership_source == "" for e in access.evidence)  # no membership: the group owns it
    assert robot_access(found, registry, "elsewhere/app").actions == frozenset()


def test_robot_access_is_empty_once_revoked_expired_or_groupless(
    robot: tuple[RobotToken, str], registry: Registry
) -> None:
    found, _ = robot
    assert (
        robot_access(found, registry, "team/app", now=found.expires_at + timedelta(seconds=1)).evidence == ()
    )
    account_services.revoke_robot_token(found, actor=None)
    assert robot_access(found, registry, "team/app").actions == frozenset()
    orphan, _ = factories.robot(factories.group())
    orphan.group = None
    assert robot_access(orphan, registry, "team/app").actions == frozenset()


def test_personal_registry_tokens_still_work_and_api_tokens_still_do_not(
    client: Client, robot: tuple[RobotToken, str]
) -> None:
    person = factories.user()
    _, api_secret = factories.token(person)
    secret = registry_token(person)
    assert ask(client, person.username, secret).status_code == 200
    assert ask(client, person.username, api_secret).status_code == 401
    assert PersonalToken.objects.filter(owner=person, last_used_at__isnull=False).count() == 1


def test_a_person_named_like_a_robot_gets_nothing_of_the_robots(
    client: Client, robot: tuple[RobotToken, str]
) -> None:
    # Django's username validator refuses "$", but directory-provisioned names do not pass through it.
    # Access follows the secret, never the name.
    impostor = User.objects.create_user(username="robot$ci-team", email="x@example.test")
    response = ask(client, impostor.username, registry_token(impostor), scope="repository:team/app:pull")
    assert actions(response) == [("team/app", [])]
