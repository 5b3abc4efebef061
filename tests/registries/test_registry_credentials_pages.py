"""Credentials and grants on pages: the registry page's two sections, the credential list across
registries and Customs (columns, every filter, sorting, open findings), its CSV and JSON exports and
its place on the Credentials page. Reviewers and admins only.

`estate` and FILTER_CASES are shared with test_registry_credentials_api.py: the page and the API use
one FilterSet, and the same cases prove both.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from pytest_django import DjangoAssertNumQueries

from accounts.models import User
from portal.models import Finding
from registries import credential_views
from registries.models import Credential, Registry
from tests import factories

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

pytestmark = pytest.mark.django_db

LIST = reverse("registries:credentials")
EXPORT_CSV = reverse("registries:credentials_export_csv")
EXPORT_JSON = reverse("registries:credentials_export_json")
CREDENTIALS = reverse("accounts:credentials")
FINDINGS = reverse("portal:findings")


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


def test_a_credential_taken_over_at_an_offboarding_names_its_steward(client: Client, reviewer: User) -> None:
    registry = factories.registry()
    heir = factories.user(username="heir", display_name="Hal Heir")
    credential(registry, name="deploy-bot", created_by_name="left-the-company", steward=heir)
    credential(registry, name="nobody-took-it")
    client.force_login(reviewer)
    for page in (body(client.get(detail(registry))), body(client.get(LIST))):
        assert "steward: Hal Heir" in row_of(page, "deploy-bot")
        assert "steward" not in row_of(page, "nobody-took-it")


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
# people joined) and one for the credentials' open findings, plus a count each once there are more
# rows than the cap. (An empty section reads the last sync's counts to say why it is empty.)
DETAIL_QUERIES = 12


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
    # session, user, role, registry choices, count, page (registries and owners joined), open findings
    with django_assert_num_queries(7):
        body(client.get(LIST))
    add(30)
    with django_assert_num_queries(7):
        body(client.get(LIST))


@pytest.mark.parametrize("url", [LIST, EXPORT_CSV, EXPORT_JSON])
def test_developers_cannot_open_the_list_or_its_exports(client: Client, developer: User, url: str) -> None:
    customs_credential(name="hidden-customs-token")
    assert client.get(url).status_code == 302  # to sign-in
    client.force_login(developer)
    response = client.get(url)
    assert response.status_code == 403
    assert b"hidden-customs-token" not in response.content


# --- Across registries and Customs: every column, every filter ----------------------------------

ESTATE_NAMES = ("alpha-robot", "bravo-token", "charlie-key", "delta-robot", "echo-pat", "foxtrot-gone")


def customs_credential(**fields: Any) -> Credential:
    """One of Customs' own tokens, as the hygiene scan copies it in: no registry."""
    fields.setdefault("native_id", f"customs:personal-token:{factories.unique('t')}")
    fields.setdefault("kind", "customs_api_token")
    fields.setdefault("name", factories.unique("customs-token"))
    return Credential.objects.create(registry=None, **fields)


def about(subject: Credential, **fields: Any) -> Finding:
    """A finding about the credential, as the hygiene rules will open them."""
    return factories.finding(subject_type="registries.credential", subject_id=str(subject.pk), **fields)


