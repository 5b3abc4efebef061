"""Fixtures that run real registry software on loopback; the machinery lives in harness.py.

Each registry fixture is function-scoped: a registry is up in ~30 ms, and a fresh one keeps
`_catalog` assertions free of other tests' repositories.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Protocol

import pytest

from tests.fakes.harbor import FakeHarbor
from tests.registries.harness import (
    BASIC_PASSWORD,
    BASIC_USER,
    PUSHER,
    PUSHER_PASSWORD,
    Notifications,
    RunningRegistry,
    Skopeo,
    TokenServer,
    WebhookSink,
    htpasswd_config,
    launch_registry,
)

AuthKind = Literal["none", "basic", "token"]


class StartRegistry(Protocol):
    def __call__(
        self,
        *,
        auth: AuthKind = "none",
        notifications: Notifications | None = None,
        token_server: TokenServer | None = None,
        **sections: Any,
    ) -> RunningRegistry: ...


@pytest.fixture
def start_registry(tmp_path: Path) -> Iterator[StartRegistry]:
    """A factory for registries (replicas, notifications, odd configs), all stopped at teardown.

    `auth="basic"` sets credentials (BASIC_USER, BASIC_PASSWORD); `auth="token"` starts a token
    server (or uses `token_server`) and sets credentials (PUSHER, PUSHER_PASSWORD). Any other
    keyword is a top-level config section replacing the default one, e.g. `storage={...}`.
    """
    started: list[RunningRegistry] = []

    def start(
        *,
        auth: AuthKind = "none",
        notifications: Notifications | None = None,
        token_server: TokenServer | None = None,
        **sections: Any,
    ) -> RunningRegistry:
        workdir = tmp_path / f"registry-{len(started)}"
        workdir.mkdir()
        auth_section, credentials, own_server = None, None, None
        if auth == "basic":
            auth_section = htpasswd_config(workdir, {BASIC_USER: BASIC_PASSWORD})
            credentials = (BASIC_USER, BASIC_PASSWORD)
        elif auth == "token":
            if token_server is None:
                token_server = own_server = TokenServer(workdir)
            auth_section, credentials = token_server.auth_config(), (PUSHER, PUSHER_PASSWORD)
        try:
            running = launch_registry(workdir, auth=auth_section, notifications=notifications, **sections)
        except BaseException:
            if own_server:
                own_server.stop()
            raise
        running.credentials, running.token_server = credentials, token_server
        if own_server:
            running.stop_with(own_server.stop)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def registry(start_registry: StartRegistry) -> RunningRegistry:
    """An anonymous registry: no auth, deletes enabled, filesystem storage in tmp_path."""
    return start_registry()


@pytest.fixture
def basic_registry(start_registry: StartRegistry) -> RunningRegistry:
    """A registry behind htpasswd; `.credentials` is the one valid (user, password)."""
    return start_registry(auth="basic")


@pytest.fixture
def token_registry(start_registry: StartRegistry) -> RunningRegistry:
    """A registry behind token auth; `.token_server` mints tokens, `.credentials` may do anything."""
    return start_registry(auth="token")


@pytest.fixture
def webhook_sink() -> Iterator[WebhookSink]:
    """A loopback receiver for registry notifications; pass `Notifications(webhook_sink.url)`."""
    sink = WebhookSink()
    yield sink
    sink.stop()


@pytest.fixture
def skopeo(tmp_path: Path) -> Skopeo:
    return Skopeo(tmp_path / "skopeo")


@pytest.fixture
def harbor(registry: RunningRegistry) -> Iterator[FakeHarbor]:
    """The fake Harbor in front of a real registry; fails the test if it saw a shape Harbor does not use."""
    fake = FakeHarbor(registry_url=registry.url).start()
    yield fake
    fake.stop()
    assert not fake.drift, "the fake saw a shape Harbor does not use:\n" + "\n".join(fake.drift)
