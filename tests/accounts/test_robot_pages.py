"""Robot tokens on the group page, the credentials page and /api/v1/robot-tokens/."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries

from accounts import services
from accounts.models import DirectoryGroup, RobotToken, User
from portal.audit import AuditAction
from portal.models import AuditEvent
from tests import factories

pytestmark = pytest.mark.django_db

CREDENTIALS = reverse("accounts:credentials")
ROBOTS_API = "/api/v1/robot-tokens/"
ROBOT_SECRET = re.compile(r"csr_[A-Za-z0-9_-]{20,}")


@pytest.fixture
def team() -> DirectoryGroup:
    return factories.group(display_name="Release team")


def group_page(group: DirectoryGroup) -> str:
    return reverse("accounts:group_detail", args=[group.pk])


def create_on_page(client: Client, group: DirectoryGroup, **fields: Any) -> Any:
    data = {"name": "release-bot", "description": "Tekton", "days": 30} | fields
    return client.post(reverse("accounts:robot_create", args=[group.pk]), data)


# --- the group page --------------------------------------------------------------------------------


def test_an_admin_creates_a_robot_and_sees_its_secret_once(
    client: Client, admin: User, team: DirectoryGroup
) -> None:
    client.force_login(admin)
    response = create_on_page(client, team)
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    page = response.content.decode()
    shown = ROBOT_SECRET.findall(page)
    assert len(shown) == 1
    assert "robot$release-bot" in page
    assert "-u 'robot$release-bot'" in page  # quoted for the shell
    robot = RobotToken.objects.get(name="release-bot")
    assert (robot.group, robot.created_by, robot.description) == (team, admin, "Tekton")
    assert robot.lookup == shown[0][:12]
    assert round((robot.expires_at - robot.created_at) / timedelta(days=1)) == 30
    event = AuditEvent.objects.get(action=AuditAction.ROBOT_TOKEN_CREATED)
    assert event.actor_id == admin.pk

    reloaded = client.get(group_page(team)).content.decode()
    assert "release-bot" in reloaded
    assert shown[0][12:] not in reloaded


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "Release Bot"}, "lowercase letters and digits"),
        ({"days": 366}, "less than or equal to 365"),
        ({"name": ""}, "This field is required"),
    ],
)
def test_a_bad_request_shows_the_group_page_again_with_the_reason(
    client: Client, admin: User, team: DirectoryGroup, fields: dict[str, Any], message: str
) -> None:
    client.force_login(admin)
    response = create_on_page(client, team, **fields)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not RobotToken.objects.exists()


def test_a_taken_name_is_refused_with_a_reason(client: Client, admin: User, team: DirectoryGroup) -> None:
    factories.robot(factories.group(), name="release-bot")
    client.force_login(admin)
    response = create_on_page(client, team)
    assert response.status_code == 400
    assert "already exists" in response.content.decode()
    assert RobotToken.objects.count() == 1


def test_reviewers_read_robots_but_neither_create_nor_revoke(
    client: Client, reviewer: User, team: DirectoryGroup
) -> None:
    robot, _ = factories.robot(team, name="nightly", description="Nightly rebuilds")
    client.force_login(reviewer)
    page = client.get(group_page(team)).content.decode()
    assert "robot$nightly" in page
    assert "Nightly rebuilds" in page
    assert "New robot token" not in page
    assert "Revoke robot token nightly" not in page
    assert create_on_page(client, team).status_code == 403
    assert client.post(reverse("accounts:robot_revoke", args=[robot.pk])).status_code == 403
    assert RobotToken.objects.get(pk=robot.pk).revoked_at is None


def test_the_group_page_lists_only_its_own_robots_with_their_state(
    client: Client, admin: User, team: DirectoryGroup
) -> None:
    live, _ = factories.robot(team, name="live-bot")
    gone, _ = factories.robot(team, name="gone-bot")
    services.revoke_robot_token(gone, actor=admin)
    factories.robot(factories.group(), name="elsewhere-bot")
    client.force_login(admin)
    response = client.get(group_page(team))
    assert [r.name for r in response.context["robots"]] == ["gone-bot", "live-bot"]
    page = response.content.decode()
    assert "elsewhere-bot" not in page
    assert "Revoke robot token live-bot" in page
    assert "Revoke robot token gone-bot" not in page  # already revoked


def test_an_admin_revokes_from_the_group_page_and_returns_there(
    client: Client, admin: User, team: DirectoryGroup
) -> None:
    robot, secret = factories.robot(team)
    client.force_login(admin)
    response = client.post(reverse("accounts:robot_revoke", args=[robot.pk]), {"back": "group"})
    assert response["Location"] == group_page(team)
    assert services.authenticate_robot(secret) is None
    assert AuditEvent.objects.get(action=AuditAction.ROBOT_TOKEN_REVOKED).actor_id == admin.pk


def test_the_group_page_query_budget_does_not_grow_with_robots(
    client: Client, admin: User, team: DirectoryGroup, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    def add_robots(count: int) -> None:
        for _ in range(count):
            factories.robot(team)
            factories.member(factories.user(), team)

    client.force_login(admin)
    add_robots(2)
    # session, user, role, group, member count, member page, robots (creators joined)
    with django_assert_num_queries(7):
        assert client.get(group_page(team)).status_code == 200
    add_robots(20)
    with django_assert_num_queries(7):
        assert client.get(group_page(team)).status_code == 200


# --- the credentials page ---------------------------------------------------------------------------


def test_credentials_list_active_robots_and_all_on_request(
    client: Client, reviewer: User, team: DirectoryGroup
) -> None:
    factories.robot(team, name="active-bot")
    revoked, _ = factories.robot(team, name="revoked-bot")
    services.revoke_robot_token(revoked, actor=None)
    expired, _ = factories.robot(team, name="expired-bot")
    RobotToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=1))
    orphan_group = factories.group()
    factories.robot(orphan_group, name="orphan-bot")
    orphan_group.delete()
    client.force_login(reviewer)
    page = client.get(CREDENTIALS).content.decode()
    assert "robot$active-bot" in page
    assert "Release team" in page
    for hidden in ("revoked-bot", "expired-bot", "orphan-bot"):
        assert hidden not in page
    everything = client.get(f"{CREDENTIALS}?state=all").content.decode()
    for shown in ("revoked-bot", "expired-bot", "orphan-bot"):
        assert shown in everything
    assert "orphaned" in everything
    assert "Revoke robot token active-bot" not in page  # reviewers read


def test_an_admin_revokes_from_credentials_and_returns_there(
    client: Client, admin: User, team: DirectoryGroup
) -> None:
    robot, _ = factories.robot(team, name="ci-bot")
    client.force_login(admin)
    assert "Revoke robot token ci-bot" in client.get(CREDENTIALS).content.decode()
    response = client.post(reverse("accounts:robot_revoke", args=[robot.pk]), {"back": "credentials"})
    assert response["Location"] == CREDENTIALS
    robot.refresh_from_db()
    assert robot.state == "revoked"


def test_the_credentials_query_budget_does_not_grow_with_robots(
    client: Client, reviewer: User, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    client.force_login(reviewer)
    factories.token(factories.user())  # an empty token page costs no query, so have one token
    factories.robot()
    # session, user, role, token count, token page, robots (groups and creators joined)
    with django_assert_num_queries(6):
        assert client.get(CREDENTIALS).status_code == 200
    for _ in range(20):
        factories.robot()
    with django_assert_num_queries(6):
        assert client.get(CREDENTIALS).status_code == 200


# --- the API --------------------------------------------------------------------------------------


def api_create(client: Client, of: DirectoryGroup, **body: Any) -> Any:
    data = {"group": of.pk, "name": "api-bot"} | body
    return client.post(ROBOTS_API, data, content_type="application/json")


def test_an_admin_creates_through_the_api_and_gets_the_secret_once(
    client: Client, admin: User, team: DirectoryGroup
) -> None:
    client.force_login(admin)
    response = api_create(client, team, description="Argo", days=7)
    assert response.status_code == 201
    body = response.json()
    assert body["secret"].startswith("csr_")
    assert response.content.decode().count(body["secret"]) == 1
    assert body["username"] == "robot$api-bot"
    assert (body["group"], body["group_name"], body["created_by"]) == (
        team.pk,
        "Release team",
        admin.username,
    )
    assert body["state"] == "active"
    hidden = body["secret"][12:]
    for url in (ROBOTS_API, f"{ROBOTS_API}{body['id']}/", f"{ROBOTS_API}?group={team.pk}"):
        reply = client.get(url)
        assert reply.status_code == 200
        assert hidden not in reply.content.decode()
        assert '"secret"' not in reply.content.decode()


@pytest.mark.parametrize(
    ("body", "field"),
    [({"name": "Not A Slug"}, None), ({"days": 0}, "days"), ({"group": 999_999}, "group")],
)
def test_bad_api_requests_are_400s_with_a_reason(
    client: Client, admin: User, team: DirectoryGroup, body: dict[str, Any], field: str | None
) -> None:
    client.force_login(admin)
    response = api_create(client, team, **body)
    assert response.status_code == 400
    error = response.json()["error"]
    if field:
        assert field in error["fields"]
    else:
        assert "lowercase letters and digits" in error["message"]
    assert not RobotToken.objects.exists()


def test_reviewers_list_and_read_but_only_admins_create_and_revoke(
    client: Client, reviewer: User, developer: User, admin: User, team: DirectoryGroup
) -> None:
    robot, secret = factories.robot(team)
    client.force_login(developer)
    assert client.get(ROBOTS_API).status_code == 403
    client.force_login(reviewer)
    assert [r["name"] for r in client.get(ROBOTS_API).json()["results"]] == [robot.name]
    assert api_create(client, team).status_code == 403
    assert client.post(f"{ROBOTS_API}{robot.pk}/revoke/").status_code == 403
    client.force_login(admin)
    reply = client.post(f"{ROBOTS_API}{robot.pk}/revoke/")
    assert reply.status_code == 200
    assert reply.json()["state"] == "revoked"
    assert services.authenticate_robot(secret) is None
    assert client.post(f"{ROBOTS_API}{robot.pk}/revoke/").status_code == 200  # safe to repeat
    assert AuditEvent.objects.filter(action=AuditAction.ROBOT_TOKEN_REVOKED).count() == 1
    assert client.post(f"{ROBOTS_API}999999/revoke/").status_code == 404


def test_the_api_list_query_budget_does_not_grow_with_rows(
    client: Client, reviewer: User, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    client.force_login(reviewer)
    factories.robot()
    # session, user, role, count, page (groups and creators joined)
    with django_assert_num_queries(5):
        assert client.get(ROBOTS_API).status_code == 200
    for _ in range(20):
        factories.robot()
    with django_assert_num_queries(5):
        assert client.get(ROBOTS_API).status_code == 200


def test_the_schema_describes_robot_tokens(client: Client, reviewer: User) -> None:
    client.force_login(reviewer)
    schema = client.get("/api/schema/", {"format": "json"}).json()
    assert "/api/v1/robot-tokens/" in schema["paths"]
    assert "/api/v1/robot-tokens/{id}/revoke/" in schema["paths"]
    created = schema["paths"]["/api/v1/robot-tokens/"]["post"]["responses"]["201"]
    assert created["content"]["application/json"]["schema"]["$ref"].endswith("/IssuedRobotToken")


# --- the group's owner: who takes over its robots at an offboarding ------------------------------------


def test_an_admin_names_the_groups_owner_and_it_is_audited(
    client: Client, admin: User, team: DirectoryGroup
) -> None:
    lead = factories.user(username="lead")
    client.force_login(admin)
    response = client.post(reverse("accounts:group_owner", args=[team.pk]), {"owner": "lead"})
    assert response.status_code == 302
    team.refresh_from_db()
    assert team.owner == lead
    assert "lead" in client.get(group_page(team)).content.decode()
    event = AuditEvent.objects.get(action=AuditAction.GROUP_OWNER_SET)
    assert (event.actor_id, event.detail["owner"]) == (admin.pk, "lead")
    client.post(reverse("accounts:group_owner", args=[team.pk]), {"owner": ""})
    team.refresh_from_db()
    assert team.owner is None


def test_an_unknown_or_departed_owner_is_a_form_error(
    client: Client, admin: User, team: DirectoryGroup
) -> None:
    gone = factories.user(username="gone")
    User.objects.filter(pk=gone.pk).update(status=User.Status.DEPARTED, is_active=False)
    client.force_login(admin)
    for name, message in (("nobody-here", "No one is called nobody-here"), ("gone", "cannot sign in")):
        response = client.post(reverse("accounts:group_owner", args=[team.pk]), {"owner": name})
        assert response.status_code == 400
        assert message in response.content.decode()
    team.refresh_from_db()
    assert team.owner is None


def test_reviewers_cannot_name_an_owner(client: Client, reviewer: User, team: DirectoryGroup) -> None:
    factories.user(username="lead")
    client.force_login(reviewer)
    assert "Save owner" not in client.get(group_page(team)).content.decode()
    assert client.post(reverse("accounts:group_owner", args=[team.pk]), {"owner": "lead"}).status_code == 403
    team.refresh_from_db()
    assert team.owner is None
