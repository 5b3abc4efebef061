"""Offboarding's registry steps against every connector kind's fake: done once, resumable, verified.

Each scene (tests/registries/offboarding_helpers.py) is a registry synced from its fake holding a
credential of the person's (disabled), one they made that automation still uses (re-assigned, kept)
and, where the kind lets Customs take it, the access the registry gives them by name (a grant, a team
seat, an organisation membership: removed). The worker is not run: the task confirmation queues is
taken, and `offboarding.run()` called with it as the worker would. What is asserted is what the fake
then holds, not only what Customs recorded.

The last section holds the gaps this suite first found (a transient failure holding back every
other step, grants a connector refuses to remove planned as automatic, a Docker Hub member in no
team missed), each now closed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import celery
import pytest

from registries import offboarding, tasks
from registries.connectors.errors import TransientError
from registries.models import Offboarding, OffboardingStep
from registries.offboarding import Action
from tests.fakes.acr import ACR_PUSH, RoleAssignment
from tests.fakes.aws import (
    ACCOUNT,
    REGION,
    aws_answers_fixture,  # noqa: F401  (autouse: checks every AWS answer in this module)
    moto_fixture,  # noqa: F401
    moto_server_fixture,  # noqa: F401
)
from tests.registries.offboarding_helpers import BUILDERS, EMAIL, KINDS, PULL, TIMEOUT, Scene

pytestmark = pytest.mark.django_db

DONE, PENDING, FAILED, MANUAL = (
    OffboardingStep.State.DONE,
    OffboardingStep.State.PENDING,
    OffboardingStep.State.FAILED,
    OffboardingStep.State.MANUAL,
)
GONE, KEPT, PRESENT = (
    OffboardingStep.Verification.GONE,
    OffboardingStep.Verification.KEPT,
    OffboardingStep.Verification.STILL_PRESENT,
)
WITH_ACCESS = [kind for kind in KINDS if kind != "acr"]  # ACR: people hold role assignments only


@pytest.fixture(params=KINDS)
def scene(request: pytest.FixtureRequest) -> Scene:
    return BUILDERS[request.param](request)


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Offboardings confirmation handed to the worker; the tests run them themselves."""
    ids: list[int] = []
    monkeypatch.setattr(tasks.run_offboarding, "delay", ids.append)
    # The departure hook confirmation also fires would plan a second offboarding: not this test's.
    monkeypatch.setattr(celery.current_app, "send_task", lambda *args, **kwargs: None)
    return ids


@pytest.fixture
def confirmed(scene: Scene, queued: list[int], django_capture_on_commit_callbacks: Any) -> Offboarding:
    """The person's offboarding, planned and confirmed, its task queued but not yet run."""
    planned = offboarding.start(scene.person, actor=None, reason="left", reassign_to=scene.heir)
    with django_capture_on_commit_callbacks(execute=True):
        offboarding.confirm(planned, actor=None)
    assert queued == [planned.pk]
    return planned


def work(queued: list[int]) -> Offboarding:
    """What the worker does with the queued task: run the offboarding's pending steps."""
    return offboarding.run(Offboarding.objects.select_related("person", "reassign_to").get(pk=queued[-1]))


def step(run: Offboarding, key: str) -> OffboardingStep:
    return run.steps.get(key=key)


def registry_steps(run: Offboarding) -> dict[str, OffboardingStep]:
    return {s.key: s for s in run.steps.exclude(place="Customs")}


# --- every kind: each step once ---------------------------------------------------------------------


def test_the_plan_names_each_registry_identity_sync_linked(scene: Scene) -> None:
    own, kept = scene.credential(scene.own), scene.credential(scene.kept)
    assert len(scene.grants()) == (0 if scene.has_access is None else 1)
    planned = offboarding.start(scene.person, actor=None, reason="left", reassign_to=scene.heir)
    assert {(s.action, s.key, s.automated) for s in registry_steps(planned).values()} == {
        (Action.DISABLE, scene.key(own), True),
        (Action.REASSIGN, scene.key(kept), True),
        *((Action.REMOVE_ACCESS, key, True) for key in scene.access_keys()),
    }


