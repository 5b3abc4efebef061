"""Tell token servers when anything their decisions rest on changes (PostgreSQL only).

Each web process keeps recent registry-token decisions in memory and forgets them all when
PostgreSQL says, through LISTEN/NOTIFY, that a token, person, membership, group, role binding,
rule, registry or signing key changed. Statement-level triggers catch every write path, bulk
updates and cascades included, which model signals would not. Column lists leave out writes that
change no decision (last use, last sign-in, sync times), so they do not empty the memory.
"""

from __future__ import annotations

from django.db import migrations

CHANNEL = "customs_access"

# (table, the UPDATE OF columns that matter; None: any update)
WATCHED = [
    ("accounts_user", "status, is_active, is_superuser, username"),
    ("accounts_personaltoken", "revoked_at, expires_at, digest, lookup, kind, owner_id"),
    ("accounts_robottoken", "revoked_at, expires_at, digest, lookup, group_id, name"),
    ("accounts_groupmembership", "user_id, group_id"),
    ("accounts_directorygroup", None),
    ("accounts_rolebinding", None),
    ("registries_accessrule", None),
    ("registries_registry", "token_service"),
    ("registries_tokensigningkey", None),
]


def create(apps, schema_editor):  # noqa: ANN001  (migration signature)
    if schema_editor.connection.vendor != "postgresql":
        return  # SQLite (the local run) has no NOTIFY: the token server then keeps no memory
    schema_editor.execute(
        "CREATE OR REPLACE FUNCTION customs_access_changed() RETURNS trigger AS $$ "
        f"BEGIN PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME); RETURN NULL; END $$ LANGUAGE plpgsql"
    )
    for table, columns in WATCHED:
        update = f"UPDATE OF {columns}" if columns else "UPDATE"
        schema_editor.execute(
            f"CREATE TRIGGER customs_access_changed AFTER INSERT OR {update} OR DELETE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION customs_access_changed()"
        )
        schema_editor.execute(
            f"CREATE TRIGGER customs_access_truncated AFTER TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION customs_access_changed()"
        )


def drop(apps, schema_editor):  # noqa: ANN001
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, _ in WATCHED:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS customs_access_changed ON {table}")
        schema_editor.execute(f"DROP TRIGGER IF EXISTS customs_access_truncated ON {table}")
    schema_editor.execute("DROP FUNCTION IF EXISTS customs_access_changed()")


class Migration(migrations.Migration):
    dependencies = [
        ("registries", "0008_credentials"),
        ("accounts", "0003_robot_tokens"),
    ]

    operations = [migrations.RunPython(create, drop)]
