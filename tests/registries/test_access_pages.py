"""Access-rule pages: the list and editor, the live preview, the explorer, "my access" and the CSV report."""

from __future__ import annotations

import csv
import io
import tracemalloc
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from pytest_django import DjangoAssertNumQueries

from accounts.models import DirectoryGroup, GroupMembership, Source, User
from accounts.roles import Role
from portal.audit import AuditAction
from portal.models import AuditEvent
from registries import access_views, effective
from registries.models import AccessRule, Repository
from registries.patterns import InvalidPattern, compile_pattern
from tests import factories

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as Response

pytestmark = pytest.mark.django_db

RULES = reverse("registries:rules")
ADD = reverse("registries:rule_add")
PREVIEW = reverse("registries:rule_preview")
EXPLORE = reverse("registries:explore")
MINE = reverse("registries:my_access")
REPORT = reverse("registries:access_report")


rule = factories.access_rule


def expired(made: AccessRule, *, ago: timedelta = timedelta(hours=1)) -> AccessRule:
    """Services refuse a past expiry, so a rule expires the way real ones do: time passes."""
    AccessRule.objects.filter(pk=made.pk).update(expires_at=timezone.now() - ago)
    made.refresh_from_db()
    return made


def person_in(*groups: DirectoryGroup, **fields: Any) -> User:
    person = factories.user(**fields)
    for group in groups:
        factories.member(person, group)
    return person


def body(response: Response) -> str:
    return response.content.decode()


def message_of(pattern: str) -> str:
    with pytest.raises(InvalidPattern) as refused:
        compile_pattern(pattern)
    return str(refused.value)


@pytest.fixture
def lab() -> dict[str, Any]:
    """Two registries, an inventory, and a group with active, disabled and departed members."""
    eu = factories.registry(name="prod-eu")
    us = factories.registry(name="prod-us")
    for name in ("payments/api", "payments/web", "payments/a/b", "web/site"):
        factories.repository(eu, name=name)
    factories.repository(us, name="payments/api")
    payments = factories.group(display_name="Payments")
    active = [person_in(payments, username=f"pay-{n}") for n in ("ann", "bob", "cid")]
    person_in(payments, username="pay-dis", status=User.Status.DISABLED)
    person_in(payments, username="pay-gone", status=User.Status.DEPARTED)
    return {"eu": eu, "us": us, "payments": payments, "active": active}


# --- The rule list ------------------------------------------------------------------------------