def test_each_step_is_done_on_the_registry_verified_and_a_second_run_changes_nothing(
    scene: Scene, confirmed: Offboarding, queued: list[int]
) -> None:
    own, kept, access = (
        scene.key(scene.credential(scene.own)),
        scene.key(scene.credential(scene.kept)),
        scene.access_keys(),
    )
    writes_before = len(scene.writes())

    finished = work(queued)

    assert finished.state == Offboarding.State.COMPLETED
    steps = registry_steps(finished)
    assert (steps[own].state, steps[own].result) == (DONE, "disabled")
    assert (steps[kept].state, steps[kept].result) == (DONE, f"kept: {scene.heir} answers for it now")
    for key in access:
        assert (steps[key].state, steps[key].result[:7]) == (DONE, "removed")
    assert {s.attempts for s in steps.values()} == {1}
    # The registry itself, as its fake holds it: disabled, kept working, access taken, others' left.
    assert scene.revoked()
    assert scene.kept_working()
    if scene.has_access is not None and scene.others_keep_access is not None:
        assert not scene.has_access()
        assert scene.others_keep_access()
    assert not scene.credential(scene.own).enabled
    assert scene.credential(scene.kept).steward == scene.heir
    writes = scene.writes()[writes_before:]
    assert sum(bool(re.fullmatch(scene.disabling, line)) for line in writes) == 1
    assert len(writes) >= 1 + len(access)

    seen = scene.requests()
    work(queued)  # a redelivered task
    Offboarding.objects.filter(pk=finished.pk).update(state=Offboarding.State.RUNNING)
    assert work(queued).state == Offboarding.State.COMPLETED  # forced through again: all done already
    assert scene.requests() == seen  # not a read, let alone a write

    writes = scene.writes()
    verified = offboarding.verify(Offboarding.objects.get(pk=finished.pk))  # re-reads the registry
    assert verified.state == Offboarding.State.COMPLETED
    verdicts = {key: s.verification for key, s in registry_steps(verified).items()}
    assert verdicts == {own: GONE, kept: KEPT, **dict.fromkeys(access, GONE)}
    assert scene.writes() == writes  # verification only reads


# --- every kind: failures in the middle ---------------------------------------------------------------


def test_a_500_and_then_a_timeout_leave_the_step_to_a_later_run(
    scene: Scene, confirmed: Offboarding, queued: list[int], settings: Any
) -> None:
    key = scene.key(scene.credential(scene.own))
    scene.faults.queue(scene.disabling, "500")

    with pytest.raises(TransientError, match=scene.said["500"]):
        work(queued)  # raised, so the task retries with back-off

    waiting = step(confirmed, key)
    assert (waiting.state, waiting.attempts) == (PENDING, 1)
    assert re.match(f"will retry: .*{scene.said['500']}", waiting.result)
    assert not scene.revoked()
    assert Offboarding.objects.get(pk=confirmed.pk).state == Offboarding.State.RUNNING

    # The registry is slow to answer: the client gives up, but the change lands a moment later.
    settings.OUTBOUND_TIMEOUT = TIMEOUT
    scene.faults.queue(scene.disabling, "timeout")
    with pytest.raises(TransientError, match=scene.said["timeout"]):
        work(queued)
    scene.faults.wait_until_landed()
    settings.OUTBOUND_TIMEOUT = 30
    waiting = step(confirmed, key)
    assert (waiting.state, waiting.attempts) == (PENDING, 2)
    assert re.match(f"will retry: .*{scene.said['timeout']}", waiting.result)

    finished = work(queued)

    assert finished.state == Offboarding.State.COMPLETED
    done = step(finished, key)
    assert (done.state, done.attempts, done.result) == (DONE, 3, "disabled")
    assert scene.revoked()
    assert {s.attempts for k, s in registry_steps(finished).items() if k != key} == {1}  # each once
    assert scene.has_access is None or not scene.has_access()


def test_a_refusal_fails_its_step_the_other_steps_still_run_and_verification_says_so(
    scene: Scene, confirmed: Offboarding, queued: list[int]
) -> None:
    key = scene.key(scene.credential(scene.own))
    scene.faults.queue(scene.disabling, "403")

    finished = work(queued)

    assert finished.state == Offboarding.State.INCOMPLETE
    refused = step(finished, key)
    assert (refused.state, refused.attempts) == (FAILED, 1)
    assert re.search(scene.said["403"], refused.result), refused.result
    assert not scene.revoked()
    assert scene.credential(scene.own).enabled  # the record says what the registry says
    assert {s.state for k, s in registry_steps(finished).items() if k != key} == {DONE}
    assert scene.has_access is None or not scene.has_access()
    seen = scene.requests()
    work(queued)  # a redelivered task leaves the refusal for people to look at
    assert scene.requests() == seen
    verified = offboarding.verify(Offboarding.objects.get(pk=finished.pk))
    assert (step(verified, key).verification, step(verified, key).verification_note) == (
        PRESENT,
        "listed and still enabled",
    )


