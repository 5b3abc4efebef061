"""Access review campaigns: scoping from effective access, reviewers, decisions, the default at the
close, revocation plans applied through Customs' own tables, the token server and the Harbor fake,
recurring starts, reminders and the report."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import jwt
import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from accounts import services as account_services
from accounts.models import DirectoryGroup, GroupMembership, RobotToken, Source, User
from accounts.roles import Role
from accounts.scim.resources import ENTERPRISE_SCHEMA
from portal.audit import AuditAction
from portal.models import AuditEvent, Notice
from registries import review_tasks, reviews, services, sync
from registries.connectors.base import Principal, PrincipalKind, RemoteGrant
from registries.connectors.errors import TransientError
from registries.models import (
    AccessReviewCampaign,
    AccessReviewItem,
    AccessRule,
    Credential,
    Registry,
    SyncRun,
)
from registries.patterns import compile_pattern
from registries.tokenserver import keys
from tests import factories
from tests.fakes.harbor import FakeHarbor
from tests.fakes.server import Answer
from tests.registries.tokenserver.helpers import basic, registry_token

pytestmark = pytest.mark.django_db

Campaign = AccessReviewCampaign
Item = AccessReviewItem
SERVICE = "registry.reviews.test"


@pytest.fixture(autouse=True)
def applied_by_hand(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Closing hands the plan to a worker; here the tests apply it themselves."""
    queued: list[int] = []
    monkeypatch.setattr(review_tasks.apply_campaign, "delay", queued.append)
    return queued


def request(**fields: Any) -> reviews.CampaignRequest:
    fields.setdefault("name", factories.unique("Prod push review"))
    fields.setdefault("pattern", "prod/**")
    fields.setdefault("actions", frozenset({"push"}))
    fields.setdefault("due_at", timezone.now() + timedelta(days=14))
    return reviews.CampaignRequest(**fields)


def campaign(actor: User | None = None, **fields: Any) -> Campaign:
    return reviews.create_campaign(request(**fields), actor=actor)


def member(person: User, group: DirectoryGroup, source: str = Source.SCIM) -> GroupMembership:
    return GroupMembership.objects.create(user=person, group=group, source=source)


def item_of(found: Campaign, subject: User | RobotToken | Credential) -> Item:
    field = {User: "person", RobotToken: "robot", Credential: "credential"}[type(subject)]
    return found.items.get(**{field: subject})


def decide(found: Campaign, subject: Any, decision: str, actor: User) -> None:
    done = reviews.decide(
        found, [item_of(found, subject).pk], decision=decision, comment="checked", actor=actor
    )
    assert done.decided == 1


# --- patterns ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "overlap"),
    [
        ("prod/**", "**", True),
        ("prod/**", "prod/api", True),
        ("prod/**", "prod", False),  # a trailing ** is one segment or more
        ("team/**", "prod/**", False),
        ("prod/*", "prod/a/b", False),
        ("**/base", "prod/**", True),
        ("prod/api-*", "prod/*-v1", True),
        ("prod/api-*", "prod/web-*", False),
        ("a/**/b", "a/b", True),
        ("*/api", "prod/*", True),
        ("prod-*/**", "prod/**", False),
    ],
)
def test_patterns_overlap_when_one_repository_name_matches_both(
    first: str, second: str, overlap: bool
) -> None:
    assert reviews.patterns_overlap(first, second) is overlap
    assert reviews.patterns_overlap(second, first) is overlap


def test_overlap_agrees_with_the_matcher_on_sample_names() -> None:
    names = [
        "prod",
        "prod/api",
        "prod/api-v1",
        "prod/a/b",
        "a/b",
        "a/x/b",
        "team/base",
        "prod/base",
        "prod-eu/x",
    ]
    patterns = ["**", "prod/**", "prod/*", "**/base", "a/**/b", "prod/api-*", "*/api", "prod-*/**", "team/**"]
    for first in patterns:
        for second in patterns:
            shared = [
                n for n in names if compile_pattern(first).matches(n) and compile_pattern(second).matches(n)
            ]
            if shared:  # a name matching both proves the overlap; the converse needs every name
                assert reviews.patterns_overlap(first, second), (first, second, shared)


# --- scoping ----------------------------------------------------------------------------------------------