def build_estate() -> dict[str, Any]:
    """Six credentials that differ in every column, and findings about some of them.

    Dates sit at least five days from every date the filter cases use, so no case hangs on a boundary.
    """
    now, today = timezone.now(), timezone.localdate()
    eu, us = factories.registry(name="prod-eu"), factories.registry(name="prod-us")
    ann = factories.user(username="ann-ops", display_name="Ann Ops")
    dan = factories.user(username="dan-left", status=User.Status.DEPARTED)
    dis = factories.user(username="dis-paused", status=User.Status.DISABLED)
    made = {
        "alpha-robot": credential(
            eu,
            name="alpha-robot",
            owner_user=ann,
            created_at=now - timedelta(days=100),
            expires_at=now + timedelta(days=30),
            last_used_at=now - timedelta(days=2),
            last_used_source="audit log",
            scopes=["repository:payments/api:pull,push"],
            actions=["pull", "push"],
            actions_seen={"push": (now - timedelta(days=2)).isoformat()},
            actions_seen_source="harbor audit log",
        ),
        "bravo-token": credential(
            us,
            name="bravo-token",
            kind="access_token",
            owner_name="carol@corp",
            owner_kind="user",
            created_at=now - timedelta(days=10),
            expiry_known=True,
            expires_at=None,
            usage_known=True,
            last_used_at=None,
            scopes=["repo:read"],
            actions=["pull"],
            created_by_name="builder-bot",
        ),
        "charlie-key": credential(
            eu,
            name="charlie-key",
            kind="access_key",
            expiry_known=False,
            usage_known=False,
            shared_admin=True,
        ),
        "delta-robot": credential(
            us,
            name="delta-robot",
            owner_user=dan,
            created_by_user=dan,
            steward=ann,  # took it over at dan's offboarding
            enabled=False,
            created_at=now - timedelta(days=400),
            expires_at=now - timedelta(days=5),
            last_used_at=now - timedelta(days=200),
            scopes=["**"],
            actions=["pull", "push", "delete"],
        ),
        "echo-pat": customs_credential(
            name="echo-pat",
            owner_user=dis,
            created_at=now - timedelta(days=20),
            expires_at=now + timedelta(days=60),
            last_used_at=now - timedelta(days=1),
            last_used_source="customs api",
            scopes=["read"],
        ),
        "foxtrot-gone": credential(eu, name="foxtrot-gone", gone_at=now - timedelta(days=3)),
    }
    alpha, bravo, echo = made["alpha-robot"], made["bravo-token"], made["echo-pat"]
    about(alpha)
    about(alpha, severity=Finding.Severity.MEDIUM)
    about(alpha, resolved_at=now)  # resolved: not counted
    about(bravo, suppressed_until=now + timedelta(days=7))  # suppressed: not counted
    about(echo)
    # Another kind of subject with the same id is not about the credential.
    factories.finding(subject_type="registries.registry", subject_id=str(bravo.pk))
    dates = {
        "today": today,
        "ago7": today - timedelta(days=7),
        "ago30": today - timedelta(days=30),
        "in45": today + timedelta(days=45),
    }
    return {"made": made, "eu": eu, "us": us} | {name: day.isoformat() for name, day in dates.items()}


@pytest.fixture
def estate() -> dict[str, Any]:
    return build_estate()


ALL_HELD = {"alpha-robot", "bravo-token", "charlie-key", "delta-robot", "echo-pat"}

# (query, expected names among the held ones); {eu}, {today}, {ago7}, {ago30}, {in45} come from the estate.
FILTER_CASES: list[tuple[str, set[str]]] = [
    ("", ALL_HELD),
    ("registry=customs", {"echo-pat"}),
    ("registry={eu}", {"alpha-robot", "charlie-key"}),
    ("registry=999999", set()),
    ("kind=customs_api_token", {"echo-pat"}),
    ("kind=access_key", {"charlie-key"}),
    ("name=robot", {"alpha-robot", "delta-robot"}),
    ("name=ECHO-P", {"echo-pat"}),  # any case, any part
    ("name=%20DELTA%20", {"delta-robot"}),  # spaces around it ignored
    ("shared_admin=true", {"charlie-key"}),
    ("shared_admin=false", {"alpha-robot", "bravo-token", "delta-robot", "echo-pat"}),
    ("last_used_source=audit", {"alpha-robot"}),
    ("last_used_source=Customs%20API", {"echo-pat"}),  # the whole value, in another case
    ("last_used_source=harbor", set()),  # actions_seen_source is another column's
    ("state=enabled", {"alpha-robot", "bravo-token", "charlie-key", "echo-pat"}),
    ("state=disabled", {"delta-robot"}),
    ("owner=ann", {"alpha-robot"}),
    ("owner=Ops", {"alpha-robot"}),
    ("owner=carol", {"bravo-token"}),
    ("owner_status=active", {"alpha-robot"}),
    ("owner_status=departed", {"delta-robot"}),
    ("owner_status=disabled", {"echo-pat"}),
    ("owner_status=unresolved", {"bravo-token"}),
    ("owner_status=none", {"charlie-key"}),
    ("created=unknown", {"charlie-key"}),
    ("created_after={ago30}", {"bravo-token", "echo-pat"}),
    ("created_before={ago30}", {"alpha-robot", "delta-robot"}),
    ("expires=never", {"bravo-token"}),
    ("expires=unknown", {"charlie-key"}),
    ("expires_before={today}", {"delta-robot"}),
    ("expires_after={today}", {"alpha-robot", "echo-pat"}),
    ("expires_after={today}&expires_before={in45}", {"alpha-robot"}),
    ("last_used=never", {"bravo-token"}),
    ("last_used=unknown", {"charlie-key"}),
    ("last_used_before={ago30}", {"delta-robot"}),
    ("last_used_after={ago7}", {"alpha-robot", "echo-pat"}),
    ("scope=payments", {"alpha-robot"}),
    ("scope=READ", {"bravo-token", "echo-pat"}),
    ("action=push", {"alpha-robot", "delta-robot"}),
    ("action=delete", {"delta-robot"}),
    ("action=pull", {"alpha-robot", "bravo-token", "delta-robot"}),
    ("action=unknown", {"charlie-key", "echo-pat"}),
    ("created_by=BUILDER", {"bravo-token"}),
    ("created_by=dan-left", {"delta-robot"}),  # the linked person's username
    ("steward=Ann%20Ops", {"delta-robot"}),
    ("steward=dan", set()),  # the owner, not the steward
    ("action_seen=push", {"alpha-robot"}),
    ("action_seen=pull", set()),  # granted pull, but no pull recorded
    ("action_seen=unknown", {"bravo-token", "charlie-key", "delta-robot", "echo-pat"}),
    ("has_open_findings=true", {"alpha-robot", "echo-pat"}),
    ("has_open_findings=false", {"bravo-token", "charlie-key", "delta-robot"}),
    ("registry=customs&owner_status=disabled", {"echo-pat"}),
    ("registry=customs&owner_status=active", set()),
]

