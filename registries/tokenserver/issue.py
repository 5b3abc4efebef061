"""Deciding what a token grants, and signing it the way distribution 2.8 verifies it."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import jwt
from django.conf import settings

from accounts import services as account_services
from accounts import tokens
from accounts.models import PersonalToken, RobotToken, User
from accounts.roles import Role
from portal import audit, metrics
from portal.audit import AuditAction
from registries.effective import RuleSet, rules_for_robot, rules_for_user
from registries.models import AccessRule, Registry
from registries.patterns import is_valid_repository_name
from registries.tokenserver import keys
from registries.tokenserver.memory import MEMORY
from registries.tokenserver.scopes import Scope

REPOSITORY_ACTIONS = frozenset(AccessRule.ACTIONS)


# --- who is asking --------------------------------------------------------------------------------


class Principal(Protocol):
    """Whoever a registry token is issued to: a person with a personal token, or a group's robot."""

    @property
    def subject(self) -> str:
        """The JWT `sub`, and the username the client must send with the secret."""
        ...

    @property
    def actor(self) -> User | None:
        """Who the audit trail names for a denial."""
        ...

    def audit_detail(self) -> dict[str, str]: ...

    def rules(self, registry: Registry) -> RuleSet:
        """Every rule in force for the principal on the registry, read once for all scopes."""
        ...

    def may_list_catalog(self) -> bool: ...


@dataclass(frozen=True)
class Person:
    user: User

    @property
    def subject(self) -> str:
        return self.user.get_username()

    @property
    def actor(self) -> User | None:
        return self.user

    def audit_detail(self) -> dict[str, str]:
        return {}

    def rules(self, registry: Registry) -> RuleSet:
        return MEMORY.recall(
            ("rules", "user", self.user.pk, registry.pk),
            lambda: rules_for_user(self.user, registry),
            until=lambda rules: rules.expires_at,
        )

    def may_list_catalog(self) -> bool:
        return self.user.has_role(Role.ADMIN)


@dataclass(frozen=True)
class Robot:
    robot: RobotToken

    @property
    def subject(self) -> str:
        return self.robot.username

    @property
    def actor(self) -> User | None:
        return None  # the system: a robot is no person, and its creator did not make this request

    def audit_detail(self) -> dict[str, str]:
        return {"robot": self.robot.username}

    def rules(self, registry: Registry) -> RuleSet:
        return MEMORY.recall(
            ("rules", "robot", self.robot.pk, registry.pk),
            lambda: rules_for_robot(self.robot, registry),
            until=lambda rules: _earliest(rules.expires_at, self.robot.expires_at),
        )

    def may_list_catalog(self) -> bool:
        # The catalog names every repository, far beyond the group's rules: robots never get it.
        return False


def authenticate(secret: str) -> Principal | None:
    """The person or robot a registry secret belongs to; the prefix says which table to read.

    The row (token and owner, or robot and group) may come from the process's memory of recent
    requests; the secret, expiry and owner checks run on every request all the same.
    """
    lookup = secret[: tokens.LOOKUP_LENGTH]
    if tokens.looks_like_token(secret, tokens.ROBOT_PREFIX):
        robot = MEMORY.recall(
            ("robot", lookup),
            lambda: account_services.active_robot(lookup),
            until=_expiry,
        )
        accepted = account_services.accept_robot(secret, robot)
        return Robot(accepted) if accepted else None
    if not tokens.looks_like_token(secret):
        return None
    found = MEMORY.recall(
        ("token", lookup),
        lambda: account_services.active_token(lookup, kind=PersonalToken.Kind.REGISTRY),
        until=_expiry,
    )
    token = account_services.accept_token(secret, found)
    return Person(token.owner) if token else None


def _expiry(row: PersonalToken | RobotToken | None) -> datetime | None:
    return row.expires_at if row else None


def _earliest(*moments: datetime | None) -> datetime | None:
    return min((moment for moment in moments if moment is not None), default=None)


# --- what they get --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScopeGrant:
    """One scope as asked, and the actions granted for it (possibly none)."""

    asked: Scope
    actions: tuple[str, ...]

    @property
    def complete(self) -> bool:
        # "*" asks for whatever the principal has (skopeo's delete opens with it), so it is never a denial.
        return "*" in self.asked.actions or set(self.asked.actions) <= set(self.actions)

    def claim(self) -> dict[str, Any]:
        return {"type": self.asked.type, "name": self.asked.name, "actions": list(self.actions)}


