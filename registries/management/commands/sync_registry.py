from __future__ import annotations

import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from registries import sync, tasks
from registries.models import Registry, Repository, SyncRun

BAR_WIDTH = 30


class Command(BaseCommand):
    help = "Sync one registry's inventory now, in the foreground, with progress."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("name", help="the registry's name")

    def handle(self, *args: Any, name: str, **options: Any) -> None:
        registry = Registry.objects.filter(name=name).first()
        if registry is None:
            raise CommandError(f"no registry named {name!r}; see the Registries page for names")
        # The last listing's size is the best guess of this one's: the bar fills against it.
        expected = Repository.objects.filter(registry=registry).count()
        started = time.monotonic()
        try:
            run = sync.sync_inventory(
                registry,
                trigger=SyncRun.Trigger.COMMAND,
                on_progress=lambda run: self._draw(run, expected, started),
            )
        except sync.AlreadySyncing as exc:
            raise CommandError(str(exc)) from None
        sys.stderr.write("\n")
        if run.status != SyncRun.Status.SUCCEEDED:
            raise CommandError(f"sync of {name} failed: {run.error}")
        self.stdout.write(
            f"{name}: {run.repositories_seen} repositories, {run.tags_seen} tags, "
            f"{run.manifests_fetched} manifests read; {run.artifacts_added} artifacts added, "
            f"{run.artifacts_removed} removed, {run.repositories_added} repositories added, "
            f"{run.repositories_removed} removed in {time.monotonic() - started:.1f} s"
        )
        self._scan(registry)

    def _scan(self, registry: Registry) -> None:
        # The sync task queues this scan; here it runs before the command returns, so the findings
        # already match what the sync read.
        started = time.monotonic()
        open_by_kind = tasks.scan_findings(registry.pk)
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(open_by_kind.items())) or "none"
        self.stdout.write(
            f"{registry.name}: hygiene scan: {sum(open_by_kind.values())} open findings ({kinds}) "
            f"in {time.monotonic() - started:.1f} s"
        )

    def _draw(self, run: SyncRun, expected: int, started: float) -> None:
        done = run.repositories_seen
        filled = BAR_WIDTH if not expected else min(BAR_WIDTH, BAR_WIDTH * done // expected)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        of = f"/{expected}" if expected else ""
        sys.stderr.write(
            f"\r[{bar}] {done}{of} repositories, {run.tags_seen} tags, "
            f"{run.manifests_fetched} manifests, {time.monotonic() - started:.0f} s"
        )
        sys.stderr.flush()
