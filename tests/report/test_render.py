"""Renderers on a hand-built report (ledger in tests/report/sample.py): every format shows the same
cents, the html fetches nothing, the pdf has text, an incomplete week says so on page one."""

from __future__ import annotations

import dataclasses
import io
import re
from datetime import date
from decimal import Decimal

import openpyxl
import pytest
from openpyxl.utils import get_column_letter

from gpulens.attribution.report.render import render_all
from tests.report.readers import csv_sections, html_sections, pdf_lines, pdf_team_row, shown, xlsx_sections
from tests.report.sample import sample_report

# Totals computed by hand from the ledger, rounded half-up to the cent; a total's parts are rounded
# together (largest remainder, attribution/money.py) so that they add up to it as shown: search
# 1,000.005 + 234.5678 = 1,234.5728 shows 1,234.57 = 1,000.00 + 234.57 (each alone: 1,000.01 + 234.57).
EXPECTED_TEAMS = {"search": ("1000.00", "234.57", "1234.57"), "vision": ("0.00", "45.10", "45.10")}


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return render_all(sample_report())


def test_csv_has_every_section_and_the_teams_to_the_cent(files: dict[str, bytes]) -> None:
    sec = csv_sections(files["report.csv"].decode())
    assert list(sec) == [
        "headline",
        "teams",
        "cost_kinds",
        "underutilized",
        "divergent_runs",
        "lost_training",
        "unallocated",
        "reconciliation",
        "bridge",
        "freshness",
        "methods",
    ]
    teams = {
        r["team"]: (r["direct"], r["shared"], r["total"]) for r in sec["teams"] if r["category"] == "team"
    }
    assert teams == EXPECTED_TEAMS
    recon = {r["line"]: r["amount"] for r in sec["reconciliation"]}
    assert recon["sum of the parts"] == recon["CUR total (amortized)"] == "1362.00"
    assert recon["difference"] == "0.00"
    assert [r["resource_id"] for r in sec["unallocated"]] == ["i-0abc", "(no resource id)"]
    assert sec["divergent_runs"][0]["spend after onset"] == "321.99"
    kinds = {r["team"]: (r["gpu"], r["storage"], r["other"], r["total"]) for r in sec["cost_kinds"]}
    assert kinds == {
        "search": ("1100.00", "100.00", "34.57", "1234.57"),
        "vision": ("45.10", "0.00", "0.00", "45.10"),
    }


def test_xlsx_money_is_numbers_in_a_currency_format(files: dict[str, bytes]) -> None:
    sheets, formats = xlsx_sections(files["report.xlsx"])
    assert set(sheets) >= {"headline", "teams", "unallocated", "reconciliation", "freshness", "methods"}
    rows = {r["team"]: r for r in sheets["teams"] if r["category"] == "team"}
    for team, (direct, shared, total) in EXPECTED_TEAMS.items():
        got = rows[team]
        assert isinstance(got["total"], float)
        assert [shown(got[c]) for c in ("direct", "shared", "total")] == [direct, shared, total]
    assert any('"$"#,##0.00' in f for f in formats["teams"])


def test_html_tables_match_and_fetch_nothing(files: dict[str, bytes]) -> None:
    html = files["report.html"].decode()
    assert not re.search(r"https?://", html), "the report must not reference any URL"
    assert not re.search(r"\b(src|href)\s*=|@import|url\(", html)
    assert "<svg" in html and "<script" not in html
    teams = {
        r["team"]: (r["direct"], r["shared"], r["total"])
        for r in html_sections(html)["teams"]
        if r.get("category") == "team"
    }
    assert teams == {k: tuple(f"${Decimal(v):,.2f}" for v in vals) for k, vals in EXPECTED_TEAMS.items()}
    assert "Incomplete week" not in html


def test_pdf_renders_with_extractable_text(files: dict[str, bytes]) -> None:
    assert files["report.pdf"].startswith(b"%PDF-")
    pages, lines = pdf_lines(files["report.pdf"])
    assert pages >= 2
    everything = [ln for page in lines for ln in page]
    assert "GPU spend, week 2026-W47" in lines[0]
    for team, (direct, shared, total) in EXPECTED_TEAMS.items():
        assert pdf_team_row(everything, team) == [
            "team",
            *(f"${Decimal(v):,.2f}" for v in (direct, shared, total)),
        ]
    assert "Reconciliation to the CUR total" in everything


def test_incomplete_week_is_labelled_on_the_first_page() -> None:
    files = render_all(sample_report(missing_days=(date(2026, 11, 21), date(2026, 11, 22))))
    _, lines = pdf_lines(files["report.pdf"])
    first_page = " ".join(lines[0])
    assert "Incomplete week: no CUR usage lines for Sat 2026-11-21, Sun 2026-11-22" in first_page
    html = files["report.html"].decode()
    assert html.index("Incomplete week") < html.index("Headline")
    assert "incomplete week" in files["report.csv"].decode().splitlines()[1].lower()


def test_the_bridge_reconciles_the_two_totals_in_every_format(files: dict[str, bytes]) -> None:
    """Ledger in sample.py: amortized 1,362.00 (the report's total) against billed 1,400.00."""
    rows = {r["line"]: r for r in csv_sections(files["report.csv"].decode())["bridge"]}
    assert (rows["total"]["amortized"], rows["total"]["billed"], rows["total"]["billed - amortized"]) == (
        "1362.00",
        "1400.00",
        "38.00",
    )
    fees = rows["Commitment fees (amortized: the unused commitment only)"]
    assert (fees["amortized"], fees["billed"], fees["billed - amortized"]) == ("10.00", "98.00", "88.00")
    html = {r["line"]: r for r in html_sections(files["report.html"].decode())["bridge"]}
    assert (html["total"]["amortized"], html["total"]["billed"]) == ("$1,362.00", "$1,400.00")
    everything = [ln for page in pdf_lines(files["report.pdf"])[1] for ln in page]
    assert "From amortized cost to the bill" in everything
    i = everything.index("Usage at on-demand rates")
    assert everything[i + 1 : i + 5] == ["Usage", "$1,300.00", "$1,300.00", "$0.00"]


