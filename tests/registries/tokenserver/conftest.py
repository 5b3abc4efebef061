"""Fixtures every token-server test shares."""

from __future__ import annotations

import pytest

from registries.models import TokenSigningKey
from registries.tokenserver import keys


@pytest.fixture
def signing_key() -> TokenSigningKey:
    return keys.generate(actor=None)
