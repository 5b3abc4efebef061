from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from portal import audit, crypto
from portal.audit import AuditAction


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret with the first key in CUSTOMS_ENCRYPTION_KEYS. "
        "Put the new key first, keep the old ones after it, run this, then drop the old keys."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        counts: dict[str, int] = {}
        try:
            # One transaction for all models: a secret no key can read leaves everything as it was.
            with transaction.atomic():
                for model, fields in crypto.encrypted_fields():
                    counts[model._meta.label] = crypto.rotate_model(model, fields)
                    self.stdout.write(f"{model._meta.label}: {counts[model._meta.label]} rows re-encrypted")
                audit.record(None, AuditAction.ENCRYPTION_KEY_ROTATED, rows=counts)
        except crypto.SecretUnreadable as exc:
            raise CommandError(f"nothing changed: {exc}; put the key it was written with back") from None
        self.stdout.write(f"done: {sum(counts.values())} rows in {len(counts)} models use the first key")
