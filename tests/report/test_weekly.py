"""`gpulens report weekly` end to end on a warehouse built by `gpulens ingest` from the files in
tests/report/fixtures/ (ledger in fixtures/make_fixtures.py).

Ledger, week 2026-W47 (Nov 16-22, 7 days), USD, amortized:
  i-0shared 786.432/day, 8 GPUs: search 4 GPUs x 12 h = 1/4 -> 196.608/day; vision 1 GPU x 24 h = 1/8
            -> 98.304/day; idle 5/8 -> 491.52/day
  i-0search 24.24/day direct to search; fs-0train 10/day split by cluster `train` GPU-seconds
            (search 48 : vision 24 GPU-h/day) -> 6.6667 / 3.3333; vol-0lost 1.50/day unallocated;
  Tax 30.00 over Nov 1 - Dec 1 -> 7/30 of it = 7.00 unallocated.
  search  direct 169.68, shared 1376.256 + 46.6667 = 1422.92, total 1592.60, waste 275.2512 + 67.872 = 343.12
  vision  shared 688.128 + 23.3333 = 711.46, waste 688.128 x 0.9 = 619.32
  idle 3440.64, unallocated 17.50, total 5762.20
W46 (no vision): search 169.68 + 1376.256 + 70 = 1615.94, idle 4128.77, total 5762.20.
vision-llm: anomaly at step 350 = Nov 20 20:40; its GPU from 20:00 to Nov 23 00:00 = 52 h x 4.096 = 212.99.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import boto3
import openpyxl
import pytest

from gpulens.attribution.allocate import allocate
from gpulens.attribution.model import Allocation
from gpulens.attribution.report.model import IsoWeek
from gpulens.attribution.report.tables import cents
from gpulens.attribution.warehouse import Warehouse
from gpulens.cli import main
from tests.report.readers import csv_sections, html_sections, pdf_lines, pdf_team_row, shown, xlsx_sections
from tests.report.servers import smtp_server
from tests.support.moto_server import moto_server

FIXTURES = Path(__file__).parent / "fixtures"
W47 = IsoWeek(2026, 47)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("wh") / "report.duckdb"
    for argv in (
        ["ingest", "cur", str(FIXTURES / "cur2-2026-11.csv")],
        ["ingest", "usage", str(FIXTURES / "usage.csv")],
        ["ingest", "runs", str(FIXTURES / "vision-llm.csv")],
    ):
        assert main([*argv, "--warehouse", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def w47(warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Allocation, Allocation]:
    """The report's folder and what `allocate` says about the same two weeks."""
    out = tmp_path_factory.mktemp("out")
    assert (
        main(["report", "weekly", "--week", "2026-W47", "--out", str(out), "--warehouse", str(warehouse)])
        == 0
    )
    with Warehouse(warehouse).connect(read_only=True) as con:
        now = allocate(con, W47.start, W47.end)
        before = allocate(con, W47.previous().start, W47.previous().end)
    return out, now, before


def _c(x: Decimal) -> str:
    return str(cents(x))


def test_allocate_matches_the_hand_ledger(w47: tuple[Path, Allocation, Allocation]) -> None:
    _, now, before = w47
    teams = {t.team: (_c(t.direct), _c(t.shared), _c(t.total), _c(t.waste)) for t in now.teams}
    assert teams == {
        "search": ("169.68", "1422.92", "1592.60", "343.12"),
        "vision": ("0.00", "711.46", "711.46", "619.32"),
    }
    assert (_c(now.idle), _c(now.unallocated), _c(now.total)) == ("3440.64", "17.50", "5762.20")
    assert {t.team: _c(t.total) for t in before.teams} == {"search": "1615.94"}


