"""Seed the audit chain's head row, and on PostgreSQL make the trail append-only in the database too."""

from django.db import migrations

GENESIS_HASH = "0" * 64

FORBID_CHANGES = """
CREATE FUNCTION customs_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER portal_auditevent_append_only
    BEFORE UPDATE OR DELETE ON portal_auditevent
    FOR EACH ROW EXECUTE FUNCTION customs_audit_append_only();
"""

ALLOW_CHANGES = """
DROP TRIGGER IF EXISTS portal_auditevent_append_only ON portal_auditevent;
DROP FUNCTION IF EXISTS customs_audit_append_only();
"""


def seed_head(apps, schema_editor):
    apps.get_model("portal", "AuditChainHead").objects.get_or_create(
        pk=1, defaults={"last_sequence": 0, "last_hash": GENESIS_HASH}
    )


def install_trigger(apps, schema_editor):
    # SQLite (the local run) relies on the ORM's refusal alone.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORBID_CHANGES, params=None)


def remove_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(ALLOW_CHANGES, params=None)


class Migration(migrations.Migration):
    dependencies = [("portal", "0001_initial")]

    operations = [
        migrations.RunPython(seed_head, migrations.RunPython.noop),
        migrations.RunPython(install_trigger, remove_trigger),
    ]
