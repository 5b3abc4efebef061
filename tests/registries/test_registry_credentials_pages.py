"""Registry-native credentials and grants on pages: the registry page's two sections, the cross-registry
credential list and its place on the Credentials page. Reviewers and admins only."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from pytest_django import DjangoAssertNumQueries

from accounts.models import User
from registries.models import Registry
from tests import factories

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

pytestmark = pytest.mark.django_db

LIST = reverse("registries:credentials")
CREDENTIALS = reverse("accounts:credentials")


credential = factories.registry_credential

grant = factories.grant


def body(response: Response) -> str:
    assert response.status_code == 200
    return response.content.decode()


def detail(registry: Registry) -> str:
    return reverse("registries:detail", args=[registry.pk])


def row_of(page: str, name: str) -> str:
    """The table row holding `name`, so an assertion reads that credential's cells and no other's."""
    start = page.index(name)
    return page[page.rindex("<tr", 0, start) : page.index("</tr>", start)]


# --- The registry page ---------------------------------------------------------------------------


def test_the_registry_page_shows_each_credential_state(client: Client, reviewer: User) -> None:
    registry = factories.registry()
    owner = factories.user(username="ann-owner", display_name="Ann Owner")
    used = timezone.now() - timedelta(days=3)
    credential(registry, name="never-expires", expiry_known=True, expires_at=None, owner_user=owner)
    credential(
        registry, name="expiry-unknown", expiry_known=False, owner_name="raw-owner@corp", owner_kind="user"
    )
    credential(registry, name="usage-unknown", usage_known=False)
    credential(registry, name="never-used", usage_known=True, last_used_at=None)
    credential(registry, name="used-recently", last_used_at=used, last_used_source="audit log")
    credential(registry, name="switched-off", enabled=False)
    credential(registry, name="gone-key", gone_at=timezone.now() - timedelta(days=2))
    credential(registry, name="acr-admin-login", kind="admin_account", shared_admin=True)
    client.force_login(reviewer)
    page = body(client.get(detail(registry)))

    assert "Credentials held by this registry" in page
    assert "<td>never</td>" in row_of(page, "never-expires")
    explorer = reverse("registries:explore")
    assert f'href="{explorer}?by=user&amp;person=ann-owner"' in row_of(page, "never-expires")
    assert "Ann Owner" in row_of(page, "never-expires")
    assert "unknown</span>" in row_of(page, "expiry-unknown")
    assert "raw-owner@corp" in row_of(page, "expiry-unknown")
    assert "person=" not in row_of(page, "expiry-unknown")  # a raw reference is not linked
    assert escape("unknown — the registry keeps no record") in row_of(page, "usage-unknown")
    assert "<td>never</td>" in row_of(page, "never-used")
    assert used.strftime("%Y-%m-%d") in row_of(page, "used-recently")
    assert "(audit log)" in row_of(page, "used-recently")
    assert "disabled" in row_of(page, "switched-off")
    assert "enabled" in row_of(page, "used-recently")
    assert "gone since" in row_of(page, "gone-key")
    assert "shared admin" in row_of(page, "acr-admin-login")
    # Held credentials come first, then the gone ones.
    assert page.index("gone-key") > page.index("used-recently")
    assert f"{LIST}?registry={registry.pk}" in page


def test_the_registry_page_shows_grants_with_linked_principals(client: Client, admin: User) -> None:
    registry = factories.registry()
    team = factories.group(display_name="Payments team")
    person = factories.user(username="bob-dev")
    grant(
        registry,
        principal_name="payments",
        group=team,
        scope="payments/**",
        can_push=True,
        source="project payments",
    )
    grant(registry, principal_kind="user", principal_name="bob", user=person, scope="web/site")
    grant(registry, principal_kind="robot", principal_id="robot$ci", scope="**", source="robot ci")
    client.force_login(admin)
    page = body(client.get(detail(registry)))

    assert "Grants the registry reports" in page
    team_row = row_of(page, "payments/**")
    assert f'href="{reverse("accounts:group_detail", args=[team.pk])}"' in team_row
    assert "pull, push" in team_row
    assert "project payments" in team_row
    assert "person=bob-dev" in row_of(page, "web/site")
    assert "robot$ci" in row_of(page, "robot ci")
    assert f"{reverse('api:registry-grant-list')}?registry={registry.pk}" in page


def test_developers_see_neither_section(client: Client, developer: User) -> None:
    registry = factories.registry()
    credential(registry, name="secret-robot-name")
    grant(registry, principal_name="hidden-principal")
    client.force_login(developer)
    page = body(client.get(detail(registry)))
    assert "Credentials held by this registry" not in page
    assert "Grants the registry reports" not in page
    assert "secret-robot-name" not in page
    assert "hidden-principal" not in page


def test_the_sections_are_capped_with_a_link_to_the_rest(client: Client, reviewer: User) -> None:
    registry = factories.registry()
    for n in range(52):
        credential(registry, name=f"robot-{n:02}")
        grant(registry, principal_name=f"team-{n:02}")
    client.force_login(reviewer)
    page = body(client.get(detail(registry)))
    assert page.count("Showing 50 of 52.") == 2
    assert "robot-49" in page
    assert "robot-50" not in page


# The registry page as a reviewer; the two sections add one query each (rows with owners, groups and
# people joined), plus a count each once there are more rows than the cap.
DETAIL_QUERIES = 11


def test_the_registry_page_budget_does_not_grow_with_rows(
    client: Client, reviewer: User, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    registry = factories.registry()
    owner = factories.user()

    def add(count: int) -> None:
        for _ in range(count):
            credential(registry, owner_user=owner)
            grant(registry, group=factories.group(), user=factories.user())

    client.force_login(reviewer)
    add(2)
    with django_assert_num_queries(DETAIL_QUERIES):
        body(client.get(detail(registry)))
    add(20)
    with django_assert_num_queries(DETAIL_QUERIES):
        body(client.get(detail(registry)))
    add(40)  # past the cap: a count query for each section joins in, and that is all
    with django_assert_num_queries(DETAIL_QUERIES + 2):
        body(client.get(detail(registry)))


def test_the_registry_page_with_sections_stays_within_budget(
    client: Client, reviewer: User, django_assert_max_num_queries: DjangoAssertNumQueries
) -> None:
    registry = factories.registry()
    for _ in range(60):
        credential(registry, owner_user=factories.user())
        grant(registry, group=factories.group())
    client.force_login(reviewer)
    with django_assert_max_num_queries(25):
        body(client.get(detail(registry)))


# --- The credential list ---------------------------------------------------------------------------


@pytest.fixture
def spread() -> dict[str, Any]:
    eu, us = factories.registry(name="prod-eu"), factories.registry(name="prod-us")
    ann = factories.user(username="ann-ops", display_name="Ann Ops")
    return {
        "eu": eu,
        "us": us,
        "robot": credential(eu, name="eu-robot", owner_user=ann),
        "token": credential(us, name="us-token", kind="access_token", owner_name="carol@corp"),
        "off": credential(eu, name="eu-disabled", enabled=False),
        "gone": credential(us, name="us-gone", gone_at=timezone.now()),
    }


def listed(client: Client, query: str = "") -> set[str]:
    page = body(client.get(f"{LIST}?{query}"))
    names = ("eu-robot", "us-token", "eu-disabled", "us-gone")
    return {name for name in names if name in page}


def test_the_list_shows_held_credentials_by_default(
    client: Client, reviewer: User, spread: dict[str, Any]
) -> None:
    client.force_login(reviewer)
    assert listed(client) == {"eu-robot", "us-token", "eu-disabled"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state=enabled", {"eu-robot", "us-token"}),
        ("state=disabled", {"eu-disabled"}),
        ("state=gone", {"us-gone"}),
        ("kind=access_token", {"us-token"}),
        ("owner=ann", {"eu-robot"}),  # the linked person's username
        ("owner=Ops", {"eu-robot"}),  # and their name
        ("owner=carol", {"us-token"}),  # the raw reference
    ],
)
def test_the_list_filters(
    client: Client, reviewer: User, spread: dict[str, Any], query: str, expected: set[str]
) -> None:
    client.force_login(reviewer)
    assert listed(client, query) == expected


def test_the_list_filters_by_registry(client: Client, reviewer: User, spread: dict[str, Any]) -> None:
    client.force_login(reviewer)
    assert listed(client, f"registry={spread['eu'].pk}") == {"eu-robot", "eu-disabled"}
    assert listed(client, f"registry={spread['us'].pk}&state=gone") == {"us-gone"}


def test_a_bad_filter_value_says_so(client: Client, reviewer: User, spread: dict[str, Any]) -> None:
    client.force_login(reviewer)
    page = body(client.get(f"{LIST}?kind=bogus"))
    assert 'role="alert"' in page


def test_the_list_pages_keeping_its_filters(client: Client, reviewer: User) -> None:
    registry = factories.registry()
    for n in range(55):
        credential(registry, name=f"bulk-{n:02}")
    client.force_login(reviewer)
    page = body(client.get(f"{LIST}?registry={registry.pk}"))
    assert "Page 1 of 2 (55 in all)" in page
    assert f"{LIST}?registry={registry.pk}&amp;page=2" in page
    second = body(client.get(f"{LIST}?registry={registry.pk}&page=2"))
    assert "bulk-54" in second
    assert "bulk-00" not in second


def test_htmx_gets_the_table_alone(client: Client, reviewer: User, spread: dict[str, Any]) -> None:
    client.force_login(reviewer)
    fragment = body(client.get(LIST, headers={"HX-Request": "true"}))
    assert fragment.lstrip().startswith("<div")
    assert "<html" not in fragment
    assert "eu-robot" in fragment


def test_the_credentials_page_embeds_the_registry_table(client: Client, reviewer: User) -> None:
    client.force_login(reviewer)
    page = body(client.get(CREDENTIALS))
    assert "Registry credentials" in page
    assert f'hx-get="{LIST}"' in page
    assert f'href="{LIST}"' in page  # without JavaScript, a link


def test_the_list_budget_does_not_grow_with_rows(
    client: Client, reviewer: User, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    def add(count: int) -> None:
        for _ in range(count):
            credential(factories.registry(), owner_user=factories.user())

    client.force_login(reviewer)
    add(2)
    # session, user, role, registry choices, count, page (registries and owners joined)
    with django_assert_num_queries(6):
        body(client.get(LIST))
    add(30)
    with django_assert_num_queries(6):
        body(client.get(LIST))


def test_developers_cannot_open_the_list(client: Client, developer: User) -> None:
    client.force_login(developer)
    assert client.get(LIST).status_code == 403
