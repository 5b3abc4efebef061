"""Running an offboarding: Customs cut off at confirmation, registry steps through the Harbor fake,
resumable after failures, and a second run that changes nothing."""

from __future__ import annotations

import celery
import pytest

from accounts import services as account_services
from accounts.models import DirectoryGroup, GroupMembership, RobotToken, User
from registries import hygiene, offboarding, sync, tasks
from registries.connectors.errors import TransientError
from registries.models import Credential, Grant, Offboarding, OffboardingStep, Registry
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


def test_nobody_confirms_or_cancels_their_own_offboarding() -> None:
    person, admin = factories.user(), factories.user()
    planned = offboarding.start(person, actor=admin, reason="left")
    for decide in (offboarding.confirm, offboarding.cancel):
        with pytest.raises(offboarding.OffboardingRefused, match="your own offboarding"):
            decide(planned, actor=person)
    assert Offboarding.objects.get(pk=planned.pk).state == Offboarding.State.PLANNED
    assert User.objects.get(pk=person.pk).may_sign_in


def test_a_departure_reported_by_the_directory_starts_an_offboarding(
    monkeypatch: pytest.MonkeyPatch, queued: list[int], django_capture_on_commit_callbacks: object
) -> None:
    sent: list[tuple[str, list[object]]] = []
    monkeypatch.setattr(
        celery.current_app, "send_task", lambda name, args, *_, **options: sent.append((name, list(args)))
    )
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


# --- stewards and the policy for departures ---------------------------------------------------------


def sponsored_by(person: User, group: DirectoryGroup) -> RobotToken:
    robot, _ = factories.robot(group)
    RobotToken.objects.filter(pk=robot.pk).update(created_by=person)
    return robot


def directory_offboarding(person: User) -> Offboarding:
    account_services.deactivate_user(person, actor=None, reason="SCIM: active=false")
    started = offboarding.start(person, actor=None, reason="SCIM", trigger=Offboarding.Trigger.DIRECTORY)
    offboarding.confirm(started, actor=None)
    return offboarding.run(started)