def grant(
    principal: Principal | None, registry: Registry, scope: Scope, rules: RuleSet | None = None
) -> ScopeGrant:
    """The requested actions this principal may have; unknown types, actions and bad names get none."""
    if principal is None:
        return ScopeGrant(scope, ())  # Customs has no anonymous access
    if scope.type == "registry" and scope.name == "catalog":
        allowed = "*" in scope.actions and principal.may_list_catalog()
        return ScopeGrant(scope, ("*",) if allowed else ())
    # A host prefix never matches: the registry compares access names without one (B7).
    if scope.type != "repository" or not is_valid_repository_name(scope.name):
        return ScopeGrant(scope, ())
    has = (rules or principal.rules(registry)).actions_on(scope.name)
    wanted = REPOSITORY_ACTIONS if "*" in scope.actions else set(scope.actions)
    return ScopeGrant(scope, tuple(a for a in AccessRule.ACTIONS if a in wanted and a in has))


def grants(principal: Principal | None, registry: Registry, scopes: Iterable[Scope]) -> list[ScopeGrant]:
    """Each scope's grant, reading the principal's rules once however many scopes are asked."""
    scopes = list(scopes)
    needs_rules = principal is not None and any(s.type == "repository" for s in scopes)
    rules = principal.rules(registry) if principal is not None and needs_rules else None
    return [grant(principal, registry, scope, rules) for scope in scopes]


def sign(
    signing_key: keys.Signer,
    *,
    subject: str,
    service: str,
    granted: Iterable[ScopeGrant],
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
    headers = {"typ": "JWT", "kid": signing_key.kid, "x5c": [signing_key.x5c]}
    return jwt.encode(
        claims, signing_key.private_key, algorithm=signing_key.algorithm, headers=headers
    ), issued


@dataclass(frozen=True)
class Issued:
    token: str
    issued_at: int
    granted: list[ScopeGrant]


class NoSigningKey(Exception):
    """No active signing key: run `manage.py registry_token_keys generate`."""


def issue(principal: Principal | None, registry: Registry, scopes: list[Scope]) -> Issued:
    """Authorize each scope, sign the token, and audit what was refused (granted tokens are only counted)."""
    signing_key = keys.signer()
    if signing_key is None:
        raise NoSigningKey
    granted = grants(principal, registry, scopes)
    refused = [g for g in granted if not g.complete]
    if principal is not None and refused:
        asked = [str(g.asked) for g in refused]
        repeats = REFUSALS.first_in_window((principal.subject, registry.pk, *asked))
        if repeats is not None:
            audit.record_soon(
                principal.actor,
                AuditAction.REGISTRY_TOKEN_DENIED,
                target=registry,
                reason="not allowed",
                asked=asked,
                granted=[g.claim() for g in refused],
                repeated_before=repeats,
                **principal.audit_detail(),
            )
    outcome = "anonymous" if principal is None else "partial" if refused else "granted"
    metrics.REGISTRY_TOKENS.labels(service=registry.token_service, outcome=outcome).inc()
    subject = principal.subject if principal else ""
    token, issued_at = sign(signing_key, subject=subject, service=registry.token_service, granted=granted)
    return Issued(token, issued_at, granted)


def refuse_credentials(registry: Registry, *, username: str) -> None:
    """Audit a login with a wrong, revoked or expired token, one whose owner may not sign in, or a
    robot whose group is gone."""
    # Never the secret itself; the name is whatever the client typed, so keep it short.
    repeats = REFUSALS.first_in_window(("bad credentials", registry.pk, username[:150]))
    if repeats is not None:
        audit.record_soon(
            None,
            AuditAction.REGISTRY_TOKEN_DENIED,
            target=registry,
            reason="bad credentials",
            username=username[:150],
            repeated_before=repeats,
        )


class RefusalWindow:
    """Audits the first of identical refusals in each window, per process; counts the rest.

    A CI job retrying a push it may not make asks the same thing every few seconds; one event a
    minute says so as well as thousands would, and keeps the audit trail (and its worker) for
    what differs. Every refusal is still counted in the customs_registry_tokens metric, and the
    next audited one says how many identical ones came before it (`repeated_before`).
    """

    MAX_KEYS = 10_000

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._seen: dict[tuple[Any, ...], tuple[float, int]] = {}  # key → (window start, repeats)

    def first_in_window(self, key: tuple[Any, ...]) -> int | None:
        """None when this refusal repeats one audited in the current window; otherwise how many
        repeats the previous window held, to record with it."""
        now = time.monotonic()
        with self._lock:
            started, repeats = self._seen.get(key, (float("-inf"), 0))
            if now - started < self.seconds:
                self._seen[key] = (started, repeats + 1)
                return None
            if len(self._seen) >= self.MAX_KEYS:
                self._seen.clear()  # a flood of distinct refusals: start over rather than grow
            self._seen[key] = (now, 0)
            return repeats

    def forget(self) -> None:
        with self._lock:
            self._seen.clear()


REFUSALS = RefusalWindow(seconds=60.0)