def test_the_list_shows_expired_rules_as_expired_with_the_time(client: Client, reviewer: User) -> None:
    team = factories.group(display_name="Web")
    rule(team, "web/**", "pull")
    old = expired(rule(team, "legacy/*", "push", expires_in=timedelta(days=1)), ago=timedelta(days=2))
    client.force_login(reviewer)
    page = body(client.get(RULES))
    assert "web/**" in page
    assert f"Expired {timezone.localtime(old.expires_at):%Y-%m-%d %H:%M}" in page
    assert "New rule" not in page  # reviewers read, admins change


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state=expired", {"legacy/*"}),
        ("state=in_force", {"web/**", "payments/api", "payments/**"}),
        ("action=push", {"legacy/*", "payments/api"}),
        ("search=pay", {"payments/api", "payments/**"}),
        ("registry=EU", {"web/**", "payments/api", "legacy/*"}),  # rules for all registries apply there too
        ("group=PAY", {"payments/api", "payments/**"}),
    ],
)
def test_the_list_filters(client: Client, reviewer: User, query: str, expected: set[str]) -> None:
    eu, us = factories.registry(), factories.registry()
    web, pay = factories.group(display_name="Web"), factories.group(display_name="Pay")
    rule(web, "web/**", "pull")
    expired(rule(web, "legacy/*", "push", expires_in=timedelta(days=1)))
    rule(pay, "payments/api", "pull", "push", registry=eu)
    rule(pay, "payments/**", "pull", registry=us)
    query = query.replace("EU", str(eu.pk)).replace("PAY", str(pay.pk))
    client.force_login(reviewer)
    response = client.get(f"{RULES}?{query}")
    shown = {r.pattern for r in response.context["page"].object_list}
    assert shown == expected


def test_the_list_answers_htmx_with_the_results_alone(client: Client, reviewer: User) -> None:
    rule(factories.group(), "web/**")
    client.force_login(reviewer)
    page = body(client.get(f"{RULES}?search=web", headers={"HX-Request": "true"}))
    assert page.lstrip().startswith('<div id="rule-results"')
    assert "web/**" in page


def test_the_list_costs_the_same_queries_with_few_and_many_rules(
    client: Client, reviewer: User, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    client.force_login(reviewer)
    registry = factories.registry()
    for n in range(2):
        rule(factories.group(), f"team{n}/**", registry=registry)
    # session, user, role, count, page (with group, registry, author), group and registry choices
    with django_assert_num_queries(7):
        client.get(RULES)
    for n in range(2, 40):
        rule(factories.group(), f"team{n}/**", registry=registry if n % 2 else None)
    with django_assert_num_queries(7):
        client.get(RULES)


# --- Creating, changing and removing rules ------------------------------------------------------


def form(group: DirectoryGroup, **fields: Any) -> dict[str, Any]:
    return {
        "group": group.pk,
        "registry": "",
        "pattern": "payments/*",
        "actions": ["pull", "push"],
        "expires_at": "",
        "justification": "the payments team ships its services",
    } | fields


def test_an_admin_creates_a_rule_through_the_service_and_it_is_audited(client: Client, admin: User) -> None:
    group, registry = factories.group(), factories.registry()
    client.force_login(admin)
    expiry = (timezone.localtime() + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(ADD, form(group, registry=registry.pk, expires_at=expiry))
    made = AccessRule.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("registries:rule_detail", args=[made.pk])
    assert (made.group, made.registry, made.pattern, made.actions) == (
        group,
        registry,
        "payments/*",
        ["pull", "push"],
    )
    assert made.expires_at is not None
    assert made.created_by == admin
    assert AuditEvent.objects.filter(action=AuditAction.ACCESS_RULE_CREATED, actor_id=admin.pk).exists()


@pytest.mark.parametrize("pattern", ["Payments/API", "payments//api", "pay**/x", "payments/ä"])
def test_an_invalid_pattern_is_refused_with_its_reason_next_to_the_field(
    client: Client, admin: User, pattern: str
) -> None:
    client.force_login(admin)
    response = client.post(ADD, form(factories.group(), pattern=pattern))
    assert response.status_code == 200
    assert not AccessRule.objects.exists()
    assert response.context["form"].errors["pattern"] == [message_of(pattern)]
    field = body(response).split('name="pattern"', 1)[1].split("</div>", 1)[0]
    assert escape(message_of(pattern)) in field