def test_csv_agrees_with_allocate_to_the_cent(w47: tuple[Path, Allocation, Allocation]) -> None:
    out, now, before = w47
    sec = csv_sections((out / "report.csv").read_text())
    rows = {r["team"]: r for r in sec["teams"]}
    prev = {t.team: t.total for t in before.teams}
    for t in now.teams:
        r = rows[t.team]
        assert (r["direct"], r["shared"], r["total"], r["waste"]) == (
            _c(t.direct),
            _c(t.shared),
            _c(t.total),
            _c(t.waste),
        )
    # W46's parts rounded together so that they add up to its total shown (5,762.204 -> 5,762.20):
    # search 1,615.936 -> 1,615.93, idle 4,128.768 -> 4,128.77, unallocated 17.50 (each rounded alone,
    # 1,615.94 + 4,128.77 + 17.50 = 5,762.21 under a total of 5,762.20).
    assert {t.team: rows[t.team]["previous week"] for t in now.teams} == {
        "search": "1615.93",
        "vision": "0.00",
    }
    assert sorted(prev) == ["search"]
    assert (rows["idle GPU time"]["total"], rows["unallocated"]["total"], rows["total"]["total"]) == (
        _c(now.idle),
        _c(now.unallocated),
        _c(now.total),
    )
    assert rows["total"]["previous week"] == _c(before.total)
    recon = {r["line"]: r["amount"] for r in sec["reconciliation"]}
    assert recon["CUR total (amortized)"] == recon["sum of the parts"] == _c(now.total)
    assert recon["difference"] == "0.00"
    assert {r["resource_id"]: r["cost"] for r in sec["unallocated"]} == {
        (u.resource_id or "(no resource id)"): _c(u.cost) for u in now.unallocated_lines
    }
    assert [(r["job_id"], r["onset"], r["spend after onset"]) for r in sec["divergent_runs"]] == [
        ("vision-llm", "2026-11-20 20:40 UTC", "212.99")
    ]
    assert [(r["job_id"], r["waste"]) for r in sec["underutilized"]] == [("vision-llm", "619.32")]
    fresh = {r["item"]: r["value"] for r in sec["freshness"]}
    assert fresh["newest usage hour"] == "2026-11-23 23:00 UTC"
    assert fresh["newest CUR usage line ends"] == "2026-11-24 00:00 UTC"
    assert fresh["billing period of that delivery"] == "2026-11" and fresh["last CUR delivery ingested"]
    assert fresh["days without CUR usage lines"] == fresh["days without usage rollups"] == "none"


def test_xlsx_agrees_with_allocate(w47: tuple[Path, Allocation, Allocation]) -> None:
    out, now, _ = w47
    sheets, _ = xlsx_sections((out / "report.xlsx").read_bytes())
    rows = {r["team"]: r for r in sheets["teams"]}
    for t in now.teams:
        assert [shown(rows[t.team][c]) for c in ("direct", "shared", "total", "waste")] == [
            _c(t.direct),
            _c(t.shared),
            _c(t.total),
            _c(t.waste),
        ]
    assert shown(rows["total"]["total"]) == _c(now.total)
    recon = {r["line"]: r["amount"] for r in sheets["reconciliation"]}
    assert shown(recon["CUR total (amortized)"]) == _c(now.total)


def test_html_and_pdf_agree_with_allocate(w47: tuple[Path, Allocation, Allocation]) -> None:
    out, now, _ = w47
    text = (out / "report.html").read_text()
    assert not re.search(r"https?://|@import|\b(src|href)\s*=|url\(", text)
    html = html_sections(text)
    rows = {r["team"]: r for r in html["teams"]}
    _, pages = pdf_lines((out / "report.pdf").read_bytes())
    lines = [ln for page in pages for ln in page]
    for t in now.teams:
        expected = [f"${cents(x):,.2f}" for x in (t.direct, t.shared, t.total)]
        assert [rows[t.team][c] for c in ("direct", "shared", "total")] == expected
        assert pdf_team_row(lines, t.team) == ["team", *expected]
    assert rows["total"]["total"] == f"${cents(now.total):,.2f}"
    recon = lines.index("CUR total (amortized)")
    assert lines[recon + 1] == f"${cents(now.total):,.2f}"
    assert "Incomplete week" not in " ".join(pages[0])