@pytest.mark.parametrize("scene", WITH_ACCESS, indirect=True)
def test_a_sync_between_confirmation_and_run_still_removes_the_access(
    scene: Scene, confirmed: Offboarding, queued: list[int]
) -> None:
    assert scene.has_access is not None
    scene.sync()  # the hourly sync, or one an admin started, before the worker got to the steps
    finished = work(queued)
    assert not scene.has_access()
    assert finished.state == Offboarding.State.COMPLETED


@pytest.mark.parametrize("scene", ["dockerhub"], indirect=True)
def test_a_docker_hub_owner_is_taken_out_of_the_organisation(
    scene: Scene, queued: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    hub = scene.extra["fake"]
    hub.members["alice"].role = "Owner"
    scene.sync()
    assert [g.source for g in scene.grants()] == ["organisation owner", "team deployers member: write"]
    planned = offboarding.start(scene.person, actor=None, reason="left", reassign_to=scene.heir)
    with django_capture_on_commit_callbacks(execute=True):
        offboarding.confirm(planned, actor=None)
    finished = work(queued)
    assert "alice" not in hub.members
    assert finished.state == Offboarding.State.COMPLETED


# --- gaps found by this suite, now closed ------------------------------------------------


@pytest.mark.parametrize("scene", WITH_ACCESS, indirect=True)
def test_a_transient_failure_holds_back_no_other_step(
    scene: Scene, confirmed: Offboarding, queued: list[int]
) -> None:
    scene.faults.queue(scene.disabling, "500")
    with pytest.raises(TransientError):
        work(queued)  # still raised, for the task's retry
    later = {key: registry_steps(confirmed)[key] for key in scene.access_keys()}
    assert {(s.state, s.attempts) for s in later.values()} == {(DONE, 1)}
    assert scene.has_access is not None
    assert not scene.has_access()


def _acr_role_assignment(scene: Scene) -> str:
    scene.extra["fake"].role_assignments.append(RoleAssignment(ACR_PUSH, scene.person.external_id, "User"))
    return "role assignment AcrPush"


def _ecr_group_membership(scene: Scene) -> str:
    iam = scene.extra["iam"]
    iam.create_group(GroupName="deployers")
    document = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": PULL,
                "Resource": f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/payments/*",
            }
        ],
    }
    iam.put_group_policy(GroupName="deployers", PolicyName="pull", PolicyDocument=json.dumps(document))
    iam.add_user_to_group(GroupName="deployers", UserName="alice")
    return "member of IAM group deployers"


def _gar_basic_role(scene: Scene) -> str:
    scene.extra["fake"].bind("project", "roles/editor", f"user:{EMAIL}")
    return "project acme-prod: roles/editor"


REFUSED: dict[str, Callable[[Scene], str]] = {
    "acr": _acr_role_assignment,
    "ecr": _ecr_group_membership,
    "gar": _gar_basic_role,
}


@pytest.mark.parametrize("scene", sorted(REFUSED), indirect=True)
def test_access_the_connector_will_not_remove_is_left_to_a_person_in_the_plan(
    scene: Scene, queued: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    source = REFUSED[scene.kind](scene)
    scene.sync()
    [grant] = [g for g in scene.grants() if g.source.startswith(source)]
    planned = offboarding.start(scene.person, actor=None, reason="left", reassign_to=scene.heir)
    left = step(planned, scene.key(grant))
    assert (left.state, left.automated) == (MANUAL, False)
    with django_capture_on_commit_callbacks(execute=True):
        offboarding.confirm(planned, actor=None)
    assert work(queued).state == Offboarding.State.COMPLETED  # every automated step done


@pytest.mark.parametrize("scene", ["dockerhub"], indirect=True)
def test_a_docker_hub_member_in_no_team_is_taken_out_of_the_organisation(
    scene: Scene, queued: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    hub = scene.extra["fake"]
    hub.teams["deployers"].members.remove("alice")
    scene.sync()
    assert scene.grants() == []
    planned = offboarding.start(scene.person, actor=None, reason="left", reassign_to=scene.heir)
    with django_capture_on_commit_callbacks(execute=True):
        offboarding.confirm(planned, actor=None)
    assert work(queued).state == Offboarding.State.COMPLETED
    assert "alice" not in hub.members
    assert "bob" in hub.members
