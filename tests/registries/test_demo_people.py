"""The demo's people and rules: enough for every access page to have an answer, and safe to re-run."""

from __future__ import annotations

import pytest

from accounts.models import GroupMembership, User
from registries import effective
from registries.demo import people
from registries.models import AccessRule
from tests import factories

pytestmark = pytest.mark.django_db


def test_seeding_twice_adds_nothing_the_second_time() -> None:
    registry = factories.registry()
    assert people.seed(registry) == len(people.RULES)
    counts = (User.objects.count(), GroupMembership.objects.count(), AccessRule.objects.count())
    assert people.seed(registry) == 0
    assert (User.objects.count(), GroupMembership.objects.count(), AccessRule.objects.count()) == counts


def test_the_demo_rules_answer_the_explorers_questions() -> None:
    registry = factories.registry()
    people.seed(registry)
    pushers = {user.username for user, _ in effective.who_can(registry, "payments/api", "push")}
    assert pushers == {"chen.payments@demo.example", "dara.payments@demo.example", "bo.platform@demo.example"}
    contractor = User.objects.get(username="gus.contractor@demo.example")
    access = effective.user_access(contractor, registry, "payments/api")
    assert access.actions == {"pull"}
    assert access.evidence[0].expires_at is not None  # time-bound, as contractors' access should be
