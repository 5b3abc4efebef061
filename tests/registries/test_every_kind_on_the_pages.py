from __future__ import annotations

import pytest

from registries.models import Credential, Grant, Registry, ReplicationLink, Repository, Tag
from tests.fakes.aws import (
    aws_answers_fixture,  # noqa: F401
    aws_requests_fixture,  # noqa: F401
    moto_fixture,  # noqa: F401
    moto_server_fixture,  # noqa: F401
)
from tests.registries import test_sync_reads_only as source

pytestmark = pytest.mark.django_db

KINDS = dict(source.KINDS, ecr=source.ecr)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_dump(kind: str, request: pytest.FixtureRequest) -> None:
    KINDS[kind](request)
    reg = Registry.objects.get()
    print("\n=====", kind, reg.name, reg.endpoint, reg.region)
    for r in Repository.objects.all():
        print("  repo", r.name, list(Tag.objects.filter(repository=r).values_list("name", flat=True)))
    for c in Credential.objects.all():
        print("  cred", c.kind, c.name, c.native_id)
    for g in Grant.objects.all():
        print("  grant", g.principal_kind, g.principal_id, g.principal_name, g.scope, g.source)
    for l in ReplicationLink.objects.all():
        print("  repl", l.kind, l.name, l.location, l.url)