def test_a_week_with_missing_days_says_so_first(warehouse: Path, tmp_path: Path) -> None:
    """W48: the fixtures end on Monday Nov 23, so Tuesday to Sunday have neither CUR nor usage."""
    assert (
        main(
            ["report", "weekly", "--week", "2026-W48", "--out", str(tmp_path), "--warehouse", str(warehouse)]
        )
        == 0
    )
    _, pages = pdf_lines((tmp_path / "report.pdf").read_bytes())
    first = " ".join(pages[0])
    assert "Incomplete week: no CUR usage lines for Tue 2026-11-24" in first
    assert "Sun 2026-11-29" in first and "no GPU usage rollups" in first
    assert (tmp_path / "report.csv").read_text().splitlines()[1].startswith("# incomplete week,")
    html = (tmp_path / "report.html").read_text()
    assert html.index("Incomplete week") < html.index("Headline")
    book = openpyxl.load_workbook(tmp_path / "report.xlsx")
    assert str(book["headline"]["A3"].value).startswith(
        "Incomplete week: no CUR usage lines for Tue 2026-11-24"
    )


def test_cli_uploads_to_s3_and_mails_with_credentials_from_the_environment(
    warehouse: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "GPULENS_SMTP_FROM": "gpulens@example.org",
        "GPULENS_SMTP_TO": "finance@example.org",
        "GPULENS_SMTP_USER": "reports",
        "GPULENS_SMTP_PASSWORD": "pa55-word-xyz",
    }.items():
        monkeypatch.setenv(k, v)
    with (
        moto_server() as endpoint,
        smtp_server(tmp_path, tls="starttls", user="reports", password="pa55-word-xyz") as (box, _),
    ):
        cert = tmp_path / "smtp.crt"
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the CLI's default TLS context trusts the test CA
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="finance-weekly")
        code = main(
            [
                "report",
                "weekly",
                "--week",
                "2026-W47",
                "--out",
                "s3://finance-weekly/weekly/2026-W47",
                "--endpoint-url",
                endpoint,
                "--warehouse",
                str(warehouse),
                "--smtp-host",
                "127.0.0.1",
                "--smtp-port",
                str(box.port),
            ]
        )
        assert code == 0
        s3 = boto3.client("s3", endpoint_url=endpoint)
        listed = s3.list_objects_v2(Bucket="finance-weekly", Prefix="weekly/")["Contents"]
        csv_text = (
            boto3.client("s3", endpoint_url=endpoint)
            .get_object(Bucket="finance-weekly", Key="weekly/2026-W47/report.csv")["Body"]
            .read()
            .decode()
        )
    assert sorted(o["Key"] for o in listed) == [
        f"weekly/2026-W47/report.{e}" for e in ("csv", "html", "pdf", "xlsx")
    ]
    assert "search,team,169.68,1422.92,1592.60" in csv_text
    assert box.envelopes == [("gpulens@example.org", ["finance@example.org"])]
    attached = {p.get_filename() for p in box.messages[0].walk() if p.get_filename()}
    assert attached == {"report.html", "report.pdf", "report.csv", "report.xlsx"}
    printed = capsys.readouterr()
    assert "mailed to finance@example.org" in printed.out
    assert "pa55-word-xyz" not in printed.out + printed.err + caplog.text