@pytest.fixture
def estate() -> dict[str, Any]:
    """Who can push to prod/** on `prod`, and who only nearly can."""
    prod, other = factories.registry(name=factories.unique("prod")), factories.registry()
    people = {
        name: factories.user(username=factories.unique(name))
        for name in ("alice", "bob", "carol", "dave", "erin", "frank", "gina", "hank", "ivan")
    }
    deploy, everything, readers, team, elsewhere, lapsed = (
        factories.group(display_name=factories.unique(name))
        for name in ("Deploy", "Everything", "Readers", "Team", "Elsewhere", "Lapsed")
    )
    rules = {
        "deploy": factories.access_rule(deploy, "prod/**", "pull", "push", registry=prod),
        "everything": factories.access_rule(everything, "**", "push"),  # every registry
        "readers": factories.access_rule(readers, "prod/**", "pull", registry=prod),
        "team": factories.access_rule(team, "team/**", "push", registry=prod),
        "elsewhere": factories.access_rule(elsewhere, "prod/**", "push", registry=other),
        "lapsed": factories.access_rule(
            lapsed, "prod/**", "push", registry=prod, expires_in=timedelta(days=1)
        ),
    }
    AccessRule.objects.filter(pk=rules["lapsed"].pk).update(expires_at=timezone.now() - timedelta(hours=1))
    member(people["alice"], deploy)
    member(people["bob"], deploy, Source.LOCAL)
    member(people["carol"], everything)
    member(people["dave"], readers)
    member(people["erin"], team)
    member(people["frank"], elsewhere)
    member(people["gina"], lapsed)
    member(people["hank"], deploy)
    account_services.deactivate_user(people["hank"], actor=None, reason="left", departed=True)
    robot, robot_secret = factories.robot(deploy, name=factories.unique("deployer"))
    factories.robot(readers)
    # A registry robot that may push to prod/** (the grant read from the registry names it) ...
    ci = factories.registry_credential(
        prod, owner_kind="robot", owner_id="robot$prod+ci", name="robot$prod+ci"
    )
    factories.grant(
        prod, principal_kind="robot", principal_id="robot$prod+ci", scope="prod/**", can_push=True
    )
    # ... and one that may not.
    tools = factories.registry_credential(prod, owner_kind="robot", owner_id="robot$tools+ci")
    factories.grant(
        prod, principal_kind="robot", principal_id="robot$tools+ci", scope="tools/**", can_push=True
    )
    # Push granted by name to a person, in the registry itself.
    factories.grant(
        prod, principal_kind="user", principal_id="ivan", user=people["ivan"], scope="prod/app", can_push=True
    )
    return {
        "prod": prod,
        "other": other,
        "people": people,
        "groups": {"deploy": deploy, "everything": everything},
        "rules": rules,
        "robot": robot,
        "robot_secret": robot_secret,
        "ci": ci,
        "tools": tools,
    }


def test_everyone_who_can_push_to_prod_is_an_item_and_nobody_else(estate: dict[str, Any]) -> None:
    found = campaign(registries=(estate["prod"],))

    people = estate["people"]
    assert found.state == Campaign.State.OPEN
    assert set(found.items.filter(kind="person").values_list("person__username", flat=True)) == {
        people[name].username for name in ("alice", "bob", "carol", "ivan")
    }
    assert list(found.items.filter(kind="robot").values_list("robot", flat=True)) == [estate["robot"].pk]
    assert list(found.items.filter(kind="credential").values_list("credential", flat=True)) == [
        estate["ci"].pk
    ]


def test_a_quay_seat_linked_by_username_is_reviewed_like_one_linked_by_directory_id() -> None:
    quay = factories.registry(kind="quay", config={"link_users_by_username": True})
    unlinking = factories.registry(kind="quay")  # its usernames are not the directory's
    jane, left = factories.user(username="jane"), factories.user(username="lefty")
    account_services.deactivate_user(left, actor=None, reason="left", departed=True)
    seats = [
        RemoteGrant(Principal(PrincipalKind.USER, name), "prod/api", frozenset({"push"}), "team devs")
        for name in ("jane", "lefty", "stranger")
    ]
    for registry in (quay, unlinking):
        sync.replace_grants(registry, factories.sync_run(registry), seats)  # links as a sync does

    found = campaign(registries=(quay, unlinking))

    (item,) = found.items.filter(kind="person")
    assert item.person == jane  # not the departed one, not a name nobody in the directory has
    assert [(g["registry"], g["principal_id"]) for g in item.access["grants"]] == [(quay.name, "jane")]


