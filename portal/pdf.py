"""PDF reports: a title, paragraphs and tables, laid out by reportlab. Every text is taken literally.

What goes in comes from registries, directories and people (repository names, display names,
justifications), so nothing in it may act as markup: paragraphs are escaped before reportlab's
mini-HTML parser sees them, and table cells are plain strings, which reportlab never parses.
Tables break across pages with their header repeated. Text is set in DejaVu Sans when the
machine has it (every script in names: Cyrillic, Greek, accents beyond Latin-1); otherwise in
the PDF's built-in Helvetica, which encodes Latin-1 only, so other characters become "?".
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Flowable, LongTable, SimpleDocTemplate, Spacer, TableStyle
from reportlab.platypus import Paragraph as RLParagraph

# Debian's fonts-dejavu-core puts them here; nothing requires that package: see _fonts().
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"),)
FONT_FILES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf")
FALLBACK_FONTS = ("Helvetica", "Helvetica-Bold")
FALLBACK_ENCODING = "latin-1"

TABLE_FONT_SIZE = 7.5
CELL_PADDING = 3
# A row taller than a page cannot be laid out (reportlab raises), so a cell shows this many lines
# at most and says it was cut; the full value is in the bundle's CSV and JSON files.
MAX_CELL_LINES = 12
WIDE_TABLE = 6  # more columns than this: the pages turn landscape
MARGIN = 15 * mm
# Tabs and newlines become spaces in a cell; every other control character is dropped.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    title: str
    header: Sequence[str]
    rows: Iterable[Sequence[object]]


@dataclass(frozen=True)
class _Fonts:
    regular: str
    bold: str
    unicode: bool

    def clean(self, text: str) -> str:
        """The text without control characters, and with what the font cannot encode replaced."""
        text = _CONTROL.sub("", unicodedata.normalize("NFC", text))
        if self.unicode:
            return text
        return text.encode(FALLBACK_ENCODING, "replace").decode(FALLBACK_ENCODING)


def document(title: str, *, subtitle: str = "", parts: Iterable[Paragraph | Table]) -> bytes:
    """A PDF of the title, the subtitle and the parts in order. The same input gives the same bytes."""
    fonts = _fonts()
    parts = list(parts)
    wide = any(isinstance(part, Table) and len(part.header) > WIDE_TABLE for part in parts)
    pagesize = landscape(A4) if wide else A4
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=pagesize,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN,
        title=fonts.clean(title),
        creator="Customs",
        # No creation time or random document id: an evidence file must be reproducible.
        invariant=True,
    )
    story = _heading(title, subtitle, fonts)
    for part in parts:
        story += _table(part, fonts, doc.width) if isinstance(part, Table) else [_paragraph(part.text, fonts)]
    footer = _footer(fonts.clean(title), fonts)
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return out.getvalue()


@cache
def _fonts() -> _Fonts:
    """DejaVu Sans if a known folder has it, registered once per process; else the built-in fonts."""
    for folder in FONT_DIRS:
        paths = [folder / name for name in FONT_FILES]
        if all(path.is_file() for path in paths):
            names = ("CustomsSans", "CustomsSans-Bold")
            for name, path in zip(names, paths, strict=True):
                pdfmetrics.registerFont(TTFont(name, str(path)))
            return _Fonts(*names, unicode=True)
    return _Fonts(*FALLBACK_FONTS, unicode=False)


def _style(fonts: _Fonts, *, size: float, bold: bool = False, space_after: float = 4) -> ParagraphStyle:
    return ParagraphStyle(
        name=f"customs-{size}-{bold}",
        fontName=fonts.bold if bold else fonts.regular,
        fontSize=size,
        leading=size * 1.25,
        spaceAfter=space_after,
        # Long unbroken words (digests, repository paths) are cut to fit instead of running off the page.
        splitLongWords=True,
    )


def _markup_free(text: str, fonts: _Fonts) -> str:
    """Paragraph text reportlab's parser reads as plain characters: <, > and & escaped, lines kept."""
    lines = fonts.clean(text.replace("\r\n", "\n").replace("\t", " ")).split("\n")
    return "<br/>".join(escape(line) for line in lines)


def _paragraph(text: str, fonts: _Fonts, *, size: float = 10, bold: bool = False) -> RLParagraph:
    return RLParagraph(_markup_free(text, fonts), _style(fonts, size=size, bold=bold))


def _heading(title: str, subtitle: str, fonts: _Fonts) -> list[Flowable]:
    story: list[Flowable] = [_paragraph(title, fonts, size=16, bold=True)]
    if subtitle:
        story.append(_paragraph(subtitle, fonts, size=10))
    story.append(Spacer(1, 4 * mm))
    return story


