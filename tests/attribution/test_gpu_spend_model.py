"""Every GPU dollar placed (docs/design.md §6, docs/attribution.md): usage rows without an instance id,
capacity by billed instance-seconds, the GPU count of each line's own type, usage rollups keyed by
(hour, GPU, job), currencies, periods, rounding; SageMaker training jobs and HyperPod nodes,
Capacity Blocks for ML and On-Demand Capacity Reservations, and the storage behind training.

Each test is a ledger: the hand-written CUR 2.0 lines and usage rows, and the figures worked out by
hand in its docstring. CUR lines are hourly with `line_item_usage_amount` 1 unless stated.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from gpulens.attribution.allocate import allocate_period, store_allocations
from gpulens.attribution.money import round_parts
from gpulens.attribution.warehouse import Warehouse
from tests.contract.support import CUR2_COLUMNS, USAGE_COLUMNS, cur_line, usage_row, write_csv

H0, H1 = "2026-10-01 00:00:00", "2026-10-01 01:00:00"
CR_COLUMNS = (
    *CUR2_COLUMNS,
    "capacity_reservation_capacity_reservation_arn",
    "capacity_reservation_capacity_reservation_status",
)


def _load(
    gpulens: Callable[..., int], tmp_path: Path, lines: list[dict], usage: list[dict], name: str = "c"
) -> None:
    assert gpulens("ingest", "cur", write_csv(tmp_path / f"{name}.csv", CR_COLUMNS, lines)) == 0
    if usage:
        assert (
            gpulens("ingest", "usage", write_csv(tmp_path / f"{name}-usage.csv", USAGE_COLUMNS, usage)) == 0
        )


def _month(warehouse: Path, period: str = "2026-10", **kw: object):  # type: ignore[no-untyped-def]
    with Warehouse(warehouse).connect() as con:
        return store_allocations(con, period, **kw)  # type: ignore[arg-type]


def _teams(a) -> dict[str, tuple[Decimal, Decimal]]:  # type: ignore[no-untyped-def]
    return {t.team: (t.total, t.waste) for t in a.teams}


# --- item 1 ------------------------------------------------------------------------------------------


def test_a_usage_row_without_instance_id_matches_no_line_and_the_month_allocates(
    gpulens: Callable[..., int], tmp_path: Path, warehouse: Path
) -> None:
    """i-od p4d.24xlarge hour 8.00 untagged: team a holds GPUs 0-1 (7200 s of 28800) -> a 2.00, idle
    6.00. bucket-s S3 3.00 tagged team s -> s 3.00 direct. A usage row with an empty instance_id
    (team c, 3600 s) matches no line: c pays nothing, but its GPU hour is counted (1 h).
    Total 11.00 = 2.00 + 3.00 + 6.00. Before: `NOT IN` over a NULL instance id dropped the S3
    line and `attribute` stopped with "this is a bug" for the whole month."""
    lines = [
        cur_line("OD1", "Usage", "i-od", "8.00", instance_type="p4d.24xlarge"),
        cur_line("S3", "Usage", "bucket-s", "3.00", product="AmazonS3", tags={"user_team": "s"}),
    ]
    usage = [
        *(usage_row(H0, "n1", "i-od", "k", g, "ja", "a", 3600, 1.0) for g in range(2)),
        usage_row(H0, "n2", "", "k", 0, "jc", "c", 3600, 1.0),
    ]
    _load(gpulens, tmp_path, lines, usage)
    a = _month(tmp_path / "w.duckdb")
    assert a.total == Decimal("11.00") and a.idle == Decimal("6.00") and a.unallocated == 0
    assert {t.team: t.total for t in a.teams} == {"a": Decimal("2.00"), "s": Decimal("3.00"), "c": Decimal(0)}
    assert {t.team: t.gpu_hours for t in a.teams}["c"] == Decimal(1)


# --- item 6 ------------------------------------------------------------------------------------------


def test_capacity_is_the_billed_instance_time(gpulens: Callable[..., int], tmp_path: Path) -> None:
    """i-day g5.xlarge (1 GPU): a daily line 2026-10-02, 6.00, usage_amount 6 (instance-hours);
    team a holds GPU 0 for 6 full hours (21600 s) -> capacity 1 x 6 h = 21600 s: a 6.00, idle 0.
    (Before: 24 h of capacity, a 1.50 and 4.50 "idle" for hours the instance did not run.)
    i-half p4d.24xlarge: the 00:00 hour, 16.00, usage_amount 0.5 (launched at 00:30); team b holds
    8 GPUs x 1800 s = 14400 s = capacity 8 x 1800 s -> b 16.00, idle 0 (before: b 8.00, idle 8.00)."""
    lines = [
        cur_line("D1", "Usage", "i-day", "6.00", instance_type="g5.xlarge", start="2026-10-02T00:00:00Z",
                 end="2026-10-03T00:00:00Z", line_item_usage_amount="6"),
        cur_line("H1", "Usage", "i-half", "16.00", instance_type="p4d.24xlarge",
                 line_item_usage_amount="0.5"),
    ]  # fmt: skip
    usage = [
        *(
            usage_row(f"2026-10-02 0{h}:00:00", "nd", "i-day", "k", 0, "ja", "a", 3600, 0.5)
            for h in range(3, 9)
        ),
        *(usage_row(H0, "nh", "i-half", "k", g, "jb", "b", 1800, 1.0) for g in range(8)),
    ]
    _load(gpulens, tmp_path, lines, usage)
    a = _month(tmp_path / "w.duckdb")
    assert _teams(a) == {"a": (Decimal("6.00"), Decimal("3.00")), "b": (Decimal("16.00"), Decimal(0))}
    assert a.idle == 0


# --- item 7 ------------------------------------------------------------------------------------------


def test_each_line_uses_its_own_instance_types_gpu_count(gpulens: Callable[..., int], tmp_path: Path) -> None:
    """i-arm g5g.16xlarge (2 GPUs, not in the table before): hour 00, 10.00; a holds GPU 0 -> a 5.00,
    idle 5.00 (before: 1 GPU seen, a 10.00).
    i-rs resized: hour 00 g5.xlarge (1 GPU) 1.00, hour 01 g5.12xlarge (4 GPUs) 5.00; a holds GPU 0
    both hours -> 1.00 + 5.00 x 1/4 = 2.25, idle 3.75 (before: 4 GPUs both hours, a 1.50).
    Totals: a 7.25, idle 8.75, total 16.00."""
    lines = [
        cur_line("A1", "Usage", "i-arm", "10.00", instance_type="g5g.16xlarge"),
        cur_line("R0", "Usage", "i-rs", "1.00", instance_type="g5.xlarge"),
        cur_line("R1", "Usage", "i-rs", "5.00", instance_type="g5.12xlarge", start="2026-10-01T01:00:00Z",
                 end="2026-10-01T02:00:00Z"),
    ]  # fmt: skip
    usage = [
        usage_row(H0, "na", "i-arm", "k", 0, "ja", "a", 3600, 1.0),
        usage_row(H0, "nr", "i-rs", "k", 0, "ja", "a", 3600, 1.0),
        usage_row(H1, "nr", "i-rs", "k", 0, "ja", "a", 3600, 1.0),
    ]
    _load(gpulens, tmp_path, lines, usage)
    a = _month(tmp_path / "w.duckdb")
    assert _teams(a) == {"a": (Decimal("7.25"), Decimal(0))}
    assert a.idle == Decimal("8.75")


# --- item 8 ------------------------------------------------------------------------------------------


def test_usage_rollups_are_keyed_by_hour_gpu_and_job(
    gpulens: Callable[..., int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """i-u p4d.24xlarge hour 00, 8.00. File 1: GPUs 0-3 of i-u (team a); file 2, loaded later: GPUs
    4-7 (team b). Both kept: a 4.00, b 4.00, idle 0 (before: file 2 replaced the host-hour, a lost
    its 4.00 to idle). A file repeating (hour, GPU, job) on its row 3 is refused naming row 3 (before:
    a's charge doubled); an hour at 00:30 is refused naming its row and column (before: unpriced)."""
    assert gpulens("ingest", "cur", write_csv(tmp_path / "c.csv", CR_COLUMNS, [
        cur_line("U1", "Usage", "i-u", "8.00", instance_type="p4d.24xlarge")])) == 0  # fmt: skip
    rows_a = [usage_row(H0, "n", "i-u", "k", g, "ja", "a", 3600, 1.0) for g in range(4)]
    rows_b = [usage_row(H0, "n", "i-u", "k", g, "jb", "b", 3600, 1.0) for g in range(4, 8)]
    first = write_csv(tmp_path / "u1.csv", USAGE_COLUMNS, rows_a)
    second = write_csv(tmp_path / "u2.csv", USAGE_COLUMNS, rows_b)
    assert gpulens("ingest", "usage", first) == 0
    assert gpulens("ingest", "usage", second) == 0
    a = _month(tmp_path / "w.duckdb")
    assert {t.team: t.total for t in a.teams} == {"a": Decimal("4.00"), "b": Decimal("4.00")} and a.idle == 0
    rows = [usage_row(H0, "n", "i-u", "k", g, "ja", "a", 1800, 1.0) for g in (0, 1, 0)]
    dup = write_csv(tmp_path / "dup.csv", USAGE_COLUMNS, rows)
    capsys.readouterr()
    assert gpulens("ingest", "usage", dup) == 1
    assert "dup.csv: row 3:" in capsys.readouterr().err
    half_past = usage_row("2026-10-01 00:30:00", "n", "i-u", "k", 0, "ja", "a", 1800, 1.0)
    odd = write_csv(tmp_path / "odd.csv", USAGE_COLUMNS, [half_past])
    assert gpulens("ingest", "usage", odd) == 1
    assert "odd.csv: row 1, column hour:" in capsys.readouterr().err
    assert {t.team: t.total for t in _month(tmp_path / "w.duckdb").teams} == {
        "a": Decimal("4.00"),
        "b": Decimal("4.00"),
    }


# --- item 9 ------------------------------------------------------------------------------------------


def test_two_currencies_are_allocated_apart(
    gpulens: Callable[..., int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Payer 111 bills in USD (S3 3.00, team a), payer 999 in EUR (S3 5.00, team b), same month.
    Without --currency: refused, offering both; --currency EUR: total 5.00 EUR, b 5.00;
    --currency USD: 3.00 USD, a 3.00 (before: the whole period was blocked)."""
    usd = write_csv(tmp_path / "usd.csv", CR_COLUMNS, [
        cur_line("U", "Usage", "bucket-a", "3.00", product="AmazonS3", tags={"user_team": "a"})])  # fmt: skip
    eur_line = cur_line("E", "Usage", "bucket-b", "5.00", product="AmazonS3", tags={"user_team": "b"},
                        payer="999999999999", line_item_currency_code="EUR")  # fmt: skip
    eur = write_csv(tmp_path / "eur.csv", CR_COLUMNS, [eur_line])
    assert gpulens("ingest", "cur", usd) == 0 and gpulens("ingest", "cur", eur) == 0
    capsys.readouterr()
    assert gpulens("attribute", "--period", "2026-10") == 1
    err = capsys.readouterr().err
    assert "--currency EUR" in err and "--currency USD" in err
    with Warehouse(tmp_path / "w.duckdb").connect() as con:
        e = store_allocations(con, "2026-10", currency="eur")
        u = store_allocations(con, "2026-10", currency="USD")
        stored = con.execute("SELECT currency, sum(cost) FROM allocations GROUP BY 1 ORDER BY 1").fetchall()
    assert (e.currency, e.total, [t.team for t in e.teams]) == ("EUR", Decimal("5.00"), ["b"])
    assert (u.currency, u.total, [t.team for t in u.teams]) == ("USD", Decimal("3.00"), ["a"])
    assert stored == [("EUR", Decimal("5.00")), ("USD", Decimal("3.00"))]


@pytest.mark.parametrize(
    ("period", "expected"), [("2024-9", "is not YYYY-MM"), ("2026-11", "holds: 2026-10")]
)
def test_a_malformed_or_empty_period_is_refused(
    period: str,
    expected: str,
    gpulens: Callable[..., int],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--period 2024-9` and a period with no billing lines used to print total 0.00 and exit 0."""
    _load(gpulens, tmp_path, [cur_line("S", "Usage", "bucket", "1.00", product="AmazonS3")], [])
    capsys.readouterr()
    assert gpulens("attribute", "--period", period) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and expected in err[0]


def test_shown_parts_add_up_to_the_shown_total(
    gpulens: Callable[..., int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """fs-1 FSx 10.00 tagged cluster k, split over teams a, b, c with 3600 GPU-seconds each on k:
    3.3333333333 + 3.3333333334 + 3.3333333333. Rounded one by one (half-even or half-up) that shows
    3.33 three times under a total of 10.00; largest remainder shows b 3.34 (its remainder is the
    largest), a 3.33, c 3.33, adding to 10.00."""
    lines = [cur_line("F", "Usage", "fs-1", "10.00", product="AmazonFSx", tags={"user_cluster": "k"},
                      start="2026-10-01T00:00:00Z", end="2026-10-02T00:00:00Z")]  # fmt: skip
    usage = [usage_row(H0, f"n{t}", f"i-{t}", "k", 0, f"j{t}", t, 3600, 1.0) for t in "abc"]
    _load(gpulens, tmp_path, lines, usage)
    capsys.readouterr()
    assert gpulens("attribute", "--period", "2026-10") == 0
    rows = [ln.split() for ln in capsys.readouterr().out.splitlines()[2:5]]
    shown = {r[0]: re.sub(r"[^0-9.]", "", r[3]) for r in rows}  # "$3.34" -> "3.34" (the display's currency)
    assert shown == {"b": "3.34", "a": "3.33", "c": "3.33"}
    assert round_parts([Decimal(1) / 3] * 3, Decimal(1)) == [
        Decimal("0.34"),
        Decimal("0.33"),
        Decimal("0.33"),
    ]
    assert round_parts([Decimal("-1.005"), Decimal("2.005")]) == [Decimal("-1.01"), Decimal("2.01")]


@pytest.mark.parametrize("command", [("attribute", "--period", "2026-10"), ("flags",)])
def test_a_mistyped_warehouse_is_refused_not_created(
    command: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--warehouse wharehouse.duckdb` (a typo): one line naming the path, exit 1, no file made
    (before: an empty warehouse was created and the month showed 0.00)."""
    from gpulens.cli import main

    typo = tmp_path / "wharehouse.duckdb"
    assert main([*command, "--warehouse", str(typo)]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and str(typo) in err[0] and "only `gpulens ingest` creates one" in err[0]
    assert not typo.exists()


# --- SageMaker, HyperPod, Capacity Blocks, ODCRs, and the storage behind training ----------------------

SM_ARN = "arn:aws:sagemaker:us-east-1:222222222222:training-job/llm-pretrain-7b"
HP_ARN = "arn:aws:sagemaker:us-east-1:222222222222:cluster/hp1"
CB_ARN = "arn:aws:ec2:us-east-1:222222222222:capacity-reservation/cr-0block1"
ODCR_ARN = "arn:aws:ec2:us-east-1:222222222222:capacity-reservation/cr-0odcr1"
D2 = "2026-10-02T00:00:00Z"


def _training_month(gpulens: Callable[..., int], tmp_path: Path) -> None:
    """September: the Capacity Block fee, bought in September for 2026-10-02 00:00-02:00. October:
    everything else."""
    fee = cur_line("CB1", "Fee", CB_ARN, "240.00", start=D2, end="2026-10-02T02:00:00Z",
                   instance_type="p5.48xlarge",
                   line_item_usage_type="USE1-CapacityBlock:p5.48xlarge", line_item_usage_amount="4",
                   capacity_reservation_capacity_reservation_arn=CB_ARN)  # fmt: skip
    fee["bill_billing_period_start_date"] = "2026-09-01T00:00:00Z"
    october = [
        cur_line("SM1", "Usage", SM_ARN, "75.00", product="AmazonSageMaker", instance_type="ml.p4d.24xlarge",
                 line_item_usage_type="USE1-Train:ml.p4d.24xlarge", line_item_usage_amount="2"),
        cur_line("HP1", "Usage", HP_ARN, "98.32", product="AmazonSageMaker", instance_type="ml.p5.48xlarge",
                 line_item_usage_type="USE1-ClusterNode:ml.p5.48xlarge"),
        *(cur_line(f"CBI{n}", "Usage", f"i-cb{n}", "0.00", start=D2, end="2026-10-02T02:00:00Z",
                   instance_type="p5.48xlarge", line_item_usage_amount="2",
                   capacity_reservation_capacity_reservation_arn=CB_ARN,
                   capacity_reservation_capacity_reservation_status="Used") for n in (1, 2)),
        cur_line("OD1", "Usage", ODCR_ARN, "32.77", line_item_usage_type="USE1-UnusedBox:p4d.24xlarge",
                 capacity_reservation_capacity_reservation_arn=ODCR_ARN,
                 capacity_reservation_capacity_reservation_status="Unused"),
        cur_line("FSX", "Usage", "fs-0lustre", "36.00", product="AmazonFSx", tags={"user_cluster": "train"},
                 end="2026-10-02T00:00:00Z"),
        cur_line("S3", "Usage", "ckpt-bucket", "9.00", product="AmazonS3", tags={"user_cluster": "train"},
                 end="2026-10-02T00:00:00Z"),
    ]  # fmt: skip
    usage = [
        # the training job: instance_id holds its name on one node, its ARN on the other
        *(usage_row(H0, "sm-a", "llm-pretrain-7b", "train", g, "llm-pretrain-7b", "search", 3600, 0.5)
          for g in range(8)),
        *(usage_row(H0, "sm-b", SM_ARN, "train", g, "llm-pretrain-7b", "search", 1800, 1.0)
          for g in range(8)),
        *(usage_row(H0, "hp-0", HP_ARN, "train", g, "hp-ads", "ads", 3600, 0.75) for g in range(4)),
        *(usage_row(f"2026-10-02 0{h}:00:00", "cb-1", "i-cb1", "train", g, "big", "search", 3600, 1.0)
          for h in (0, 1) for g in range(8)),
        *(usage_row("2026-10-02 00:00:00", "cb-2", "i-cb2", "train", g, "eval", "ads", 3600, 1.0)
          for g in range(4)),
    ]  # fmt: skip
    assert gpulens("ingest", "cur", write_csv(tmp_path / "sept.csv", CR_COLUMNS, [fee])) == 0
    _load(gpulens, tmp_path, october, usage, name="oct")


def test_sagemaker_hyperpod_capacity_reservations_and_storage_in_october(
    gpulens: Callable[..., int], tmp_path: Path
) -> None:
    """October 2026, 251.09:
    SM1 SageMaker training job llm-pretrain-7b, ml.p4d.24xlarge x 2 instances, 1 h, 75.00, untagged:
        capacity 8 GPUs x 2 instance-hours = 57600 s; search holds 8 x 3600 (name) + 8 x 1800 (ARN)
        = 43200 s -> 75 x 43200 / 57600 = 56.25, idle 18.75; waste 37.50 x 0.5 + 18.75 x 0 = 18.75
    HP1 HyperPod node (cluster ARN), ml.p5.48xlarge, 1 h, 98.32: ads holds 4 of 8 GPUs -> 49.16,
        idle 49.16, waste 49.16 x 0.25 = 12.29
    CBI1, CBI2 the instances in the Capacity Block, 0.00 (the block was paid in September)
    OD1 the unused part of an On-Demand Capacity Reservation, 32.77 -> idle, whole
    FSX 36.00 and S3 9.00, tagged cluster train: split by train's GPU-seconds in October,
        search 43200 + 57600 = 100800, ads 14400 + 14400 = 28800 (7 : 2): FSx 28.00 / 8.00, S3 7.00 / 2.00
    search 56.25 + 35.00 = 91.25 (GPU 56.25, storage 35.00); ads 49.16 + 10.00 = 59.16 (GPU 49.16,
    storage 10.00); idle 18.75 + 49.16 + 32.77 = 100.68; unallocated 0; 91.25 + 59.16 + 100.68 = 251.09."""
    _training_month(gpulens, tmp_path)
    a = _month(tmp_path / "w.duckdb")
    assert a.total == Decimal("251.09") and a.idle == Decimal("100.68") and a.unallocated == 0
    got = {t.team: (t.total, t.gpu, t.storage, t.waste, t.gpu_hours) for t in a.teams}
    assert got == {
        "search": (Decimal("91.25"), Decimal("56.25"), Decimal("35.00"), Decimal("18.75"), Decimal(28)),
        "ads": (Decimal("59.16"), Decimal("49.16"), Decimal("10.00"), Decimal("12.29"), Decimal(8)),
    }
    with Warehouse(tmp_path / "w.duckdb").connect(read_only=True) as con:
        idle = dict(con.execute("SELECT resource_id, sum(cost) FROM allocations WHERE category = 'idle' "
                                "GROUP BY 1").fetchall())  # fmt: skip
        kinds = dict(con.execute("SELECT cost_kind, sum(cost) FROM allocations WHERE team IS NOT NULL "
                                 "GROUP BY 1").fetchall())  # fmt: skip
    assert idle[ODCR_ARN] == Decimal("32.77") and idle[SM_ARN] == Decimal("18.75")
    assert kinds == {"gpu": Decimal("105.41"), "storage": Decimal("45.00")}


def test_a_capacity_block_is_priced_to_the_gpu_hours_it_reserves(
    gpulens: Callable[..., int], tmp_path: Path
) -> None:
    """September 2026: CB1, a Capacity Block of 2 p5.48xlarge for 2026-10-02 00:00-02:00, 240.00 paid
    in advance (usage_amount 4 instance-hours over a 2-hour window: 2 instances). Reserved GPU time
    8 GPUs x 2 instances x 7200 s = 115200 s. The instances that ran in it (their October lines name
    the reservation): i-cb1 all 8 GPUs both hours for search (57600 s), i-cb2 4 GPUs the first hour
    for ads (14400 s): search 240 x 57600 / 115200 = 120.00, ads 30.00, the unheld 90.00 idle.
    September's total is the fee, 240.00 = 120.00 + 30.00 + 90.00."""
    _training_month(gpulens, tmp_path)
    a = _month(tmp_path / "w.duckdb", "2026-09")
    assert a.total == Decimal("240.00")
    assert {t.team: t.total for t in a.teams} == {"search": Decimal("120.00"), "ads": Decimal("30.00")}
    assert a.idle == Decimal("90.00") and a.unallocated == 0
    with Warehouse(tmp_path / "w.duckdb").connect(read_only=True) as con:
        shared = allocate_period(con, "2026-09", idle="share")
    # --idle share: the block's idle is the reservation's, no instance's: it stays idle
    assert shared.idle == Decimal("90.00")
