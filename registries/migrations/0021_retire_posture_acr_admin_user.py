"""The ACR admin user is found once, by hygiene (credential_shared_admin); posture only scores it.

Findings of the retired posture kind would stay open for ever, since no rule reconciles them any
more: resolve them now. Hygiene's finding for the same admin user is already open beside them.
"""

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps
from django.utils import timezone

RETIRED = "posture_acr_admin_user"


def resolve_retired(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    finding = apps.get_model("portal", "Finding")
    finding.objects.filter(kind=RETIRED, resolved_at=None).update(resolved_at=timezone.now())


class Migration(migrations.Migration):
    dependencies = [
        ("registries", "0020_artifact_provenance"),
        ("portal", "0003_finding_owners_notices"),
    ]

    operations = [migrations.RunPython(resolve_retired, migrations.RunPython.noop)]
