"""Read the four rendered files back into plain rows, independently of the renderers' own code,
so that a test compares what a reader of each file would actually see."""

from __future__ import annotations

import csv
import io
from decimal import ROUND_HALF_UP, Decimal
from html.parser import HTMLParser

import openpyxl
import pypdf

Rows = list[dict[str, object]]


def csv_sections(text: str) -> dict[str, Rows]:
    """`# section: KEY` blocks -> {KEY: [{column: cell text}]}."""
    out: dict[str, Rows] = {}
    key, header = None, None
    for row in csv.reader(io.StringIO(text)):
        if not row:
            key, header = None, None
        elif row[0].startswith("# section: "):
            key = row[0].removeprefix("# section: ")
            out[key] = []
        elif key is not None and header is None:
            header = row
        elif key is not None and header is not None:
            out[key].append(dict(zip(header, row, strict=True)))
    return out


def xlsx_sections(data: bytes) -> tuple[dict[str, Rows], dict[str, list[str]]]:
    """Sheets -> rows of cell values (header on row 4; a formula cell gives the value the file caches
    for it, as a spreadsheet that does not recalculate shows it), and the number formats of money columns."""
    book = openpyxl.load_workbook(io.BytesIO(data), data_only=True)
    out: dict[str, Rows] = {}
    formats: dict[str, list[str]] = {}
    for sheet in book.worksheets:
        rows = list(sheet.iter_rows(min_row=4, values_only=False))
        header = [c.value for c in rows[0]]
        out[sheet.title] = [{h: c.value for h, c in zip(header, r, strict=False)} for r in rows[1:]]
        formats[sheet.title] = [c.number_format for r in rows[1:] for c in r if isinstance(c.value, float)]
    return out, formats


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.key: str | None = None
        self.cell: list[str] | None = None
        self.row: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "h2":
            self.key = dict(attrs).get("id")
            self.tables[self.key or ""] = []
        elif tag in ("td", "th"):
            self.cell = []
        elif tag == "tr":
            self.row = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None:
            self.row.append("".join(self.cell).strip())
            self.cell = None
        elif tag == "tr" and self.key is not None:
            self.tables[self.key].append(self.row)

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def html_sections(text: str) -> dict[str, Rows]:
    parser = _Tables()
    parser.feed(text)
    return {
        k: [dict(zip(rows[0], r, strict=False)) for r in rows[1:]]
        for k, rows in parser.tables.items()
        if rows
    }


def pdf_lines(data: bytes) -> tuple[int, list[list[str]]]:
    """Page count and each page's extracted text as stripped lines."""
    reader = pypdf.PdfReader(io.BytesIO(data))
    return len(reader.pages), [[ln.strip() for ln in p.extract_text().splitlines()] for p in reader.pages]


def pdf_team_row(lines: list[str], team: str) -> list[str]:
    """The cells after `team` in the 'Spend per team' table: category, direct, shared, total, ..."""
    start = lines.index("Spend per team")
    i = lines.index(team, start)
    return lines[i + 1 : i + 5]


def shown(value: object) -> str:
    """A spreadsheet number as a spreadsheet shows it in a 0.00 format: the shortest decimal that
    round-trips the double, rounded half-up (1000.005 shows as 1000.01)."""
    return str(Decimal(repr(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