def test_the_form_refuses_a_past_expiry_and_a_missing_justification(client: Client, admin: User) -> None:
    client.force_login(admin)
    past = (timezone.localtime() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(ADD, form(factories.group(), expires_at=past, justification="", actions=[]))
    errors = response.context["form"].errors
    assert set(errors) == {"expires_at", "justification", "actions"}
    assert not AccessRule.objects.exists()


def test_the_editor_explains_the_pattern_language(client: Client, admin: User) -> None:
    client.force_login(admin)
    page = body(client.get(ADD))
    assert "Pattern language" in page
    for example in ("payments/api", "payments/*", "payments/**", "**/base"):
        assert f'<td class="mono">{example}</td>' in page
    assert f'hx-post="{PREVIEW}"' in page


def test_an_admin_changes_and_removes_a_rule(client: Client, admin: User) -> None:
    group = factories.group()
    made = rule(group, "payments/api", "pull")
    client.force_login(admin)
    edit = reverse("registries:rule_edit", args=[made.pk])
    page = body(client.get(edit))
    assert 'value="payments/api"' in page
    assert f'name="editing" value="{made.pk}"' in page
    client.post(edit, form(group, pattern="payments/**", actions=["pull", "delete"]))
    made.refresh_from_db()
    assert (made.pattern, made.actions) == ("payments/**", ["pull", "delete"])
    response = client.post(reverse("registries:rule_delete", args=[made.pk]))
    assert response.status_code == 302
    assert not AccessRule.objects.exists()
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {AuditAction.ACCESS_RULE_UPDATED, AuditAction.ACCESS_RULE_DELETED} <= actions


def test_the_rule_page_shows_its_reach_and_its_expiry(
    client: Client, reviewer: User, lab: dict[str, Any]
) -> None:
    made = expired(
        rule(lab["payments"], "payments/*", "push", registry=lab["eu"], expires_in=timedelta(days=1))
    )
    client.force_login(reviewer)
    page = body(client.get(reverse("registries:rule_detail", args=[made.pk])))
    assert "Expired" in page
    assert "it grants nothing" in page
    assert "3 active members of the group, 2 inventoried repositories" in page
    assert "prod-eu/payments/api" in page
    assert "pay-dis" not in page
    assert "Edit this rule" not in page


# --- The live preview ---------------------------------------------------------------------------


def preview(client: Client, **fields: Any) -> Response:
    data = {"group": "", "registry": "", "pattern": "", "actions": ["pull"]} | fields
    return client.post(PREVIEW, data, headers={"HX-Request": "true"})


def test_the_preview_counts_active_members_and_matching_repositories(
    client: Client, admin: User, lab: dict[str, Any]
) -> None:
    client.force_login(admin)
    response = preview(
        client, group=lab["payments"].pk, registry=lab["eu"].pk, pattern="payments/*", actions=["push"]
    )
    assert response.status_code == 200
    shown: access_views.Preview = response.context["preview"]
    assert (shown.people.count, shown.repositories.count) == (3, 2)  # not the disabled and departed
    assert shown.people.names == ["pay-ann", "pay-bob", "pay-cid"]
    assert shown.repositories.names == ["prod-eu/payments/api", "prod-eu/payments/web"]  # not payments/a/b
    assert "This rule would let 3 people push in 2 repositories" in " ".join(body(response).split())


def test_the_preview_across_all_registries_and_with_deep_patterns(
    client: Client, admin: User, lab: dict[str, Any]
) -> None:
    client.force_login(admin)
    shown = preview(client, group=lab["payments"].pk, pattern="payments/**").context["preview"]
    assert shown.repositories.count == 4  # three on prod-eu (payments/a/b included), one on prod-us
    expected = Repository.objects.filter(name__startswith="payments/").count()
    assert shown.repositories.count == expected


def test_the_preview_shows_the_first_names_and_the_full_count(client: Client, admin: User) -> None:
    registry, group = factories.registry(), factories.group()
    for n in range(12):
        factories.repository(registry, name=f"batch/app{n:02d}")
    client.force_login(admin)
    response = preview(client, group=group.pk, pattern="batch/*")
    shown = response.context["preview"]
    assert shown.repositories.count == 12
    assert len(shown.repositories.names) == access_views.PREVIEW_SAMPLE
    assert "and 2 more" in body(response)


def test_the_preview_says_what_is_new_for_the_group(client: Client, admin: User, lab: dict[str, Any]) -> None:
    rule(lab["payments"], "payments/api", "pull", "push", registry=lab["eu"])
    expired(rule(lab["payments"], "payments/web", "push", expires_in=timedelta(days=1)))  # grants nothing
    client.force_login(admin)
    shown = preview(
        client,
        group=lab["payments"].pk,
        registry=lab["eu"].pk,
        pattern="payments/*",
        actions=["pull", "push"],
    ).context["preview"]
    assert shown.new_repositories is not None
    assert shown.new_repositories["push"].names == ["prod-eu/payments/web"]
    assert shown.new_repositories["pull"].count == 1


def test_the_preview_of_an_edit_compares_with_the_rule_as_stored(
    client: Client, admin: User, lab: dict[str, Any]
) -> None:
    made = rule(lab["payments"], "payments/api", "pull", registry=lab["eu"])
    other = factories.group()
    newcomer = person_in(other, username="zed")
    person_in(other, lab["payments"], username="both")
    client.force_login(admin)
    same = preview(
        client, editing=made.pk, group=lab["payments"].pk, registry=lab["eu"].pk, pattern="payments/api"
    ).context["preview"]
    assert same.new_repositories["pull"].count == 0
    assert same.new_people is None
    moved = preview(client, editing=made.pk, group=other.pk, pattern="payments/api").context["preview"]
    assert moved.new_people.names == [newcomer.username]  # "both" is already reached through Payments


@pytest.mark.parametrize("pattern", ["Payments/*", "a//b", "team/**x"])
def test_an_invalid_pattern_in_the_preview_is_a_message_not_an_error(
    client: Client, admin: User, pattern: str
) -> None:
    client.force_login(admin)
    response = preview(client, group=factories.group().pk, pattern=pattern)
    assert response.status_code == 200
    assert escape(message_of(pattern)) in body(response)


def test_an_incomplete_preview_asks_for_what_is_missing(client: Client, admin: User) -> None:
    client.force_login(admin)
    assert "Type a pattern" in body(preview(client, group=factories.group().pk))
    assert "Choose a group" in body(preview(client, pattern="web/*"))
    assert "Choose at least one action" in body(
        preview(client, group=factories.group().pk, pattern="x", actions=[])
    )


def test_a_preview_for_an_unknown_group_says_so(client: Client, admin: User) -> None:
    client.force_login(admin)
    response = preview(client, group=999_999, pattern="web/*")
    assert response.status_code == 200
    assert "Select a valid choice" in body(response)


# --- The explorer -------------------------------------------------------------------------------


def test_the_explorer_answers_for_a_person_with_evidence(
    client: Client, reviewer: User, lab: dict[str, Any]
) -> None:
    push = rule(lab["payments"], "payments/*", "pull", "push", registry=lab["eu"])
    rule(lab["payments"], "web/*", "pull")
    ann = lab["active"][0]
    client.force_login(reviewer)
    response = client.get(
        EXPLORE, {"by": "user", "person": "pay-ann", "registry": lab["eu"].pk, "repository": "payments/api"}
    )
    assert response.context["allowed"] == ["pull", "push"]
    page = body(response)
    membership = GroupMembership.objects.get(user=ann)
    assert reverse("registries:rule_detail", args=[push.pk]) in page
    assert (
        f"membership from {Source.OIDC}, synced {timezone.localtime(membership.synced_at):%Y-%m-%d %H:%M}"
        in page
    )


def test_the_explorer_lists_the_rules_reaching_a_person_without_a_repository(
    client: Client, reviewer: User, lab: dict[str, Any]
) -> None:
    reaching = rule(lab["payments"], "payments/*", "pull")
    expired(rule(lab["payments"], "old/*", "pull", expires_in=timedelta(days=1)))
    client.force_login(reviewer)
    response = client.get(EXPLORE, {"by": "user", "person": "pay-bob"})
    assert [r.pk for r, _ in response.context["reaching"]] == [reaching.pk]


def test_the_explorer_offers_candidates_for_an_ambiguous_search(
    client: Client, reviewer: User, lab: dict[str, Any]
) -> None:
    client.force_login(reviewer)
    response = client.get(EXPLORE, {"by": "user", "person": "pay-"})
    assert {c.username for c in response.context["candidates"]} >= {"pay-ann", "pay-bob", "pay-cid"}
    assert "person" not in response.context


def test_the_explorer_says_who_may_act_on_a_repository(
    client: Client, reviewer: User, lab: dict[str, Any]
) -> None:
    rule(lab["payments"], "payments/*", "pull", "push", registry=lab["eu"])
    admins = factories.group()
    root = person_in(admins, username="root-1")
    rule(admins, "**/api", "delete")
    client.force_login(reviewer)
    response = client.get(
        EXPLORE, {"by": "repository", "registry": lab["eu"].pk, "repository": "payments/api"}
    )
    answers = {
        action: (count, [p.username for p, _ in people])
        for action, count, people, _, _robots in response.context["who_can"]
    }
    assert answers["push"] == (3, ["pay-ann", "pay-bob", "pay-cid"])
    assert answers["delete"] == (1, [root.username])


def test_the_explorer_refuses_a_bad_repository_name(
    client: Client, reviewer: User, lab: dict[str, Any]
) -> None:
    client.force_login(reviewer)
    response = client.get(EXPLORE, {"by": "repository", "registry": lab["eu"].pk, "repository": "Not A Name"})
    assert response.status_code == 200
    assert "is not a repository name" in body(response)


def test_the_explorer_shows_what_a_group_reaches(client: Client, reviewer: User, lab: dict[str, Any]) -> None:
    wide = rule(lab["payments"], "payments/**", "pull")
    narrow = rule(lab["payments"], "payments/*", "push", registry=lab["us"])
    expired(rule(lab["payments"], "web/*", "pull", expires_in=timedelta(days=1)))
    client.force_login(reviewer)
    response = client.get(EXPLORE, {"by": "group", "group": lab["payments"].pk})
    reach = {row.rule.pk: (row.count, row.sample) for row in response.context["reach"]}
    assert reach == {
        wide.pk: (4, ["payments/a/b", "payments/api", "payments/api", "payments/web"]),
        narrow.pk: (1, ["payments/api"]),
    }
    assert response.context["member_count"] == 3


# --- My access ----------------------------------------------------------------------------------


def test_my_access_shows_my_groups_rules_and_their_reach(client: Client, lab: dict[str, Any]) -> None:
    ann = lab["active"][0]
    in_force = rule(lab["payments"], "payments/*", "push", registry=lab["eu"], expires_in=timedelta(days=9))
    expired(rule(lab["payments"], "web/*", "pull", expires_in=timedelta(days=1)))
    rule(factories.group(), "secret/**", "pull")  # another group's
    client.force_login(ann)
    response = client.get(MINE)
    assert [(r.pk, count) for r, _, count in response.context["rows"]] == [(in_force.pk, 2)]
    page = body(response)
    assert "Payments" in page
    assert reverse("accounts:settings") in page
    assert "secret/**" not in page
    assert "web/*" not in page


def test_my_access_costs_the_same_queries_with_few_and_many_rules(
    client: Client, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    team = factories.group()
    me = person_in(team)
    factories.repository(factories.registry(), name="team/app")
    rule(team, "team/*")
    client.force_login(me)
    # session, user, memberships (rules), rules, reach counts (one for all rules), role (menu), memberships
    with django_assert_num_queries(7):
        client.get(MINE)
    for n in range(20):
        rule(team, f"team{n}/**", "push")
    with django_assert_num_queries(7):
        client.get(MINE)


def test_the_menu_shows_rules_and_explorer_to_reviewers_and_my_access_to_everyone(
    client: Client, developer: User, reviewer: User
) -> None:
    def menu() -> str:
        return body(client.get(MINE)).split('aria-label="Main"', 1)[1].split("</nav>", 1)[0]

    client.force_login(developer)
    assert 'aria-current="page">My access</a>' in menu()
    assert ">Rules</a>" not in menu()
    assert ">Explorer</a>" not in menu()
    client.force_login(reviewer)
    assert ">Rules</a>" in menu()
    assert ">Explorer</a>" in menu()
    page = body(client.get(RULES)).split('aria-label="Main"', 1)[1].split("</nav>", 1)[0]
    assert page.count('aria-current="page"') == 1
    assert 'aria-current="page">Rules</a>' in page


# --- The access report --------------------------------------------------------------------------


def read_csv(response: Any) -> list[list[str]]:
    text = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(text)))


