"""Personal token secrets: minted once, stored only as a keyed digest, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings

PREFIX = "cst_"  # lets secret scanners and our log filter recognise a leaked token
LOOKUP_LENGTH = 12  # "cst_" and 8 random characters: indexed, so a check reads one row


SCIM_PREFIX = "csp_"  # SCIM provisioning tokens: another prefix, so one can never pass for the other
ROBOT_PREFIX = "csr_"  # robot tokens, owned by a directory group: never accepted as a personal token


def mint(prefix: str = PREFIX) -> tuple[str, str, str]:
    """Return (token to show once, lookup prefix, digest to store)."""
    raw = prefix + secrets.token_urlsafe(32)
    return raw, raw[:LOOKUP_LENGTH], digest(raw)


def digest(raw: str) -> str:
    # HMAC with a server key, not a slow password hash: tokens carry 256 bits of entropy, so a
    # keyed SHA-256 cannot be brute-forced and checking one costs microseconds per request.
    return hmac.new(settings.TOKEN_HMAC_KEY.encode(), raw.encode(), hashlib.sha256).hexdigest()


def matches(raw: str, stored: str) -> bool:
    return hmac.compare_digest(digest(raw), stored)


def looks_like_token(raw: str, prefix: str = PREFIX) -> bool:
    return raw.startswith(prefix) and len(raw) > LOOKUP_LENGTH