BAD_FILTERS = [
    "kind=bogus",
    "registry=prod-eu",
    "owner_status=gone",
    "created_after=yesterday",
    "created=never",
    "expires=soon",
    "action=pull,push",
    "ordering=owner",
    "shared_admin=maybe",
    "has_open_findings=sometimes",
    "gone=perhaps",
]

# Rows without the date come last either way, in creation order.
ORDERING_CASES = [
    ("name", ["alpha-robot", "bravo-token", "charlie-key", "delta-robot", "echo-pat"]),
    ("-name", ["echo-pat", "delta-robot", "charlie-key", "bravo-token", "alpha-robot"]),
    ("created_at", ["delta-robot", "alpha-robot", "echo-pat", "bravo-token", "charlie-key"]),
    ("-created_at", ["bravo-token", "echo-pat", "alpha-robot", "delta-robot", "charlie-key"]),
    ("expires_at", ["delta-robot", "alpha-robot", "echo-pat", "bravo-token", "charlie-key"]),
    ("-expires_at", ["echo-pat", "alpha-robot", "delta-robot", "bravo-token", "charlie-key"]),
    ("last_used_at", ["delta-robot", "alpha-robot", "echo-pat", "bravo-token", "charlie-key"]),
    ("-last_used_at", ["echo-pat", "alpha-robot", "delta-robot", "bravo-token", "charlie-key"]),
]


def fill(query: str, estate: dict[str, Any]) -> str:
    return query.format(**{key: getattr(value, "pk", value) for key, value in estate.items()})


def shown(client: Client, query: str) -> set[str]:
    page = body(client.get(f"{LIST}?{query}"))
    return {name for name in ESTATE_NAMES if name in page}


def order_shown(page: str) -> list[str]:
    return sorted((name for name in ESTATE_NAMES if name in page), key=page.index)


@pytest.mark.parametrize(("query", "expected"), FILTER_CASES)
def test_the_list_filters_by_any_column(
    client: Client, reviewer: User, estate: dict[str, Any], query: str, expected: set[str]
) -> None:
    client.force_login(reviewer)
    assert shown(client, fill(query, estate)) == expected


def test_gone_credentials_are_shown_when_asked_for(
    client: Client, reviewer: User, estate: dict[str, Any]
) -> None:
    client.force_login(reviewer)
    assert shown(client, "state=gone") == {"foxtrot-gone"}
    assert shown(client, "state=gone&last_used=never") == {"foxtrot-gone"}