def test_money_hours_and_counts_are_formatted_for_people_in_html() -> None:
    """Money with its symbol (or ISO code), two decimals and thousands; hours with a unit; counts
    with separators. The csv keeps plain numbers under the currency named on its first line."""
    report = sample_report()
    html = html_sections(render_all(report)["report.html"].decode())
    head = {r["measure"]: r for r in html["headline"]}
    assert head["Total spend"]["this week"] == "$1,362.00" and head["GPU-hours"]["this week"] == "170.5 h"
    assert html["divergent_runs"][0]["step"] == "1,200"
    eur = dataclasses.replace(report, allocation=dataclasses.replace(report.allocation, currency="EUR"))
    teams = {r["team"]: r for r in html_sections(render_all(eur)["report.html"].decode())["teams"]}
    assert teams["search"]["total"] == "€1,234.57"
    chf = dataclasses.replace(report, allocation=dataclasses.replace(report.allocation, currency="CHF"))
    teams = {r["team"]: r for r in html_sections(render_all(chf)["report.html"].decode())["teams"]}
    assert teams["search"]["total"] == "CHF 1,234.57"
    csv_text = render_all(report)["report.csv"].decode()
    assert csv_text.splitlines()[0].split(",")[2] == "USD"
    assert {r["team"]: r["total"] for r in csv_sections(csv_text)["teams"]}["search"] == "1234.57"


def test_xlsx_sizes_every_column_filters_every_table_and_totals_by_formula(files: dict[str, bytes]) -> None:
    book = openpyxl.load_workbook(io.BytesIO(files["report.xlsx"]))
    for sheet in book.worksheets:
        header = [c.value for c in sheet[4]]
        assert sheet.auto_filter.ref and sheet.auto_filter.ref.startswith("A4:"), sheet.title
        for col, name in enumerate(header, start=1):
            letter = get_column_letter(col)
            width = sheet.column_dimensions[letter].width
            assert width and width >= len(str(name)), (sheet.title, name, width)
    teams = book["teams"]
    header = [c.value for c in teams[4]]
    total_row = next(r for r in teams.iter_rows(min_row=5) if r[0].value == "total")
    total = total_row[header.index("total")]
    assert total.value == "=SUM(E5:E8)"  # search, vision, idle, unallocated
    # money as shown ($1,234.57) fits its column: no #### in Excel
    assert teams.column_dimensions["E"].width >= len("$1,362.00")
    bridge = book["bridge"]
    rows = {r[0].value: r for r in bridge.iter_rows(min_row=5)}
    assert [c.value for c in rows["total"][2:5]] == ["=SUM(C5:C11)", "=SUM(D5:D11)", "=SUM(E5:E11)"]
    assert rows["Tax"][4].value == "=D10-C10"
    recon = {r[0].value: r[1].value for r in book["reconciliation"].iter_rows(min_row=5)}
    assert (recon["sum of the parts"], recon["difference"]) == ("=SUM(B5:B8)", "=B9-B10")
    # the cached values are the report's own, for readers that do not recalculate
    cached = openpyxl.load_workbook(io.BytesIO(files["report.xlsx"]), data_only=True)
    values = {r[0].value: r[2].value for r in cached["bridge"].iter_rows(min_row=5)}
    assert values["total"] == 1362.0


def test_an_incomplete_week_compares_per_day_rates() -> None:
    """Six days of CUR this week against seven: change % is per day. Total 1,362.00 / 6 against
    1,100.00 / 7 -> 227.00 / 157.142857 - 1 = +44.5 %, not +23.8 % (1,362 / 1,100 - 1)."""
    report = sample_report(missing_days=(date(2026, 11, 22),))
    head = {r["measure"]: r for r in html_sections(render_all(report)["report.html"].decode())["headline"]}
    assert head["Total spend"]["change %"] == "+44.5%"
    assert head["Total spend"]["change"] == "$262.00"
    html = render_all(report)["report.html"].decode()
    assert "CUR usage lines for 6 of 7 days" in html and "per day" in html
    complete = {
        r["measure"]: r
        for r in html_sections(render_all(sample_report())["report.html"].decode())["headline"]
    }
    assert complete["Total spend"]["change %"] == "+23.8%"


def test_unallocated_rows_say_what_moves_them(files: dict[str, bytes]) -> None:
    """Ledger: i-0abc (Usage, 10.00) can be tagged; the tax line (2.00) cannot."""
    rows = {r["resource_id"]: r for r in csv_sections(files["report.csv"].decode())["unallocated"]}
    assert rows["i-0abc"]["what to do"] == "tag it with `team`"
    assert rows["(no resource id)"]["what to do"] == "none: tax"
    assert [rows[k]["cost"] for k in ("i-0abc", "(no resource id)")] == ["10.00", "2.00"]


def test_a_billed_report_says_where_the_commitment_fees_went() -> None:
    """Ledger: billed commitment fees 98.00 sit outside every team under billed cost."""
    report = sample_report()
    billed = dataclasses.replace(report, allocation=dataclasses.replace(report.allocation, basis="billed"))
    html = render_all(billed)["report.html"].decode()
    assert "commitment fees ($98.00) are unallocated, outside every team" in html
    assert "commitment fees ($98.00)" not in render_all(report)["report.html"].decode()