def test_the_report_streams_one_row_per_person_membership_and_rule(
    client: Client, reviewer: User, lab: dict[str, Any]
) -> None:
    push = rule(
        lab["payments"], "payments/*", "pull", "push", registry=lab["eu"], expires_in=timedelta(days=5)
    )
    wide = rule(lab["payments"], "**/base", "pull")
    expired(rule(lab["payments"], "old/*", "pull", expires_in=timedelta(days=1)))
    client.force_login(reviewer)
    response = client.get(REPORT)
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    header, *rows = read_csv(response)
    assert header == list(effective.REPORT_COLUMNS)
    assert len(rows) == 5 * 2  # five members (whatever their status) × two rules in force
    ann = GroupMembership.objects.get(user__username="pay-ann")
    assert [
        "pay-ann",
        "",
        "active",
        "Payments",
        lab["payments"].external_id,
        "oidc",
        ann.synced_at.isoformat(),
        str(wide.pk),
        "*",
        "**/base",
        "pull",
        "",
    ] in rows
    row = next(r for r in rows if r[0] == "pay-dis" and r[7] == str(push.pk))
    assert push.expires_at is not None
    assert (row[2], row[8], row[10], row[11]) == (
        "disabled",
        "prod-eu",
        "pull,push",
        push.expires_at.isoformat(),
    )


