"""The fast bulk reader returns exactly what the ORM's values() does, only sooner."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from portal import bulkread
from registries.models import Credential
from tests import factories

pytestmark = pytest.mark.django_db

FIELDS = ("pk", "registry__name", "created_at", "expires_at", "actions", "actions_seen", "scopes", "enabled")


def test_rows_equal_the_orm_values_including_times_json_and_relations() -> None:
    registry = factories.registry()
    factories.registry_credential(
        registry,
        created_at=datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC),
        expires_at=None,
        actions=["pull", "push"],
        actions_seen={"pull": "2026-11-01T00:00:00+00:00"},
        scopes=["repository:team/app:pull"],
    )
    factories.registry_credential(registry, created_at=None, actions=[], actions_seen={}, enabled=False)
    queryset = Credential.objects.order_by("pk")
    fast = list(bulkread.rows(queryset, FIELDS))
    assert fast == list(queryset.values(*FIELDS))
    assert fast[0]["created_at"].utcoffset().total_seconds() == 0
    assert fast[0]["actions_seen"] == {"pull": "2026-11-01T00:00:00+00:00"}
    # Empty JSON values are fresh objects: a caller changing one changes no other row.
    fast[1]["actions"].append("pull")
    assert list(bulkread.rows(queryset, FIELDS))[1]["actions"] == []