def test_idle_share_passes_through_to_allocate(warehouse: Path, tmp_path: Path) -> None:
    """--idle share: i-0shared's idle goes to search and vision by GPU-seconds; the report shows
    exactly what allocate says, and idle is 0."""
    assert (
        main(
            [
                "report",
                "weekly",
                "--week",
                "2026-W47",
                "--out",
                str(tmp_path),
                "--idle",
                "share",
                "--warehouse",
                str(warehouse),
            ]
        )
        == 0
    )
    with Warehouse(warehouse).connect(read_only=True) as con:
        shared = allocate(con, W47.start, W47.end, idle="share")
    rows = {r["team"]: r for r in csv_sections((tmp_path / "report.csv").read_text())["teams"]}
    assert {t.team: rows[t.team]["total"] for t in shared.teams} == {
        t.team: _c(t.total) for t in shared.teams
    }
    assert rows["idle GPU time"]["total"] == "0.00" and rows["total"]["total"] == "5762.20"


def test_an_empty_week_is_refused_unless_allowed(
    warehouse: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """W40 (Sep 28 - Oct 5): the fixtures hold November only. Before, four reports of zeros and exit 0."""
    argv = [
        "report",
        "weekly",
        "--week",
        "2026-W40",
        "--out",
        str(tmp_path / "out"),
        "--warehouse",
        str(warehouse),
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "week 2026-W40 (2026-09-28 to 2026-10-05) has no CUR usage line and no GPU usage rollup" in err
    assert "CUR usage up to 2026-11-24 00:00 and GPU usage up to 2026-11-23 23:00" in err
    assert "--allow-empty" in err
    assert not (tmp_path / "out").exists()
    assert main([*argv, "--allow-empty"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "report.csv",
        "report.html",
        "report.pdf",
        "report.xlsx",
    ]


def test_only_runs_active_in_the_week_are_listed(warehouse: Path, tmp_path: Path) -> None:
    """A run is listed in the weeks it logged a step or held a GPU. Two runs whose loss went NaN:
    october-run logged Oct 1-4 (listed in W40 only); a llm.c log carries no times and its job held no
    GPU of the warehouse, so no week can claim it (before, it was listed in every week)."""
    copy = tmp_path / "w.duckdb"
    copy.write_bytes(warehouse.read_bytes())
    october = tmp_path / "october-run.csv"
    rows = [
        f"{s},{4.0 - s / 100},october-run,search,2026-10-0{1 + s // 10}T00:00:00Z" for s in range(0, 40, 5)
    ]
    october.write_text(
        "step,loss,job_id,team,ts\n" + "\n".join(rows) + "\n40,nan,october-run,search,2026-10-04T12:00:00Z\n"
    )
    untimed = tmp_path / "untimed.log"
    untimed.write_text("".join(f"s:{s} trl:{4.0 - s / 100:.4f}\n" for s in range(40)) + "s:40 trl:nan\n")
    assert main(["ingest", "runs", str(october), str(untimed), "--warehouse", str(copy)]) == 0

    def listed(week: str) -> list[str]:
        out = tmp_path / week
        argv = [
            "report",
            "weekly",
            "--week",
            week,
            "--out",
            str(out),
            "--warehouse",
            str(copy),
            "--allow-empty",
        ]
        assert main(argv) == 0
        return [r["job_id"] for r in csv_sections((out / "report.csv").read_text())["divergent_runs"]]

    assert listed("2026-W47") == ["vision-llm"]
    assert listed("2026-W40") == ["october-run"]


def test_the_bridge_of_the_week_is_allocates_two_totals(w47: tuple[Path, Allocation, Allocation]) -> None:
    """W47 holds only usage and tax: billed = amortized, line by line; the amortized total is the
    report's total (5,762.20) and the tax row is 7/30 of 30.00 = 7.00."""
    out, now, _ = w47
    rows = {r["line"]: r for r in csv_sections((out / "report.csv").read_text())["bridge"]}
    assert (rows["total"]["amortized"], rows["total"]["billed"]) == (_c(now.total), _c(now.billed_total))
    assert rows["Tax"]["amortized"] == rows["Tax"]["billed"] == "7.00"
    assert rows["total"]["billed - amortized"] == "0.00"