def test_an_item_carries_its_evidence_and_last_use(estate: dict[str, Any]) -> None:
    alice = estate["people"]["alice"]
    token, _ = factories.token(alice, kind="registry")
    used = timezone.now() - timedelta(days=3)
    type(token).objects.filter(pk=token.pk).update(last_used_at=used)

    found = campaign(registries=(estate["prod"],))

    item = item_of(found, alice)
    (rule,) = item.access["rules"]
    assert (rule["rule"], rule["group"], rule["pattern"], rule["registry"]) == (
        estate["rules"]["deploy"].pk,
        estate["groups"]["deploy"].display_name,
        "prod/**",
        estate["prod"].name,
    )
    assert rule["actions"] == ["push"]  # the rule's pull is out of scope
    assert rule["membership_source"] == Source.SCIM
    assert item.actions == ["push"]
    assert (item.last_used_at, item.last_used_source) == (used, "Customs registry token")
    (grant,) = item_of(found, estate["people"]["ivan"]).access["grants"]
    assert (grant["scope"], grant["actions"], grant["registry"]) == (
        "prod/app",
        ["push"],
        estate["prod"].name,
    )


def test_a_campaign_over_every_registry_reaches_rules_elsewhere(estate: dict[str, Any]) -> None:
    found = campaign()

    assert item_of(found, estate["people"]["frank"]).access["rules"][0]["registry"] == estate["other"].name
    assert not found.items.filter(person=estate["people"]["dave"]).exists()  # pull only


# --- reviewers ---------------------------------------------------------------------------------------------


def test_group_owners_review_their_groups_and_nobody_reviews_themselves(estate: dict[str, Any]) -> None:
    people, deploy = estate["people"], estate["groups"]["deploy"]
    owner, fallback = people["bob"], factories.user_with_role(Role.REVIEWER)
    DirectoryGroup.objects.filter(pk=deploy.pk).update(owner=owner)

    found = campaign(fallback, registries=(estate["prod"],))

    alice = item_of(found, people["alice"])
    assert list(alice.reviewers.all()) == [owner]
    assert alice.reviewers_why == f"owner of {deploy.display_name}"
    bob = item_of(found, owner)  # the owner's own access goes to someone else
    assert list(bob.reviewers.all()) == [fallback]
    assert list(item_of(found, estate["robot"]).reviewers.all()) == [owner]
    assert list(item_of(found, people["carol"]).reviewers.all()) == [fallback]  # Everything has no owner


def test_managers_come_from_the_directory_by_scim_id_or_external_id(estate: dict[str, Any]) -> None:
    people = estate["people"]
    by_scim, by_external = factories.user(), factories.user()
    User.objects.filter(pk=people["alice"].pk).update(
        directory_attributes={ENTERPRISE_SCHEMA: {"manager": {"value": str(by_scim.scim_id)}}}
    )
    User.objects.filter(pk=people["bob"].pk).update(
        directory_attributes={ENTERPRISE_SCHEMA: {"manager": by_external.external_id}}  # Entra's bare id
    )
    named = factories.user_with_role(Role.REVIEWER)

    found = campaign(registries=(estate["prod"],), reviewer_rule="manager", reviewers=(named,))

    assert list(item_of(found, people["alice"]).reviewers.all()) == [by_scim]
    assert list(item_of(found, people["bob"]).reviewers.all()) == [by_external]
    carol = item_of(found, people["carol"])
    assert list(carol.reviewers.all()) == [named]
    assert carol.reviewers_why == "named reviewers (no manager in the directory)"


# --- decisions ---------------------------------------------------------------------------------------------


