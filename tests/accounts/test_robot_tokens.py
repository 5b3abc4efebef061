"""Robot tokens in the service layer: minting, names, lifetime, revocation, and the one door they open."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries

from accounts import services, tokens
from accounts.models import DirectoryGroup, PersonalToken, RobotToken, User
from portal.audit import AuditAction
from portal.errors import RequestRejected
from portal.models import AuditEvent
from tests import factories
from tests.accounts.test_tokens import every_stored_value

pytestmark = pytest.mark.django_db


@pytest.fixture
def team() -> DirectoryGroup:
    return factories.group(display_name="CI team")


def test_a_robot_secret_has_its_own_prefix_and_is_stored_as_lookup_and_digest(
    team: DirectoryGroup, admin: User
) -> None:
    issued = services.create_robot_token(team, actor=admin, name="ci-payments", description="GitHub Actions")
    robot = RobotToken.objects.get(pk=issued.robot.pk)
    assert issued.secret.startswith("csr_")
    assert not tokens.looks_like_token(issued.secret)  # not a personal token's shape
    assert robot.lookup == issued.secret[:12]
    assert robot.digest == tokens.digest(issued.secret)
    assert (robot.group, robot.created_by, robot.description) == (team, admin, "GitHub Actions")
    assert robot.username == "robot$ci-payments"
    assert robot.state == "active"
    assert issued.secret[12:] not in every_stored_value()


def test_creating_and_revoking_are_audited_without_the_secret(team: DirectoryGroup, admin: User) -> None:
    robot, secret = factories.robot(team, name="deployer")
    assert services.revoke_robot_token(robot, actor=admin) is True
    assert services.revoke_robot_token(robot, actor=admin) is False  # safe to repeat, audited once
    created = AuditEvent.objects.get(action=AuditAction.ROBOT_TOKEN_CREATED)
    assert (created.target_type, created.target_id) == ("accounts.robottoken", str(robot.pk))
    assert created.detail["group"] == team.external_id
    assert created.detail["username"] == "robot$deployer"
    revoked = AuditEvent.objects.get(action=AuditAction.ROBOT_TOKEN_REVOKED)
    assert revoked.actor_id == admin.pk
    assert revoked.detail == {"username": "robot$deployer"}
    for event in (created, revoked):
        assert secret[12:] not in str(event.detail) + event.target_label


def test_a_robot_lasts_the_personal_token_default_and_at_most_the_same_maximum(team: DirectoryGroup) -> None:
    robot, _ = factories.robot(team)
    assert robot.expires_at - robot.created_at == pytest.approx(timedelta(days=90), abs=timedelta(seconds=5))
    yearly, _ = factories.robot(team, days=365)
    assert yearly.expires_at > timezone.now() + timedelta(days=364)
    with pytest.raises(RequestRejected, match="from 1 to 365 days"):
        factories.robot(team, days=366)
    with pytest.raises(RequestRejected, match="from 1 to 365 days"):
        factories.robot(team, days=0)


@pytest.mark.parametrize(
    "name", ["", "CI", "ci payments", "robot$ci", "-ci", "ci-", "ci--x", "ci:x", "x" * 65, "ci/x"]
)
def test_names_that_are_not_slug_like_are_refused(team: DirectoryGroup, name: str) -> None:
    with pytest.raises(RequestRejected, match="lowercase letters and digits"):
        services.create_robot_token(team, actor=None, name=name)
    assert not RobotToken.objects.exists()
    assert not AuditEvent.objects.filter(action=AuditAction.ROBOT_TOKEN_CREATED).exists()


def test_a_name_is_never_reused_even_after_revocation(team: DirectoryGroup) -> None:
    robot, _ = factories.robot(team, name="nightly")
    services.revoke_robot_token(robot, actor=None)
    with pytest.raises(RequestRejected, match="already exists"):
        factories.robot(factories.group(), name="nightly")
    assert RobotToken.objects.count() == 1


# --- authenticate_robot -------------------------------------------------------------------------


def test_a_valid_secret_finds_its_robot_and_group_in_one_read(
    team: DirectoryGroup, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    robot, secret = factories.robot(team)
    RobotToken.objects.filter(pk=robot.pk).update(last_used_at=timezone.now())  # used a moment ago
    with django_assert_num_queries(1):
        found = services.authenticate_robot(secret)
        assert found is not None
        assert found.group == team  # joined in the same read
    assert found.pk == robot.pk


def test_last_use_is_written_at_most_once_per_resolution(team: DirectoryGroup) -> None:
    robot, secret = factories.robot(team)
    assert robot.last_used_at is None
    with CaptureQueriesContext(connection) as first:
        services.authenticate_robot(secret)
    robot.refresh_from_db()
    assert robot.last_used_at is not None
    with CaptureQueriesContext(connection) as second:
        services.authenticate_robot(secret)
    writes = [q for q in (*first.captured_queries, *second.captured_queries) if q["sql"].startswith("UPDATE")]
    assert len(writes) == 1


def test_a_wrong_or_foreign_prefix_is_refused_without_a_read(team: DirectoryGroup) -> None:
    _, secret = factories.robot(team)
    for raw in ("", "csr_", "csr_short", "cst_" + secret[4:], "csp_" + secret[4:], secret.upper()):
        with CaptureQueriesContext(connection) as queries:
            assert services.authenticate_robot(raw) is None
        assert len(queries) == (1 if raw.startswith("csr_") and len(raw) > 12 else 0)
    assert services.authenticate_robot(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None


def test_revoked_and_expired_robots_are_refused(team: DirectoryGroup) -> None:
    revoked, revoked_secret = factories.robot(team)
    services.revoke_robot_token(revoked, actor=None)
    expired, expired_secret = factories.robot(team)
    RobotToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert services.authenticate_robot(revoked_secret) is None
    assert services.authenticate_robot(expired_secret) is None
    expired.refresh_from_db()
    assert expired.state == "expired"
    assert expired.last_used_at is None  # a refused attempt is not a use


def test_a_robot_whose_group_is_gone_is_refused_but_kept(team: DirectoryGroup) -> None:
    robot, secret = factories.robot(team, name="orphan")
    team.delete()
    robot.refresh_from_db()
    assert robot.group is None
    assert robot.state == "orphaned"
    assert services.authenticate_robot(secret) is None
    assert RobotToken.objects.filter(name="orphan").exists()  # hygiene reports still see it
    assert not RobotToken.objects.active().filter(pk=robot.pk).exists()


def test_a_personal_registry_token_is_no_robot_and_a_robot_is_no_personal_token(
    team: DirectoryGroup, developer: User
) -> None:
    _, personal = factories.token(developer, kind=PersonalToken.Kind.REGISTRY)
    _, api = factories.token(developer)
    _, robot_secret = factories.robot(team)
    assert services.authenticate_robot(personal) is None
    assert services.authenticate_robot(api) is None
    for kind in PersonalToken.Kind:
        assert services.authenticate_token(robot_secret, kind=kind) is None
    assert services.authenticate_robot(robot_secret) is not None


def test_the_robot_outlives_its_creator(team: DirectoryGroup, admin: User) -> None:
    issued = services.create_robot_token(team, actor=admin, name="outlives")
    services.deactivate_user(admin, actor=None, reason="left", departed=True)
    assert services.authenticate_robot(issued.secret) is not None  # owned by the group, not the person
    admin.delete()
    issued.robot.refresh_from_db()
    assert issued.robot.created_by is None
