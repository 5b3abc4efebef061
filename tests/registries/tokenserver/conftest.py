"""Fixtures every token-server test shares."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from django.core.management import call_command

from registries.models import Registry, TokenSigningKey
from registries.tokenserver import keys
from registries.tokenserver.memory import MEMORY
from tests import factories
from tests.registries.harness import RunningRegistry, launch_registry

if TYPE_CHECKING:
    from pytest_django import Settings
    from pytest_django.live_server_helper import LiveServer


@pytest.fixture
def signing_key() -> TokenSigningKey:
    return keys.generate(actor=None)


@pytest.fixture(autouse=True)
def audit_tasks_inline() -> Iterator[None]:
    """Refusals are audited by a worker (audit.record_soon); here the task runs in the request."""
    from portal.celery import app

    before = app.conf.task_always_eager
    app.conf.update(task_always_eager=True)
    yield
    app.conf.update(task_always_eager=before)


@pytest.fixture
def customs_registry(
    live_server: LiveServer, tmp_path: Path, settings: Settings
) -> Iterator[tuple[Registry, RunningRegistry]]:
    """A registry whose auth is Customs: realm on the live server, bundle from the command.

    The token server remembers decisions as in production, emptied by PostgreSQL's notices.
    """
    settings.REGISTRY_TOKEN_CACHE_SECONDS = 60
    assert MEMORY.wait_until_listening(), "the token server's LISTEN connection did not come up"
    keys.generate(actor=None)
    out = io.StringIO()
    call_command("registry_token_keys", "bundle", stdout=out)
    bundle = tmp_path / "customs-bundle.pem"
    bundle.write_text(out.getvalue())
    registry = factories.registry(token_service="customs-e2e")
    token = {
        "realm": f"{live_server.url}/auth/token",
        "service": registry.token_service,
        "issuer": settings.REGISTRY_TOKEN_ISSUER,
        "rootcertbundle": str(bundle),
    }
    running = launch_registry(tmp_path / "registry", auth={"token": token})
    yield registry, running
    running.stop()
