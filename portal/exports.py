"""What every CSV export shares: rows written as they are produced, and cells no spreadsheet runs."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class _Echo:
    """A file that hands back what is written, so csv.writer produces lines to stream."""

    def write(self, value: str) -> str:
        return value


def spreadsheet_safe(value: Any) -> Any:
    """The value, with a leading quote if a spreadsheet would run it as a formula.

    Names, owners, scopes and patterns come from registries, directories and people; a cell
    starting with = + - @ (or a tab or carriage return before one) would run when opened.
    """
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_lines(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> Iterator[str]:
    """The header, then each row, one CSV line at a time, every cell made spreadsheet-safe."""
    writer = csv.writer(_Echo())
    yield writer.writerow(list(header))
    for row in rows:
        yield writer.writerow([spreadsheet_safe(value) for value in row])