def test_the_report_filters_by_registry_and_group(
    client: Client, reviewer: User, lab: dict[str, Any]
) -> None:
    rule(lab["payments"], "payments/*", registry=lab["eu"])
    rule(lab["payments"], "payments/*", registry=lab["us"])
    rule(lab["payments"], "**/base")
    other = factories.group()
    person_in(other)
    rule(other, "x/*")
    client.force_login(reviewer)
    on_eu = read_csv(client.get(REPORT, {"registry": lab["eu"].pk}))[1:]
    assert {r[8] for r in on_eu} == {"prod-eu", "*"}
    assert len(on_eu) == 5 * 2 + 1
    of_other = read_csv(client.get(REPORT, {"group": other.pk}))[1:]
    assert [r[9] for r in of_other] == ["x/*"]
    assert client.get(REPORT, {"registry": "nope"}).status_code == 400


def test_the_report_makes_formula_like_cells_inert(client: Client, reviewer: User) -> None:
    team = factories.group(display_name='=HYPERLINK("http://evil.test")', external_id="@team")
    person_in(team, username="+plus", display_name="-minus")
    rule(team, "web/*")
    client.force_login(reviewer)
    _, row = read_csv(client.get(REPORT))
    assert row[:5] == ["'+plus", "'-minus", "active", '\'=HYPERLINK("http://evil.test")', "'@team"]


