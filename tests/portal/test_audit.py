"""The audit trail: record() chains events, nothing rewrites them, and verify_chain() finds tampering."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from accounts.models import User
from portal import audit, requestid
from portal.audit import GENESIS_HASH, AuditAction, ChainBreak, Target
from portal.models import AuditChainHead, AuditEvent, AuditImmutable
from tests import factories

pytestmark = pytest.mark.django_db

on_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the append-only trigger and row locks exist only on PostgreSQL"
)


@contextmanager
def tampering() -> Iterator[CursorWrapper]:
    """A cursor that can rewrite the trail, as someone holding the table owner's rights could."""
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            yield cursor  # SQLite has no trigger: only the ORM refuses there
            return
        # Inside the test's transaction, so the trigger is back on for everyone else whatever happens.
        cursor.execute("ALTER TABLE portal_auditevent DISABLE TRIGGER portal_auditevent_append_only")
        yield cursor
        cursor.execute("ALTER TABLE portal_auditevent ENABLE TRIGGER portal_auditevent_append_only")


def _trail(n: int) -> list[AuditEvent]:
    return [audit.record(None, AuditAction.FINDINGS_RECONCILED, step=i) for i in range(n)]


# --- record() ----------------------------------------------------------------------------------


def test_the_first_event_links_to_the_genesis_hash() -> None:
    assert not AuditEvent.objects.exists()
    event = audit.record(None, AuditAction.BREAK_GLASS_CREATED)
    assert (event.sequence, event.prev_hash) == (1, GENESIS_HASH)


def test_each_event_links_to_the_one_before_it() -> None:
    first, second, third = _trail(3)
    assert (second.sequence, third.sequence) == (first.sequence + 1, first.sequence + 2)
    assert second.prev_hash == first.hash
    assert third.prev_hash == second.hash
    assert len({first.hash, second.hash, third.hash}) == 3


def test_the_chain_head_follows_the_newest_event() -> None:
    *_, last = _trail(2)
    head = AuditChainHead.objects.get(pk=1)
    assert (head.last_sequence, head.last_hash) == (last.sequence, last.hash)


def test_the_stored_hash_recomputes_from_the_stored_row() -> None:
    event = audit.record(None, AuditAction.FINDINGS_RECONCILED, kind="x", when=timezone.now(), ratio=0.25)
    stored = AuditEvent.objects.get(pk=event.pk)
    assert audit.event_hash(stored) == stored.hash == event.hash


def test_the_hash_covers_every_field() -> None:
    event = AuditEvent.objects.get(pk=audit.record(None, AuditAction.TOKEN_CREATED, name="ci").pk)
    changes: dict[str, Any] = {
        "sequence": event.sequence + 1,
        "at": event.at.replace(microsecond=(event.at.microsecond + 1) % 1_000_000),
        "actor_id": 42,
        "actor_label": "mallory",
        "action": "token.revoke",
        "target_type": "accounts.user",
        "target_id": "7",
        "target_label": "someone",
        "detail": {"name": "prod"},
        "request_id": "req-forged-0001",
        "prev_hash": "f" * 64,
    }
    for name, value in changes.items():
        forged = AuditEvent.objects.get(pk=event.pk)
        setattr(forged, name, value)
        assert audit.event_hash(forged) != event.hash, f"{name} is not covered by the hash"


def test_actor_and_target_are_snapshotted(admin: User) -> None:
    finding = factories.finding(summary="Stale robot account")
    event = audit.record(admin, AuditAction.FINDING_SUPPRESSED, target=finding, until="2031-01-01")
    assert (event.actor_id, event.actor_label) == (admin.pk, admin.username)
    assert (event.target_type, event.target_id) == ("portal.finding", str(finding.pk))
    assert event.target_label == str(finding)
    assert event.detail == {"until": "2031-01-01"}


def test_the_system_is_the_actor_when_there_is_none() -> None:
    event = audit.record(
        None, AuditAction.FINDINGS_RECONCILED, target=Target("registries.registry", "3", "ECR")
    )
    assert (event.actor_id, event.actor_label) == (None, "system")
    assert (event.target_type, event.target_id, event.target_label) == ("registries.registry", "3", "ECR")


def test_detail_is_stored_as_plain_json() -> None:
    when = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    event = audit.record(None, AuditAction.TOKEN_CREATED, expires=when, scopes=("read", "write"))
    stored = {"expires": "2031-01-02T03:04:05Z", "scopes": ["read", "write"]}
    assert event.detail == AuditEvent.objects.get(pk=event.pk).detail == stored


