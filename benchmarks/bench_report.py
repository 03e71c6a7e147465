"""Weekly report for a 1,000-GPU fleet: build (allocate two weeks, flags, freshness) and render.

Synthetic warehouse, generated vectorized inside DuckDB: 125 p4d.24xlarge instances (8 GPUs each),
hourly CUR lines for two weeks (100 shared instances with the cluster tag, 25 tagged to a team), one
hourly usage row per held GPU (10 teams, each GPU held ~75% of the hours), cluster-tagged FSx, untagged
EBS, and three divergent runs. Target (issue 7): <= 30 s for one week. Writes benchmarks/results/report.md.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import duckdb

from gpulens.attribution.allocate import allocate
from gpulens.attribution.report.build import build_weekly_report
from gpulens.attribution.report.model import IsoWeek
from gpulens.attribution.report.render import render_all
from gpulens.attribution.warehouse import Warehouse

WEEK = IsoWeek(2026, 47)
INSTANCES, GPUS, TEAMS, RUNS = 125, 8, 10, 3
RESULTS = Path(__file__).parent / "results" / "report.md"


def populate(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """Two weeks of CUR lines and usage rows; returns (line items, usage rows)."""
    start = WEEK.previous().start
    con.execute(
        "CREATE TEMP TABLE hours AS SELECT $start + to_hours(h) AS hour FROM range($hours) t(h)",
        {"start": start, "hours": 14 * 24},
    )
    con.execute(
        """
        CREATE TEMP TABLE inst AS SELECT i, printf('i-%05d', i) AS rid,
               CASE WHEN i % 5 = 0 THEN MAP {'user_team': printf('team-%02d', i % $teams)}
                    ELSE MAP {'user_cluster': 'train'} END AS tags
          FROM range($n) t(i)""",
        {"n": INSTANCES, "teams": TEAMS},
    )
    con.execute("""
        INSERT INTO cost_line_items (billing_period, payer_account_id, usage_start, usage_end, account_id,
            line_item_type, product_code, usage_type, resource_id, instance_type, usage_amount,
            unblended_cost, amortized_cost, currency, tags, source, ingested_at)
        SELECT '2026-11', '111122223333', h.hour, h.hour + INTERVAL 1 HOUR, '111122223333', 'Usage',
               'AmazonEC2', 'BoxUsage:p4d.24xlarge', i.rid, 'p4d.24xlarge', 1, 32.7726, 32.7726, 'USD',
               i.tags, 'cur2 bench', now()::TIMESTAMP
          FROM hours h, inst i
        UNION ALL
        SELECT '2026-11', '111122223333', h.hour, h.hour + INTERVAL 1 HOUR, '111122223333', 'Usage', kind.p,
               kind.u, kind.r, NULL, 1, kind.c, kind.c, 'USD', kind.t, 'cur2 bench', now()::TIMESTAMP
          FROM hours h,
               (VALUES ('AmazonFSx', 'Storage', 'fs-train', 4.25, MAP {'user_cluster': 'train'}),
                       ('AmazonEC2', 'EBS:VolumeUsage', 'vol-lost', 0.35, MAP {})) kind(p, u, r, c, t)
    """)
    con.execute(
        """
        INSERT INTO gpu_usage_hourly
        SELECT h.hour, printf('node-%05d', i.i), i.rid, 'train', g.g, printf('GPU-%05d-%d', i.i, g.g),
               'A100-SXM4-40GB', printf('job-%05d-%d', i.i, (g.g // 4)),
               printf('team-%02d', (i.i + g.g) % $teams),
               3600, 0.05 + 0.9 * ((hash(i.i, g.g) % 100) / 100.0), NULL
          FROM hours h, inst i, range(8) g(g)
         WHERE hash(h.hour, i.i, g.g) % 4 <> 0
    """,
        {"teams": TEAMS},
    )
    # RUNS divergent runs on shared instances, anomalies from Thursday noon, so their spend is priced.
    con.execute(
        """
        INSERT INTO train_metrics (job_id, team, rank, step, ts, loss)
        SELECT printf('job-%05d-0', r * 5 + 1), printf('team-%02d', (r * 5 + 1) % $teams), 0, s,
               $thursday + to_minutes(s), 2.0 FROM range($runs) t(r), range(0, 1000, 10) u(s)""",
        {"teams": TEAMS, "runs": RUNS, "thursday": WEEK.start + timedelta(days=3, hours=12)},
    )
    con.execute(
        """INSERT INTO train_anomalies SELECT printf('job-%05d-0', r * 5 + 1), NULL, 0, 500, 'divergence',
                   9.9 FROM range($runs) t(r)""",
        {"runs": RUNS},
    )
    con.execute(
        "INSERT INTO deliveries (billing_period, payer_account_id, source_format, files, line_items, "
        "ingested_at) VALUES ('2026-11', '111122223333', 'cur2', ['bench.parquet'], "
        "(SELECT count(*) FROM cost_line_items), now()::TIMESTAMP)"
    )
    lines = con.execute("SELECT count(*) FROM cost_line_items").fetchone()[0]  # type: ignore[index]
    usage = con.execute("SELECT count(*) FROM gpu_usage_hourly").fetchone()[0]  # type: ignore[index]
    return int(lines), int(usage)


def main(runs: int = 3) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.duckdb"
        t0 = time.perf_counter()
        with Warehouse(path).connect() as con:
            lines, usage = populate(con)
        generate = time.perf_counter() - t0
        allocs, builds, renders = [], [], []
        for _ in range(runs):
            with Warehouse(path).connect(read_only=True) as con:
                t0 = time.perf_counter()
                allocate(con, WEEK.start, WEEK.end)  # what `gpulens attribute` does, for the week alone
                t1 = time.perf_counter()
                report = build_weekly_report(con, WEEK, now=datetime(2026, 11, 23, 8))
                t2 = time.perf_counter()
            files = render_all(report)
            t3 = time.perf_counter()
            allocs.append(t1 - t0)
            builds.append(t2 - t1)
            renders.append(t3 - t2)
    alloc_s, build, render = (statistics.median(x) for x in (allocs, builds, renders))
    total = statistics.median(b + r for b, r in zip(builds, renders, strict=True))
    text = f"""## Weekly report (bench_report.py)

Machine: 2 vCPU x86_64, no GPU, shared with other work. Synthetic warehouse (generated in DuckDB in
{generate:.1f} s): {INSTANCES * GPUS:,} GPUs ({INSTANCES} p4d.24xlarge), two weeks of hourly data:
{lines:,} CUR lines, {usage:,} usage rows. Median of {runs} runs, seconds.

| step | seconds |
|---|---|
| one `allocate` of the week (what `gpulens attribute` does; the baseline) | {alloc_s:.2f} |
| build: `allocate` this and the previous week, flags, divergent spend, freshness | {build:.2f} |
| render: html, pdf, csv, xlsx | {render:.2f} |
| **report total** (target <= 30 s) | **{total:.2f}** |

The report costs {total / alloc_s:.1f}x one allocation of the week: two allocations (this week and
the previous one) plus flags, which price GPU time again; rendering is {render / total:.0%} of it.
Sizes: {", ".join(f"{k} {len(v) / 1024:.0f} KiB" for k, v in files.items())}.
"""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)
    return 0 if total <= 30 else 1


if __name__ == "__main__":
    sys.exit(main())
