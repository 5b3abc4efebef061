"""The registry tasks' wiring: ids in, plain functions called, schedules spread out."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from pytest_django import DjangoCaptureOnCommitCallbacks

from accounts import services as account_services
from accounts.models import User
from registries import services, signals, tasks
from registries.demo import images as im
from registries.models import ArtifactLineage, Credential, Offboarding, Registry, Replica, SyncRun, Tag
from tests import factories
from tests.registries.harness import RunningRegistry

pytestmark = pytest.mark.django_db


def make(name: str, **fields: Any) -> Registry:
    registry = Registry(name=name, kind="distribution", endpoint="http://127.0.0.1:9", **fields)
    return services.save_registry(registry, actor=None, public={})


def test_only_registries_whose_interval_passed_are_queued_with_jitter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queued: list[tuple[tuple[int, ...], float]] = []
    monkeypatch.setattr(
        tasks.sync_registry, "apply_async", lambda args, countdown: queued.append((tuple(args), countdown))
    )
    now = timezone.now()
    never = make("never-synced")
    due = make("due", sync_interval_minutes=60, last_sync_started_at=now - timedelta(minutes=61))
    make("recent", sync_interval_minutes=60, last_sync_started_at=now - timedelta(minutes=5))
    make("disabled", sync_enabled=False)
    make("busy", syncing_since=now)
    assert tasks.schedule_syncs() == 2
    assert sorted(args[0] for args, _ in queued) == sorted([never.pk, due.pk])
    assert all(0 <= countdown <= 300 for _, countdown in queued)


def test_a_claim_left_by_a_dead_worker_is_freed(settings: Any) -> None:
    registry = make("stuck")
    run = SyncRun.objects.create(registry=registry)
    Registry.objects.filter(pk=registry.pk).update(syncing_since=timezone.now() - timedelta(hours=3))
    assert tasks.free_stuck_syncs() == 1
    run.refresh_from_db()
    assert (run.status, run.error) == (SyncRun.Status.FAILED, "the worker stopped before finishing")
    assert Registry.objects.get(pk=registry.pk).syncing_since is None


def test_the_sync_task_syncs_the_registry_and_its_replicas(registry: RunningRegistry) -> None:
    image = im.base_image("tasked")
    registry.pusher().push_image("team/tasked", image, tags=["1"])
    connected = services.save_registry(
        Registry(name="tasked", kind="distribution", endpoint=registry.url), actor=None, public={}
    )
    Replica.objects.create(registry=connected, region="mirror", endpoint=registry.url)
    tasks.sync_registry.apply(args=[connected.pk, SyncRun.Trigger.MANUAL]).get()
    runs = SyncRun.objects.filter(registry=connected)
    assert sorted((run.replica is not None, run.status) for run in runs) == [
        (False, SyncRun.Status.SUCCEEDED),
        (True, SyncRun.Status.SUCCEEDED),
    ]
    assert Tag.objects.get(repository__name="team/tasked").artifact.digest == image.digest


def test_the_sync_task_returns_quietly_for_a_deleted_registry() -> None:
    tasks.sync_registry.apply(args=[999_999]).get()
    assert not SyncRun.objects.exists()


def test_offboardings_still_running_long_after_confirmation_are_queued_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queued: list[int] = []
    monkeypatch.setattr(tasks.run_offboarding, "delay", queued.append)
    now = timezone.now()
    person, other, done = factories.user(), factories.user(), factories.user()
    stalled = Offboarding.objects.create(
        person=person, state=Offboarding.State.RUNNING, confirmed_at=now - timedelta(hours=2)
    )
    Offboarding.objects.create(person=other, state=Offboarding.State.RUNNING, confirmed_at=now)
    Offboarding.objects.create(
        person=done, state=Offboarding.State.INCOMPLETE, confirmed_at=now - timedelta(hours=2)
    )
    assert tasks.resume_offboardings() == 1
    assert queued == [stalled.pk]


def test_the_lineage_task_decides_a_registrys_artifacts_and_skips_a_deleted_one() -> None:
    registry = make("built")
    artifact = factories.artifact(factories.repository(registry))
    assert tasks.refresh_lineage.apply(args=(999_999,)).get() == {}
    tasks.refresh_lineage.apply(args=(registry.pk,)).get()
    assert ArtifactLineage.objects.get(artifact=artifact).method == ArtifactLineage.Method.UNKNOWN


# --- Customs' own tokens reach the credential list as they change, without a full scan -------------------


class Copies:
    """Token copies run here as they are queued, through the task, on a clock the test moves."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.now = 0.0

    def queue(self, *, countdown: float) -> None:
        self.delays.append(countdown)
        tasks.copy_customs_tokens.apply().get()

    def wait(self) -> None:
        """As long as a queued copy waits to start: the next change queues another."""
        self.now += signals.COPY_DELAY


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> Copies:
    made = Copies()
    monkeypatch.setattr(tasks.copy_customs_tokens, "apply_async", made.queue)
    monkeypatch.setattr(signals, "monotonic", lambda: made.now)
    monkeypatch.setattr(signals, "PENDING", signals.Pending())
    return made


