"""Secrets at rest: a model field encrypted with MultiFernet over CUSTOMS_ENCRYPTION_KEYS.

The first key encrypts; every key decrypts, so a new key can be put first and old rows
re-encrypted at leisure with `manage.py rotate_encryption_key`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps
from django.conf import settings
from django.db import models, transaction


class SecretUnreadable(Exception):
    """The stored value was encrypted with a key no longer in CUSTOMS_ENCRYPTION_KEYS."""


def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(key) for key in settings.CUSTOMS_ENCRYPTION_KEYS])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("no configured encryption key can decrypt this value") from None


class EncryptedTextField(models.TextField):  # type: ignore[type-arg]
    """Stores ciphertext; Python code sees plaintext. Never filter or order on it."""

    description = "Text encrypted at rest"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        return value if value is None or value == "" else decrypt(value)

    def get_prep_value(self, value: Any) -> str | None:
        value = super().get_prep_value(value)
        # "" stays "" (not NULL): a blank=True field is NOT NULL, and an empty secret reveals nothing.
        return value if value is None or value == "" else encrypt(value)


def encrypted_fields() -> Iterator[tuple[type[models.Model], list[str]]]:
    """Every concrete model with encrypted fields, and those fields' names."""
    for model in apps.get_models():
        names = [f.name for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
        if names:
            yield model, names


def rotate_model(model: type[models.Model], field_names: list[str]) -> int:
    """Re-encrypt one model's secrets under the first key; returns the number of rows rewritten.

    Reading decrypts with whichever key fits and update() encrypts with the first, so after this
    the older keys can be removed. All or nothing: a row no key can read aborts the whole model.
    """
    rows = model._base_manager.values_list("pk", *field_names).order_by("pk")
    rewritten, after = 0, None
    with transaction.atomic():
        # Batches by primary key, not iterator(): a row no key can read raises mid-loop, and the
        # server-side cursor that error leaves open is closed later by the garbage collector, in
        # whatever transaction the connection is in by then; the failing CLOSE aborts that one.
        while batch := list((rows if after is None else rows.filter(pk__gt=after))[:500]):
            for pk, *values in batch:
                model._base_manager.filter(pk=pk).update(**dict(zip(field_names, values, strict=True)))
            rewritten, after = rewritten + len(batch), batch[-1][0]
    return rewritten
