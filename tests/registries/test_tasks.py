"""The registry tasks' wiring: ids in, plain functions called, schedules spread out."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from registries import services, tasks
from registries.demo import images as im
from registries.models import ArtifactLineage, Offboarding, Registry, Replica, SyncRun, Tag
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
