"""`gpulens ingest cur` on a synthetic CUR 2.0 month of 10 million line items, beside plain pandas.

Generates once (cached under benchmarks/.data/) a Parquet month with a realistic CUR 2.0 column set,
line-type mix (on-demand usage, Savings Plan covered usage and negations, reserved usage, fees, tax,
credits) and tag cardinality (60 teams, 12 clusters, 2,000 projects, a third of the lines untagged),
written by DuckDB, vectorized. Then, each in its own process so peak RSS is that process's alone:
  - ours: `gpulens ingest cur FILE --warehouse NEW` (normalize, amortize, validate, replace, commit);
  - pandas: read_parquet, amortize per docs/design.md §6 with np.select, team from the tag map, groupby team;
  - bare DuckDB: one SELECT that amortizes and groups by team (the floor: no write, no checks);
  - DuckDB write floor: CREATE TABLE AS of the same 17 columns, raw (no casts, amortization or checks),
    into a new DuckDB file with the ingest's settings: what DuckDB's storage alone costs.
Targets: ingest <= 20 s and <= 1.5 GiB peak RSS. Writes benchmarks/results/attribution.md (this section).

    .venv/bin/python benchmarks/bench_cur_ingest.py [--rows 10000000] [--runs 3] [--pandas-runs 1]

`--rows 2000000` generates and measures a smaller month (for exploring; the target is for 10M rows);
`--pandas-runs 0` leaves pandas out (~80 s and ~13 GiB at 10M rows).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).parent
DATA = HERE / ".data"
RESULTS = HERE / "results" / "attribution.md"
SECTION = "cur_ingest"
QUIET_BARE_S = 1.2  # issue 4: the bare DuckDB amortize-and-group query on this machine, unloaded

GENERATE = """
COPY (
  WITH base AS (
    SELECT i, CAST(hash(i) % 1000000007 AS BIGINT) AS h, (i % 744) AS hour_no,
           CAST(hash(i) % 100 AS BIGINT) AS mix,
           CAST(hash(i * 7) % 100000 AS BIGINT) AS res
    FROM range({rows}) t(i)
  ), typed AS (
    SELECT *, CASE WHEN mix < 70 THEN 'Usage' WHEN mix < 80 THEN 'SavingsPlanCoveredUsage'
                   WHEN mix < 90 THEN 'SavingsPlanNegation' WHEN mix < 96 THEN 'DiscountedUsage'
                   WHEN mix < 97 THEN 'Fee' WHEN mix < 98 THEN 'Tax' WHEN mix < 99 THEN 'Credit'
                   ELSE CASE WHEN h % 2 = 0 THEN 'RIFee' ELSE 'SavingsPlanRecurringFee' END END AS lt,
           (h % 7) AS product_no, ((h >> 8) % 1000) / 100.0 + 0.001 AS cost
    FROM base
  )
  SELECT
    'li-' || i AS identity_line_item_id,
    strftime(TIMESTAMP '2026-10-01' + to_hours(hour_no), '%Y-%m-%dT%H:00:00Z') || '/' ||
      strftime(TIMESTAMP '2026-10-01' + to_hours(hour_no + 1), '%Y-%m-%dT%H:00:00Z')
      AS identity_time_interval,
    'INV-2026-10' AS bill_invoice_id, 'AWS' AS bill_billing_entity, 'Anniversary' AS bill_bill_type,
    '123456789012' AS bill_payer_account_id,
    TIMESTAMP '2026-10-01' AS bill_billing_period_start_date,
    TIMESTAMP '2026-11-01' AS bill_billing_period_end_date,
    lpad(CAST(100000000000 + h % 40 AS VARCHAR), 12, '0') AS line_item_usage_account_id,
    lt AS line_item_line_item_type,
    TIMESTAMP '2026-10-01' + to_hours(hour_no) AS line_item_usage_start_date,
    TIMESTAMP '2026-10-01' + to_hours(hour_no + 1) AS line_item_usage_end_date,
    ['AmazonEC2', 'AmazonEC2', 'AmazonS3', 'AmazonFSx', 'AmazonEKS', 'AmazonCloudWatch',
     'AWSDataTransfer'][product_no + 1]
      AS line_item_product_code,
    ['BoxUsage:p4d.24xlarge', 'BoxUsage:g5.xlarge', 'TimedStorage-ByteHrs', 'Storage', 'AmazonEKS-Hours',
     'MetricMonitorUsage', 'DataTransfer-Out-Bytes'][product_no + 1] AS line_item_usage_type,
    'RunInstances' AS line_item_operation,
    'us-east-1' || ['a', 'b', 'c', 'd'][(h % 4) + 1] AS line_item_availability_zone,
    CASE WHEN lt IN ('Tax', 'Credit') THEN NULL
         WHEN lt IN ('RIFee', 'Fee')
           THEN 'arn:aws:ec2:us-east-1:123456789012:reserved-instances/ri-' || (res % 50)
         WHEN lt = 'SavingsPlanRecurringFee'
           THEN 'arn:aws:savingsplans::123456789012:savingsplan/sp-' || (res % 5)
         ELSE 'i-' || lpad(format('{{:x}}', res), 17, '0') END AS line_item_resource_id,
    CASE WHEN product_no = 0 THEN 'p4d.24xlarge' WHEN product_no = 1 THEN 'g5.xlarge' END
      AS product_instance_type,
    1.0 AS line_item_usage_amount, 'USD' AS line_item_currency_code,
    cost AS line_item_unblended_rate,
    CASE WHEN lt = 'SavingsPlanNegation' THEN -cost WHEN lt = 'Credit' THEN -cost / 10
         WHEN lt = 'DiscountedUsage' THEN 0.0 ELSE cost END AS line_item_unblended_cost,
    cost AS line_item_blended_cost, cost AS pricing_public_on_demand_cost,
    'On-demand usage line ' || product_no AS line_item_line_item_description,
    'us-east-1' AS product_region_code, 'Compute Instance' AS product_product_family,
    CASE WHEN lt = 'SavingsPlanCoveredUsage' THEN cost * 0.72 END AS savings_plan_savings_plan_effective_cost,
    CASE WHEN lt = 'SavingsPlanRecurringFee' THEN cost END AS savings_plan_total_commitment_to_date,
    CASE WHEN lt = 'SavingsPlanRecurringFee' THEN cost * 0.9 END AS savings_plan_used_commitment,
    CASE WHEN lt LIKE 'SavingsPlan%'
      THEN 'arn:aws:savingsplans::123456789012:savingsplan/sp-' || (res % 5) END
      AS savings_plan_savings_plan_a_r_n,
    CASE WHEN lt = 'DiscountedUsage' THEN cost * 0.6 END AS reservation_effective_cost,
    CASE WHEN lt = 'RIFee' THEN cost * 0.1 END AS reservation_unused_amortized_upfront_fee_for_billing_period,
    CASE WHEN lt = 'RIFee' THEN cost * 0.05 END AS reservation_unused_recurring_fee,
    CASE WHEN lt IN ('RIFee', 'DiscountedUsage') OR (lt = 'Fee' AND h % 2 = 0)
         THEN 'arn:aws:ec2:us-east-1:123456789012:reserved-instances/ri-' || (res % 50) END
      AS reservation_reservation_a_r_n,
    CASE WHEN res % 3 = 0 OR lt IN ('Tax', 'Credit') THEN MAP {{}}::MAP(VARCHAR, VARCHAR)
         WHEN res % 3 = 1 THEN MAP {{'user_team': 'team-' || (res % 60),
                                    'user_cluster': 'cluster-' || (res % 12),
                                    'user_project': 'project-' || (res % 2000)}}
         ELSE MAP {{'user_cluster': 'cluster-' || (res % 12), 'aws_createdBy': 'IAMUser:' || (res % 300)}} END
      AS resource_tags
  FROM typed
) TO '{path}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)
"""

PANDAS = r"""
import sys, numpy as np, pandas as pd
df = pd.read_parquet(sys.argv[1])
lt = df["line_item_line_item_type"]
cost = df["line_item_unblended_cost"]
fill = lambda c: df[c].fillna(0.0)
amortized = np.select(
    [lt == "SavingsPlanCoveredUsage", lt == "SavingsPlanRecurringFee",
     lt.isin(["SavingsPlanNegation", "SavingsPlanUpfrontFee"]),
     lt == "DiscountedUsage", lt == "RIFee", (lt == "Fee") & df["reservation_reservation_a_r_n"].notna()],
    [fill("savings_plan_savings_plan_effective_cost"),
     fill("savings_plan_total_commitment_to_date") - fill("savings_plan_used_commitment"), 0.0,
     fill("reservation_effective_cost"),
     fill("reservation_unused_amortized_upfront_fee_for_billing_period")
     + fill("reservation_unused_recurring_fee"), 0.0],
    cost)
