"""Offboarding where membership is the access: a Docker Hub organisation and Quay team seats.

Leaving a Docker Hub organisation leaves every team, so the plan has one membership step for the
person instead of one step per team grant. Quay names no directory person, so its seats are found
only where an admin said Quay's usernames are the directory's. Verification asks each again.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from accounts.models import User
from registries import offboarding, services, sync, tasks
from registries.models import Grant, Offboarding, OffboardingStep, Registry, SyncRun
from tests.fakes.dockerhub import FakeDockerHub
from tests.fakes.quay import FakeQuay
from tests.registries.harness import RunningRegistry
from tests.registries.test_dockerhub import public_config, seed
from tests.registries.test_quay import people as quay_people
from tests.registries.test_quay import public_config as quay_config
from tests.registries.test_quay import seed as quay_seed

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


# --- Quay: team seats, where an admin said Quay's usernames are the directory's ----------------------------


@pytest.fixture
def quay(registry: RunningRegistry) -> Iterator[FakeQuay]:
    fake = FakeQuay(registry_url=registry.url).start()
    yield fake
    fake.stop()
    assert not fake.drift, "the fake answered in a shape §10 does not document:\n" + "\n".join(fake.drift)


def synced_quay(registry: RunningRegistry, quay: FakeQuay, *, link_users_by_username: bool) -> Registry:
    quay_seed(registry)
    quay_people(quay)  # bob sits on devs; dave has admin on acme/app by name
    saved = services.save_registry(
        Registry(name="quay-acme", kind="quay", endpoint=quay.url),
        actor=None,
        public={
            k: v
            for k, v in quay_config(quay, link_users_by_username=link_users_by_username).items()
            if k != "url"
        },
        secrets={"token": quay.token, "registry_password": quay.robot_token},
    )
    run = sync.sync_inventory(saved)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    return saved


def test_without_the_username_link_quay_holds_nothing_known_of_them(
    registry: RunningRegistry, quay: FakeQuay
) -> None:
    bob = User.objects.create(username="bob", external_id="00u-bob")
    connected = synced_quay(registry, quay, link_users_by_username=False)
    assert connected.name not in offboarding.plan_for(bob).by_place()


def test_with_the_username_link_quay_grants_count_as_the_persons(
    registry: RunningRegistry, quay: FakeQuay
) -> None:
    dave = User.objects.create(username="dave", external_id="00u-dave")
    connected = synced_quay(registry, quay, link_users_by_username=False)
    daves = Grant.objects.filter(registry=connected, principal_kind="user", principal_id="dave")
    assert list(daves.values_list("user_id", flat=True)) == [None]  # a Quay name, nobody's

    Registry.objects.filter(pk=connected.pk).update(
        config={**connected.config, "link_users_by_username": True}
    )
    connected.refresh_from_db()
    assert sync.sync_inventory(connected).status == SyncRun.Status.SUCCEEDED

    assert list(daves.values_list("user_id", flat=True)) == [dave.pk]


def test_team_seats_and_permissions_by_username_are_removed_and_verified(
    registry: RunningRegistry, quay: FakeQuay
) -> None:
    bob = User.objects.create(username="bob", external_id="00u-bob")
    dave = User.objects.create(username="dave", external_id="00u-dave")
    connected = synced_quay(registry, quay, link_users_by_username=True)
    quay.teams["acme"]["readers"].members["bob"] = False  # a second seat
    # dave has no seat, only a permission by name: found under his username too.
    daves = offboarding.plan_for(dave).by_place()[connected.name]
    assert [(item.action, item.evidence["principal_id"]) for item in daves] == [
        (offboarding.Action.REMOVE_ACCESS, "dave"),  # the grant
        (offboarding.Action.REMOVE_ACCESS, "dave"),  # the seat step, which finds none when it runs
    ]
    planned = offboarding.start(bob, actor=None, reason="left")
    offboarding.confirm(planned, actor=None)

    finished = offboarding.verify(offboarding.run(planned))

    seat = finished.steps.get(key=f"registry-{connected.pk}/member-1")
    assert seat.result == "removed from team acme/devs, team acme/readers"
    assert seat.verification == OffboardingStep.Verification.GONE
    assert "bob" not in quay.teams["acme"]["devs"].members
    assert "acme+ci" in quay.teams["acme"]["devs"].members  # the robot beside him stays
    assert finished.state == Offboarding.State.COMPLETED