@pytest.mark.parametrize(
    "value", [0.1, 1.0, -0.0, 1.5e-7, 1e16, -2.5e20, 1.2345678901234567e25, 10**20, "\u00e9 \U0001f512"]
)
def test_detail_values_hash_the_same_after_the_database_round_trip(value: object) -> None:
    # jsonb rewrites numbers in its own notation; the hash must still match what is read back.
    audit.record(None, AuditAction.FINDINGS_RECONCILED, value=value)
    assert audit.verify_chain()[1] is None


def test_the_current_request_id_is_stored() -> None:
    requestid.set_current("req-test-audit-0001")
    try:
        event = audit.record(None, AuditAction.TOKEN_CREATED)
    finally:
        requestid.set_current("-")
    assert AuditEvent.objects.get(pk=event.pk).request_id == "req-test-audit-0001"


def test_outside_a_request_the_request_id_is_blank() -> None:
    requestid.set_current("-")
    assert audit.record(None, AuditAction.TOKEN_CREATED).request_id == ""


def _audit_then_fail() -> None:
    with transaction.atomic():
        audit.record(None, AuditAction.TOKEN_REVOKED)
        raise RuntimeError("the change failed after it was audited")


def test_an_event_rolled_back_with_its_change_leaves_no_gap() -> None:
    before = audit.record(None, AuditAction.TOKEN_CREATED)
    with pytest.raises(RuntimeError):
        _audit_then_fail()
    after = audit.record(None, AuditAction.TOKEN_CREATED)
    assert after.sequence == before.sequence + 1
    assert after.prev_hash == before.hash
    assert audit.verify_chain()[1] is None


def test_a_flushed_head_is_rebuilt_from_the_trails_tip() -> None:
    *_, tip = _trail(2)
    AuditChainHead.objects.all().delete()
    event = audit.record(None, AuditAction.TOKEN_CREATED)
    assert (event.sequence, event.prev_hash) == (tip.sequence + 1, tip.hash)
    assert audit.verify_chain() == (tip.sequence + 1, None)


# --- the ORM refuses changes -----------------------------------------------------------------


def test_saving_an_existing_event_is_refused() -> None:
    event = audit.record(None, AuditAction.TOKEN_CREATED)
    event.actor_label = "mallory"
    with pytest.raises(AuditImmutable):
        event.save()
    assert AuditEvent.objects.get(pk=event.pk).actor_label == "system"


def test_deleting_an_event_is_refused() -> None:
    event = audit.record(None, AuditAction.TOKEN_CREATED)
    with pytest.raises(AuditImmutable):
        event.delete()
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_queryset_update_and_delete_are_refused() -> None:
    event = audit.record(None, AuditAction.TOKEN_CREATED)
    event.actor_label = "mallory"
    # Each in its own savepoint: bulk_update's transaction has none, and would doom the test's.
    with pytest.raises(AuditImmutable), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(actor_label="mallory")
    with pytest.raises(AuditImmutable), transaction.atomic():
        AuditEvent.objects.all().delete()
    with pytest.raises(AuditImmutable), transaction.atomic():
        AuditEvent.objects.bulk_update([event], ["actor_label"])
    assert AuditEvent.objects.get(pk=event.pk).actor_label == "system"


# --- the database refuses changes (PostgreSQL) ---------------------------------------------------


@on_postgres
@pytest.mark.parametrize(
    ("statement", "operation"),
    [
        ("UPDATE portal_auditevent SET actor_label = 'mallory' WHERE sequence = %s", "UPDATE"),
        ("DELETE FROM portal_auditevent WHERE sequence = %s", "DELETE"),
    ],
)
def test_raw_sql_cannot_change_the_trail(statement: str, operation: str) -> None:
    event = audit.record(None, AuditAction.TOKEN_CREATED)
    refused = pytest.raises(DatabaseError, match=f"append-only \\({operation} refused\\)")
    with refused, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement, [event.sequence])
    assert AuditEvent.objects.get(pk=event.pk).actor_label == "system"


@on_postgres
def test_the_trigger_also_stops_code_that_goes_around_the_queryset() -> None:
    event = audit.record(None, AuditAction.TOKEN_CREATED)
    # _base_manager is a plain Manager: it skips AuditEventQuerySet's refusal, the trigger does not.
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent._base_manager.filter(pk=event.pk).update(actor_label="mallory")
    assert AuditEvent.objects.get(pk=event.pk).actor_label == "system"


# --- verify_chain() --------------------------------------------------------------------------


def test_an_empty_trail_verifies() -> None:
    assert audit.verify_chain() == (0, None)


def test_an_intact_trail_verifies() -> None:
    _trail(5)
    assert audit.verify_chain() == (5, None)


