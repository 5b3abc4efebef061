"""Deciding what a token grants, and signing it the way distribution 2.8 verifies it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from django.conf import settings

from accounts.models import User
from accounts.roles import Role
from portal import audit, metrics
from portal.audit import AuditAction
from registries.effective import user_access
from registries.models import AccessRule, Registry, TokenSigningKey
from registries.patterns import is_valid_repository_name
from registries.tokenserver import keys
from registries.tokenserver.scopes import Scope

REPOSITORY_ACTIONS = frozenset(AccessRule.ACTIONS)


@dataclass(frozen=True)
class Grant:
    """One scope as asked, and the actions granted for it (possibly none)."""

    asked: Scope
    actions: tuple[str, ...]

    @property
    def complete(self) -> bool:
        # "*" asks for whatever the person has (skopeo's delete opens with it), so it is never a denial.
        return "*" in self.asked.actions or set(self.asked.actions) <= set(self.actions)

    def claim(self) -> dict[str, Any]:
        return {"type": self.asked.type, "name": self.asked.name, "actions": list(self.actions)}


def grant(user: User | None, registry: Registry, scope: Scope) -> Grant:
    """The requested actions this person may have; unknown types, actions and bad names get none."""
    if user is None:
        return Grant(scope, ())  # Customs has no anonymous access
    if scope.type == "registry" and scope.name == "catalog":
        allowed = "*" in scope.actions and user.has_role(Role.ADMIN)
        return Grant(scope, ("*",) if allowed else ())
    # A host prefix never matches: the registry compares access names without one (B7).
    if scope.type != "repository" or not is_valid_repository_name(scope.name):
        return Grant(scope, ())
    has = user_access(user, registry, scope.name).actions
    wanted = REPOSITORY_ACTIONS if "*" in scope.actions else set(scope.actions)
    return Grant(scope, tuple(a for a in AccessRule.ACTIONS if a in wanted and a in has))


def grants(user: User | None, registry: Registry, scopes: Iterable[Scope]) -> list[Grant]:
    return [grant(user, registry, scope) for scope in scopes]


def sign(
    signing_key: TokenSigningKey,
    *,
    subject: str,
    service: str,
    granted: Iterable[Grant],
    now: int | None = None,
) -> tuple[str, int]:
    """(JWT, issued-at seconds) carrying exactly the claims distribution 2.8 checks."""
    issued = int(time.time()) if now is None else now
    claims = {
        "iss": settings.REGISTRY_TOKEN_ISSUER,
        "sub": subject,
        "aud": service,  # a string: 2.8 cannot unmarshal a list
        "exp": issued + settings.REGISTRY_TOKEN_LIFETIME_SECONDS,
        "nbf": issued - 5,
        "iat": issued,
        "jti": uuid.uuid4().hex,
        "access": [g.claim() for g in granted],
    }
    # kid for distribution 2.x, x5c for 3.x (which dropped libtrust ids) and anything chain-checking.
    headers = {"typ": "JWT", "kid": signing_key.kid, "x5c": [keys.certificate_der_b64(signing_key)]}
    private_key = keys.load_private_key(signing_key.private_key)
    return jwt.encode(claims, private_key, algorithm=signing_key.algorithm, headers=headers), issued


@dataclass(frozen=True)
class Issued:
    token: str
    issued_at: int
    granted: list[Grant]


class NoSigningKey(Exception):
    """No active signing key: run `manage.py registry_token_keys generate`."""


def issue(user: User | None, registry: Registry, scopes: list[Scope]) -> Issued:
    """Authorize each scope, sign the token, and audit what was refused (granted tokens are only counted)."""
    signing_key = keys.active()
    if signing_key is None:
        raise NoSigningKey
    granted = grants(user, registry, scopes)
    refused = [g for g in granted if not g.complete]
    if user is not None and refused:
        audit.record(
            user,
            AuditAction.REGISTRY_TOKEN_DENIED,
            target=registry,
            reason="not allowed",
            asked=[str(g.asked) for g in refused],
            granted=[g.claim() for g in refused],
        )
    outcome = "anonymous" if user is None else "partial" if refused else "granted"
    metrics.REGISTRY_TOKENS.labels(service=registry.token_service, outcome=outcome).inc()
    subject = user.get_username() if user else ""
    token, issued_at = sign(signing_key, subject=subject, service=registry.token_service, granted=granted)
    return Issued(token, issued_at, granted)


def refuse_credentials(registry: Registry, *, username: str) -> None:
    """Audit a login with a wrong, revoked or expired token, or one whose owner may not sign in."""
    # Never the secret itself; the name is whatever the client typed, so keep it short.
    audit.record(
        None,
        AuditAction.REGISTRY_TOKEN_DENIED,
        target=registry,
        reason="bad credentials",
        username=username[:150],
    )
