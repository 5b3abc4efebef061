"""Who is calling: the bearer token of one provisioning connection, and the log of what it asked."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from scim2_models import UnauthorizedException

from accounts import tokens
from accounts.models import ScimRequest, ScimToken

TOUCH_EVERY = timedelta(minutes=1)  # a sync sends thousands of requests; one write a minute is enough


def authenticate(request: HttpRequest) -> ScimToken:
    """The active SCIM token in the Authorization header, or 401."""
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    raw = raw.strip()
    if scheme.lower() != "bearer" or not tokens.looks_like_token(raw, tokens.SCIM_PREFIX):
        raise UnauthorizedException(detail="a SCIM bearer token is required")
    token = ScimToken.objects.filter(lookup=raw[: tokens.LOOKUP_LENGTH], revoked_at=None).first()
    if token is None or not tokens.matches(raw, token.digest):
        raise UnauthorizedException(detail="the bearer token is not valid")
    return token


def names_issued_token(request: HttpRequest) -> bool:
    """Whether the bearer token's lookup is one we issued (revoked ones too).

    A client with a stale or mistyped secret is worth a row on the SCIM page; a made-up token from
    the internet is not: logging those would let anyone write rows without limit.
    """
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    raw = raw.strip()
    return (
        scheme.lower() == "bearer"
        and tokens.looks_like_token(raw, tokens.SCIM_PREFIX)
        and ScimToken.objects.filter(lookup=raw[: tokens.LOOKUP_LENGTH]).exists()
    )


def touch(token: ScimToken) -> None:
    """Note the token's use, at most once a minute."""
    now = timezone.now()
    stale = Q(last_used_at=None) | Q(last_used_at__lt=now - TOUCH_EVERY)
    ScimToken.objects.filter(stale, pk=token.pk).update(last_used_at=now)


def log_request(token: ScimToken | None, request: HttpRequest, status: int, summary: str) -> None:
    """One row per request for the SCIM page: method, path (no query: filters name people), result."""
    ScimRequest.objects.create(
        token=token,
        method=(request.method or "")[:8],  # the column's length: a longer custom method must not 500
        path=request.path[:500],
        status=status,
        summary=summary[:500],
    )
