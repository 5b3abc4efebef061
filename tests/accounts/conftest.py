"""Fixtures for the accounts tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache
from pytest_django import Settings


@pytest.fixture
def fast_passwords(settings: Settings) -> None:
    """A cheap hasher: the production one costs about a second per sign-in, and hashing is Django's."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def fresh_rate_limits() -> Iterator[None]:
    """allauth counts failed sign-ins per IP in the cache; every test client is 127.0.0.1."""
    cache.clear()
    yield
    cache.clear()