def test_reviewers_decide_their_items_only_and_a_revocation_says_why(estate: dict[str, Any]) -> None:
    people, deploy = estate["people"], estate["groups"]["deploy"]
    owner = factories.user()
    DirectoryGroup.objects.filter(pk=deploy.pk).update(owner=owner)
    found = campaign(factories.user_with_role(Role.REVIEWER), registries=(estate["prod"],))
    alice, carol = item_of(found, people["alice"]), item_of(found, people["carol"])

    with pytest.raises(reviews.CampaignRefused, match="say why"):
        reviews.decide(found, [alice.pk], decision="revoke", comment=" ", actor=owner)
    done = reviews.decide(found, [alice.pk, carol.pk], decision="revoke", comment="moved team", actor=owner)

    assert (done.decided, done.skipped) == (1, 1)
    alice.refresh_from_db()
    assert (alice.decision, alice.comment, alice.decided_by) == ("revoke", "moved team", owner)
    assert Item.objects.get(pk=carol.pk).decision == ""
    event = AuditEvent.objects.get(action=AuditAction.ACCESS_REVIEW_DECIDED)
    assert (event.actor_id, event.detail["items"]) == (owner.pk, [alice.pk])


def test_nobody_decides_their_own_access_not_even_an_admin(estate: dict[str, Any]) -> None:
    admin = factories.user_with_role(Role.ADMIN)
    member(admin, estate["groups"]["deploy"])
    found = campaign(admin, registries=(estate["prod"],))

    done = reviews.decide(found, [item_of(found, admin).pk], decision="certify", comment="", actor=admin)

    assert (done.decided, done.skipped) == (0, 1)


# --- closing: the default and the plan ---------------------------------------------------------------------


def test_the_default_decides_what_nobody_did_at_the_close(estate: dict[str, Any]) -> None:
    admin = factories.user_with_role(Role.ADMIN)
    found = campaign(admin, registries=(estate["prod"],), default_decision="revoke")
    decide(found, estate["people"]["carol"], "certify", admin)

    reviews.close(found, actor=admin)

    carol = item_of(found, estate["people"]["carol"])
    assert (carol.decision, carol.by_default, carol.outcome) == ("certify", False, Item.Outcome.KEPT)
    alice = item_of(found, estate["people"]["alice"])
    assert (alice.decision, alice.by_default, alice.decided_by, alice.outcome) == (
        "revoke",
        True,
        None,
        Item.Outcome.PENDING,
    )
    assert found.state == Campaign.State.CLOSED
    assert (
        AuditEvent.objects.get(action=AuditAction.ACCESS_REVIEW_CLOSED).detail["defaulted"]
        == found.items.count() - 1
    )
    with pytest.raises(reviews.CampaignRefused, match="final"):
        reviews.decide(found, [alice.pk], decision="certify", comment="", actor=admin)


