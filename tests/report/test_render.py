"""Renderers on a hand-built report (ledger in tests/report/sample.py): every format shows the same
cents, the html fetches nothing, the pdf has text, an incomplete week says so on page one."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

import pytest

from gpulens.attribution.report.render import render_all
from tests.report.readers import csv_sections, html_sections, pdf_lines, pdf_team_row, shown, xlsx_sections
from tests.report.sample import sample_report

# Totals computed by hand from the ledger, rounded half-up to the cent.
EXPECTED_TEAMS = {"search": ("1000.01", "234.57", "1234.57"), "vision": ("0.00", "45.10", "45.10")}


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return render_all(sample_report())


def test_csv_has_every_section_and_the_teams_to_the_cent(files: dict[str, bytes]) -> None:
    sec = csv_sections(files["report.csv"].decode())
    assert list(sec) == [
        "headline",
        "teams",
        "underutilized",
        "divergent_runs",
        "unallocated",
        "reconciliation",
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
    assert teams == {k: tuple(f"{Decimal(v):,.2f}" for v in vals) for k, vals in EXPECTED_TEAMS.items()}
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
            *(f"{Decimal(v):,.2f}" for v in (direct, shared, total)),
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
