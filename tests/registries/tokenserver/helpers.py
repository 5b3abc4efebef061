"""Shared set-up for token-server tests: a registry behind Customs, people, groups and rules."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

from accounts.models import DirectoryGroup, PersonalToken, User
from registries.demo.images import Pusher, RegistryError, base_image
from registries.models import AccessRule, Registry
from registries.tokenserver.memory import MEMORY
from tests import factories
from tests.registries.harness import RunningRegistry

REPOSITORY = "team/app"  # where the end-to-end tests push and pull


def rule(group: DirectoryGroup, registry: Registry, pattern: str, *actions: str) -> AccessRule:
    return factories.access_rule(group, pattern, *actions, registry=registry)


def registry_token(owner: User, **fields: object) -> str:
    _, secret = factories.token(owner, kind=PersonalToken.Kind.REGISTRY, **fields)
    return secret


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def forgotten_after(change: Callable[[], Any]) -> None:
    """Make a committed change, then wait for PostgreSQL's notice to empty the token server's memory.

    The notice travels on the listener's own connection, so it lands a moment after the commit:
    waiting for it keeps "refused at the next request" from racing that moment.
    """
    before = MEMORY.generation
    change()
    deadline = time.monotonic() + 5
    while MEMORY.generation == before:
        assert time.monotonic() < deadline, "no notice arrived within 5 s of the commit"
        time.sleep(0.005)


def push(running: RunningRegistry, username: str, secret: str, version: str = "1") -> int:
    try:
        Pusher(running.url, auth=(username, secret)).push_image(
            REPOSITORY, base_image("e2e", version=version), tags=[f"v{version}"]
        )
    except RegistryError as error:
        return error.status
    return 201