keys = ("team", "user_team", "user:team")
team = df["resource_tags"].map(
    lambda kv: next((v.strip().lower() for k, v in (kv or []) if k.lower() in keys), None))
out = pd.Series(amortized).groupby(team.values, dropna=False).sum()
print(len(out), float(out.sum()))
"""

BARE = r"""
import sys, duckdb
con = duckdb.connect()
print(con.execute('''
  SELECT count(*), sum(c) FROM (
    SELECT lower(trim(resource_tags['user_team'])) AS team, sum(CASE line_item_line_item_type
      WHEN 'SavingsPlanCoveredUsage' THEN savings_plan_savings_plan_effective_cost
      WHEN 'SavingsPlanRecurringFee' THEN savings_plan_total_commitment_to_date - savings_plan_used_commitment
      WHEN 'SavingsPlanNegation' THEN 0 WHEN 'SavingsPlanUpfrontFee' THEN 0
      WHEN 'DiscountedUsage' THEN reservation_effective_cost
      WHEN 'RIFee'
        THEN reservation_unused_amortized_upfront_fee_for_billing_period + reservation_unused_recurring_fee
      WHEN 'Fee' THEN CASE WHEN reservation_reservation_a_r_n IS NULL THEN line_item_unblended_cost ELSE 0 END
      ELSE line_item_unblended_cost END) AS c
    FROM read_parquet(?) GROUP BY team)''', [sys.argv[1]]).fetchone())
