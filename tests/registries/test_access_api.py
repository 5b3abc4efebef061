"""/api/v1/ for access rules and effective access: roles, validation in the usual error shape, evidence,
query budgets, and the streamed report."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries

from accounts.models import DirectoryGroup, GroupMembership, User
from accounts.roles import Role
from portal.audit import AuditAction
from portal.models import AuditEvent
from registries import effective
from registries.models import AccessRule
from registries.patterns import InvalidPattern, compile_pattern
from tests import factories

pytestmark = pytest.mark.django_db

RULES = reverse("api:access-rule-list")
USER = reverse("api:access-user")
WHO_CAN = reverse("api:access-who-can")
ME = reverse("api:access-me")
REPORT = reverse("api:access-report")


rule = factories.access_rule


def person_in(*groups: DirectoryGroup, **fields: Any) -> User:
    person = factories.user(**fields)
    for group in groups:
        factories.member(person, group)
    return person


def detail(made: AccessRule) -> str:
    return reverse("api:access-rule-detail", args=[made.pk])


@pytest.fixture
def lab() -> dict[str, Any]:
    eu = factories.registry(name="prod-eu")
    for name in ("payments/api", "payments/web", "web/site"):
        factories.repository(eu, name=name)
    payments = factories.group(display_name="Payments")
    people = [person_in(payments, username=f"pay-{n}") for n in ("ann", "bob")]
    person_in(payments, username="pay-gone", status=User.Status.DEPARTED)
    return {"eu": eu, "payments": payments, "people": people}


# --- /access-rules/ -----------------------------------------------------------------------------


def test_reviewers_list_rules_with_expired_ones_marked(
    client: Client, reviewer: User, lab: dict[str, Any]
) -> None:
    live = rule(lab["payments"], "payments/*", "pull", "push", registry=lab["eu"])
    old = rule(lab["payments"], "old/*", expires_in=timedelta(days=1))
    AccessRule.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(hours=1))
    client.force_login(reviewer)
    results = {r["id"]: r for r in client.get(RULES).json()["results"]}
    assert results[live.pk] | {"created_at": None, "updated_at": None} == {
        "id": live.pk,
        "group": lab["payments"].pk,
        "group_name": "Payments",
        "group_external_id": lab["payments"].external_id,
        "registry": lab["eu"].pk,
        "registry_name": "prod-eu",
        "pattern": "payments/*",
        "actions": ["pull", "push"],
        "expires_at": None,
        "expired": False,
        "justification": "needed for the test",
        "created_by": None,
        "created_at": None,
        "updated_at": None,
    }
    assert results[old.pk]["expired"] is True
    in_force = client.get(RULES, {"state": "in_force"}).json()["results"]
    assert [r["id"] for r in in_force] == [live.pk]
    assert [r["id"] for r in client.get(RULES, {"action": "push"}).json()["results"]] == [live.pk]


def test_the_rule_list_costs_the_same_for_2_and_40(
    client: Client, reviewer: User, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    registry = factories.registry()
    for n in range(2):
        rule(factories.group(), f"team{n}/*", registry=registry)
    client.force_login(reviewer)
    with django_assert_num_queries(5):  # session, user, role, count, page (group, registry, author joined)
        client.get(RULES)
    for n in range(2, 40):
        rule(factories.group(), f"team{n}/*", registry=registry if n % 2 else None)
    with django_assert_num_queries(5):
        assert client.get(RULES).json()["count"] == 40


def test_admins_create_change_and_remove_rules_through_the_services(
    client: Client, admin: User, lab: dict[str, Any]
) -> None:
    client.force_login(admin)
    expiry = (timezone.now() + timedelta(days=7)).replace(microsecond=0)
    response = client.post(
        RULES,
        {
            "group": lab["payments"].pk,
            "registry": lab["eu"].pk,
            "pattern": "payments/**",
            "actions": ["pull", "push"],
            "expires_at": expiry.isoformat(),
            "justification": "the team ships here",
        },
        content_type="application/json",
    )
    assert response.status_code == 201, response.json()
    made = AccessRule.objects.get(pk=response.json()["id"])
    assert (made.pattern, made.actions, made.expires_at, made.created_by) == (
        "payments/**",
        ["pull", "push"],
        expiry,
        admin,
    )
    patched = client.patch(detail(made), {"actions": ["pull"]}, content_type="application/json")
    assert patched.status_code == 200
    assert patched.json()["actions"] == ["pull"]
    made.refresh_from_db()
    assert (made.pattern, made.registry, made.expires_at) == ("payments/**", lab["eu"], expiry)  # kept
    assert client.delete(detail(made)).status_code == 204
    assert not AccessRule.objects.exists()
    assert list(AuditEvent.objects.order_by("sequence").values_list("action", flat=True))[-3:] == [
        AuditAction.ACCESS_RULE_CREATED,
        AuditAction.ACCESS_RULE_UPDATED,
        AuditAction.ACCESS_RULE_DELETED,
    ]


def test_an_invalid_pattern_is_a_400_with_its_reason(
    client: Client, admin: User, lab: dict[str, Any]
) -> None:
    client.force_login(admin)
    with pytest.raises(InvalidPattern) as refused:
        compile_pattern("payments/**x")
    response = client.post(
        RULES,
        {"group": lab["payments"].pk, "pattern": "payments/**x", "actions": ["pull"], "justification": "why"},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "invalid",
            "message": f"pattern: {refused.value}",
            "fields": {"pattern": [str(refused.value)]},
        }
    }
    assert not AccessRule.objects.exists()


def test_the_services_refusals_are_400s_too(client: Client, admin: User, lab: dict[str, Any]) -> None:
    client.force_login(admin)
    past = (timezone.now() - timedelta(days=1)).isoformat()
    body = {"group": lab["payments"].pk, "pattern": "x/*", "actions": ["pull"], "justification": "   "}
    response = client.post(RULES, body | {"expires_at": past}, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    unknown = client.post(RULES, body | {"actions": ["own"]}, content_type="application/json")
    assert unknown.status_code == 400
    assert "actions" in unknown.json()["error"]["fields"]


def test_reviewers_cannot_write_rules(client: Client, reviewer: User, lab: dict[str, Any]) -> None:
    made = rule(lab["payments"], "x/*")
    client.force_login(reviewer)
    assert client.delete(detail(made)).status_code == 403
    response = client.post(
        RULES,
        {"group": lab["payments"].pk, "pattern": "y/*", "actions": ["pull"], "justification": "why"},
        content_type="application/json",
    )
    assert response.status_code == 403
    assert AccessRule.objects.count() == 1


# --- /access/user/, /access/who-can/, /access/groups/<id>/reach/, /access/me/ -------------------


def test_what_a_person_may_do_on_a_repository_with_evidence(
    client: Client, reviewer: User, lab: dict[str, Any]
) -> None:
    push = rule(lab["payments"], "payments/*", "pull", "push", registry=lab["eu"])
    client.force_login(reviewer)
    answer = client.get(
        USER, {"user": "pay-ann", "registry": lab["eu"].pk, "repository": "payments/api"}
    ).json()
    membership = GroupMembership.objects.get(user__username="pay-ann")
    assert answer["actions"] == ["pull", "push"]
    assert answer["evidence"] == [
        {
            "rule_id": push.pk,
            "pattern": "payments/*",
            "actions": ["pull", "push"],
            "group": "Payments",
            "group_id": lab["payments"].external_id,
            "expires_at": None,
            "membership_source": "oidc",
            "membership_synced_at": membership.synced_at.isoformat().replace("+00:00", "Z"),
        }
    ]
    assert answer["memberships"][0]["group_external_id"] == lab["payments"].external_id
    nothing = client.get(USER, {"user": "pay-ann", "registry": lab["eu"].pk, "repository": "web/site"}).json()
    assert (nothing["actions"], nothing["evidence"]) == ([], [])


def test_without_a_repository_the_rules_reaching_a_person(
    client: Client, reviewer: User, lab: dict[str, Any]
) -> None:
    reaching = rule(lab["payments"], "payments/*", "push")
    client.force_login(reviewer)
    answer = client.get(USER, {"user": "pay-bob"}).json()
    assert answer["actions"] is None
    assert [(r["rule"]["id"], r["repository_count"], r["membership"]["source"]) for r in answer["rules"]] == [
        (reaching.pk, 2, "oidc")
    ]
    assert client.get(USER, {"user": "pay-gone"}).json()["rules"] == []  # departed: no access


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ({}, 400, "user"),
        ({"user": "nobody-at-all"}, 404, None),
        ({"user": "pay-ann", "repository": "payments/api"}, 400, "registry"),
        ({"user": "pay-ann", "registry": "EU", "repository": "Payments API"}, 400, "repository"),
    ],
)
def test_bad_questions_are_answered_with_reasons(
    client: Client, reviewer: User, lab: dict[str, Any], query: dict[str, Any], status: int, field: str | None
) -> None:
    client.force_login(reviewer)
    query = {k: (lab["eu"].pk if v == "EU" else v) for k, v in query.items()}
    response = client.get(USER, query)
    assert response.status_code == status
    if field:
        assert field in response.json()["error"]["fields"]


def test_who_can_push_with_evidence_and_pages(client: Client, reviewer: User, lab: dict[str, Any]) -> None:
    rule(lab["payments"], "payments/*", "pull", "push", registry=lab["eu"])
    client.force_login(reviewer)
    answer = client.get(
        WHO_CAN, {"registry": lab["eu"].pk, "repository": "payments/api", "action": "push"}
    ).json()
    assert answer["count"] == 2  # the departed member is not counted
    assert [row["person"]["username"] for row in answer["results"]] == ["pay-ann", "pay-bob"]
    assert answer["results"][0]["evidence"][0]["pattern"] == "payments/*"
    paged = client.get(
        WHO_CAN, {"registry": lab["eu"].pk, "repository": "payments/api", "action": "push", "page_size": 1}
    ).json()
    assert (paged["count"], len(paged["results"]), paged["next"] is not None) == (2, 1, True)
    assert client.get(WHO_CAN, {"registry": lab["eu"].pk, "repository": "payments/api"}).status_code == 400


def test_who_can_costs_the_same_for_2_and_40_people(
    client: Client, reviewer: User, lab: dict[str, Any], django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    rule(lab["payments"], "payments/*", "push", registry=lab["eu"])
    query = {"registry": lab["eu"].pk, "repository": "payments/api", "action": "push"}
    client.force_login(reviewer)
    # session, user, role, registry, candidate rules, matching rules, memberships with people
    with django_assert_num_queries(7):
        client.get(WHO_CAN, query)
    for _ in range(38):
        person_in(lab["payments"])
    with django_assert_num_queries(7):
        assert client.get(WHO_CAN, query).json()["count"] == 40


def test_what_a_group_reaches(client: Client, reviewer: User, lab: dict[str, Any]) -> None:
    wide = rule(lab["payments"], "payments/*")
    client.force_login(reviewer)
    answer = client.get(reverse("api:access-group-reach", args=[lab["payments"].pk])).json()
    assert answer["count"] == 1
    row = answer["results"][0]
    assert (row["rule"]["id"], row["repository_count"], row["sample"]) == (
        wide.pk,
        2,
        ["payments/api", "payments/web"],
    )
    assert client.get(reverse("api:access-group-reach", args=[999_999])).status_code == 404


def test_group_reach_is_bounded_by_the_page(
    client: Client, reviewer: User, lab: dict[str, Any], django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    group = lab["payments"]
    for n in range(5):
        rule(group, f"team{n}/*")
    AccessRule.objects.update(created_by=reviewer)
    url = reverse("api:access-group-reach", args=[group.pk])
    client.force_login(reviewer)
    # session, user, role, group, rules, authors, counts for the page, a sample per rule on the page (5)
    with django_assert_num_queries(12):
        client.get(url, {"page_size": 5})
    for n in range(5, 40):
        rule(group, f"team{n}/*")
    AccessRule.objects.update(created_by=reviewer)
    with django_assert_num_queries(12):
        assert client.get(url, {"page_size": 5}).json()["count"] == 40


def test_my_access_for_a_developer(
    client: Client, lab: dict[str, Any], django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    ann = lab["people"][0]
    mine = rule(lab["payments"], "payments/*", "push")
    rule(factories.group(), "other/*")
    client.force_login(ann)
    answer = client.get(ME).json()
    assert answer["person"]["username"] == "pay-ann"
    assert [m["group_name"] for m in answer["memberships"]] == ["Payments"]
    assert [(r["rule"]["id"], r["repository_count"]) for r in answer["rules"]] == [(mine.pk, 2)]
    for n in range(20):
        rule(lab["payments"], f"team{n}/*")
    # session, user, role, memberships (rules), rules, counts (one for all), memberships
    with django_assert_num_queries(7):
        assert len(client.get(ME).json()["rules"]) == 21


# --- /access/report.csv -------------------------------------------------------------------------


def test_the_report_streams_from_the_api_too(client: Client, reviewer: User, lab: dict[str, Any]) -> None:
    rule(lab["payments"], "payments/*", "pull")
    _, secret = factories.token(reviewer, scopes=["read"])
    response = client.get(REPORT, headers={"Authorization": f"Bearer {secret}", "Accept": "text/csv"})
    assert response.status_code == 200
    assert response.streaming
    content: Any = response.streaming_content  # type: ignore[attr-defined]  # the test client's stubs lack it
    rows = list(csv.reader(io.StringIO(b"".join(content).decode())))
    assert rows[0] == list(effective.REPORT_COLUMNS)
    assert sorted(r[0] for r in rows[1:]) == ["pay-ann", "pay-bob", "pay-gone"]
    assert (
        client.get(REPORT, {"group": "nope"}, headers={"Authorization": f"Bearer {secret}"}).status_code
        == 400
    )


def test_developers_get_no_report(client: Client, developer: User) -> None:
    client.force_login(developer)
    response = client.get(REPORT, headers={"Accept": "text/csv"})
    assert response.status_code == 403
    assert list(csv.reader(io.StringIO(response.content.decode()))) == [
        ["error", "message"],
        ["permission_denied", "your role does not allow this"],
    ]


def test_robots_who_can_lists_the_groups_robots_with_their_rules(client: Client) -> None:
    registry = factories.registry()
    ci = factories.group(display_name="CI")
    made = rule(ci, "team/**", "pull", "push")
    robot, _ = factories.robot(ci)
    revoked, _ = factories.robot(ci)
    revoked.revoked_at = timezone.now()
    revoked.save()
    client.force_login(factories.user_with_role(Role.REVIEWER))
    url = reverse("api:access-robots-who-can")
    body = client.get(url, {"registry": str(registry.pk), "repository": "team/app", "action": "push"}).json()
    assert [(r["robot"], [e["rule_id"] for e in r["evidence"]]) for r in body["results"]] == [
        (robot.username, [made.pk])
    ]
    nobody = client.get(
        url, {"registry": str(registry.pk), "repository": "other/app", "action": "push"}
    ).json()
    assert nobody["results"] == []
