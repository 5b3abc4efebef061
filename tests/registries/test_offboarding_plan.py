"""The offboarding plan: everything a person still holds, and what will be done with each."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import services as account_services
from registries import offboarding
from registries.offboarding import Action
from tests import factories

pytestmark = pytest.mark.django_db


def _by_key(plan: offboarding.Plan) -> dict[str, offboarding.Item]:
    return {item.key: item for item in plan.items}


def test_customs_tokens_memberships_robots_and_rules_are_listed() -> None:
    person = factories.user()
    team = factories.group()
    factories.member(person, team)
    token, _ = factories.token(person)
    revoked, _ = factories.token(person)
    account_services.revoke_token(revoked, actor=person)
    robot, _ = factories.robot(team)
    type(robot).objects.filter(pk=robot.pk).update(created_by=person)
    rule = factories.access_rule(team, "team/**", "pull")
    type(rule).objects.filter(pk=rule.pk).update(created_by=person)
    items = _by_key(offboarding.plan_for(person))
    assert items[f"customs/token-{token.pk}"].action == Action.REVOKE
    assert f"customs/token-{revoked.pk}" not in items  # already revoked: nothing to do
    assert items[f"customs/membership-{team.pk}"].action == Action.REMOVE_MEMBERSHIP
    assert items[f"customs/robot-{robot.pk}"].action == Action.REASSIGN
    review = items[f"customs/rule-{rule.pk}"]
    assert review.action == Action.REVIEW
    assert review.automated is False


def test_registry_credentials_are_disabled_unless_automation_still_uses_them() -> None:
    person = factories.user()
    harbor = factories.registry(kind="harbor", name="harbor-eu")
    plain = factories.registry(kind="distribution", name="plain")
    recently = timezone.now() - timedelta(days=2)
    own = factories.registry_credential(harbor, owner_user=person, last_used_at=recently)
    made_and_used = factories.registry_credential(harbor, created_by_user=person, last_used_at=recently)
    made_and_idle = factories.registry_credential(
        harbor, created_by_user=person, last_used_at=timezone.now() - timedelta(days=200)
    )
    made_unknown = factories.registry_credential(harbor, created_by_user=person, usage_known=False)
    on_plain = factories.registry_credential(plain, owner_user=person)
    gone = factories.registry_credential(harbor, owner_user=person, gone_at=timezone.now())
    someone_elses = factories.registry_credential(harbor, owner_user=factories.user())
    quay = factories.registry(kind="quay", name="quay")
    superuser = factories.registry_credential(
        quay, owner_user=person, kind="admin_account", shared_admin=True
    )
    plan = offboarding.plan_for(person)
    items = _by_key(plan)

    def item(credential: object) -> offboarding.Item:
        return items[f"registry-{credential.registry_id}/credential-{credential.pk}"]  # type: ignore[attr-defined]

    assert item(own).action == Action.DISABLE
    assert item(own).automated is True  # Harbor can disable robots
    assert item(made_and_used).action == Action.REASSIGN
    assert item(made_unknown).action == Action.REASSIGN
    assert item(made_and_idle).action == Action.DISABLE
    assert item(on_plain).automated is False  # plain distribution has no credential API
    # Quay can disable robots, but a superuser only in Quay's configuration: left to a person.
    assert (item(superuser).action, item(superuser).automated) == (Action.DISABLE, False)
    assert f"registry-{harbor.pk}/credential-{gone.pk}" not in items
    assert f"registry-{harbor.pk}/credential-{someone_elses.pk}" not in items
    assert {i.key for i in plan.reassigned} == {item(made_and_used).key, item(made_unknown).key}
    assert list(plan.by_place()) == ["harbor-eu", "plain", "quay"]


def test_grants_the_registry_gives_them_by_name() -> None:
    person = factories.user()
    harbor = factories.registry(kind="harbor")
    grant = factories.grant(harbor, principal_kind="user", user=person, scope="payments/**", can_push=True)
    factories.grant(harbor, principal_kind="group", scope="team/**")
    items = _by_key(offboarding.plan_for(person))
    found = items[f"registry-{harbor.pk}/grant-{grant.pk}"]
    assert found.action == Action.REMOVE_ACCESS
    assert found.subject.startswith("pull, push on payments/**")
    assert found.automated is True
    assert len([key for key in items if "/grant-" in key]) == 1


def test_a_person_with_nothing_left_has_an_empty_plan() -> None:
    assert offboarding.plan_for(factories.user()).items == ()