def test_a_rule_ends_when_everyone_it_reaches_is_revoked(
    estate: dict[str, Any], applied_by_hand: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    admin, people = factories.user_with_role(Role.ADMIN), estate["people"]
    rule = estate["rules"]["deploy"]
    found = campaign(admin, registries=(estate["prod"],))
    for subject in (people["alice"], people["bob"], estate["robot"]):
        decide(found, subject, "revoke", admin)

    with django_capture_on_commit_callbacks(execute=True):
        reviews.close(found, actor=admin)
    assert applied_by_hand == [found.pk]  # handed to the worker once the close commits
    reviews.apply(found)

    rule.refresh_from_db()
    assert rule.expires_at is not None
    assert rule.expires_at <= timezone.now()
    alice = item_of(found, people["alice"])
    assert [(s["key"], s["state"], s["result"]) for s in alice.steps] == [
        (f"rule-{rule.pk}", "done", "ended")
    ]
    assert alice.outcome == Item.Outcome.REVOKED
    # The group's access ended with the rule: nobody is taken out of it.
    assert GroupMembership.objects.filter(user=people["bob"], group=estate["groups"]["deploy"]).exists()
    robot = item_of(found, estate["robot"])
    assert [s["result"] for s in robot.steps] == ["already ended", "revoked"]  # the rule, then the token
    assert RobotToken.objects.get(pk=estate["robot"].pk).revoked_at is not None
    changed = AuditEvent.objects.get(action=AuditAction.ACCESS_RULE_UPDATED, target_id=str(rule.pk))
    assert (changed.actor_id, changed.detail["campaign"]) == (admin.pk, found.pk)
    assert found.state == Campaign.State.APPLIED


def test_a_revoked_person_leaves_a_customs_group_and_a_directory_one_is_left_to_a_person(
    estate: dict[str, Any],
) -> None:
    admin, people, deploy = factories.user_with_role(Role.ADMIN), estate["people"], estate["groups"]["deploy"]
    found = campaign(admin, registries=(estate["prod"],))
    decide(found, people["alice"], "revoke", admin)  # a SCIM membership
    decide(found, people["bob"], "revoke", admin)  # a local one
    decide(found, estate["robot"], "certify", admin)  # the rule stays: the robot still needs it

    reviews.apply(reviews.close(found, actor=admin))

    bob, alice = item_of(found, people["bob"]), item_of(found, people["alice"])
    assert not GroupMembership.objects.filter(user=people["bob"], group=deploy).exists()
    assert (bob.outcome, bob.steps[0]["result"]) == (Item.Outcome.REVOKED, "removed")
    assert GroupMembership.objects.filter(user=people["alice"], group=deploy).exists()
    assert alice.outcome == Item.Outcome.MANUAL
    assert "comes from the directory (scim)" in alice.steps[0]["why"]
    AccessRule.objects.get(pk=estate["rules"]["deploy"].pk, expires_at=None)
    event = AuditEvent.objects.get(
        action=AuditAction.ACCESS_REVIEW_ITEM_APPLIED, target_id=str(people["bob"].pk)
    )
    assert event.detail["steps"][0]["result"] == "removed"


def test_applying_twice_changes_nothing_more(estate: dict[str, Any]) -> None:
    admin = factories.user_with_role(Role.ADMIN)
    found = campaign(admin, registries=(estate["prod"],))
    decide(found, estate["people"]["bob"], "revoke", admin)
    reviews.apply(reviews.close(found, actor=admin))
    events = AuditEvent.objects.count()

    reviews.apply(found)
    Item.objects.filter(pk=item_of(found, estate["people"]["bob"]).pk).update(outcome=Item.Outcome.PENDING)
    Campaign.objects.filter(pk=found.pk).update(state=Campaign.State.CLOSED)  # as if a worker died mid-way
    found.refresh_from_db()
    reviews.apply(found)

    bob = item_of(found, estate["people"]["bob"])
    assert bob.steps[0]["result"] == "removed"  # done steps are not run again
    assert AuditEvent.objects.count() == events + 2  # the item's record again, and the campaign's


def test_the_close_page_plan_changes_nothing(estate: dict[str, Any]) -> None:
    admin = factories.user_with_role(Role.ADMIN)
    found = campaign(admin, registries=(estate["prod"],), default_decision="revoke")

    planned = reviews.plan(found)

    assert set(planned) == set(found.items.values_list("pk", flat=True))  # everything, by the default
    assert found.items.undecided().count() == found.items.count()
    assert AccessRule.objects.get(pk=estate["rules"]["deploy"].pk).expires_at is None


# --- against the token server and a connector ------------------------------------------------------------


@pytest.fixture
def token_registry(estate: dict[str, Any]) -> Registry:
    keys.generate(actor=None)
    prod: Registry = estate["prod"]
    Registry.objects.filter(pk=prod.pk).update(token_service=SERVICE)
    prod.refresh_from_db()
    return prod


@pytest.fixture(autouse=True)
def audit_tasks_inline() -> Iterator[None]:
    """The token server audits refusals through a worker (audit.record_soon); here it runs in the request."""
    from portal.celery import app

    before = app.conf.task_always_eager
    app.conf.update(task_always_eager=True)
    yield
    app.conf.update(task_always_eager=before)


def ask(client: Client, username: str, secret: str) -> Any:
    params = {"service": SERVICE, "scope": "repository:prod/app:pull,push"}
    return client.get("/auth/token", params, headers={"Authorization": basic(username, secret)})


def granted(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    claims = jwt.decode(response.json()["token"], options={"verify_signature": False})
    return [action for entry in claims["access"] for action in entry["actions"]]


def test_revocations_hold_at_the_token_server(
    client: Client, estate: dict[str, Any], token_registry: Registry
) -> None:
    admin, bob, robot = factories.user_with_role(Role.ADMIN), estate["people"]["bob"], estate["robot"]
    bob_secret = registry_token(bob)
    assert granted(ask(client, bob.username, bob_secret)) == ["pull", "push"]
    assert granted(ask(client, robot.username, estate["robot_secret"])) == ["pull", "push"]
    found = campaign(admin, registries=(token_registry,))
    decide(found, bob, "revoke", admin)
    decide(found, robot, "revoke", admin)

    reviews.apply(reviews.close(found, actor=admin))

    assert granted(ask(client, bob.username, bob_secret)) == []  # signed in, but no group gives push now
    assert ask(client, robot.username, estate["robot_secret"]).status_code == 401


def connected(harbor: FakeHarbor) -> Registry:
    return services.save_registry(
        Registry(name=factories.unique("harbor"), kind="harbor", endpoint=harbor.url),
        actor=None,
        public={"username": harbor.username},
        secrets={"password": harbor.password},
    )


def test_a_registry_robot_is_disabled_through_its_connector(harbor: FakeHarbor) -> None:
    ci = harbor.add_robot("ci", access={"prod": ["pull", "push"]})
    reader = harbor.add_robot("reader", access={"prod": ["pull"]})
    registry = connected(harbor)
    assert sync.sync_inventory(registry).status == SyncRun.Status.SUCCEEDED
    admin = factories.user_with_role(Role.ADMIN)
    found = campaign(admin, registries=(registry,), default_decision="revoke")
    (item,) = found.items.all()
    assert item.credential is not None
    assert item.credential.native_id == str(ci)
    harbor.fail_next.append(Answer(503, {"errors": [{"code": "UNAVAILABLE", "message": "down"}]}))

    closed = reviews.close(found, actor=admin)
    with pytest.raises(TransientError):
        reviews.apply(closed)
    item.refresh_from_db()
    assert (item.outcome, item.steps[0]["state"]) == (Item.Outcome.PENDING, "pending")
    reviews.apply(closed)

    item.refresh_from_db()
    assert (item.outcome, item.steps[0]["result"]) == (Item.Outcome.REVOKED, "disabled")
    assert harbor.robots[ci]["disable"] is True
    assert harbor.robots[reader]["disable"] is False
    assert Credential.objects.get(pk=item.credential.pk).enabled is False
    assert closed.state == Campaign.State.APPLIED


def test_the_task_applies_a_closed_campaign(estate: dict[str, Any]) -> None:
    admin = factories.user_with_role(Role.ADMIN)
    found = campaign(admin, registries=(estate["prod"],))
    decide(found, estate["people"]["bob"], "revoke", admin)
    reviews.close(found, actor=admin)

    assert review_tasks.apply_campaign.apply(args=[found.pk]).get() == Campaign.State.APPLIED
    assert review_tasks.apply_campaign.apply(args=[0]).get() == "gone"


# --- recurring and scheduled starts ----------------------------------------------------------------------


def test_a_quarterly_campaign_starts_its_next_occurrence_by_itself(estate: dict[str, Any]) -> None:
    owner = factories.user_with_role(Role.REVIEWER)
    first = campaign(
        owner,
        registries=(estate["prod"],),
        recurrence="quarterly",
        due_at=timezone.now() + timedelta(days=10),
    )
    assert first.opened_at is not None
    assert first.next_start_at is not None
    assert first.next_start_at == reviews.after_period(first.opened_at, "quarterly")
    assert reviews.start_due_campaigns(first.next_start_at - timedelta(minutes=1)) == []
    newcomer = factories.user()
    member(newcomer, estate["groups"]["deploy"])  # joins in the meantime
    when = first.next_start_at + timedelta(minutes=5)

    (following,) = reviews.start_due_campaigns(when)

    assert (following.recurs_from, following.state, following.owner) == (first, Campaign.State.OPEN, owner)
    assert following.due_at == when + (first.due_at - first.opened_at)
    assert list(following.registries.all()) == [estate["prod"]]
    assert following.items.filter(person=newcomer).exists()  # built again from access as it is then
    assert not first.items.filter(person=newcomer).exists()
    assert following.next_start_at == reviews.after_period(when, "quarterly")
    first.refresh_from_db()
    assert first.next_start_at is None
    assert reviews.start_due_campaigns(when) == []  # started once


def test_a_scheduled_campaign_opens_at_its_start(estate: dict[str, Any]) -> None:
    start = timezone.now() + timedelta(days=2)
    found = campaign(start_at=start, due_at=start + timedelta(days=7))
    assert (found.state, found.items.count()) == (Campaign.State.DRAFT, 0)

    assert review_tasks.start_due_campaigns.apply().get() == []
    (opened,) = reviews.start_due_campaigns(start)

    assert opened.pk == found.pk
    found.refresh_from_db()
    assert found.state == Campaign.State.OPEN
    assert found.items.count() > 0
    assert found.next_start_at is None  # runs once


def test_months_end_on_the_last_day_of_a_shorter_month() -> None:
    moment = timezone.now().replace(year=2025, month=1, day=31)
    assert reviews.after_period(moment, "monthly") == moment.replace(month=2, day=28)
    assert reviews.after_period(moment, "yearly") == moment.replace(year=2026)
    assert reviews.after_period(moment, "none") is None


def test_a_recurring_campaign_must_end_before_the_next_starts() -> None:
    with pytest.raises(reviews.CampaignRefused, match="before its next"):
        campaign(recurrence="monthly", due_at=timezone.now() + timedelta(days=40))


# --- reminders ---------------------------------------------------------------------------------------------


def test_reviewers_with_items_left_are_reminded_once_per_stage(estate: dict[str, Any]) -> None:
    busy, done = factories.user(), factories.user()
    DirectoryGroup.objects.filter(pk=estate["groups"]["deploy"].pk).update(owner=busy)
    DirectoryGroup.objects.filter(pk=estate["groups"]["everything"].pk).update(owner=done)
    due = timezone.now() + timedelta(days=10)
    # No owner: the items no group owner reviews (Ivan's grant, the registry robot) go to nobody.
    found = campaign(registries=(estate["prod"],), due_at=due)
    decide(found, estate["people"]["carol"], "certify", done)

    assert reviews.send_reminders(due - timedelta(days=8)) == 0  # not yet
    assert reviews.send_reminders(due - timedelta(days=6)) == 1
    assert reviews.send_reminders(due - timedelta(days=5)) == 0  # told at this stage already
    assert reviews.send_reminders(due - timedelta(hours=12)) == 1

    assert [message.to for message in mail.outbox] == [[busy.email], [busy.email]]
    assert found.name in mail.outbox[0].body
    assert f"/access/reviews/{found.pk}/" in mail.outbox[0].body
    assert Notice.objects.filter(key__startswith=f"review:{found.pk}:").count() == 2


def test_a_refused_reminder_is_tried_again(estate: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    DirectoryGroup.objects.filter(pk=estate["groups"]["deploy"].pk).update(owner=factories.user())
    due = timezone.now() + timedelta(days=3)
    campaign(registries=(estate["prod"],), due_at=due)

    def refuse(*args: Any, **kwargs: Any) -> int:
        raise smtplib.SMTPServerDisconnected("gone")

    with monkeypatch.context() as patched:
        patched.setattr("django.core.mail.EmailMultiAlternatives.send", refuse)
        assert reviews.send_reminders(due - timedelta(days=2)) == 0
    assert not Notice.objects.exists()
    assert review_tasks.send_review_reminders.apply().get() == 1  # three days left: the 7-day reminder
    assert reviews.send_reminders(due - timedelta(days=2)) == 0
    assert len(mail.outbox) == 1


# --- the report --------------------------------------------------------------------------------------------


def test_the_report_lists_every_item_decision_reviewer_time_and_result(estate: dict[str, Any]) -> None:
    admin, people = factories.user_with_role(Role.ADMIN), estate["people"]
    DirectoryGroup.objects.filter(pk=estate["groups"]["deploy"].pk).update(owner=admin)
    found = campaign(admin, registries=(estate["prod"],))
    decide(found, people["bob"], "revoke", admin)
    reviews.apply(reviews.close(found, actor=admin))

    rows = {row[3]: dict(zip(reviews.REPORT_COLUMNS, row, strict=True)) for row in reviews.report_rows(found)}

    assert len(rows) == found.items.count()
    bob = rows[item_of(found, people["bob"]).subject]
    assert (bob["decision"], bob["decided_by"], bob["reviewers"], bob["outcome"]) == (
        "revoke",
        admin.username,
        admin.username,
        "revoked",
    )
    assert bob["decided_at"]
    assert bob["applied_at"]
    assert "Remove from the group: removed" in bob["result"]
    assert f"via {estate['groups']['deploy'].display_name}" in bob["access"]
    carol = rows[item_of(found, people["carol"]).subject]
    assert (carol["decision"], carol["by_default"], carol["decided_by"], carol["outcome"]) == (
        "certify",
        "true",
        "default",
        "kept",
    )
