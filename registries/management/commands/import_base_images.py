from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from portal.errors import RequestRejected
from registries.policy import catalog_io


class Command(BaseCommand):
    help = (
        "Load the base-image catalog from a YAML file: entries it names are set to what it says, the rest "
        "are kept (--prune deletes them). All or nothing: an invalid file changes nothing."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("file", help="the catalog file (YAML, a base_images: list); - reads stdin")
        parser.add_argument(
            "--prune",
            action="store_true",
            help="delete catalog entries the file does not name: the file is then the whole catalog",
        )

    def handle(self, *args: Any, file: str, prune: bool, **options: Any) -> None:
        text = _read(file)
        try:
            summary = catalog_io.import_catalog(text, actor=None, prune=prune, source=file)
        except RequestRejected as exc:
            # CommandError prints one readable line and exits 1; the file name makes the line findable.
            raise CommandError(f"{file}: {exc}; nothing was changed") from None
        self.stdout.write(f"{file}: {summary}")
        for outcome in ("created", "updated", "deleted"):
            for name in getattr(summary, outcome):
                self.stdout.write(f"  {outcome}: {name}")


def _read(file: str) -> str:
    try:
        return sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {file}: {exc}") from None
