from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from registries.mirror import jobs, status
from registries.models import MirrorRun

FAILURES_NAMED = 3  # in the one-line error; the progress above names them all


class Command(BaseCommand):
    help = "Copy the catalog's allowed tags into every regional mirror now, in the foreground, with progress."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--entry", default="", help="only this catalog entry, e.g. docker.io/library/python"
        )
        parser.add_argument("--region", default="", help="only the mirrors in this region")
        parser.add_argument(
            "--dry-run", action="store_true", help="compare and record each mirror's state; copy nothing"
        )

    def handle(self, *args: Any, entry: str, region: str, dry_run: bool, **options: Any) -> None:
        entries = jobs.entries_to_mirror(entry)
        if entry and not entries:
            raise CommandError(
                f"no catalog entry named {entry!r} has mirrors "
                "(names are normalised, e.g. docker.io/library/python)"
            )
        if region and region not in (known := jobs.regions()):
            raise CommandError(f"no mirror is in region {region!r}; regions: {', '.join(known) or 'none'}")
        started = time.monotonic()
        outcomes = jobs.mirror_catalog(
            entries, region=region, trigger=MirrorRun.Trigger.COMMAND, dry_run=dry_run, progress=self._say
        )
        delivered = status.deliver_arrivals()
        runs = [outcome.run for outcome in outcomes if outcome.run]
        failures = [failure for outcome in outcomes for failure in outcome.failures]
        self.stdout.write(
            f"{len(runs)} of {len(entries)} entries {'checked' if dry_run else 'mirrored'}: "
            f"{sum(run.copies for run in runs)} copies, {len(failures)} failures, "
            f"{sum(run.bytes_sent for run in runs) / 2**20:.1f} MiB sent, "
            f"{delivered.sent} arrivals announced in {time.monotonic() - started:.1f} s"
        )
        if failures:
            named = "; ".join(failures[:FAILURES_NAMED])
            more = f"; and {len(failures) - FAILURES_NAMED} more" if len(failures) > FAILURES_NAMED else ""
            raise CommandError(f"{len(failures)} failed: {named}{more}")

    def _say(self, message: str) -> None:
        self.stdout.write(message)
        self.stdout.flush()
