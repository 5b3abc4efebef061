"""`manage.py sync_registry`: a foreground sync, then the registry's hygiene scan, as the sync task does."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from portal.models import Finding
from registries import hygiene, services
from registries.demo import images as im
from registries.models import Registry
from tests import factories
from tests.registries.harness import RunningRegistry

pytestmark = pytest.mark.django_db


def test_a_successful_sync_scans_the_registry_before_the_command_returns(registry: RunningRegistry) -> None:
    registry.pusher().push_image("team/app", im.base_image("synced-by-command"), tags=["1"])
    connected = services.save_registry(
        Registry(name="synced-here", kind="distribution", endpoint=registry.url), actor=None, public={}
    )
    # A distribution registry reports no credentials, so the sync leaves this row as it is for the scan.
    credential = factories.registry_credential(
        connected, shared_admin=True, owner_id="ci-bot", expiry_known=False
    )
    out = StringIO()
    call_command("sync_registry", "synced-here", stdout=out)
    sync_line, scan_line = out.getvalue().splitlines()
    assert sync_line.startswith("synced-here: 1 repositories, 1 tags")
    assert re.fullmatch(
        r"synced-here: hygiene scan: 2 open findings "
        r"\(credential_orphaned 1, credential_shared_admin 1\) in \d+\.\d s",
        scan_line,
    )
    raised = Finding.objects.filter(subject_type="registries.credential", subject_id=str(credential.pk))
    assert sorted(raised.values_list("kind", flat=True)) == [hygiene.ORPHANED.slug, hygiene.SHARED_ADMIN.slug]


def test_a_failed_sync_scans_nothing() -> None:
    unreachable = factories.registry(name="unreachable")  # nothing listens there
    factories.registry_credential(unreachable, shared_admin=True, owner_id="ci-bot")
    out = StringIO()
    with pytest.raises(CommandError, match="sync of unreachable failed"):
        call_command("sync_registry", "unreachable", stdout=out)
    assert "hygiene scan" not in out.getvalue()
    assert not Finding.objects.exists()
