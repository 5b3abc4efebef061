"""Running an offboarding: Customs cut off at confirmation, registry steps through the Harbor fake,
resumable after failures, and a second run that changes nothing."""

from __future__ import annotations

import celery
import pytest

from accounts import services as account_services
from accounts.models import GroupMembership, User
from registries import offboarding, tasks
from registries.connectors.errors import TransientError
from registries.models import Offboarding, OffboardingStep, Registry
from tests import factories
from tests.fakes.harbor import FakeHarbor
from tests.fakes.server import Answer

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Offboardings handed to the worker; tests run them themselves, step by step."""
    ids: list[int] = []
    monkeypatch.setattr(tasks.run_offboarding, "delay", ids.append)
    return ids


def connected(fake: FakeHarbor) -> Registry:
    return factories.registry(
        kind="harbor",
        name="harbor-eu",
        endpoint=fake.url,
        config={"username": fake.username},
        secrets={"password": fake.password},
    )


def step(run: Offboarding, key: str) -> OffboardingStep:
    return run.steps.get(key=key)


def test_confirming_cuts_the_person_off_customs_in_one_go(
    queued: list[int], django_capture_on_commit_callbacks: object
) -> None:
    person, admin = factories.user(), factories.user()
    token, _ = factories.token(person)
    planned = offboarding.start(person, actor=admin, reason="left the company")
    assert User.objects.get(pk=person.pk).status == User.Status.ACTIVE  # a plan changes nothing
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        offboarding.confirm(planned, actor=admin)
    person.refresh_from_db()
    assert person.status == User.Status.DEPARTED
    assert person.personal_tokens.get(pk=token.pk).revoked_at is not None
    assert step(planned, f"customs/token-{token.pk}").state == OffboardingStep.State.DONE
    assert planned.state == Offboarding.State.RUNNING
    assert queued == [planned.pk]
    with pytest.raises(offboarding.OffboardingRefused, match="running"):
        offboarding.confirm(planned, actor=admin)


def test_registry_steps_run_once_and_a_second_run_changes_nothing(
    harbor: FakeHarbor, queued: list[int]
) -> None:
    person, heir = factories.user(), factories.user()
    team = factories.group()
    factories.member(person, team)
    registry = connected(harbor)
    robot_id = harbor.add_robot("deploy", access={"payments": ["pull", "push"]})
    credential = factories.registry_credential(registry, native_id=str(robot_id), owner_user=person)
    made, _ = factories.robot(team)
    type(made).objects.filter(pk=made.pk).update(created_by=person)
    planned = offboarding.start(person, actor=None, reason="left", reassign_to=heir)
    offboarding.confirm(planned, actor=None)

    finished = offboarding.run(planned)

    assert finished.state == Offboarding.State.COMPLETED
    assert harbor.robots[robot_id]["disable"] is True
    assert step(finished, f"registry-{registry.pk}/credential-{credential.pk}").result == "disabled"
    assert not GroupMembership.objects.filter(user=person).exists()
    made.refresh_from_db()
    assert made.created_by == heir
    assert made.revoked_at is None  # the group's automation keeps working
    writes = list(harbor.writes)
    offboarding.run(finished)  # a redelivered task
    planned.state = Offboarding.State.RUNNING
    offboarding.run(planned)  # even forced through again: every step is already done
    assert harbor.writes == writes


def test_a_transient_failure_leaves_the_step_to_resume(harbor: FakeHarbor, queued: list[int]) -> None:
    person = factories.user()
    registry = connected(harbor)
    robot_id = harbor.add_robot("ci", access={"payments": ["pull"]})
    credential = factories.registry_credential(registry, native_id=str(robot_id), owner_user=person)
    planned = offboarding.start(person, actor=None, reason="left")
    offboarding.confirm(planned, actor=None)
    harbor.fail_next.append(Answer(503, {"errors": [{"code": "UNAVAILABLE", "message": "down"}]}))

    with pytest.raises(TransientError):
        offboarding.run(planned)  # the task retries it with back-off

    key = f"registry-{registry.pk}/credential-{credential.pk}"
    assert step(planned, key).state == OffboardingStep.State.PENDING
    assert step(planned, key).attempts == 1
    planned.refresh_from_db()
    assert planned.state == Offboarding.State.RUNNING
    assert offboarding.run(planned).state == Offboarding.State.COMPLETED
    assert step(planned, key).attempts == 2
    assert harbor.robots[robot_id]["disable"] is True


def test_a_refusal_fails_its_step_and_the_rest_go_on(harbor: FakeHarbor, queued: list[int]) -> None:
    person = factories.user()
    team = factories.group()
    factories.member(person, team)
    registry = connected(harbor)
    robot_id = harbor.add_robot("ci", access={"payments": ["pull"]})
    factories.registry_credential(registry, native_id=str(robot_id), owner_user=person)
    harbor.forbidden.add("PUT /robots/{robot_id}")
    planned = offboarding.start(person, actor=None, reason="left")
    offboarding.confirm(planned, actor=None)

    finished = offboarding.run(planned)

    assert finished.state == Offboarding.State.INCOMPLETE
    failed = finished.steps.get(state=OffboardingStep.State.FAILED)
    assert "403" in failed.result
    assert not GroupMembership.objects.filter(user=person).exists()


def test_what_cannot_start() -> None:
    person, admin = factories.user(), factories.user()
    with pytest.raises(offboarding.OffboardingRefused, match="yourself"):
        offboarding.start(person, actor=person, reason="")
    offboarding.start(person, actor=admin, reason="left")
    with pytest.raises(offboarding.OffboardingRefused, match="already has an offboarding"):
        offboarding.start(person, actor=admin, reason="again")
    builder = factories.user()
    registry = factories.registry(kind="harbor")
    factories.registry_credential(registry, created_by_user=builder, usage_known=False)
    with pytest.raises(offboarding.OffboardingRefused, match="choose who takes them over"):
        offboarding.start(builder, actor=admin, reason="left")


def test_a_departure_reported_by_the_directory_starts_an_offboarding(
    monkeypatch: pytest.MonkeyPatch, queued: list[int], django_capture_on_commit_callbacks: object
) -> None:
    sent: list[tuple[str, list[object]]] = []
    monkeypatch.setattr(celery.current_app, "send_task", lambda name, args: sent.append((name, args)))
    person = factories.user()
    sponsored, _ = factories.robot(factories.group())
    type(sponsored).objects.filter(pk=sponsored.pk).update(created_by=person)
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        account_services.deactivate_user(person, actor=None, reason="SCIM: active=false")
    assert sent == [("registries.tasks.offboard_from_directory", [person.pk, "SCIM: active=false"])]

    assert tasks.offboard_from_directory(person.pk, "SCIM: active=false") == "started"
    assert tasks.offboard_from_directory(person.pk, "redelivered") == "already under way"

    started = Offboarding.objects.get(person=person)
    assert started.trigger == Offboarding.Trigger.DIRECTORY
    assert User.objects.get(pk=person.pk).status == User.Status.DISABLED  # not turned into "departed"
    offboarding.run(started)
    sponsored.refresh_from_db()
    assert sponsored.revoked_at is not None  # nobody was named to take it over
    assert Offboarding.objects.get(pk=started.pk).state == Offboarding.State.COMPLETED


def test_a_reactivated_person_is_not_offboarded() -> None:
    person = factories.user()
    assert tasks.offboard_from_directory(person.pk, "stale message") == "nothing to do"
    assert not Offboarding.objects.exists()
