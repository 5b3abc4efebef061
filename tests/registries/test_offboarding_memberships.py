"""Offboarding where membership is the access: a Docker Hub organisation, through the fake Hub.

Leaving the organisation leaves every team, so the plan has one membership step for the person
instead of one step per team grant, and verification asks the organisation again.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from accounts.models import User
from registries import offboarding, services, sync, tasks
from registries.models import Offboarding, OffboardingStep, Registry, SyncRun
from tests.fakes.dockerhub import FakeDockerHub
from tests.registries.harness import RunningRegistry
from tests.registries.test_dockerhub import public_config, seed

pytestmark = pytest.mark.django_db


@pytest.fixture
def hub(registry: RunningRegistry) -> Iterator[FakeDockerHub]:
    fake = FakeDockerHub(registry_url=registry.url).start()
    yield fake
    fake.stop()
    assert not fake.drift, "the fake answered in a shape Docker Hub does not use:\n" + "\n".join(fake.drift)


@pytest.fixture(autouse=True)
def queued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    ids: list[int] = []
    monkeypatch.setattr(tasks.run_offboarding, "delay", ids.append)
    return ids


def synced_hub(registry: RunningRegistry, hub: FakeDockerHub) -> Registry:
    """acme with alice on two teams and bob on one, linked to the directory by e-mail, then synced."""
    seed(registry)
    hub.add_team("dev", ["alice", "bob"], app="write")
    hub.add_team("ops", ["alice"], worker="read")
    saved = services.save_registry(
        Registry(name="hub-acme", kind="dockerhub", endpoint=hub.url),
        actor=None,
        public={k: v for k, v in public_config(hub, link_members_by_email=True).items() if k != "url"},
        secrets={"token": hub.token},
    )
    run = sync.sync_inventory(saved)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    return saved


def test_the_plan_takes_them_out_of_the_organisation_in_one_step(
    registry: RunningRegistry, hub: FakeDockerHub
) -> None:
    alice = User.objects.create(username="alice", external_id="alice@acme.example")
    connected = synced_hub(registry, hub)

    items = offboarding.plan_for(alice).by_place()[connected.name]

    assert [item.key for item in items] == [f"registry-{connected.pk}/member-1"]
    assert items[0].evidence["principal_id"] == "alice"
    assert items[0].automated


def test_the_run_removes_them_verifies_it_and_a_second_run_writes_nothing(
    registry: RunningRegistry, hub: FakeDockerHub
) -> None:
    alice = User.objects.create(username="alice", external_id="alice@acme.example")
    connected = synced_hub(registry, hub)
    planned = offboarding.start(alice, actor=None, reason="left")
    offboarding.confirm(planned, actor=None)

    finished = offboarding.verify(offboarding.run(planned))

    member = finished.steps.get(key=f"registry-{connected.pk}/member-1")
    assert member.state == OffboardingStep.State.DONE
    assert member.result == "removed from organisation acme, team dev, team ops"
    assert member.verification == OffboardingStep.Verification.GONE
    assert "alice" not in hub.members
    assert hub.teams["dev"].members == ["bob"]  # a colleague keeps their seat
    assert finished.state == Offboarding.State.COMPLETED
    writes = list(hub.writes)
    finished.state = Offboarding.State.RUNNING
    offboarding.run(finished)
    assert hub.writes == writes


def test_someone_back_in_the_organisation_is_reported_still_present(
    registry: RunningRegistry, hub: FakeDockerHub
) -> None:
    alice = User.objects.create(username="alice", external_id="alice@acme.example")
    connected = synced_hub(registry, hub)
    planned = offboarding.start(alice, actor=None, reason="left")
    offboarding.confirm(planned, actor=None)
    finished = offboarding.run(planned)
    hub.add_team("ops", ["alice"])  # an owner added her again by hand

    verified = offboarding.verify(finished)

    member = verified.steps.get(key=f"registry-{connected.pk}/member-1")
    assert member.verification == OffboardingStep.Verification.STILL_PRESENT
    assert member.verification_note == "still in organisation acme, team ops"
    assert verified.state == Offboarding.State.INCOMPLETE