"""


WRITE_FLOOR = r"""
import sys, duckdb
con = duckdb.connect(sys.argv[2])
con.execute("SET preserve_insertion_order = false")
con.execute("SET disabled_compression_methods = 'fsst'")
con.execute('''CREATE TABLE cost_line_items AS SELECT
    bill_billing_period_start_date AS billing_period, bill_payer_account_id AS payer_account_id,
    line_item_usage_start_date AS usage_start, line_item_usage_end_date AS usage_end,
    line_item_usage_account_id AS account_id, line_item_line_item_type AS line_item_type,
    line_item_product_code AS product_code, line_item_usage_type AS usage_type,
    line_item_resource_id AS resource_id, product_instance_type AS instance_type,
    line_item_usage_amount AS usage_amount, line_item_unblended_cost AS unblended_cost,
    line_item_blended_cost AS amortized_cost, line_item_currency_code AS currency, resource_tags AS tags,
    'raw' AS source, now()::TIMESTAMP AS ingested_at
  FROM read_parquet(?)''', [sys.argv[1]])
con.close()
"""


def month(rows: int) -> Path:
    """The cached synthetic month; generated once with DuckDB."""
    import duckdb

    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"cur2_{rows}.parquet"
    if not path.exists():
        started = time.perf_counter()
        tmp = path.with_suffix(".tmp")
        con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
        con.execute(GENERATE.format(rows=rows, path=tmp))
        tmp.rename(path)
        print(
            f"generated {path} ({path.stat().st_size / 2**20:.0f} MiB) "
            f"in {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )
    return path


def measure(args: list[str]) -> tuple[float, float, float]:
    """(wall seconds, peak RSS GiB, CPU seconds user+sys) of one child process. CPU seconds do not
    depend on how busy the shared machine is; wall time does."""
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{args[:3]} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return elapsed, usage.ru_maxrss / 2**20, usage.ru_utime + usage.ru_stime  # ru_maxrss is KiB on Linux


def median_of(runs: int, make_args: Callable[[int], list[str]]) -> tuple[float, float, float]:
    """Median wall time, worst peak RSS, median CPU seconds over `runs` runs."""
    samples = [measure(make_args(i)) for i in range(runs)]
    return (
        statistics.median(s[0] for s in samples),
        max(s[1] for s in samples),
        statistics.median(s[2] for s in samples),
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pandas-runs", type=int, default=1)
    opts = parser.parse_args()
    path = month(opts.rows)
    gpulens = str(Path(sys.executable).parent / "gpulens")
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-cur-") as tmp:
        ours = median_of(
            opts.runs, lambda i: [gpulens, "ingest", "cur", str(path), "--warehouse", f"{tmp}/w{i}.duckdb"]
        )
        floor = median_of(
            opts.runs, lambda i: [sys.executable, "-c", WRITE_FLOOR, str(path), f"{tmp}/floor{i}.duckdb"]
        )
    bare = median_of(opts.runs, lambda i: [sys.executable, "-c", BARE, str(path)])
    pandas = (
        median_of(opts.pandas_runs, lambda i: [sys.executable, "-c", PANDAS, str(path)])
        if opts.pandas_runs > 0
        else None
    )
    load_after = os.getloadavg()
    size = path.stat().st_size / 2**20
    verdict = "met" if ours[0] <= 20 and ours[1] <= 1.5 else "MISSED"
    if opts.rows != 10_000_000:
        verdict = "n/a: the target is for 10M rows"
    lines = [
        f"## {SECTION}: `gpulens ingest cur`, {opts.rows:,} CUR 2.0 line items (Parquet, {size:.0f} MiB)",
        "",
        "Machine: 2 vCPU x86_64, no GPU, shared with other jobs "
        f"(load average {load[0]:.1f} before, {load_after[0]:.1f} after). Each tool in its own process; "
        f"time is the median of {opts.runs} runs ({opts.pandas_runs} for pandas), peak RSS the worst run's; "
        "CPU is user + system seconds, which the other jobs on the machine do not inflate as much as wall "
        "time.",
        "",
        "| tool | time (s) | CPU (s) | peak RSS (GiB) | vs ours (time) | target |",
        "|---|---:|---:|---:|---:|---|",
        _row(
            "gpulens ingest cur (normalize, amortize, validate, replace, commit)",
            ours,
            ours,
            f"<= 20 s, <= 1.5 GiB: {verdict}",
        ),
        *([_row("pandas: read_parquet, amortize, groupby team (no write)", pandas, ours)] if pandas else []),
        _row(
            "DuckDB write floor: CREATE TABLE AS of the 17 columns raw (no casts, amortization, checks)",
            floor,
            ours,
        ),
        _row("bare DuckDB SELECT: amortize, group by team (no write, no checks)", bare, ours),
        "",
        FINDINGS,
        "",
        "",
    ]
    if opts.rows == 10_000_000:  # the figure is for this size only
        lines += [
            f"For scale: issue 4 measured the bare DuckDB query at ~{QUIET_BARE_S} s on this machine when "
            f"quiet; here it took {bare[0]:.1f} s ({bare[0] / QUIET_BARE_S:.1f}x slower), so the load alone "
            "would put the "
            f"ingest at ~{ours[0] * QUIET_BARE_S / bare[0]:.0f} s on the quiet machine (an estimate, not a "
            "measurement).",
            "",
        ]
    text = "\n".join(lines)
    print(text)
    write_section(SECTION, text)
    return 0


# Measured on the way to the current design (2026-11-27, the 2M-row month, one process per variant). The
# shared machine's load made single runs vary by +-20 % in CPU seconds, so only large effects are claimed.
FINDINGS = """Where the time goes (2M-row month, CPU seconds, single runs varying +-20 % with the machine's
load): a SELECT of the ingest's full projection (read, cast, amortize; no write) ~0.6-1.0; the same INSERT
into an in-memory database ~1.9-2.3; into the warehouse file ~4.8-6.2. So ~60 % of the ingest is DuckDB's
storage layer compressing and writing the rows (`perf`: dict_fsst string compression ~20 % of samples, string
append and rescan ~11 %, page faults ~6 %). Written alone: the 8 text columns ~1.6-2.2, the `tags` map
~1.0-1.5, the two DECIMAL(38,10) columns ~0.3. No gain beyond the noise from: `preserve_insertion_order` on or
off, `threads = 1`, disabling or forcing dict_fsst, zstd or dictionary compression (without dict_fsst the file
is 6x larger), an older storage version (slower), `enable_optimistic_write = false` (slower), a larger write
buffer, CREATE TABLE AS instead of INSERT, not casting the map, a literal billing period, no NULLIF on Parquet
strings. Money as DOUBLE and no tags map together saved ~25 % CPU, but docs/design.md §5 and docs/deploy.md's
Athena layout (tests/helm) fix DECIMAL(38,10) and MAP, and `--tag-key` needs the whole map, so that is a
contract change, not made here. The ingest's CPU is within ~20 % of the raw write floor above (the rest is
casting and amortizing, ~0.6 s per 2M rows), so its wall time follows the machine's load: 25.7 s at load ~4,
20.0 s at load ~2.7, same code."""


def _row(tool: str, m: tuple[float, float, float], ours: tuple[float, float, float], target: str = "") -> str:
    return f"| {tool} | {m[0]:.1f} | {m[2]:.1f} | {m[1]:.2f} | {m[0] / ours[0]:.2f}x | {target} |"


def write_section(name: str, text: str) -> None:
    """Replaces this benchmark's section of benchmarks/results/attribution.md, keeping the others."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    old = RESULTS.read_text() if RESULTS.exists() else ""
    sections = [s for s in old.split("\n## ") if s.strip()]
    kept = [s if s.startswith("## ") else "## " + s for s in sections if not s.lstrip("# ").startswith(name)]
    RESULTS.write_text("\n".join([*kept, text]).strip() + "\n")


if __name__ == "__main__":
    sys.exit(main())
