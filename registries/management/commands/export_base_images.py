from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from registries.policy import catalog_io


class Command(BaseCommand):
    help = "Write the base-image catalog as YAML, in the format import_base_images reads back."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("-o", "--output", help="write to this file instead of standard output")

    def handle(self, *args: Any, output: str | None, **options: Any) -> None:
        document = catalog_io.catalog_document()
        text = catalog_io.dump_catalog(document)
        if output is None:
            self.stdout.write(text, ending="")
            return
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot write {output}: {exc}") from None
        self.stderr.write(f"{output}: {len(document['base_images'])} entries written")