def _report_peak(group: DirectoryGroup) -> tuple[int, int]:
    """(peak traced bytes, bytes written) while streaming one group's report to nowhere."""
    response = access_views.report_response(registry=None, group=group)
    tracemalloc.start()
    written = 0
    for line in cast(Iterator[bytes], response.streaming_content):
        written += len(line)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, written


def _group_with(members: int, rules: int) -> DirectoryGroup:
    group = factories.group()
    people = User.objects.bulk_create(
        User(username=factories.unique("bulk"), external_id=factories.unique("oid"), display_name="A Person")
        for _ in range(members)
    )
    GroupMembership.objects.bulk_create(
        GroupMembership(user=p, group=group, source=Source.SCIM) for p in people
    )
    for n in range(rules):
        rule(group, f"team{n}/**", justification="bulk")
    return group


def test_the_report_does_not_hold_the_whole_report_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(access_views, "REPORT_CHUNK", 100)
    small, large = _group_with(members=5, rules=40), _group_with(members=100, rules=40)  # 200 and 4,000 rows
    small_peak, small_written = _report_peak(small)
    large_peak, large_written = _report_peak(large)
    assert large_written > 15 * small_written
    # Twenty times the rows, about the same memory: rows are read 100 at a time and written as they come.
    assert large_peak < 2 * small_peak + 64_000, (small_peak, large_peak)
    # Holding the rows instead (what a list would do) costs several times that.
    tracemalloc.start()
    held = list(effective.access_report(group=large))
    _, held_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(held) == 100 * 40
    assert large_peak * 3 < held_peak, (large_peak, held_peak)


def test_the_repository_explorer_names_the_robots_too(client: Client) -> None:
    registry = factories.registry()
    ci = factories.group(display_name="CI")
    rule(ci, "team/**", "pull", "push")
    robot, _ = factories.robot(ci)
    client.force_login(factories.user_with_role(Role.REVIEWER))
    page = client.get(EXPLORE, {"by": "repository", "registry": str(registry.pk), "repository": "team/app"})
    text = page.content.decode()
    assert "push: 1 robot token" in text
    assert robot.username in text