@pytest.mark.parametrize("query", BAD_FILTERS)
def test_a_bad_filter_says_so_and_lists_nothing(
    client: Client, reviewer: User, estate: dict[str, Any], query: str
) -> None:
    client.force_login(reviewer)
    page = body(client.get(f"{LIST}?{query}"))
    assert 'role="alert"' in page
    assert "No credential matches." in page
    assert not {name for name in ESTATE_NAMES if name in page}


@pytest.mark.parametrize(("ordering", "expected"), ORDERING_CASES)
def test_the_list_sorts(
    client: Client, reviewer: User, estate: dict[str, Any], ordering: str, expected: list[str]
) -> None:
    client.force_login(reviewer)
    page = body(client.get(f"{LIST}?ordering={ordering}"))
    assert order_shown(page) == expected


def test_each_column_says_what_is_known(client: Client, reviewer: User, estate: dict[str, Any]) -> None:
    client.force_login(reviewer)
    page = body(client.get(LIST))
    explorer = reverse("registries:explore")

    alpha = row_of(page, "alpha-robot")
    assert f'href="{detail(estate["eu"])}">prod-eu</a>' in alpha
    assert f'href="{explorer}?by=user&amp;person=ann-ops">Ann Ops</a>' in alpha
    assert ">Active</span>" in alpha
    assert "(audit log)" in alpha
    assert "repository:payments/api:pull,push" in alpha
    assert "pull, push" in alpha
    assert "seen: push" in alpha
    assert "(harbor audit log)" in alpha
    assert "enabled" in alpha

    bravo = row_of(page, "bravo-token")
    assert "carol@corp" in bravo
    assert "not linked" in bravo
    assert "person=" not in bravo  # a raw reference is not linked
    assert bravo.count("<td>never</td>") == 2  # never expires, never used

    charlie = row_of(page, "charlie-key")
    assert "shared admin" in charlie
    assert "shared admin" not in alpha
    assert "no owner" in charlie
    assert "unknown</span>" in charlie  # expiry
    assert escape("unknown — the registry keeps no record") in charlie
    assert "none reported" in charlie  # scopes

    delta = row_of(page, "delta-robot")
    assert "person=dan-left" in delta
    assert ">Departed</span>" in delta
    assert "disabled" in delta

    echo = row_of(page, "echo-pat")
    assert ">Customs</span>" in echo
    assert "Customs API token" in echo
    assert ">Disabled</span>" in echo
    assert "(customs api)" in echo


def test_each_row_counts_its_open_findings_and_links_to_them(
    client: Client, reviewer: User, estate: dict[str, Any]
) -> None:
    client.force_login(reviewer)
    page = body(client.get(LIST))
    made = estate["made"]

    def findings_link(name: str) -> str:
        return f'{FINDINGS}?subject_type=registries.credential&amp;subject_id={made[name].pk}"'

    assert findings_link("alpha-robot") in row_of(page, "alpha-robot")
    assert '">2</a>' in row_of(page, "alpha-robot")  # two open; the resolved one does not count
    assert '">1</a>' in row_of(page, "echo-pat")
    for name in ("bravo-token", "charlie-key", "delta-robot"):  # suppressed or other subjects only
        assert findings_link(name) not in row_of(page, name)
        assert '<span class="muted">0</span>' in row_of(page, name)


def test_the_registry_page_counts_open_findings_too(
    client: Client, reviewer: User, estate: dict[str, Any]
) -> None:
    client.force_login(reviewer)
    page = body(client.get(detail(estate["eu"])))
    assert '">2</a>' in row_of(page, "alpha-robot")
    assert "echo-pat" not in page  # Customs' own tokens belong to no registry