def customs_row(kind: str, pk: int) -> Credential:
    return Credential.objects.get(registry=None, native_id=f"customs:{kind}:{pk}")


def listed(client: Client, state: str) -> str:
    return client.get("/registries/credentials/", {"registry": "customs", "state": state}).content.decode()


def test_a_new_token_is_listed_at_once_and_gone_once_revoked(
    client: Client,
    reviewer: User,
    copies: Copies,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    client.force_login(reviewer)
    person = factories.user()
    with django_capture_on_commit_callbacks(execute=True):
        token, _ = factories.token(person, name="laptop-cli")
    assert copies.delays == [signals.COPY_DELAY]
    row = customs_row("personal-token", token.pk)
    assert (row.name, row.owner_user_id, row.enabled, row.gone_at) == ("laptop-cli", person.pk, True, None)
    assert "laptop-cli" in listed(client, "enabled")

    copies.wait()
    with django_capture_on_commit_callbacks(execute=True):
        account_services.revoke_token(token, actor=person)
    token.refresh_from_db()
    row.refresh_from_db()
    assert token.revoked_at is not None
    assert (row.enabled, row.gone_at) == (False, token.revoked_at)
    assert "laptop-cli" in listed(client, "gone")
    assert "laptop-cli" not in listed(client, "enabled")


def test_a_robot_token_is_listed_at_once_and_gone_once_revoked(
    copies: Copies, django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        robot, _ = factories.robot(name="ci-deploy")
    row = customs_row("robot-token", robot.pk)
    assert (row.name, row.gone_at) == ("robot$ci-deploy", None)
    copies.wait()
    with django_capture_on_commit_callbacks(execute=True):
        account_services.revoke_robot_token(robot, actor=None)
    robot.refresh_from_db()
    row.refresh_from_db()
    assert row.gone_at == robot.revoked_at is not None


def test_a_departure_revoking_every_token_at_once_takes_them_off_the_list(
    copies: Copies, django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks
) -> None:
    person = factories.user()
    with django_capture_on_commit_callbacks(execute=True):
        tokens = [factories.token(person)[0] for _ in range(2)]
    copies.wait()
    # Only the copy runs: the departure's other follow-up (offboarding) is not this test's.
    with django_capture_on_commit_callbacks() as follow_ups:
        account_services.deactivate_user(person, actor=None, reason="left", departed=True)
    assert signals.queue_copy in follow_ups
    signals.queue_copy()
    assert [customs_row("personal-token", token.pk).gone_at is not None for token in tokens] == [True, True]


def test_a_token_deleted_with_its_owner_is_marked_gone(
    copies: Copies, django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks
) -> None:
    person = factories.user()
    with django_capture_on_commit_callbacks(execute=True):
        token, _ = factories.token(person)
    copies.wait()
    with django_capture_on_commit_callbacks(execute=True):
        person.delete()
    assert customs_row("personal-token", token.pk).gone_at is not None


def test_changes_while_a_copy_waits_to_start_ride_on_it(
    copies: Copies, django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks
) -> None:
    person = factories.user()
    with django_capture_on_commit_callbacks(execute=True):
        first, _ = factories.token(person)
        second, _ = factories.token(person)
    assert copies.delays == [signals.COPY_DELAY]  # one copy for both
    assert customs_row("personal-token", second.pk).gone_at is None
    copies.now += signals.COALESCE - 0.5
    with django_capture_on_commit_callbacks(execute=True):
        account_services.revoke_token(first, actor=person)
    assert len(copies.delays) == 1
    copies.wait()
    with django_capture_on_commit_callbacks(execute=True):
        account_services.revoke_token(second, actor=person)
    assert len(copies.delays) == 2
    assert customs_row("personal-token", second.pk).gone_at is not None
