"""/api/v1/registry-credentials/ (with its export) and /api/v1/registry-grants/: read-only, reviewers
and admins, with filters, the usual error shape and a query budget.

The credential filter cases are the page's (test_registry_credentials_pages.py): one FilterSet serves
both, and the same cases prove it.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries

from accounts.models import User
from registries.models import Credential
from tests import factories
from tests.registries.test_registry_credentials_pages import (
    ALL_HELD,
    BAD_FILTERS,
    FILTER_CASES,
    ORDERING_CASES,
    about,
    build_estate,
    customs_credential,
    fill,
)

pytestmark = pytest.mark.django_db

CREDENTIALS = reverse("api:registry-credential-list")
EXPORT = reverse("api:registry-credential-export")
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


@pytest.mark.parametrize("url", [CREDENTIALS, EXPORT, f"{EXPORT}?format=csv", GRANTS])
def test_developers_and_strangers_are_refused(client: Client, developer: User, url: str) -> None:
    customs_credential(name="hidden-customs-token")
    assert client.get(url).status_code == 401
    client.force_login(developer)
    response = client.get(url)
    assert response.status_code == 403
    assert b"hidden-customs-token" not in response.content


def test_refusals_have_the_usual_shape(client: Client, developer: User) -> None:
    client.force_login(developer)
    for url in (CREDENTIALS, EXPORT, GRANTS):
        assert client.get(url).json()["error"]["code"] == "permission_denied"


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
    # session, user, role, count, page (registries, owners and creators joined), open findings
    with django_assert_num_queries(6):
        assert client.get(CREDENTIALS).status_code == 200
    add(30)
    with django_assert_num_queries(6):
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
    assert "/api/v1/registry-credentials/export/" in schema
    assert "/api/v1/registry-grants/{id}/" in schema


# --- credentials across registries and Customs: new fields, every filter, sorting, export ---------

# Every field a credential has over the API. A new one must be added here on purpose: this model
# holds no secret, and the list is where one would show up first.
CREDENTIAL_FIELDS = {
    "id",
    "registry",
    "registry_name",
    "in_customs",
    "native_id",
    "kind",
    "name",
    "enabled",
    "state",
    "owner_kind",
    "owner_id",
    "owner_name",
    "owner_user",
    "owner_username",
    "owner_status",
    "created_by_id",
    "created_by_name",
    "created_by_user",
    "created_by_username",
    "created_at",
    "expires_at",
    "expiry_known",
    "never_expires",
    "last_used_at",
    "usage_known",
    "last_used_source",
    "scopes",
    "actions",
    "actions_seen",
    "actions_seen_source",
    "shared_admin",
    "open_findings",
    "first_seen_at",
    "observed_at",
    "gone_at",
}


@pytest.fixture
def estate() -> dict[str, Any]:
    return build_estate()


def rows_by_name(client: Client, query: str = "") -> dict[str, dict[str, Any]]:
    response = client.get(f"{CREDENTIALS}?page_size=500&{query}")
    assert response.status_code == 200, response.content
    return {row["name"]: row for row in response.json()["results"]}


def test_credentials_carry_exactly_the_declared_fields_and_no_secret(
    client: Client, reviewer: User, estate: dict[str, Any]
) -> None:
    client.force_login(reviewer)
    for row in rows_by_name(client).values():
        assert set(row) == CREDENTIAL_FIELDS
    model_fields = {field.name for field in Credential._meta.get_fields()}
    assert not {name for name in model_fields if "secret" in name or "password" in name or "digest" in name}


def test_a_customs_token_reads_back_as_customs(
    client: Client, reviewer: User, estate: dict[str, Any]
) -> None:
    client.force_login(reviewer)
    echo = estate["made"]["echo-pat"]
    data = client.get(reverse("api:registry-credential-detail", args=[echo.pk])).json()
    assert data["registry"] is None
    assert data["registry_name"] == "Customs"
    assert data["in_customs"] is True
    assert data["kind"] == "customs_api_token"
    assert data["owner_status"] == "disabled"
    assert data["open_findings"] == 1
    assert data["last_used_source"] == "customs api"


def test_credentials_read_back_their_owner_status_actions_and_findings(
    client: Client, reviewer: User, estate: dict[str, Any]
) -> None:
    client.force_login(reviewer)
    rows = rows_by_name(client)
    alpha = rows["alpha-robot"]
    assert (alpha["registry_name"], alpha["in_customs"]) == ("prod-eu", False)
    assert alpha["owner_status"] == "active"
    assert alpha["actions"] == ["pull", "push"]
    assert list(alpha["actions_seen"]) == ["push"]
    assert alpha["actions_seen_source"] == "harbor audit log"
    assert alpha["open_findings"] == 2  # the resolved one does not count
    assert rows["bravo-token"]["open_findings"] == 0  # suppressed, and another subject's
    assert rows["bravo-token"]["owner_status"] == "unresolved"
    assert rows["charlie-key"]["owner_status"] == "none"
    assert rows["charlie-key"]["actions"] == []
    assert rows["delta-robot"]["owner_status"] == "departed"
    assert rows["delta-robot"]["state"] == "disabled"
    assert rows["foxtrot-gone"]["state"] == "gone"
    detail = reverse("api:registry-credential-detail", args=[estate["made"]["alpha-robot"].pk])
    assert client.get(detail).json()["open_findings"] == 2


@pytest.mark.parametrize(("query", "expected"), FILTER_CASES)
def test_the_page_filters_work_on_the_api(
    client: Client, reviewer: User, estate: dict[str, Any], query: str, expected: set[str]
) -> None:
    client.force_login(reviewer)
    # The API includes gone credentials unless told: gone=false asks for what the page shows.
    assert set(rows_by_name(client, f"gone=false&{fill(query, estate)}")) == expected


def test_the_api_includes_gone_credentials_unless_asked(
    client: Client, reviewer: User, estate: dict[str, Any]
) -> None:
    client.force_login(reviewer)
    assert set(rows_by_name(client)) == ALL_HELD | {"foxtrot-gone"}
    assert set(rows_by_name(client, "last_used=never")) == {"bravo-token", "foxtrot-gone"}


@pytest.mark.parametrize("query", BAD_FILTERS)
def test_a_bad_credential_filter_is_a_400_naming_it(
    client: Client, reviewer: User, estate: dict[str, Any], query: str
) -> None:
    client.force_login(reviewer)
    for url in (CREDENTIALS, EXPORT):
        response = client.get(f"{url}?{query}")
        assert response.status_code == 400
        assert query.split("=")[0] in response.json()["error"]["fields"]


@pytest.mark.parametrize(("ordering", "expected"), ORDERING_CASES)
def test_credentials_sort(
    client: Client, reviewer: User, estate: dict[str, Any], ordering: str, expected: list[str]
) -> None:
    client.force_login(reviewer)
    response = client.get(f"{CREDENTIALS}?gone=false&ordering={ordering}")
    assert [row["name"] for row in response.json()["results"]] == expected


def test_every_filtered_row_can_be_paged_through(client: Client, reviewer: User) -> None:
    registry = factories.registry()
    for n in range(7):
        credential(registry, name=f"paged-{n}")
    credential(factories.registry(), name="elsewhere")
    client.force_login(reviewer)
    seen: list[str] = []
    url: str | None = f"{CREDENTIALS}?registry={registry.pk}&page_size=3&ordering=name"
    while url:
        page = client.get(url).json()
        assert page["count"] == 7
        seen += [row["name"] for row in page["results"]]
        url = page["next"]
    assert seen == [f"paged-{n}" for n in range(7)]


def download(client: Client, url: str, **headers: str) -> tuple[str, str]:
    response = client.get(url, headers=headers)
    assert response.status_code == 200, response.content
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Disposition"].startswith('attachment; filename="customs-credentials-')
    return response["Content-Type"], b"".join(response.streaming_content).decode()


def test_the_export_is_a_json_array_of_every_filtered_row(
    client: Client, reviewer: User, estate: dict[str, Any]
) -> None:
    client.force_login(reviewer)
    content_type, text = download(client, EXPORT)
    assert content_type == "application/json"
    rows = {row["name"]: row for row in json.loads(text)}
    assert set(rows) == ALL_HELD | {"foxtrot-gone"}  # as the list: gone ones unless gone=false
    assert all(set(row) == CREDENTIAL_FIELDS for row in rows.values())
    assert rows["alpha-robot"]["open_findings"] == 2
    _, customs = download(client, f"{EXPORT}?registry=customs")
    assert [row["name"] for row in json.loads(customs)] == ["echo-pat"]


def test_the_export_honours_every_filter(client: Client, reviewer: User, estate: dict[str, Any]) -> None:
    client.force_login(reviewer)
    for query, expected in FILTER_CASES:
        _, text = download(client, f"{EXPORT}?gone=false&{fill(query, estate)}")
        assert {row["name"] for row in json.loads(text)} == expected, query
        _, text = download(client, f"{EXPORT}?format=csv&gone=false&{fill(query, estate)}")
        assert {row["name"] for row in csv.DictReader(io.StringIO(text))} == expected, query


@pytest.mark.parametrize("ask", ["query", "accept"])
def test_the_export_gives_csv_when_asked(
    client: Client, reviewer: User, estate: dict[str, Any], ask: str
) -> None:
    client.force_login(reviewer)
    query = f"{EXPORT}?gone=false&owner_status=departed"
    if ask == "query":
        content_type, text = download(client, f"{query}&format=csv")
    else:
        content_type, text = download(client, query, Accept="text/csv")
    assert content_type.startswith("text/csv")
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert row["name"] == "delta-robot"
    assert row["owner_status"] == "departed"


def test_the_csv_export_neutralises_formulas(client: Client, reviewer: User) -> None:
    customs_credential(name="=1+2", owner_name="@evil")
    client.force_login(reviewer)
    _, text = download(client, f"{EXPORT}?format=csv")
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert (row["name"], row["owner_name"]) == ("'=1+2", "'@evil")


def test_a_read_token_of_a_reviewer_exports(client: Client, reviewer: User, estate: dict[str, Any]) -> None:
    _, secret = factories.token(reviewer, scopes=["read"])
    response = client.get(f"{EXPORT}?registry=customs", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    assert [row["name"] for row in json.loads(b"".join(response.streaming_content))] == ["echo-pat"]


def test_the_list_budget_does_not_grow_with_findings_or_customs_rows(
    client: Client, reviewer: User, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    def add(count: int) -> None:
        for _ in range(count):
            about(credential(factories.registry(), owner_user=factories.user()))
            customs_credential(owner_user=factories.user())

    client.force_login(reviewer)
    add(2)
    with django_assert_num_queries(6):
        assert client.get(CREDENTIALS).status_code == 200
    add(20)
    with django_assert_num_queries(6):
        assert client.get(CREDENTIALS).status_code == 200
