"""Pub/Sub push authentication: the Google-signed ID token a push subscription sends.

With authentication on (Google's recommended set-up), each push carries `Authorization: Bearer <JWT>`,
an OIDC ID token Google signs for the subscription's service account: `iss` accounts.google.com, `aud`
the subscription's audience (the push endpoint's URL unless one is set), `email` that service account
with `email_verified` true, valid for an hour. Anyone can have Google sign a token for their own service
account and any audience, so the email is what proves the sender; the audience keeps a token meant for
another endpoint from being replayed here.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jwt
from django.core.cache import cache
from google.auth import exceptions as google_exceptions
from google.auth import transport
from google.oauth2 import id_token

from portal.http import OutboundError, outbound_session
from registries.webhooks.events import TokenRefused, TokenUncheckable

ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
CLOCK_SKEW_SECONDS = 30  # a host clock a little off must not refuse every push
MAX_CACHE_SECONDS = 24 * 3600  # Google sends about six hours; a day bounds a mistaken header


def verify(token: str, *, audiences: Sequence[str], email: str, certs_url: str) -> None:
    """Return if `token` is a Google ID token for one of `audiences` from `email`; else raise
    TokenRefused, or TokenUncheckable when Google's keys cannot be read."""
    try:
        claims = id_token.verify_token(
            token,
            _CachedGet(),
            audience=list(audiences),
            certs_url=certs_url,
            clock_skew_in_seconds=CLOCK_SKEW_SECONDS,
        )
    except (google_exceptions.TransportError, OutboundError) as exc:
        raise TokenUncheckable(f"Google's token-signing keys could not be read: {exc}") from None
    # google-auth reads PEM certificates itself (ValueError) and a JWK Set with PyJWT (PyJWTError).
    except (ValueError, jwt.PyJWTError) as exc:
        raise TokenRefused(f"the Google ID token is not valid here: {exc}") from None
    if claims.get("iss") not in ISSUERS or "exp" not in claims:
        raise TokenRefused("the bearer token is not a Google ID token (issuer or expiry missing)")
    if str(claims.get("email", "")).lower() != email or claims.get("email_verified") is not True:
        raise TokenRefused(
            "the Google ID token is not from the service account this registry accepts pushes from"
        )


class _CachedGet(transport.Request):
    """google-auth's HTTP hook, through portal.http and Django's cache.

    verify_token reads the signing keys on every call; answered from the cache for as long as Google's
    Cache-Control max-age allows, a push (or any bearer anyone posts) costs no request to Google.
    Google publishes a key well before signing with it, so a cached set is never missing a fresh one.
    """

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> _Answer:
        key = "pubsub-certs:" + hashlib.sha256(url.encode()).hexdigest()
        cached = cache.get(key)
        if isinstance(cached, bytes):
            return _Answer(200, cached)
        response = outbound_session(purpose="pub/sub push tokens").get(url)
        if response.status_code == 200 and (seconds := _max_age(response.headers.get("Cache-Control", ""))):
            cache.set(key, response.content, timeout=seconds)
        return _Answer(response.status_code, response.content)


class _Answer(transport.Response):
    def __init__(self, status: int, data: bytes) -> None:
        self._status, self._data = status, data

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> Mapping[str, str]:
        return {}

    @property
    def data(self) -> bytes:
        return self._data


def _max_age(cache_control: str) -> int:
    if re.search(r"\b(no-store|no-cache)\b", cache_control):
        return 0
    found = re.search(r"\bmax-age=(\d+)", cache_control)
    return min(int(found.group(1)), MAX_CACHE_SECONDS) if found else 0
