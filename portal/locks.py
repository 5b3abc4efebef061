"""Named locks held until the surrounding transaction ends."""

from __future__ import annotations

from django.db import connection


def transaction_lock(name: str) -> None:
    """Wait for, then hold, the lock called `name` until the current transaction commits or rolls back.

    Call it inside transaction.atomic(). Two workers doing the same read-then-write (two scans
    opening the same new finding, two copies inserting the same row) then take turns, and the second
    reads what the first wrote. SQLite, the embedded default, serialises write transactions anyway.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [name])
