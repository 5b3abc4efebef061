"""The posture pages: scores over time, failing checks with their evidence and findings, query budgets.

Who may open them is tests/portal/test_url_matrix.py's job; the role check is also tried here once.
"""

from __future__ import annotations

import html
import re
from datetime import date, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries

from accounts.models import User
from portal.models import Finding
from registries import posture, posture_views
from registries.connectors.base import PostureCheck, PostureFact, PostureState
from registries.models import PostureSnapshot, Registry
from tests import factories

pytestmark = pytest.mark.django_db

OVERVIEW = "/posture/"
EVIDENCE = "https://registry.example.test/api/settings"


@pytest.fixture
def signed_in(client: Client, reviewer: User) -> Client:
    client.force_login(reviewer)
    return client


def _links(page: str) -> set[str]:
    return {html.unescape(href) for href in re.findall(r'href="([^"]+)"', page)}


def fact(
    check: PostureCheck, state: PostureState, subject: str = "", evidence: str = "said so"
) -> PostureFact:
    return PostureFact(check, state, evidence, subject, EVIDENCE)


def scored(name: str, facts: list[PostureFact], *days_ago: int) -> Registry:
    """A registry with these facts, evaluated on each of the days given (and so with snapshots)."""
    registry = factories.registry(name=name)
    posture.store_facts(registry, None, facts)
    for days in days_ago:
        posture.evaluate(registry, now=timezone.now() - timedelta(days=days))
    return registry


def registry_page(registry: Registry) -> str:
    return reverse("registries:registry_posture", args=[registry.pk])


# --- the overview ---------------------------------------------------------------------------------


def test_the_overview_lists_failing_checks_with_evidence_and_finding(signed_in: Client) -> None:
    failing = scored(
        "posture-open",
        [
            fact(
                PostureCheck.ANONYMOUS_PULL,
                PostureState.FAILING,
                evidence="GET /v2/ answers without credentials",
            ),
            fact(PostureCheck.PUBLIC_REPOSITORY, PostureState.OK, "team/app"),
            fact(PostureCheck.TAG_MUTABLE, PostureState.UNKNOWN, "prod/api"),
        ],
        0,
    )
    scored("posture-fine", [fact(PostureCheck.ANONYMOUS_PULL, PostureState.OK)], 0)

    response = signed_in.get(OVERVIEW)

    assert response.status_code == 200
    page = response.content.decode()
    finding = Finding.objects.get(kind="posture_anonymous_pull", scope=f"registry-{failing.pk}")
    links = _links(page)
    assert reverse("portal:finding_detail", args=[finding.pk]) in links
    assert EVIDENCE in links
    assert registry_page(failing) in links
    assert "GET /v2/ answers without credentials" in page
    assert "prod/api" not in page  # unknown facts are on the registry's page, not in the failing list
    rows = {row.registry.name: row for row in response.context["rows"]}
    assert (rows["posture-open"].score, rows["posture-open"].failing) == (33, 1)  # (4 × 0 + 2 × 1) / 6
    assert (rows["posture-fine"].score, rows["posture-fine"].failing) == (100, 0)
    assert [row.registry.name for row, _ in response.context["charts"]] == ["posture-open", "posture-fine"]


def test_the_estate_chart_is_the_daily_mean_with_scores_carried_forward(signed_in: Client) -> None:
    scored("posture-a", [fact(PostureCheck.ANONYMOUS_PULL, PostureState.OK)], 3, 0)  # 100 on both days
    scored("posture-b", [fact(PostureCheck.ANONYMOUS_PULL, PostureState.FAILING)], 1)  # 0 from yesterday

    estate = signed_in.get(OVERVIEW).context["estate"]

    values = [datum.value for datum in estate.data]
    assert values == [100, 100, 50, 50]  # 3 and 2 days ago: only a; then the mean of a and b
    assert estate.data[-1].label == timezone.localdate().strftime("%d %b")


def test_the_series_carries_a_score_over_days_without_a_snapshot() -> None:
    today = date(2026, 11, 29)
    first = today - timedelta(days=4)
    snapshots = [(1, today - timedelta(days=3), 40), (1, today - timedelta(days=1), 80), (2, today, None)]
    series = posture_views._series(snapshots, first, today)
    assert [value for _, value in series[1]] == [40, 40, 80, 80]
    assert series[2] == []  # never scored: nothing to draw


def test_the_overview_without_any_score_says_so(signed_in: Client) -> None:
    factories.registry()
    response = signed_in.get(OVERVIEW)
    assert response.context["estate"] is None
    assert "No score recorded yet" in response.content.decode()


