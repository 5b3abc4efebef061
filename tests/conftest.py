"""Suite-wide setup: loopback only, and the fixed cast every test can use."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from accounts.models import User
from accounts.roles import Role
from tests import factories

LOOPBACK = ("127.0.0.1", "::1", "localhost")
_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


class NetworkBlocked(RuntimeError):
    pass


def _check(address: Any) -> None:
    # Unix sockets (strings) and loopback pass; PostgreSQL's libpq connects outside Python's socket module.
    if isinstance(address, tuple) and address[0] not in LOOPBACK:
        raise NetworkBlocked(f"test tried to reach {address[0]}; mock portal.http or the SDK client")


def _loopback_only(sock: socket.socket, address: Any) -> None:
    _check(address)
    _connect(sock, address)


def _loopback_only_ex(sock: socket.socket, address: Any) -> int:
    _check(address)
    return _connect_ex(sock, address)


def pytest_configure(config: pytest.Config) -> None:
    socket.socket.connect = _loopback_only  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = _loopback_only_ex  # type: ignore[method-assign,assignment]
    # WhiteNoise warns on every request when STATIC_ROOT is missing; collectstatic makes it in production.
    from django.conf import settings

    Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)
    # Dummy cloud credentials keep any SDK off real ones.
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
    )


@pytest.fixture
def admin(db: None) -> User:
    """An admin through a directory-group binding, the way people get the role in production."""
    return factories.user_with_role(Role.ADMIN)


@pytest.fixture
def reviewer(db: None) -> User:
    return factories.user_with_role(Role.REVIEWER)


@pytest.fixture
def developer(db: None) -> User:
    return factories.user_with_role(Role.DEVELOPER)


@pytest.fixture
def cast(admin: User, reviewer: User, developer: User) -> dict[str, User | None]:
    return {"admin": admin, "reviewer": reviewer, "developer": developer, "anonymous": None}


@pytest.fixture(autouse=True)
def _fresh_token_server_memory(settings: Any) -> Iterator[None]:
    """The token server's per-process memory must not outlive a test's data.

    Its decision memory is off by default here: it is emptied by PostgreSQL NOTIFY, which fires on
    commit, and most tests never commit. tests/registries/tokenserver/test_memory.py and the
    end-to-end tests turn it on and commit for real.
    """
    from registries.tokenserver import issue, keys, views
    from registries.tokenserver.memory import MEMORY

    settings.REGISTRY_TOKEN_CACHE_SECONDS = 0
    keys.forget_signer()
    views.forget_services()
    MEMORY.forget_all()
    issue.REFUSALS.forget()
    yield
    keys.forget_signer()
    views.forget_services()
    MEMORY.forget_all()
    issue.REFUSALS.forget()


@pytest.fixture(scope="session", autouse=True)
def _stop_access_listener(django_db_setup: None) -> Iterator[None]:
    """The token server's LISTEN connection must be closed before the test database is dropped."""
    yield
    from registries.tokenserver.memory import MEMORY

    MEMORY.stop()