def _table(table: Table, fonts: _Fonts, width: float) -> list[Flowable]:
    header = [fonts.clean(str(name)) for name in table.header]
    body = [[fonts.clean(_text(value)) for value in row] for row in table.rows]
    title = _paragraph(table.title, fonts, size=12, bold=True)
    if not body:
        return [title, _paragraph("No rows.", fonts), Spacer(1, 3 * mm)]
    widths = _column_widths(header, body, width, fonts)
    cells = [_wrapped(header, widths, fonts.bold)]
    cells += [_wrapped(row, widths, fonts.regular) for row in body]
    # LongTable: the same layout as Table, split across pages with less work per page on long tables.
    grid = LongTable(cells, colWidths=widths, repeatRows=1, hAlign="LEFT")
    grid.setStyle(_table_style(fonts))
    return [title, grid, Spacer(1, 5 * mm)]


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _column_widths(header: list[str], body: list[list[str]], width: float, fonts: _Fonts) -> list[float]:
    """Each column as wide as its longest value needs, if the page allows; else narrow columns keep
    their need and the wide ones share what is left equally (and wrap)."""
    needs = [_need(name, [row[i] for row in body if i < len(row)], fonts) for i, name in enumerate(header)]
    if sum(needs) <= width:
        return [need * width / sum(needs) for need in needs]
    widths: dict[int, float] = {}
    while True:
        left = [i for i in range(len(needs)) if i not in widths]
        share = (width - sum(widths.values())) / len(left)
        fitting = {i: needs[i] for i in left if needs[i] <= share}
        if not fitting:
            return [widths.get(i, share) for i in range(len(needs))]
        widths |= fitting


def _need(name: str, values: list[str], fonts: _Fonts) -> float:
    """The width of the header or the longest value (by characters: measuring every cell is slow)."""
    longest = max(values, key=len, default="")
    text = max(
        pdfmetrics.stringWidth(name, fonts.bold, TABLE_FONT_SIZE),
        pdfmetrics.stringWidth(longest, fonts.regular, TABLE_FONT_SIZE),
    )
    return text + 2 * CELL_PADDING + 1


def _wrapped(row: list[str], widths: list[float], font: str) -> list[str]:
    """Each cell broken into lines that fit its column; a plain string cell is never parsed."""
    return [
        "\n".join(_lines(value, width - 2 * CELL_PADDING, font))
        for value, width in zip(row, widths, strict=False)
    ] + [""] * (len(widths) - len(row))


def _lines(text: str, width: float, font: str) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and _fits(f"{lines[-1]} {word}", width, font):
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines += _broken(word, width, font)
        if len(lines) > MAX_CELL_LINES:
            return [*lines[: MAX_CELL_LINES - 1], "[cut]"]
    return lines


def _broken(word: str, width: float, font: str) -> list[str]:
    """A word too long for the column, cut into pieces that fit (digests, long repository paths)."""
    pieces = [""]
    for char in word:
        if pieces[-1] and not _fits(pieces[-1] + char, width, font):
            pieces.append("")
        pieces[-1] += char
    return pieces


def _fits(text: str, width: float, font: str) -> bool:
    return pdfmetrics.stringWidth(text, font, TABLE_FONT_SIZE) <= width


def _table_style(fonts: _Fonts) -> TableStyle:
    return TableStyle(
        [
            ("FONT", (0, 0), (-1, -1), fonts.regular, TABLE_FONT_SIZE, TABLE_FONT_SIZE * 1.2),
            ("FONT", (0, 0), (-1, 0), fonts.bold, TABLE_FONT_SIZE, TABLE_FONT_SIZE * 1.2),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e4e7eb")),
            ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f6f7f9")]),
            ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#b0b6bd")),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), CELL_PADDING),
            ("RIGHTPADDING", (0, 0), (-1, -1), CELL_PADDING),
            ("TOPPADDING", (0, 0), (-1, -1), 1.5),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
        ]
    )


def _footer(title: str, fonts: _Fonts) -> Callable[[Canvas, SimpleDocTemplate], None]:
    def draw(canvas: Canvas, doc: SimpleDocTemplate) -> None:
        canvas.saveState()
        canvas.setFont(fonts.regular, 7)
        canvas.setFillColor(colors.HexColor("#5f6b76"))
        # drawString takes text as it is: no markup to escape here.
        canvas.drawString(doc.leftMargin, 8 * mm, title[:120])
        canvas.drawRightString(doc.pagesize[0] - doc.rightMargin, 8 * mm, f"page {doc.page}")
        canvas.restoreState()

    return draw
