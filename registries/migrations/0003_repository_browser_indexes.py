"""Indexes that keep the repository browser fast at 100,000+ repositories on PostgreSQL.

- name search (icontains is UPPER(name) LIKE '%…%'): a trigram index on UPPER(name);
- last push / last pull, newest first with never-pushed last: the exact order the browser sorts by.
SQLite (the local run) keeps the plain indexes: the same queries work there, just without these.
"""

from django.db import migrations, transaction

INDEXES = [
    "CREATE INDEX IF NOT EXISTS registries_repository_pushed_order"
    " ON registries_repository (last_pushed_at DESC NULLS LAST, id DESC)",
    "CREATE INDEX IF NOT EXISTS registries_repository_pulled_order"
    " ON registries_repository (last_pulled_at DESC NULLS LAST, id DESC)",
]
TRIGRAM = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS registries_repository_name_trgm"
    " ON registries_repository USING gin (UPPER(name) gin_trgm_ops)",
]
DROP = [
    "DROP INDEX IF EXISTS registries_repository_pushed_order",
    "DROP INDEX IF EXISTS registries_repository_pulled_order",
    "DROP INDEX IF EXISTS registries_repository_name_trgm",
]


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for sql in INDEXES:
        schema_editor.execute(sql, params=None)
    try:
        # pg_trgm is a trusted extension (PostgreSQL 13+); a role that may not create it only loses
        # the faster name search, so the migration carries on without it.
        with transaction.atomic(using=schema_editor.connection.alias):
            for sql in TRIGRAM:
                schema_editor.execute(sql, params=None)
    except Exception as exc:  # noqa: BLE001
        print(f"  skipped the trigram index for repository search: {exc}")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for sql in DROP:
            schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    dependencies = [("registries", "0002_webhook_occurred_at")]

    operations = [migrations.RunPython(create, drop)]