def test_a_departure_gives_robots_to_their_groups_owner_or_the_steward(
    settings: object, queued: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(celery.current_app, "send_task", lambda name, args, *_, **options: None)
    person, lead, steward = factories.user(), factories.user(), factories.user(username="platform-team")
    owned_group, orphan_group = factories.group(), factories.group()
    DirectoryGroup.objects.filter(pk=owned_group.pk).update(owner=lead)
    settings.OFFBOARDING_STEWARD = "platform-team"  # type: ignore[attr-defined]
    to_lead, to_steward = sponsored_by(person, owned_group), sponsored_by(person, orphan_group)

    finished = directory_offboarding(person)

    assert finished.state == Offboarding.State.COMPLETED
    assert RobotToken.objects.get(pk=to_lead.pk).created_by == lead
    assert RobotToken.objects.get(pk=to_steward.pk).created_by == steward
    assert step(finished, f"customs/robot-{to_lead.pk}").result == f"now sponsored by {lead}"


def test_the_disable_policy_stops_what_they_made_and_the_record_says_so(
    settings: object, harbor: FakeHarbor, queued: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(celery.current_app, "send_task", lambda name, args, *_, **options: None)
    settings.OFFBOARDING_ROBOT_POLICY = "disable"  # type: ignore[attr-defined]
    person, lead = factories.user(), factories.user()
    group = factories.group()
    DirectoryGroup.objects.filter(pk=group.pk).update(owner=lead)
    robot = sponsored_by(person, group)
    registry = connected(harbor)
    robot_id = harbor.add_robot("ci", access={"payments": ["pull"]})
    built = factories.registry_credential(
        registry, native_id=str(robot_id), created_by_user=person, usage_known=False
    )

    finished = directory_offboarding(person)

    assert RobotToken.objects.get(pk=robot.pk).revoked_at is not None
    assert harbor.robots[robot_id]["disable"] is True
    credential_step = step(finished, f"registry-{registry.pk}/credential-{built.pk}")
    assert credential_step.action == offboarding.Action.DISABLE  # planned as reassign; done as disable
    assert credential_step.result.startswith("disabled: the policy")


def test_an_admins_heir_becomes_steward_of_registry_credentials(
    harbor: FakeHarbor, queued: list[int]
) -> None:
    person, heir = factories.user(), factories.user()
    registry = connected(harbor)
    robot_id = harbor.add_robot("ci", access={"payments": ["pull"]})
    built = factories.registry_credential(
        registry, native_id=str(robot_id), created_by_user=person, usage_known=False
    )
    planned = offboarding.start(person, actor=None, reason="left", reassign_to=heir)
    offboarding.confirm(planned, actor=None)

    offboarding.run(planned)

    built.refresh_from_db()
    assert built.steward == heir
    assert harbor.robots[robot_id]["disable"] is False  # automation keeps working
    facts = next(hygiene.credential_facts([_fact_row(built)], hygiene._people(Credential.objects.all())))
    responsible, _ = facts.responsible
    assert responsible is not None
    assert responsible.pk == heir.pk


def _fact_row(credential: Credential) -> dict[str, object]:
    row: dict[str, object] = Credential.objects.filter(pk=credential.pk).values(*hygiene.FACT_FIELDS).get()
    return row


# --- verification: the registries re-read ----------------------------------------------------------------


def granted_member(harbor: FakeHarbor, registry: Registry, person: User) -> Grant:
    """`person` as a Harbor project developer, and the grant row a sync would have left."""
    user_id = harbor.add_user(person.username)
    harbor.add_member("payments", role_id=2, user_id=user_id)
    read = sync.read_grants(sync.connector_for(registry))
    assert read is not None
    remote = next(g for g in read if g.principal.kind == "user")
    return factories.grant(
        registry,
        principal_kind="user",
        principal_id=remote.principal.id,
        principal_name=remote.principal.name,
        scope=remote.scope,
        can_push="push" in remote.actions,
        source=remote.source,
        user=person,
    )


def test_verification_proves_each_step_gone_and_kept_ones_kept(harbor: FakeHarbor, queued: list[int]) -> None:
    person, heir = factories.user(), factories.user()
    factories.member(person, factories.group())
    token, _ = factories.token(person)
    registry = connected(harbor)
    theirs = harbor.add_robot("theirs", access={"payments": ["pull"]})
    kept = harbor.add_robot("deploy", access={"payments": ["pull"]})
    own = factories.registry_credential(registry, native_id=str(theirs), owner_user=person)
    built = factories.registry_credential(
        registry, native_id=str(kept), created_by_user=person, usage_known=False
    )
    grant = granted_member(harbor, registry, person)
    planned = offboarding.start(person, actor=None, reason="left", reassign_to=heir)
    offboarding.confirm(planned, actor=None)
    # A sync between the plan and the run replaces grant rows: the step still finds its grant.
    type(grant).objects.filter(pk=grant.pk).delete()

    verified = offboarding.verify(offboarding.run(planned))

    verdicts = dict(verified.steps.values_list("key", "verification"))
    assert verdicts[f"customs/token-{token.pk}"] == OffboardingStep.Verification.GONE
    assert verdicts[f"registry-{registry.pk}/credential-{own.pk}"] == OffboardingStep.Verification.GONE
    assert verdicts[f"registry-{registry.pk}/credential-{built.pk}"] == OffboardingStep.Verification.KEPT
    assert verdicts[f"registry-{registry.pk}/grant-{grant.pk}"] == OffboardingStep.Verification.GONE
    assert harbor.members["payments"] == []
    assert verified.state == Offboarding.State.COMPLETED
    assert verified.verified_at is not None


def test_verification_reports_what_is_still_there_and_what_it_could_not_read(
    harbor: FakeHarbor, queued: list[int]
) -> None:
    person = factories.user()
    registry = connected(harbor)
    robot_id = harbor.add_robot("ci", access={"payments": ["pull"]})
    credential = factories.registry_credential(registry, native_id=str(robot_id), owner_user=person)
    planned = offboarding.start(person, actor=None, reason="left")
    offboarding.confirm(planned, actor=None)
    finished = offboarding.run(planned)
    key = f"registry-{registry.pk}/credential-{credential.pk}"
    assert finished.state == Offboarding.State.COMPLETED

    harbor.robots[robot_id]["disable"] = False  # someone turned it back on in Harbor
    again = offboarding.verify(finished)
    assert step(again, key).verification == OffboardingStep.Verification.STILL_PRESENT
    assert again.state == Offboarding.State.INCOMPLETE

    harbor.fail_next.extend([Answer(500, {"errors": [{"code": "ERR", "message": "boom"}]})] * 8)
    unread = offboarding.verify(again)
    assert step(unread, key).verification == OffboardingStep.Verification.UNVERIFIABLE
    assert "harbor-eu" in step(unread, key).verification_note
