"""`manage.py verify_audit`: exit 0 with a count on an intact trail, exit 1 naming the first broken event."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path
from urllib.parse import quote

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from portal import audit
from portal.audit import AuditAction
from portal.models import AuditChainHead

ROOT = Path(__file__).resolve().parents[2]

on_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the subprocess needs a database another process can open"
)


def _trail(n: int) -> None:
    for step in range(n):
        audit.record(None, AuditAction.FINDINGS_RECONCILED, step=step)


def _forge_event(*, prev_hash: str = "") -> int:
    """Append a row with raw SQL and move the head onto it, as someone with INSERT rights could."""
    head = AuditChainHead.objects.get(pk=1)
    sequence, at = head.last_sequence + 1, timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO portal_auditevent (sequence, at, actor_label, action, target_type, target_id,"
            " target_label, detail, request_id, prev_hash, hash)"
            " VALUES (%s, %s, 'mallory', 'role_binding.create', '', '', '', '{}', '', %s, %s)",
            [sequence, at, prev_hash or head.last_hash, "f" * 64],
        )
    AuditChainHead.objects.filter(pk=1).update(last_sequence=sequence, last_hash="f" * 64)
    return sequence


def _verify() -> str:
    out = StringIO()
    call_command("verify_audit", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_an_intact_trail_exits_zero_with_the_count() -> None:
    _trail(3)
    assert _verify() == "audit chain intact: 3 events verified\n"


@pytest.mark.django_db
def test_an_empty_trail_is_intact() -> None:
    assert _verify() == "audit chain intact: 0 events verified\n"


@pytest.mark.django_db
def test_a_forged_row_fails_with_returncode_1_naming_it() -> None:
    _trail(3)
    forged = _forge_event()
    with pytest.raises(CommandError) as raised:
        _verify()
    assert raised.value.returncode == 1
    assert str(raised.value) == (
        f"audit chain broken at event #{forged}: its content does not match its hash "
        "(3 events before it verified)"
    )


@pytest.mark.django_db
def test_the_first_break_is_named_when_events_follow_it() -> None:
    _trail(2)
    forged = _forge_event()
    _trail(2)  # record() links to the forged row's hash, so only the forgery itself is broken
    with pytest.raises(CommandError, match=f"broken at event #{forged}: its content") as raised:
        _verify()
    assert raised.value.returncode == 1


@pytest.mark.django_db
def test_a_row_that_does_not_link_to_its_predecessor_is_named() -> None:
    _trail(2)
    forged = _forge_event(prev_hash=audit.GENESIS_HASH)
    with pytest.raises(CommandError, match=f"#{forged}: its previous-hash does not match"):
        _verify()


# --- as an operator runs it --------------------------------------------------------------------


def _run_verify_audit() -> subprocess.CompletedProcess[str]:
    database = connection.settings_dict
    password = f":{quote(database['PASSWORD'], safe='')}" if database["PASSWORD"] else ""
    url = f"postgres://{database['USER']}{password}@{database['HOST']}:{database['PORT']}/{database['NAME']}"
    return subprocess.run(
        [sys.executable, "manage.py", "verify_audit"],
        cwd=ROOT,
        env=os.environ | {"DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@on_postgres
@pytest.mark.django_db(transaction=True)
def test_the_command_line_exit_status_follows_the_chain() -> None:
    _trail(2)
    intact = _run_verify_audit()
    assert (intact.returncode, intact.stdout) == (0, "audit chain intact: 2 events verified\n")

    forged = _forge_event()
    broken = _run_verify_audit()
    assert broken.returncode == 1
    assert f"audit chain broken at event #{forged}" in broken.stderr
    assert broken.stdout == ""
