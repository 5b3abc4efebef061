"""/api/v1/registry-credentials/ and /api/v1/registry-grants/: read-only, reviewers and admins, with
filters, the usual error shape and a query budget."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries

from accounts.models import User
from registries.models import Credential
from tests import factories

pytestmark = pytest.mark.django_db

CREDENTIALS = reverse("api:registry-credential-list")
GRANTS = reverse("api:registry-grant-list")


credential = factories.registry_credential

grant = factories.grant


def names(client: Client, url: str, query: str = "", key: str = "name") -> set[str]:
    response = client.get(f"{url}?{query}")
    assert response.status_code == 200, response.content
    return {row[key] for row in response.json()["results"]}


@pytest.fixture
def spread() -> dict[str, Any]:
    eu, us = factories.registry(name="prod-eu"), factories.registry(name="prod-us")
    ann = factories.user(username="ann-ops")
    return {
        "eu": eu,
        "us": us,
        "ann": ann,
        "robot": credential(eu, name="eu-robot", owner_user=ann),
        "token": credential(us, name="us-token", kind="access_token", owner_name="carol@corp"),
        "off": credential(eu, name="eu-disabled", enabled=False),
        "gone": credential(us, name="us-gone", gone_at=timezone.now()),
    }


# --- credentials ---------------------------------------------------------------------------------


def test_a_credential_reads_back_with_unknowns_kept_apart(client: Client, reviewer: User) -> None:
    owner = factories.user(username="dora")
    made = credential(
        factories.registry(),
        name="ci",
        owner_user=owner,
        expiry_known=True,
        expires_at=None,
        usage_known=False,
        scopes=["pull"],
        shared_admin=True,
    )
    client.force_login(reviewer)
    data = client.get(reverse("api:registry-credential-detail", args=[made.pk])).json()
    assert data["name"] == "ci"
    assert data["owner_user"] == owner.pk
    assert data["owner_username"] == "dora"
    assert data["expires_at"] is None
    assert data["expiry_known"] is True
    assert data["never_expires"] is True
    assert data["last_used_at"] is None
    assert data["usage_known"] is False
    assert data["scopes"] == ["pull"]
    assert data["shared_admin"] is True
    assert data["gone_at"] is None


def test_the_credential_list_includes_gone_ones_unless_asked(
    client: Client, admin: User, spread: dict[str, Any]
) -> None:
    client.force_login(admin)
    assert names(client, CREDENTIALS) == {"eu-robot", "us-token", "eu-disabled", "us-gone"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("gone=false", {"eu-robot", "us-token", "eu-disabled"}),
        ("gone=true", {"us-gone"}),
        ("enabled=false", {"eu-disabled"}),
        ("enabled=true&gone=false", {"eu-robot", "us-token"}),
        ("kind=access_token", {"us-token"}),
        ("owner=ann", {"eu-robot"}),
        ("owner=carol", {"us-token"}),
        ("state=disabled", {"eu-disabled"}),
    ],
)
def test_credential_filters(
    client: Client, reviewer: User, spread: dict[str, Any], query: str, expected: set[str]
) -> None:
    client.force_login(reviewer)
    assert names(client, CREDENTIALS, query) == expected


def test_credentials_filter_by_registry(client: Client, reviewer: User, spread: dict[str, Any]) -> None:
    client.force_login(reviewer)
    assert names(client, CREDENTIALS, f"registry={spread['eu'].pk}") == {"eu-robot", "eu-disabled"}


def test_a_bad_filter_is_a_400_in_the_usual_shape(client: Client, reviewer: User) -> None:
    client.force_login(reviewer)
    response = client.get(f"{CREDENTIALS}?kind=bogus")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert "kind" in error["fields"]


def test_credentials_are_read_only(client: Client, admin: User, spread: dict[str, Any]) -> None:
    client.force_login(admin)
    url = reverse("api:registry-credential-detail", args=[spread["robot"].pk])
    # No write role is declared, so even admins are refused before the method is considered.
    assert client.delete(url).status_code == 403
    assert client.post(CREDENTIALS, {}, content_type="application/json").status_code == 403
    assert Credential.objects.filter(pk=spread["robot"].pk).exists()


@pytest.mark.parametrize("url", [CREDENTIALS, GRANTS])
def test_developers_and_strangers_are_refused(client: Client, developer: User, url: str) -> None:
    assert client.get(url).status_code == 401
    client.force_login(developer)
    response = client.get(url)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_a_read_token_of_a_reviewer_reads_credentials(
    client: Client, reviewer: User, spread: dict[str, Any]
) -> None:
    _, secret = factories.token(reviewer, scopes=["read"])
    response = client.get(CREDENTIALS, headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200
    assert response.json()["count"] == 4


def test_the_credential_list_budget_does_not_grow_with_rows(
    client: Client, reviewer: User, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    def add(count: int) -> None:
        for _ in range(count):
            credential(factories.registry(), owner_user=factories.user(), created_by_user=factories.user())

    client.force_login(reviewer)
    add(2)
    # session, user, role, count, page (owners and creators joined)
    with django_assert_num_queries(5):
        assert client.get(CREDENTIALS).status_code == 200
    add(30)
    with django_assert_num_queries(5):
        assert client.get(CREDENTIALS).status_code == 200


# --- grants --------------------------------------------------------------------------------------


@pytest.fixture
def grants() -> dict[str, Any]:
    eu, us = factories.registry(), factories.registry()
    team, person = factories.group(), factories.user()
    return {
        "eu": eu,
        "team": team,
        "person": person,
        "made": [
            grant(eu, principal_name="team-grant", group=team, scope="payments/**", can_push=True),
            grant(eu, principal_kind="user", principal_name="person-grant", user=person, scope="web/site"),
            grant(us, principal_kind="robot", principal_name="robot-grant", scope="**"),
        ],
    }


def test_a_grant_reads_back_with_its_actions(client: Client, reviewer: User, grants: dict[str, Any]) -> None:
    client.force_login(reviewer)
    data = client.get(reverse("api:registry-grant-detail", args=[grants["made"][0].pk])).json()
    assert data["principal_kind"] == "group"
    assert data["group"] == grants["team"].pk
    assert data["scope"] == "payments/**"
    assert data["actions"] == ["pull", "push"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"team-grant", "person-grant", "robot-grant"}),
        ("principal_kind=robot", {"robot-grant"}),
        ("scope=web/site", {"person-grant"}),
        ("scope=**", {"robot-grant"}),
    ],
)
def test_grant_filters(
    client: Client, reviewer: User, grants: dict[str, Any], query: str, expected: set[str]
) -> None:
    client.force_login(reviewer)
    assert names(client, GRANTS, query, key="principal_name") == expected


def test_grants_filter_by_registry_group_and_user(
    client: Client, admin: User, grants: dict[str, Any]
) -> None:
    client.force_login(admin)
    assert names(client, GRANTS, f"registry={grants['eu'].pk}", "principal_name") == {
        "team-grant",
        "person-grant",
    }
    assert names(client, GRANTS, f"group={grants['team'].pk}", "principal_name") == {"team-grant"}
    assert names(client, GRANTS, f"user={grants['person'].pk}", "principal_name") == {"person-grant"}


def test_the_grant_list_budget_does_not_grow_with_rows(
    client: Client, reviewer: User, django_assert_max_num_queries: DjangoAssertNumQueries
) -> None:
    registry = factories.registry()
    client.force_login(reviewer)
    for _ in range(40):
        grant(registry, group=factories.group())
    # session, user, role, count, page
    with django_assert_max_num_queries(5):
        assert client.get(GRANTS).status_code == 200


def test_the_schema_describes_both_endpoints(client: Client, reviewer: User) -> None:
    client.force_login(reviewer)
    schema = client.get("/api/schema/?format=json").content.decode()
    assert "/api/v1/registry-credentials/" in schema
    assert "/api/v1/registry-grants/{id}/" in schema
