"""Tasks run through a real Celery worker process on Redis, against the test database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings

from portal import audit, requestid
from portal.apps import ensure_embedded_broker_folders
from portal.audit import AuditAction
from portal.celery import app as celery_app
from portal.models import AuditChainHead, AuditEvent, Finding
from portal.tasks import verify_audit_chain

ROOT = Path(__file__).resolve().parents[2]


def _redis_broker() -> str:
    broker = settings.CELERY_BROKER_URL
    if not broker.startswith("redis://"):
        message = f"CELERY_BROKER_URL is {broker!r}; `make test` points it at Redis"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI must exercise the real broker, never skip it
        pytest.skip(message)
    return broker


@pytest.fixture(scope="module")
def worker(django_db_setup: None, django_db_blocker: Any) -> Iterator[subprocess.Popen[bytes]]:
    broker = _redis_broker()
    database = connection.settings_dict
    env = os.environ | {
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        "CELERY_BROKER_URL": broker,
        "CELERY_RESULT_BACKEND": settings.CELERY_RESULT_BACKEND or broker,
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "portal",
            "worker",
            "--pool",
            "solo",
            "--loglevel",
            "INFO",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "--hostname",
            f"test-{os.getpid()}@%h",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        _wait_until_ready(process)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_until_ready(process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the Celery worker exited with {process.returncode}")
        if celery_app.control.ping(timeout=1):
            return
    pytest.fail("the Celery worker did not answer a ping within 60 s")


def _forge_broken_tip() -> int:
    """Append a row whose hash is wrong, the way someone editing the table directly would."""
    head = AuditChainHead.objects.get(pk=1)
    forged = AuditEvent(
        sequence=head.last_sequence + 1,
        actor_label="mallory",
        action="token.revoke",
        prev_hash=head.last_hash,
        hash="f" * 64,
    )
    forged.save()
    head.last_sequence, head.last_hash = forged.sequence, forged.hash
    head.save()
    return forged.sequence


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_worker_verifies_the_chain_and_opens_the_tamper_finding(worker: subprocess.Popen[bytes]) -> None:
    audit.record(None, AuditAction.BREAK_GLASS_CREATED)
    assert verify_audit_chain.delay().get(timeout=60) >= 1
    assert not Finding.objects.filter(kind="audit_chain_broken").exists()

    broken_at = _forge_broken_tip()
    requestid.set_current("req-from-the-web-0042")
    verify_audit_chain.delay().get(timeout=60)

    finding = Finding.objects.get(kind="audit_chain_broken")
    assert finding.resolved_at is None
    assert finding.detail["first_broken_sequence"] == broken_at
    # The request id travelled with the task into the worker's audit event.
    reconcile_event = AuditEvent.objects.filter(action=AuditAction.FINDINGS_RECONCILED).latest("sequence")
    assert reconcile_event.request_id == "req-from-the-web-0042"


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_beat_schedule_names_tasks_the_worker_knows(worker: subprocess.Popen[bytes]) -> None:
    registered = celery_app.control.inspect(timeout=5).registered() or {}
    known = {name for names in registered.values() for name in names}
    for entry in celery_app.conf.beat_schedule.values():
        assert entry["task"] in known


def test_the_embedded_broker_folders_exist_before_anything_is_queued(tmp_path: Path) -> None:
    # `make demo` queues drift checks from a management command, before any worker has started.
    folders = {
        "data_folder_in": tmp_path / "in",
        "data_folder_out": tmp_path / "in",
        "control_folder": tmp_path / "c",
    }
    options = {key: str(path) for key, path in folders.items()}
    with override_settings(CELERY_BROKER_URL="filesystem://", CELERY_BROKER_TRANSPORT_OPTIONS=options):
        ensure_embedded_broker_folders()
    assert (tmp_path / "in").is_dir()
    assert (tmp_path / "c").is_dir()