def test_the_list_budget_does_not_grow_with_findings(
    client: Client, reviewer: User, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    def add(count: int) -> None:
        for _ in range(count):
            made = credential(factories.registry(), owner_user=factories.user())
            about(made)
            customs_credential(owner_user=factories.user())

    client.force_login(reviewer)
    add(2)
    with django_assert_num_queries(7):
        body(client.get(LIST))
    add(20)
    with django_assert_num_queries(7):
        body(client.get(LIST))


# --- Exports ------------------------------------------------------------------------------------


def download(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, response.content
    assert isinstance(response, StreamingHttpResponse)  # never built whole in memory
    assert response["Cache-Control"] == "no-store"
    assert response["Content-Disposition"].startswith('attachment; filename="customs-credentials-')
    return b"".join(response.streaming_content).decode()


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_the_csv_export_holds_every_column(client: Client, reviewer: User, estate: dict[str, Any]) -> None:
    client.force_login(reviewer)
    text = download(client, EXPORT_CSV)
    assert text.splitlines()[0] == ",".join(credential_views.CSV_COLUMNS)
    rows = {row["name"]: row for row in csv_rows(text)}
    assert set(rows) == ALL_HELD  # held ones by default, as on the page

    alpha = rows["alpha-robot"]
    assert alpha["registry_name"] == "prod-eu"
    assert alpha["owner_username"] == "ann-ops"
    assert alpha["owner_status"] == "active"
    assert json.loads(alpha["actions"]) == ["pull", "push"]
    assert list(json.loads(alpha["actions_seen"])) == ["push"]
    assert alpha["actions_seen_source"] == "harbor audit log"
    assert alpha["last_used_source"] == "audit log"
    assert alpha["open_findings"] == "2"
    assert alpha["state"] == "enabled"

    bravo = rows["bravo-token"]
    assert (bravo["expires_at"], bravo["expiry_known"], bravo["never_expires"]) == ("", "true", "true")
    assert (bravo["last_used_at"], bravo["usage_known"]) == ("", "true")
    assert bravo["owner_status"] == "unresolved"
    assert bravo["open_findings"] == "0"

    charlie = rows["charlie-key"]
    assert (charlie["expires_at"], charlie["expiry_known"], charlie["never_expires"]) == (
        "",
        "false",
        "false",
    )
    assert charlie["usage_known"] == "false"
    assert charlie["owner_status"] == "none"
    assert (charlie["shared_admin"], alpha["shared_admin"]) == ("true", "false")

    echo = rows["echo-pat"]
    assert (echo["registry"], echo["registry_name"]) == ("", "Customs")
    assert echo["kind"] == "customs_api_token"
    assert echo["owner_status"] == "disabled"
    assert rows["delta-robot"]["state"] == "disabled"
    assert rows["delta-robot"]["owner_status"] == "departed"


def test_the_json_export_is_one_array_of_api_rows(
    client: Client, reviewer: User, estate: dict[str, Any]
) -> None:
    client.force_login(reviewer)
    rows = {row["name"]: row for row in json.loads(download(client, EXPORT_JSON))}
    assert set(rows) == ALL_HELD
    assert rows["echo-pat"]["registry"] is None
    assert rows["echo-pat"]["registry_name"] == "Customs"
    assert rows["echo-pat"]["in_customs"] is True
    assert rows["alpha-robot"]["open_findings"] == 2
    assert rows["alpha-robot"]["actions"] == ["pull", "push"]
    assert rows["charlie-key"]["expiry_known"] is False
    assert rows["bravo-token"]["never_expires"] is True


@pytest.mark.parametrize("url", [EXPORT_CSV, EXPORT_JSON])
def test_the_exports_honour_every_filter(
    client: Client, reviewer: User, estate: dict[str, Any], url: str
) -> None:
    client.force_login(reviewer)
    for query, expected in FILTER_CASES:
        text = download(client, f"{url}?{fill(query, estate)}")
        rows = csv_rows(text) if url == EXPORT_CSV else json.loads(text)
        assert {row["name"] for row in rows} == expected, query


@pytest.mark.parametrize("url", [EXPORT_CSV, EXPORT_JSON])
def test_the_exports_follow_the_sort_and_the_state(
    client: Client, reviewer: User, estate: dict[str, Any], url: str
) -> None:
    client.force_login(reviewer)
    text = download(client, f"{url}?ordering=-expires_at")
    rows = csv_rows(text) if url == EXPORT_CSV else json.loads(text)
    assert [row["name"] for row in rows] == dict(ORDERING_CASES)["-expires_at"]
    gone = download(client, f"{url}?state=gone")
    assert "foxtrot-gone" in gone
    assert "alpha-robot" not in gone


@pytest.mark.parametrize("url", [EXPORT_CSV, EXPORT_JSON])
def test_an_export_with_a_bad_filter_is_refused(
    client: Client, reviewer: User, estate: dict[str, Any], url: str
) -> None:
    client.force_login(reviewer)
    response = client.get(f"{url}?owner=ann&owner_status=gone")
    assert response.status_code == 400
    assert "owner_status" in response.content.decode()
    assert b"alpha-robot" not in response.content  # nothing rather than rows it did not ask for


def test_the_exports_take_every_row_not_one_page(client: Client, reviewer: User) -> None:
    registry = factories.registry()
    for n in range(credential_views.PAGE_SIZE + 5):
        credential(registry, name=f"bulk-{n:02}")
    client.force_login(reviewer)
    assert len(csv_rows(download(client, f"{EXPORT_CSV}?registry={registry.pk}"))) == 55
    assert len(json.loads(download(client, f"{EXPORT_JSON}?registry={registry.pk}"))) == 55


def test_the_exports_read_in_chunks_without_a_query_per_row(
    client: Client,
    reviewer: User,
    monkeypatch: pytest.MonkeyPatch,
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    monkeypatch.setattr(credential_views, "EXPORT_CHUNK", 10)
    registry = factories.registry()
    client.force_login(reviewer)

    def add(count: int) -> None:
        for _ in range(count):
            made = credential(registry, owner_user=factories.user(), created_by_user=factories.user())
            about(made)

    def export() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = json.loads(download(client, EXPORT_JSON))
        return rows

    add(3)
    # session, user, role, the rows (one cursor), open findings for the one chunk
    with django_assert_num_queries(5):
        assert len(export()) == 3
    add(5)
    with django_assert_num_queries(5):
        rows = export()
    assert [row["open_findings"] for row in rows] == [1] * 8
    add(4)  # 12 rows: a second chunk, and its own count query
    with django_assert_num_queries(6):
        rows = export()
    assert [row["open_findings"] for row in rows] == [1] * 12


FORMULAS = ['=HYPERLINK("http://evil.test")', "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd"]


@pytest.mark.parametrize("formula", FORMULAS)
def test_the_csv_export_neutralises_formulas(client: Client, reviewer: User, formula: str) -> None:
    credential(factories.registry(), name=formula, owner_name=formula, last_used_source=formula)
    client.force_login(reviewer)
    [row] = csv_rows(download(client, EXPORT_CSV))
    for column in ("name", "owner_name", "last_used_source"):
        assert row[column] == "'" + formula
    # The JSON export is data, not a sheet: it keeps the value as the registry wrote it.
    [raw] = json.loads(download(client, EXPORT_JSON))
    assert raw["name"] == formula


def test_the_export_links_carry_the_current_filters(
    client: Client, reviewer: User, estate: dict[str, Any]
) -> None:
    client.force_login(reviewer)
    page = body(client.get(f"{LIST}?registry=customs&ordering=name&page=1"))
    assert f'href="{EXPORT_CSV}?registry=customs&amp;ordering=name"' in page
    assert f'href="{EXPORT_JSON}?registry=customs&amp;ordering=name"' in page
    fragment = body(client.get(f"{LIST}?owner_status=departed", headers={"HX-Request": "true"}))
    assert f'href="{EXPORT_CSV}?owner_status=departed"' in fragment
    unfiltered = body(client.get(LIST))
    assert f'href="{EXPORT_CSV}"' in unfiltered


def test_the_filter_form_offers_customs_and_every_registry(
    client: Client, reviewer: User, estate: dict[str, Any]
) -> None:
    client.force_login(reviewer)
    page = body(client.get(f"{LIST}?registry=customs"))
    assert '<option value="customs" selected>Customs</option>' in page
    assert f'<option value="{estate["eu"].pk}">prod-eu</option>' in page
    for name in credential_views.PAGE_FILTERS:
        assert f'name="{name}"' in page
    assert {"name", "shared_admin", "last_used_source", "scope", "action"} <= set(
        credential_views.PAGE_FILTERS
    )


def test_an_empty_section_says_why(client: Client, reviewer: User) -> None:
    plain = factories.registry(kind="distribution")  # no credentials or grants API
    harbor = factories.registry(kind="harbor")
    client.force_login(reviewer)

    assert "does not report its credentials" in body(client.get(detail(plain)))
    assert "No sync has read this registry&#x27;s grants yet" in body(client.get(detail(harbor)))
    factories.sync_run(harbor, status="succeeded", credentials_seen=0, grants_seen=0)
    page = body(client.get(detail(harbor)))
    assert "The last sync read this registry&#x27;s credentials: there are none." in page
    assert "The last sync read this registry&#x27;s grants: there are none." in page
