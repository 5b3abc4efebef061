"""Fixtures every token-server test shares."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from registries.models import TokenSigningKey
from registries.tokenserver import keys


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
