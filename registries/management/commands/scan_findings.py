from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from portal import notify
from registries import hygiene
from registries.models import Registry


class Command(BaseCommand):
    help = "Run the credential-hygiene rules now, in the foreground, and update the findings."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--registry", metavar="NAME", help="one registry (default: everything)")
        parser.add_argument(
            "--no-notify", action="store_true", help="update the findings but send no digest or owner notice"
        )

    def handle(
        self, *args: Any, registry: str | None = None, no_notify: bool = False, **options: Any
    ) -> None:
        chosen = None
        if registry is not None:
            chosen = Registry.objects.filter(name=registry).first()
            if chosen is None:
                raise CommandError(f"no registry named {registry!r}; see the Registries page for names")
        started = time.monotonic()
        result = hygiene.scan(registry=chosen, progress=self._say)
        changes = sum(r.opened + r.reopened for r in result.by_kind.values())
        resolved = sum(r.resolved for r in result.by_kind.values())
        self.stdout.write(
            f"scanned {result.credentials} credentials in {time.monotonic() - started:.1f} s: "
            f"{changes} findings opened, {resolved} resolved"
        )
        if not no_notify:
            sent = notify.send_pending()
            self.stdout.write(f"notices: {sent.sent} sent, {sent.failed} failed, {sent.skipped} skipped")

    def _say(self, message: str) -> None:
        self.stdout.write(message)
        self.stdout.flush()
