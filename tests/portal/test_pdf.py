"""portal/pdf.py: a real PDF comes out, text is never markup, long tables paginate, any script is safe."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from portal import pdf

DEJAVU = all((folder / name).is_file() for folder in pdf.FONT_DIRS for name in pdf.FONT_FILES)


@pytest.fixture
def builtin_font(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As on a machine without DejaVu: the PDF's own Helvetica, Latin-1 only."""
    monkeypatch.setattr(pdf, "FONT_DIRS", ())
    pdf._fonts.cache_clear()
    yield
    pdf._fonts.cache_clear()


def page_texts(data: bytes, tmp_path: Path) -> list[str]:
    """Each page's text: pdftotext where poppler is installed, else the text-showing operators of
    each page's content stream, which carry plain text when the built-in font was used."""
    if shutil.which("pdftotext"):
        source = tmp_path / "doc.pdf"
        source.write_bytes(data)
        out = subprocess.run(
            ["pdftotext", "-layout", str(source), "-"], capture_output=True, check=True, text=True
        )
        return out.stdout.split("\f")[: pdf_pages(data)]
    return [_shown_text(stream) for stream in _content_streams(data)]


def pdf_text(data: bytes, tmp_path: Path) -> str:
    return "\n".join(page_texts(data, tmp_path))


def pdf_pages(data: bytes) -> int:
    return len(re.findall(rb"/Type /Page\b(?!s)", data))


def _content_streams(data: bytes) -> Iterator[bytes]:
    """Text-bearing streams as reportlab writes them (ASCII85, then Flate); images and fonts,
    written otherwise, are skipped."""
    for head, raw in re.findall(rb"<<(.*?)>>\s*stream\r?\n(.*?)endstream", data, re.S):
        if b"/ASCII85Decode" in head:
            yield zlib.decompress(base64.a85decode(raw.strip().removesuffix(b"~>")))


def _shown_text(stream: bytes) -> str:
    """The strings shown between BT and ET, a line break where T* moves to the next line."""
    blocks = []
    for block in re.findall(rb"(?:^|\s)BT\s(.*?)\sET(?=\s|$)", stream, re.S):
        pieces = re.findall(rb"\(((?:[^()\\]|\\.)*)\)\s*Tj|(T\*)", block, re.S)
        blocks.append("".join("\n" if star else _unescape(shown) for shown, star in pieces).strip())
    return "\n".join(b for b in blocks if b)


def _unescape(shown: bytes) -> str:
    """A PDF literal string's escapes: \\ddd octal codes and \\( \\) \\\\."""
    octal = re.sub(rb"\\([0-7]{1,3})", lambda m: bytes([int(m.group(1), 8)]), shown)
    return re.sub(rb"\\(.)", rb"\1", octal, flags=re.S).decode("latin-1")


@pytest.fixture
def readable(request: pytest.FixtureRequest) -> None:
    """Text the test can read back: without pdftotext, only the built-in font's text is plain in the file."""
    if not shutil.which("pdftotext"):
        request.getfixturevalue("builtin_font")


@pytest.mark.usefixtures("readable")
def test_a_document_is_a_pdf_with_its_title_paragraphs_and_tables(tmp_path: Path) -> None:
    data = pdf.document(
        "Quarterly evidence",
        subtitle="2026-01-01 to 2026-04-01",
        parts=[
            pdf.Paragraph("Exported by alice."),
            pdf.Table("Counts", ["what", "count"], [("findings", 12), ("offboardings", None)]),
        ],
    )
    assert data.startswith(b"%PDF-")
    assert data.rstrip().endswith(b"%%EOF")
    assert pdf_pages(data) == 1
    text = pdf_text(data, tmp_path)
    for expected in ("Quarterly evidence", "2026-01-01 to 2026-04-01", "Exported by alice.", "findings"):
        assert expected in text
    assert "12" in text
    assert "None" not in text  # an empty cell stays empty


@pytest.mark.usefixtures("builtin_font")
def test_markup_in_any_text_is_printed_as_it_is(tmp_path: Path) -> None:
    hostile = '<b>bold</b> <font color="red">red</font> &amp; <br/> <a href="x">link</a>'
    data = pdf.document(
        "<i>title</i>",
        subtitle="<u>sub</u> & more",
        parts=[
            pdf.Paragraph(hostile),
            pdf.Paragraph("<b>never closed & <para"),  # reportlab's parser would raise on this
            pdf.Table("<b>table</b>", ["<i>head</i>"], [["<strike>cell</strike>"]]),
        ],
    )
    text = pdf_text(data, tmp_path)
    for literal in (
        "<i>title</i>",
        "<u>sub</u> & more",
        '<font color="red">red</font>',
        "&amp; <br/>",
        "<b>never closed & <para",
        "<b>table</b>",
        "<i>head</i>",
        "<strike>cell</strike>",
    ):
        assert literal in text


@pytest.mark.usefixtures("readable")
def test_a_table_of_5000_rows_breaks_across_pages_and_repeats_its_header(tmp_path: Path) -> None:
    rows = [(n, f"person-{n}", f"prod/service-{n}/**", "pull,push") for n in range(5000)]
    data = pdf.document(
        "Access", parts=[pdf.Table("Everyone", ["number", "person", "pattern", "actions"], rows)]
    )
    pages = page_texts(data, tmp_path)
    assert len(pages) > 50
    assert "person-0" in pages[0]
    assert "person-4999" in pages[-1]
    assert all("pattern" in page for page in pages)  # the header on every page
    assert sum(page.count("prod/service-") for page in pages) == 5000  # no row lost or doubled


@pytest.mark.usefixtures("readable")
def test_a_huge_cell_is_cut_instead_of_failing_the_layout(tmp_path: Path) -> None:
    # A row taller than a page cannot be placed: reportlab would raise LayoutError.
    data = pdf.document("Big", parts=[pdf.Table("t", ["a", "b"], [["word " * 20000, "x" * 50000]])])
    assert data.startswith(b"%PDF-")
    assert "[cut]" in pdf_text(data, tmp_path)


def test_control_characters_do_not_break_the_document() -> None:
    data = pdf.document("a\x00b\x1bc", parts=[pdf.Paragraph("line\x07one\r\nline two\ttab")])
    assert data.startswith(b"%PDF-")


@pytest.mark.skipif(not DEJAVU, reason="DejaVu Sans is not installed here")
def test_other_scripts_are_set_in_the_unicode_font(tmp_path: Path) -> None:
    names = "Zürich Москва Ελλάδα Łódź ✓"
    data = pdf.document(names, parts=[pdf.Table("People", ["name"], [[names]])])
    assert b"DejaVuSans" in data  # the font is embedded
    if shutil.which("pdftotext"):
        assert pdf_text(data, tmp_path).count("Zürich Москва Ελλάδα Łódź ✓") == 3  # title, cell, footer


@pytest.mark.usefixtures("builtin_font")
def test_without_a_unicode_font_unencodable_characters_become_question_marks(tmp_path: Path) -> None:
    data = pdf.document("Zürich Москва", parts=[pdf.Paragraph("Łódź"), pdf.Table("t", ["ü"], [["東京"]])])
    assert b"DejaVuSans" not in data
    text = pdf_text(data, tmp_path)
    assert "Zürich ??????" in text
    assert "?ód?" in text
    assert "??" in text.replace("Zürich ??????", "")  # the cell, not the title again


def test_the_same_input_gives_the_same_bytes() -> None:
    def make() -> bytes:
        return pdf.document("Same", subtitle="twice", parts=[pdf.Table("t", ["a"], [[1], [2]])])

    assert make() == make()