def test_the_overview_costs_the_same_queries_with_few_and_many_registries(
    signed_in: Client, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    def add(count: int) -> None:
        for _ in range(count):
            scored(
                factories.unique("posture"),
                [
                    fact(PostureCheck.ANONYMOUS_PULL, PostureState.FAILING),
                    fact(PostureCheck.PUBLIC_REPOSITORY, PostureState.FAILING, factories.unique("team/app")),
                ],
                2,
                0,
            )

    add(1)
    with django_assert_num_queries(8):
        signed_in.get(OVERVIEW)
    add(6)
    with django_assert_num_queries(8):  # the same with seven registries and their facts and days
        signed_in.get(OVERVIEW)


# --- one registry ---------------------------------------------------------------------------------


def test_the_registry_page_shows_each_check_its_score_and_what_is_not_passing(signed_in: Client) -> None:
    registry = scored(
        "posture-one",
        [
            fact(PostureCheck.SSO_NOT_ENFORCED, PostureState.FAILING, evidence="auth_mode db_auth"),
            fact(PostureCheck.PUBLIC_REPOSITORY, PostureState.OK, "team/a"),
            fact(PostureCheck.PUBLIC_REPOSITORY, PostureState.OK, "team/b"),
            fact(PostureCheck.PUBLIC_REPOSITORY, PostureState.FAILING, "team/open"),
            fact(PostureCheck.TAG_MUTABLE, PostureState.UNKNOWN, "prod/api", evidence="no tag to read"),
        ],
        1,
        0,
    )
    factories.registry_credential(registry, expiry_known=True, expires_at=None)
    posture.evaluate(registry)

    response = signed_in.get(registry_page(registry))

    assert response.status_code == 200
    page = response.content.decode()
    checks = {row.check: row for row in response.context["checks"]}
    assert list(checks) == ["public_repository", "sso_not_enforced", "no_expiry", "tag_mutable"]
    public = checks["public_repository"]
    assert (public.tally.ok, public.tally.failing, public.tally.percent) == (2, 1, 67)
    assert public.findings_url == f"/findings/?kind=posture_public_repository&scope=registry-{registry.pk}"
    assert checks["no_expiry"].findings_url.startswith("/findings/?kind=credential_never_expires")
    shown = [(row.fact.check_name, row.fact.subject) for row in response.context["facts"]]
    assert shown == [
        ("public_repository", "team/open"),
        ("sso_not_enforced", ""),
        ("no_expiry", ""),
        ("tag_mutable", "prod/api"),
    ]
    assert "auth_mode db_auth" in page
    assert "no tag to read" in page
    sso = Finding.objects.get(kind="posture_sso_not_enforced", scope=f"registry-{registry.pk}")
    assert reverse("portal:finding_detail", args=[sso.pk]) in _links(page)
    # public 2 of 3 (medium, 2), SSO 0 of 1 (high, 4), no expiry 0 of 1 (low, 1); tag_mutable unknown
    assert response.context["score"] == 19  # round(100 × 2 × 2/3 / 7)
    assert [datum.value for datum in response.context["chart"].data] == [
        snapshot.score for snapshot in PostureSnapshot.objects.filter(registry=registry).order_by("day")
    ]


def test_the_acr_admin_user_is_scored_here_and_found_by_hygiene(signed_in: Client) -> None:
    registry = scored("posture-acr", [fact(PostureCheck.ACR_ADMIN_USER, PostureState.FAILING)], 0)

    response = signed_in.get(registry_page(registry))

    (row,) = [row for row in response.context["facts"] if row.fact.check_name == "acr_admin_user"]
    hygiene_list = f"/findings/?kind=credential_shared_admin&scope=registry-{registry.pk}"
    assert (row.title, row.severity, row.finding_url) == (
        "Shared admin account enabled",
        "high",
        hygiene_list,
    )
    assert not Finding.objects.filter(scope=f"registry-{registry.pk}").exists()  # none of posture's
    assert response.context["score"] == 0


def test_the_registry_page_says_when_the_last_sync_could_not_read_the_settings(signed_in: Client) -> None:
    registry = scored("posture-unread", [fact(PostureCheck.ANONYMOUS_PULL, PostureState.OK)], 0)
    factories.sync_run(registry, not_read={"posture": "403 from /api/v2.0/systeminfo"})
    page = signed_in.get(registry_page(registry)).content.decode()
    assert "could not read the settings: 403 from /api/v2.0/systeminfo" in page


def test_the_registry_page_costs_the_same_queries_with_few_and_many_facts(
    signed_in: Client, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    registry = scored("posture-many", [fact(PostureCheck.ANONYMOUS_PULL, PostureState.FAILING)], 0)
    with django_assert_num_queries(8):
        signed_in.get(registry_page(registry))
    many = [fact(PostureCheck.PUBLIC_REPOSITORY, PostureState.FAILING, f"team/app-{n}") for n in range(30)]
    posture.store_facts(registry, None, [*many, fact(PostureCheck.ANONYMOUS_PULL, PostureState.FAILING)])
    for days in range(5):
        posture.evaluate(registry, now=timezone.now() - timedelta(days=days))
    with django_assert_num_queries(8):
        signed_in.get(registry_page(registry))


def test_reviewers_and_admins_see_posture_and_nobody_else(
    client: Client, admin: User, developer: User
) -> None:
    registry = factories.registry()
    assert client.get(OVERVIEW).status_code == 302  # to the sign-in page
    client.force_login(developer)
    assert client.get(OVERVIEW).status_code == 403
    assert client.get(registry_page(registry)).status_code == 403
    client.force_login(admin)
    assert client.get(OVERVIEW).status_code == 200
    assert client.get(registry_page(registry)).status_code == 200
    assert client.get(reverse("registries:registry_posture", args=[registry.pk + 1000])).status_code == 404
