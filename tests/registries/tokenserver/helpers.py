"""Shared set-up for token-server tests: a registry behind Customs, people, groups and rules."""

from __future__ import annotations

import base64

from accounts.models import DirectoryGroup, PersonalToken, User
from registries.models import AccessRule, Registry
from tests import factories


def rule(group: DirectoryGroup, registry: Registry, pattern: str, *actions: str) -> AccessRule:
    return factories.access_rule(group, pattern, *actions, registry=registry)


def registry_token(owner: User, **fields: object) -> str:
    _, secret = factories.token(owner, kind=PersonalToken.Kind.REGISTRY, **fields)
    return secret


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()
