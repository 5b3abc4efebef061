"""Storing decisions as ArtifactLineage rows: only those new or changed, in bulk."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from django.db import connection, transaction
from django.db.models import Field

from registries.models import ArtifactLineage
from registries.policy.lineage.base import CHUNK, Decision

# Decision.row's order; the one place lineage names ArtifactLineage's columns.
_COLUMNS = ("method", "base_reference", "base_digest", "base_image", "matched_layers", "base_created")
_ROW_ATTRIBUTES = tuple(f"{name}_id" if name == "base_image" else name for name in _COLUMNS)


def store(decisions: Mapping[int, Decision], now: datetime, *, set_based: bool | None = None) -> int:
    """Write the decisions that are new or changed, in bulk; returns how many were written.

    On PostgreSQL the decisions are copied into a temporary table and one statement inserts or
    updates the rows that differ: at 100,000 artifacts that is a third of the time of bulk_create
    (which builds a model instance per row) plus reading the stored rows back to compare. Elsewhere
    (SQLite, the embedded default) the stored rows are compared in Python and bulk_create upserts.
    """
    if set_based is None:
        set_based = connection.vendor == "postgresql"
    with transaction.atomic():
        return _store_set_based(decisions, now) if set_based else _store_by_rows(decisions, now)


def _column(name: str) -> str:
    field = ArtifactLineage._meta.get_field(name)
    assert isinstance(field, Field)
    return connection.ops.quote_name(field.column)


_STAGE = "customs_lineage_decisions"


def _store_set_based(decisions: Mapping[int, Decision], now: datetime) -> int:
    columns = ["artifact", *_COLUMNS, "decided_at"]
    names = ", ".join(_column(name) for name in columns)
    table = connection.ops.quote_name(ArtifactLineage._meta.db_table)
    key = _column("artifact")
    changed = " OR ".join(f"l.{_column(name)} IS DISTINCT FROM s.{_column(name)}" for name in _COLUMNS)
    updates = ", ".join(f"{_column(name)} = EXCLUDED.{_column(name)}" for name in (*_COLUMNS, "decided_at"))
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE {_STAGE} (LIKE {table})")
        with cursor.cursor.copy(f"COPY {_STAGE} ({names}) FROM STDIN") as copy:
            for pk, decision in decisions.items():
                copy.write_row((pk, *decision.row, now))
        cursor.execute(
            f"INSERT INTO {table} ({names}) SELECT {', '.join(f's.{_column(n)}' for n in columns)} "  # noqa: S608
            f"FROM {_STAGE} s LEFT JOIN {table} l ON l.{key} = s.{key} WHERE l.{key} IS NULL OR {changed} "
            f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
        )
        written = int(cursor.rowcount)
        cursor.execute(f"DROP TABLE {_STAGE}")
    return written


def _store_by_rows(decisions: Mapping[int, Decision], now: datetime) -> int:
    stored = ArtifactLineage.objects.filter(artifact_id__in=list(decisions)).values_list(
        "artifact_id", *_ROW_ATTRIBUTES
    )
    existing = {row[0]: row[1:] for row in stored.iterator(CHUNK)}
    changed = [
        ArtifactLineage(
            artifact_id=pk, decided_at=now, **dict(zip(_ROW_ATTRIBUTES, decision.row, strict=True))
        )
        for pk, decision in decisions.items()
        if existing.get(pk) != decision.row
    ]
    ArtifactLineage.objects.bulk_create(
        changed,
        batch_size=2000,
        update_conflicts=True,
        unique_fields=["artifact"],
        update_fields=[*_COLUMNS, "decided_at"],
    )
    return len(changed)
