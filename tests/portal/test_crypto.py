"""Secrets at rest: ciphertext in the column, plaintext in Python, and key rotation that loses nothing."""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO
from typing import ClassVar

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.apps import apps
from django.apps.registry import Apps
from django.core.management import CommandError, call_command
from django.db import connection, models
from pytest_django.fixtures import Settings

from portal import crypto
from portal.audit import AuditAction
from portal.crypto import EncryptedTextField, SecretUnreadable
from portal.models import AuditEvent

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="creates a table inside the test's transaction (PostgreSQL DDL)",
    ),
]

KEY_A, KEY_B, KEY_C = (Fernet.generate_key().decode() for _ in range(3))
PASSWORD = "robot$ci: s3cret-registry-password"


class Vault(models.Model):
    """A model holding secrets, standing in for the real ones (registry credentials)."""

    secret = EncryptedTextField(null=True, blank=True)
    note = EncryptedTextField(blank=True)

    # Declared: the mypy plugin only adds managers to models in the project's app registry.
    objects: ClassVar[models.Manager[Vault]] = models.Manager()

    class Meta:
        app_label = "portal"
        # Its own registry at import: makemigrations, and tests that do not ask for it, never see it.
        apps = Apps()

    def __str__(self) -> str:
        return f"vault {self.pk}"


@pytest.fixture
def vault(db: None, settings: Settings) -> Iterator[type[Vault]]:
    """Vault as a real model for one test: registered where encrypted_fields() looks, with a table."""
    settings.CUSTOMS_ENCRYPTION_KEYS = [KEY_A]
    apps.register_model("portal", Vault)
    with connection.schema_editor() as editor:
        editor.create_model(Vault)
    try:
        yield Vault
    finally:
        # Django has no public way to unregister a model; this undoes what register_model() added.
        del apps.all_models["portal"]["vault"]
        apps.clear_cache()
        if not connection.needs_rollback:  # a failed test's rollback removes the table anyway
            with connection.schema_editor() as editor:
                editor.delete_model(Vault)


def _stored(pk: int, column: str = "secret") -> str | None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM portal_vault WHERE id = %s", [pk])  # noqa: S608 - our constant
        (value,) = cursor.fetchone()
    return value  # type: ignore[no-any-return]


def _rotate() -> str:
    out = StringIO()
    call_command("rotate_encryption_key", stdout=out)
    return out.getvalue()


# --- the field ---------------------------------------------------------------------------------


def test_the_column_holds_ciphertext_and_python_sees_plaintext(vault: type[Vault]) -> None:
    row = vault.objects.create(secret=PASSWORD)
    stored = _stored(row.pk)
    assert stored is not None
    assert PASSWORD not in stored
    assert Fernet(KEY_A).decrypt(stored.encode()).decode() == PASSWORD
    assert vault.objects.get(pk=row.pk).secret == PASSWORD


def test_the_same_secret_encrypts_differently_each_time(vault: type[Vault]) -> None:
    first, second = vault.objects.create(secret=PASSWORD), vault.objects.create(secret=PASSWORD)
    assert _stored(first.pk) != _stored(second.pk)


def test_updates_are_encrypted_too(vault: type[Vault]) -> None:
    row = vault.objects.create(secret="old")
    vault.objects.filter(pk=row.pk).update(secret=PASSWORD)
    stored = _stored(row.pk)
    assert stored is not None
    assert PASSWORD not in stored
    assert vault.objects.get(pk=row.pk).secret == PASSWORD


def test_no_secret_stays_null(vault: type[Vault]) -> None:
    row = vault.objects.create(secret=None)
    assert _stored(row.pk) is None
    assert vault.objects.get(pk=row.pk).secret is None


def test_an_empty_secret_in_a_required_column_reads_back_empty(vault: type[Vault]) -> None:
    row = vault.objects.create(secret=PASSWORD, note="")
    assert _stored(row.pk, "note") == ""
    assert vault.objects.get(pk=row.pk).note == ""


def test_a_value_under_an_unknown_key_is_refused_clearly(vault: type[Vault], settings: Settings) -> None:
    row = vault.objects.create(secret=PASSWORD)
    settings.CUSTOMS_ENCRYPTION_KEYS = [KEY_B]
    with pytest.raises(SecretUnreadable, match="no configured encryption key can decrypt this value"):
        vault.objects.get(pk=row.pk)


def test_encrypted_fields_lists_models_with_secrets(vault: type[Vault]) -> None:
    assert (vault, ["secret", "note"]) in list(crypto.encrypted_fields())


# --- rotation ----------------------------------------------------------------------------------


def test_rotation_moves_every_secret_to_the_first_key(vault: type[Vault], settings: Settings) -> None:
    rows = [vault.objects.create(secret=f"{PASSWORD}-{n}", note=f"note-{n}") for n in range(3)]
    empty = vault.objects.create(secret=None)
    settings.CUSTOMS_ENCRYPTION_KEYS = [KEY_B, KEY_A]

    output = _rotate()

    assert "portal.Vault: 4 rows re-encrypted" in output
    settings.CUSTOMS_ENCRYPTION_KEYS = [KEY_B]  # the old key is gone
    for n, row in enumerate(rows):
        assert vault.objects.get(pk=row.pk).secret == f"{PASSWORD}-{n}"
        assert vault.objects.get(pk=row.pk).note == f"note-{n}"
        stored = _stored(row.pk)
        assert stored is not None
        with pytest.raises(InvalidToken):
            Fernet(KEY_A).decrypt(stored.encode())
    assert vault.objects.get(pk=empty.pk).secret is None
    event = AuditEvent.objects.get(action=AuditAction.ENCRYPTION_KEY_ROTATED)
    assert event.detail["rows"]["portal.Vault"] == 4


def test_rotation_reaches_rows_beyond_the_first_batch(vault: type[Vault], settings: Settings) -> None:
    vault.objects.bulk_create(
        vault(secret=f"secret-{n}") for n in range(501)
    )  # rotate_model reads 500 at a time
    settings.CUSTOMS_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    assert "portal.Vault: 501 rows re-encrypted" in _rotate()
    settings.CUSTOMS_ENCRYPTION_KEYS = [KEY_B]
    assert sorted(vault.objects.values_list("secret", flat=True)) == sorted(f"secret-{n}" for n in range(501))


def test_without_rotation_dropping_the_old_key_loses_the_secret(
    vault: type[Vault], settings: Settings
) -> None:
    # The counterpart of the test above: the old key really is needed until rotation has run.
    row = vault.objects.create(secret=PASSWORD)
    settings.CUSTOMS_ENCRYPTION_KEYS = [KEY_B]
    with pytest.raises(SecretUnreadable):
        vault.objects.get(pk=row.pk)


def test_a_secret_no_key_can_read_stops_rotation_and_changes_nothing(
    vault: type[Vault], settings: Settings
) -> None:
    readable = vault.objects.create(secret=PASSWORD)
    settings.CUSTOMS_ENCRYPTION_KEYS = [KEY_C]
    lost = vault.objects.create(secret="written under a key since thrown away")
    settings.CUSTOMS_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    before = {row.pk: _stored(row.pk) for row in (readable, lost)}

    with pytest.raises(CommandError) as raised:
        _rotate()

    assert str(raised.value) == (
        "nothing changed: no configured encryption key can decrypt this value; "
        "put the key it was written with back"
    )
    assert {row.pk: _stored(row.pk) for row in (readable, lost)} == before
    assert not AuditEvent.objects.filter(action=AuditAction.ENCRYPTION_KEY_ROTATED).exists()
