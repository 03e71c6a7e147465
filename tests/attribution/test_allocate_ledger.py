"""The ledger month 2026-10 (tests/fixtures/cur/build.py writes it in every flavour), allocated by hand.

Lines (amortized cost, docs/design.md §6):
  L01 i-shared p4d.24xlarge (8 GPUs)  Usage 00-01h               32.00  untagged, cluster "C1 "
  L02 i-shared                        SPCoveredUsage 01-02h      20.00  (unblended 32.00; SP effective 20.00)
  L03 i-shared                        SPNegation 01-02h           0.00  (unblended -32.00)
  L04 i-direct g5.xlarge (1 GPU)      DiscountedUsage 00-01h      0.60  tag user_team="ML "
  L05 RI ARN                          RIFee month                 2.00  (1.50 + 0.50 unused; unblended 10.00)
  L06 RI ARN                          Fee (reservation)           0.00  (unblended 100.00)
  L07 SP ARN                          SPRecurringFee month        5.00  (25.00 - 20.00 used)
  L08 SP ARN                          SPUpfrontFee                0.00  (unblended 50.00)
  L09 fs-1 FSx                        Usage day 1                12.00  tag cluster "c1"
  L10 bucket-search S3                Usage day 1                 3.00  tag team=" Search "
  L11 vol-1 EBS                       Usage day 1                 1.25  tag user_team="ads"
  L12 i-orphan t3.large               Usage 00-01h                2.00  untagged, no usage
  L13 Tax 4.10 · L14 Credit -1.00 · L15 support Fee 5.00 (no resource)
  total amortized 85.95; billed (unblended) 243.35

Usage (hour 00 only): i-shared GPUs 0-3 j-search team " Search " SM 0.5; GPUs 4-5 j-ads ads SM 0.75;
GPUs 6-7 nobody; i-direct GPU 0 j-ml ml SM 0.2. Hour 01: nobody.

By hand:
  (1) i-shared 00h: 32.00 / (8 x 3600 s) per GPU-second: search 14400 s -> 16.00, ads 7200 s -> 8.00, idle
  8.00
  (2) i-shared 01h: idle 20.00 (+ negation 0.00)                          -> idle total 28.00
  (3) fs-1 by cluster c1 GPU-seconds (search 14400 : ads 7200): search 8.00, ads 4.00
  (4) direct: search 3.00 (S3), ads 1.25 (EBS), ml 0.60 (i-direct)
  (5) waste: search 16.00 x 0.5 = 8.00; ads 8.00 x 0.25 = 2.00; ml 0.60 x 0.8 = 0.48
  (6) unallocated: 2.00 + 0 + 5.00 + 0 + 2.00 + 4.10 - 1.00 + 5.00 = 17.10
  (7) teams: search 27.00, ads 13.25, ml 0.60; 27.00 + 13.25 + 0.60 + 28.00 + 17.10 = 85.95
  (8) --idle share: i-shared idle 28.00 split search 2/3, ads 1/3: search 45.67, ads 22.58 (to the cent)
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from gpulens.attribution.allocate import allocate, allocate_period, daily_allocations
from gpulens.attribution.model import Allocation, InvariantViolation, TeamCost
from gpulens.attribution.warehouse import Warehouse

from .conftest import LEDGER_FILES, USAGE

CENT = Decimal("0.01")


def _teams(a: Allocation) -> dict[str, tuple[Decimal, Decimal, Decimal, Decimal]]:
    return {
        t.team: (t.direct.quantize(CENT), t.shared.quantize(CENT), t.gpu_hours, t.waste.quantize(CENT))
        for t in a.teams
    }


@pytest.fixture(params=sorted(LEDGER_FILES))
def ledger(request: pytest.FixtureRequest, gpulens: Callable[..., int], warehouse: Path) -> Path:
    assert gpulens("ingest", "cur", LEDGER_FILES[request.param]) == 0
    assert gpulens("ingest", "usage", USAGE) == 0
    return warehouse


def test_every_flavour_allocates_the_ledger_the_same(ledger: Path) -> None:
    with Warehouse(ledger).connect(read_only=True) as con:
        a = allocate_period(con, "2026-10")
    assert a.total == Decimal("85.95")  # ledger total
    assert a.billed_total == Decimal("243.35")
    assert a.currency == "USD"
    assert _teams(a) == {  # (1) (3) (4) (5)
        "search": (Decimal("3.00"), Decimal("24.00"), Decimal("4"), Decimal("8.00")),
        "ads": (Decimal("1.25"), Decimal("12.00"), Decimal("2"), Decimal("2.00")),
        "ml": (Decimal("0.60"), Decimal("0.00"), Decimal("1"), Decimal("0.48")),
    }
    assert a.idle == Decimal("28.00")  # (2)
    assert a.unallocated == Decimal("17.10")  # (6)
    assert [t.team for t in a.teams] == ["search", "ads", "ml"]  # by total, descending (7)
    listed = {(u.resource_id, u.line_item_type): u.cost for u in a.unallocated_lines}
    assert listed[("i-orphan", "Usage")] == Decimal("2.00")
    assert sum(listed.values()) == Decimal("17.10")


def test_idle_share_spreads_the_instance_idle_by_gpu_seconds(ledger: Path) -> None:
    with Warehouse(ledger).connect(read_only=True) as con:
        a = allocate_period(con, "2026-10", idle="share")
    assert a.idle == 0
    totals = {t.team: t.total.quantize(CENT) for t in a.teams}
    assert totals == {"search": Decimal("45.67"), "ads": Decimal("22.58"), "ml": Decimal("0.60")}  # (8)
    assert sum(t.total for t in a.teams) + a.unallocated == Decimal("85.95")


def test_billed_basis_uses_unblended_cost(gpulens: Callable[..., int], warehouse: Path) -> None:
    # Billed view of the CUR 2.0 ledger: i-shared 32 + 32 - 32 = 32 over 00-02h: 00h split 16/8/8 as (1),
    # 01h: 32 - 32 = 0 idle; ml's reserved hour bills 0; unallocated = 10 + 100 + 25 + 50 + 2 + 4.10 - 1 + 5.
    assert gpulens("ingest", "cur", LEDGER_FILES["cur2-csv"]) == 0
    assert gpulens("ingest", "usage", USAGE) == 0
    with Warehouse(warehouse).connect(read_only=True) as con:
        a = allocate_period(con, "2026-10", basis="billed")
    assert a.total == Decimal("243.35")
    assert a.idle == Decimal("8.00")
    assert a.unallocated == Decimal("195.10")
    assert {t.team: t.total for t in a.teams} == {
        "search": Decimal("27.00"),
        "ads": Decimal("13.25"),
        "ml": Decimal("0"),
    }


def test_a_window_prorates_lines_by_overlap(gpulens: Callable[..., int], warehouse: Path) -> None:
    # [00:00, 12:00) of Oct 1: hourly lines whole (32 + 20 + 0.60 + 2.00); day lines half (6 + 1.50 + 0.625);
    # month lines 12/744 of (2 + 5 + 4.10 - 1 + 5 = 15.10) = 0.24354838...; the two day-0 fees whole (0).
    assert gpulens("ingest", "cur", LEDGER_FILES["cur2-parquet"]) == 0
    assert gpulens("ingest", "usage", USAGE) == 0
    with Warehouse(warehouse).connect(read_only=True) as con:
        a = allocate(con, datetime(2026, 10, 1), datetime(2026, 10, 1, 12))
    assert a.total.quantize(CENT) == Decimal("62.97")
    assert {t.team: t.total for t in a.teams} == {
        "search": Decimal("21.50"),  # 16 + 4 (fs-1 half, 2/3) + 1.50
        "ads": Decimal("10.625"),  # 8 + 2 + 0.625
        "ml": Decimal("0.60"),
    }
    assert a.idle == Decimal("28.00")


def test_daily_rows_add_up_to_the_allocation(ledger: Path) -> None:
    with Warehouse(ledger).connect(read_only=True) as con:
        rows = daily_allocations(con, datetime(2026, 10, 1), datetime(2026, 11, 1))
        a = allocate(con, datetime(2026, 10, 1), datetime(2026, 11, 1))
    assert sum(r.cost for r in rows) == a.total
    assert {r.day.isoformat()[:7] for r in rows} == {"2026-10"}
    assert sum(r.cost for r in rows if r.category == "idle") == Decimal("28.00")
    gpu = [r for r in rows if r.category == "shared_gpu"]
    assert {(r.team, r.job_id, r.gpu_seconds) for r in gpu} == {
        ("search", "j-search", 14400.0),
        ("ads", "j-ads", 7200.0),
    }
    assert len({r.day for r in rows}) == 31  # month-long lines spread over every day


def test_attribute_stores_allocations_and_prints_spec_json(
    ledger: Path, gpulens: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert gpulens("attribute", "--period", "2026-10", "--format", "json") == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"period", "currency", "total", "billed_total", "teams", "idle", "unallocated"}
    assert set(out["teams"][0]) == {"team", "direct", "shared", "total", "gpu_hours", "waste"}
    assert out["total"] == pytest.approx(85.95) and out["idle"] == pytest.approx(28.0)
    with Warehouse(ledger).connect(read_only=True) as con:
        stored = dict(
            con.execute(
                "SELECT category, sum(cost) FROM allocations WHERE period = '2026-10' GROUP BY 1"
            ).fetchall()
        )
    assert stored == {
        "direct": Decimal("4.85"),
        "shared_gpu": Decimal("24.00"),
        "shared_other": Decimal("12.00"),
        "idle": Decimal("28.00"),
        "unallocated": Decimal("17.10"),
    }
    assert gpulens("attribute", "--period", "2026-10", "--format", "csv") == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    kinds = [r["kind"] for r in rows]
    assert kinds[:5] == ["team", "team", "team", "idle", "unallocated"]
    assert {
        r["resource_id"]: r["total"] for r in rows if r["kind"] == "unallocated_line" and r["resource_id"]
    }["i-orphan"] == "2.0000000000"
    assert sum(Decimal(r["total"]) for r in rows if r["kind"] != "unallocated_line") == Decimal("85.95")
    assert gpulens("attribute", "--period", "2026-10") == 0
    assert "i-orphan" in capsys.readouterr().out  # unallocated listed with resource ids


def test_a_broken_allocation_cannot_be_built() -> None:
    with pytest.raises(InvariantViolation, match="does not reconcile"):
        Allocation(
            period="2026-10",
            currency="USD",
            basis="amortized",
            teams=(TeamCost("a", Decimal("1"), Decimal("0"), Decimal("0"), Decimal("0")),),
            idle=Decimal("0"),
            unallocated=Decimal("0"),
            total=Decimal("1.02"),
            billed_total=Decimal("1"),
        )


def test_bad_period_is_one_line(gpulens: Callable[..., int], capsys: pytest.CaptureFixture[str]) -> None:
    assert gpulens("attribute", "--period", "October") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "YYYY-MM" in err[0]