def test_edited_content_is_found() -> None:
    _trail(4)
    with tampering() as cursor:
        cursor.execute("UPDATE portal_auditevent SET actor_label = 'mallory' WHERE sequence = 2")
    assert audit.verify_chain() == (1, ChainBreak(2, "its content does not match its hash"))


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link() -> None:
    _trail(4)
    forged = AuditEvent.objects.get(sequence=2)
    forged.actor_label = "mallory"
    with tampering() as cursor:
        cursor.execute(
            "UPDATE portal_auditevent SET actor_label = %s, hash = %s WHERE sequence = 2",
            [forged.actor_label, audit.event_hash(forged)],
        )
    assert audit.verify_chain() == (2, ChainBreak(3, "its previous-hash does not match the event before it"))


def test_a_removed_event_is_found() -> None:
    _trail(4)
    with tampering() as cursor:
        cursor.execute("DELETE FROM portal_auditevent WHERE sequence = 2")
    assert audit.verify_chain() == (1, ChainBreak(2, "missing: the next event found is #3"))


def test_events_removed_from_the_end_are_found() -> None:
    _trail(4)
    with tampering() as cursor:
        cursor.execute("DELETE FROM portal_auditevent WHERE sequence >= 3")
    assert audit.verify_chain() == (2, ChainBreak(3, "missing: the chain head records 4 events"))


def _insert_forged_row(head: AuditChainHead) -> None:
    """Insert (which the trigger allows) a row after the tip with a made-up hash."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO portal_auditevent (sequence, at, actor_label, action, target_type, target_id,"
            " target_label, detail, request_id, prev_hash, hash)"
            " VALUES (%s, %s, 'mallory', 'role_binding.create', '', '', '', '{}', '', %s, %s)",
            [head.last_sequence + 1, timezone.now(), head.last_hash, "e" * 64],
        )


def test_a_forged_event_appended_with_raw_sql_is_found() -> None:
    _trail(2)
    head = AuditChainHead.objects.get(pk=1)
    _insert_forged_row(head)
    AuditChainHead.objects.filter(pk=1).update(last_sequence=head.last_sequence + 1, last_hash="e" * 64)
    assert audit.verify_chain() == (2, ChainBreak(3, "its content does not match its hash"))


def test_a_forged_event_beyond_the_head_is_found_even_when_the_head_was_left_alone() -> None:
    _trail(2)
    head = AuditChainHead.objects.get(pk=1)
    _insert_forged_row(head)
    assert audit.verify_chain() == (
        0,
        ChainBreak(3, "an event exists beyond the chain head (written around record())"),
    )


def test_a_head_that_disagrees_with_the_tip_is_found() -> None:
    _trail(3)
    AuditChainHead.objects.filter(pk=1).update(last_hash="d" * 64)
    assert audit.verify_chain() == (
        3,
        ChainBreak(3, "the last event's hash differs from the one the chain head recorded"),
    )


# --- concurrent writers (PostgreSQL) -------------------------------------------------------------


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_keep_one_unforked_chain() -> None:
    audit.record(None, AuditAction.BREAK_GLASS_CREATED)  # the head row exists, as the migration leaves it
    writers, per_writer = 6, 15
    start = threading.Barrier(writers)

    def write(writer: int) -> None:
        try:
            start.wait(timeout=30)
            for step in range(per_writer):
                audit.record(None, AuditAction.FINDINGS_RECONCILED, writer=writer, step=step)
        finally:
            connection.close()  # each thread opened its own connection

    with ThreadPoolExecutor(max_workers=writers) as pool:
        for future in [pool.submit(write, n) for n in range(writers)]:
            future.result(timeout=60)  # re-raises a writer's exception here
    total = 1 + writers * per_writer
    assert audit.verify_chain() == (total, None)
    events = list(AuditEvent.objects.order_by("sequence"))
    assert [e.sequence for e in events] == list(range(1, total + 1))
    for writer in range(writers):
        steps = [e.detail["step"] for e in events if e.detail.get("writer") == writer]
        assert steps == list(range(per_writer)), f"writer {writer}'s events are out of order or lost"


def test_record_soon_falls_back_to_the_request_when_no_broker_takes_the_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from portal import tasks

    def refuse(*args: object, **kwargs: object) -> None:
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(tasks.append_audit_event, "apply_async", refuse)
    audit.record_soon(None, AuditAction.REGISTRY_TOKEN_DENIED, reason="bad credentials", username="x")
    event = AuditEvent.objects.get(action=AuditAction.REGISTRY_TOKEN_DENIED)
    assert event.detail["username"] == "x"
    assert event.detail["occurred_at"]
    assert audit.verify_chain()[1] is None
