from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from portal import audit


class Command(BaseCommand):
    help = "Check the audit trail's hash chain. Exits 0 when intact, 1 naming the first broken event."

    def handle(self, *args: Any, **options: Any) -> None:
        checked, broken = audit.verify_chain()
        if broken:
            raise CommandError(
                f"audit chain broken at event #{broken.sequence}: {broken.reason} "
                f"({checked} events before it verified)",
                returncode=1,
            )
        self.stdout.write(f"audit chain intact: {checked} events verified")
