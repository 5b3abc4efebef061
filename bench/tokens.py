"""Checking a personal token: keyed SHA-256 (what Customs stores) against a password hash.

A token is checked on every API call and every `docker login`, so its cost is per request. The
ratio shows why tokens are stored as HMAC digests rather than with Django's password hasher.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from django.contrib.auth.hashers import check_password, make_password

from accounts import tokens

ROUNDS = 5


def _median_seconds(check: Callable[[], bool], repeat: int) -> float:
    samples = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(repeat):
            if not check():
                raise AssertionError("a valid token was rejected")
        samples.append((time.perf_counter() - started) / repeat)
    return statistics.median(samples)


def run() -> None:
    raw, _, stored_digest = tokens.mint()
    stored_password_hash = make_password(raw)
    hmac_cost = _median_seconds(lambda: tokens.matches(raw, stored_digest), repeat=20_000)
    password_cost = _median_seconds(lambda: check_password(raw, stored_password_hash), repeat=5)
    print("token check, median of 5 rounds")
    print(f"  HMAC-SHA256 digest (stored by Customs): {hmac_cost * 1e6:10.2f} µs")
    print(f"  Django password hasher (PBKDF2):        {password_cost * 1e6:10.2f} µs")
    print(f"  ratio password hash / HMAC:             {password_cost / hmac_cost:10.0f}x")
