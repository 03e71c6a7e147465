"""The explorer on a 1,000-GPU fleet over 30 days: page loads and callbacks, in process and over HTTP.

Synthetic warehouse, generated vectorized inside DuckDB: 125 instances (8 GPUs each; every 4th a p5,
the others p4d; node 7 of every 25 an A100 without DCGM), hourly CUR lines for 30 days (100 shared
instances with the cluster tag, 25 tagged to a team), one hourly usage row per held GPU (8 teams, 10
jobs per node, each GPU held ~80% of the hours), 250 training runs of 2,000 logged steps, 5 of them
divergent; then `store_allocations` (what `gpulens attribute` does) fills the allocations table.

Targets (issue 5): a page loads in <= 2 s, no callback takes over 300 ms. Measured two ways:
1. in process: the query + figure functions behind each page and callback, with a cold cache
   (a new `Queries` per run) and warm;
2. over HTTP: a running app (`ExplorerServer`) answering real `/_dash-update-component` POSTs, the
   requests a browser sends, with filter values not seen before (cold) and repeated (warm).
The alternative, shipping the hourly rows to pandas and aggregating there (what a naive app does
for the 30-day heatmap), is timed in the same run. Writes benchmarks/results/explorer.md.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from gpulens.attribution.allocate import store_allocations
from gpulens.attribution.warehouse import Warehouse
from gpulens.dashboards.explorer.app import ExplorerConfig, ExplorerServer, route
from gpulens.dashboards.explorer.pages import cost, training, utilization
from gpulens.dashboards.explorer.queries import CostFilter, Queries, UtilFilter

START = datetime(2026, 10, 1)
DAYS, INSTANCES, GPUS, TEAMS, RUNS, STEPS = 30, 125, 8, 8, 250, 2000
RESULTS = Path(__file__).parent / "results" / "explorer.md"
PREWARM: list[float] = []  # seconds the server's startup prewarm took (flags for 24 h, 7 d, 30 d)
PAGE_TARGET_S, CALLBACK_TARGET_S = 2.0, 0.300


def populate(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    con.execute(
        "CREATE TEMP TABLE hours AS SELECT $start + to_hours(h) AS hour FROM range($n) t(h)",
        {"start": START, "n": DAYS * 24},
    )
    con.execute(
        """
        CREATE TEMP TABLE inst AS SELECT i, printf('i-%05d', i) AS rid,
               CASE WHEN i % 4 = 0 THEN 'p5.48xlarge' ELSE 'p4d.24xlarge' END AS itype,
               CASE WHEN i % 4 = 0 THEN 98.32 ELSE 32.7726 END AS rate,
               CASE WHEN i % 4 = 0 THEN 'NVIDIA H100 80GB HBM3' ELSE 'NVIDIA A100-SXM4-40GB' END AS model,
               CASE WHEN i % 5 = 0 THEN MAP {'user_team': printf('team-%02d', i % $teams)}
                    ELSE MAP {'user_cluster': 'train'} END AS tags
          FROM range($n) t(i)""",
        {"n": INSTANCES, "teams": TEAMS},
    )
    con.execute("""
        INSERT INTO cost_line_items (billing_period, payer_account_id, usage_start, usage_end, account_id,
            line_item_type, product_code, usage_type, resource_id, instance_type, usage_amount,
            unblended_cost, amortized_cost, currency, tags, source, ingested_at)
        SELECT '2026-10', '111122223333', h.hour, h.hour + INTERVAL 1 HOUR, '111122223333', 'Usage',
               'AmazonEC2', 'BoxUsage:' || i.itype, i.rid, i.itype, 1, i.rate, i.rate, 'USD', i.tags, 'bench',
               now()::TIMESTAMP
          FROM hours h, inst i
        UNION ALL
        SELECT '2026-10', '111122223333', h.hour, h.hour + INTERVAL 1 HOUR, '111122223333', 'Usage',
               k.p, k.u, k.r, NULL, 1, k.c, k.c, 'USD', k.t, 'bench', now()::TIMESTAMP
          FROM hours h,
               (VALUES ('AmazonFSx', 'Storage', 'fs-train', 4.25, MAP {'user_cluster': 'train'}),
                       ('AmazonEC2', 'EBS:VolumeUsage', 'vol-lost', 0.35, MAP {})) k(p, u, r, c, t)""")
    con.execute(
        """
        INSERT INTO gpu_usage_hourly
        SELECT h.hour, printf('node-%05d', i.i), i.rid, 'train', g.g, printf('GPU-%05d-%d', i.i, g.g),
               i.model,
               printf('job-%05d-%02d', i.i, (epoch(h.hour - $start) // 259200)::INT),
               printf('team-%02d', (i.i + (epoch(h.hour - $start) // 259200)::INT) % $teams), 3600,
               CASE WHEN i.i % 25 = 7 THEN NULL
                    ELSE 0.03 + 0.9 * ((hash(i.i, g.g, h.hour::DATE) % 100) / 100.0) END,
               0.1 + 0.85 * ((hash(i.i, g.g) % 100) / 100.0)
          FROM hours h, inst i, range($gpus) g(g)
         WHERE hash(h.hour, i.i, g.g) % 5 <> 0""",
        {"teams": TEAMS, "gpus": GPUS, "start": START},
    )
    con.execute(
        """
        INSERT INTO train_metrics (job_id, team, rank, step, ts, loss, step_seconds, tokens, mfu)
        SELECT printf('job-%05d-%02d', r % $n, r // $n % 10), printf('team-%02d', r % $teams), 0, s * 50,
               $start + to_minutes(s * 20), 2.0 + 3.0 * exp(-s / 400.0) + (hash(r, s) % 100) / 2000.0
                   + CASE WHEN r % 50 = 3 AND s > 1200 THEN (s - 1200) / 400.0 ELSE 0 END,
               0.9 + (hash(s, r) % 100) / 1000.0, 524288, 0.4 + (hash(r) % 20) / 100.0
          FROM range($runs) t(r), range($steps) u(s)""",
        {"n": INSTANCES, "teams": TEAMS, "runs": RUNS, "steps": STEPS, "start": START},
    )
    con.execute(
        """INSERT INTO train_anomalies SELECT printf('job-%05d-%02d', r % $n, r // $n % 10),
                   printf('team-%02d', r % $teams), 0, 1300 * 50, 'divergence', 3.0
                   FROM range($runs) t(r) WHERE r % 50 = 3""",
        {"n": INSTANCES, "teams": TEAMS, "runs": RUNS},
    )
    store_allocations(con, "2026-10")
    return {
        t: int(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # type: ignore[index]
        for t in ("cost_line_items", "gpu_usage_hourly", "train_metrics", "allocations")
    }


def median_s(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def in_process(warehouse: Path, runs: int) -> list[tuple[str, float, float]]:
    """(what, cold seconds, warm seconds) for each page load and callback, query + figure functions."""
    month = CostFilter(date(2026, 10, 1), date(2026, 10, 31))
    cases: dict[str, Callable[[Queries], object]] = {
        "page /cost (layout + first render)": lambda q: (
            route(q, "/cost", ""),
            cost.render(q, cost.CostState(month, "category", "teams")),
        ),
        "page /utilization (layout + first render)": lambda q: (
            route(q, "/utilization", ""),
            utilization.render(q, UtilFilter()),
        ),
        "page /training (layout + first render)": lambda q: (
            route(q, "/training", ""),
            training.render(q, (), None),
        ),
        "callback: cost, stack by team, 2 teams": lambda q: cost.render(
            q, cost.CostState(CostFilter(month.start, month.end, ("team-01", "team-02")), "team", "jobs")
        ),
        "callback: utilization, 30-day window": lambda q: utilization.render(q, UtilFilter(window_hours=720)),
        "callback: utilization, 7 days, H100": lambda q: utilization.render(q, UtilFilter(168, 0.25, "h100")),
        "callback: training, pick a run": lambda q: training.render(q, (), "job-00003-00"),
    }
    out = []
    for name, case in cases.items():
        cold = median_s(lambda case=case: case(Queries(warehouse)), runs)
        warm_q = Queries(warehouse)
        case(warm_q)
        out.append((name, cold, median_s(lambda case=case, q=warm_q: case(q), runs)))
    return out


def naive_heatmap(warehouse: Path) -> object:
    """The alternative: every hourly row of the window to pandas, aggregated there."""
    with Warehouse(warehouse).connect(read_only=True) as con:
        df = con.execute(
            "SELECT node, gpu, hour, sm_active, utilization, gpu_seconds FROM gpu_usage_hourly "
            "WHERE hour >= ?",
            [START + timedelta(days=DAYS) - timedelta(hours=720)],
        ).df()
    df["v"] = df.sm_active.fillna(df.utilization) * df.gpu_seconds
    means = df.groupby(["node", "gpu"]).v.sum() / df.groupby(["node", "gpu"]).gpu_seconds.sum()
    keep = means.nsmallest(48).index
    part = df.set_index(["node", "gpu"]).loc[keep].reset_index()
    part["day"] = part.hour.dt.floor("D")
    return part.groupby(["node", "gpu", "day"]).v.sum()


# -- over HTTP --------------------------------------------------------------------------------------
def _callback_request(app: Any, output_ids: list[str], values: dict[tuple[str, str], Any]) -> dict[str, Any]:
    """The JSON body Dash's renderer POSTs for the callback whose outputs are `output_ids`."""
    key = next(
        k
        for k, cb in app.callback_map.items()
        if [o.split(".")[0] for o in k.strip(".").split("...")] == output_ids
    )
    spec = app.callback_map[key]
    outputs = [
        {"id": o.rsplit(".", 1)[0], "property": o.rsplit(".", 1)[1].split("@")[0]}
        for o in key.strip(".").split("...")
    ]
    inputs = [{**i, "value": values.get((i["id"], i["property"]))} for i in spec["inputs"]]
    state = [{**s, "value": values.get((s["id"], s["property"]))} for s in spec["state"]]
    return {
        "output": key,
        "outputs": outputs if len(outputs) > 1 else outputs[0],
        "inputs": inputs,
        "state": state,
        "changedPropIds": [f"{inputs[0]['id']}.{inputs[0]['property']}"],
    }


def _post(url: str, body: dict[str, Any]) -> float:
    data = json.dumps(body).encode()
    request = urllib.request.Request(
        f"{url}/_dash-update-component", data=data, headers={"Content-Type": "application/json"}
    )
    t0 = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as resp:
        resp.read()
        assert resp.status == 200
    return time.perf_counter() - t0


def over_http(warehouse: Path, runs: int) -> list[tuple[str, float, float, float]]:
    """(callback, cold median, warm median, worst) in seconds, against a running ExplorerServer."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ExplorerServer(ExplorerConfig(warehouse, port=0))
    server.start()
    t0 = time.perf_counter()
    server.warm.wait(120)
    PREWARM.append(time.perf_counter() - t0)
    app = server.app
    try:
        cases = {
            "route /cost (page layout)": (
                ["page", "freshness", "nav-cost", "nav-utilization", "nav-training"],
                lambda i: {("url", "pathname"): "/cost", ("url", "search"): f"?x={i}"},
            ),
            "cost render": (
                ["cost-note", "cost-cards", "cost-chart", "cost-table", "cost-table", "cost-table-title"],
                lambda i: {
                    ("cost-range", "start_date"): f"2026-10-{1 + i % 9:02d}",
                    ("cost-range", "end_date"): "2026-10-31",
                    ("cost-teams", "value"): [],
                    ("cost-basis", "value"): "amortized",
                    ("cost-stack", "value"): "team",
                    ("cost-view", "value"): "teams",
                },
            ),
            "utilization render": (
                ["util-summary", "util-note", "util-table", "util-heatmap"],
                lambda i: {
                    ("util-window", "value"): ("24h", "7d", "30d")[i % 3],
                    ("util-threshold", "value"): (0.1, 0.15, 0.25, 0.35, 0.5)[i % 5],
                    ("util-model", "value"): "all",
                    ("util-teams", "value"): [],
                },
            ),
            "training render": (
                ["train-table", "train-run", "train-run", "train-loss", "train-perf", "train-optimizer"],
                lambda i: {
                    ("train-teams", "value"): [],
                    ("train-run", "value"): f"job-{i % INSTANCES:05d}-00",
                },
            ),
        }
        out = []
        for name, (outputs, values) in cases.items():
            cold = [_post(server.url, _callback_request(app, outputs, values(i))) for i in range(runs)]
            warm = [_post(server.url, _callback_request(app, outputs, values(0))) for _ in range(runs)]
            out.append((name, statistics.median(cold), statistics.median(warm), max(cold + warm)))
        return out
    finally:
        server.stop()


def main(runs: int = 5) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        warehouse = Path(tmp) / "bench.duckdb"
        t0 = time.perf_counter()
        with Warehouse(warehouse).connect() as con:
            sizes = populate(con)
        setup = time.perf_counter() - t0
        local = in_process(warehouse, runs)
        aggregated = median_s(lambda: Queries(warehouse).heatmap(UtilFilter(window_hours=720)), runs)
        naive = median_s(lambda: naive_heatmap(warehouse), runs)
        http = over_http(warehouse, runs)
    report = render(sizes, setup, local, http, aggregated, naive, runs)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report)
    print(report)
    worst_page = max(c for n, c, _ in local if n.startswith("page"))
    worst_callback = max(w for *_, w in http)
    return 0 if worst_page <= PAGE_TARGET_S and worst_callback <= CALLBACK_TARGET_S else 1


def render(
    sizes: dict[str, int],
    setup: float,
    local: list[tuple[str, float, float]],
    http: list[tuple[str, float, float, float]],
    aggregated: float,
    naive: float,
    runs: int,
) -> str:
    lines = [
        "## Explorer (bench_explorer.py)",
        "",
        "Machine: 2 vCPU x86_64, no GPU, shared with other work. Synthetic warehouse: 1,000 GPUs "
        f"(125 p4d/p5 instances) over 30 days: {sizes['cost_line_items']:,} CUR lines, "
        f"{sizes['gpu_usage_hourly']:,} usage rows, {sizes['train_metrics']:,} training steps, "
        f"{sizes['allocations']:,} allocation rows (built and allocated in {setup:.0f} s). "
        f"Median of {runs} runs.",
        f"Load average when it ran: {os.getloadavg()[0]:.1f} (other work shares the 2 vCPUs; expect noise).",
        "",
        "In process (query + figure functions; cold = a new cache; warm = the same view again, served from "
        "the render cache):",
        "",
        "| page or callback | cold s | warm s |",
        "|---|---|---|",
        *[f"| {n} | {c:.3f} | {w:.3f} |" for n, c, w in local],
        "",
        "Over HTTP: real `/_dash-update-component` POSTs to a running app (cold = filter values not "
        f"seen before), after the server's startup prewarm ({PREWARM[0]:.1f} s in the background: flags "
        "priced for the 24 h, 7 d and 30 d windows):",
        "",
        "| callback | cold ms | warm ms | worst ms |",
        "|---|---|---|---|",
        *[f"| {n} | {c * 1000:.0f} | {w * 1000:.0f} | {x * 1000:.0f} |" for n, c, w, x in http],
        "",
        f"Targets: page <= {PAGE_TARGET_S:.0f} s (worst cold page "
        f"{max(c for n, c, _ in local if n.startswith('page')):.2f} s); "
        f"callback <= {CALLBACK_TARGET_S * 1000:.0f} ms "
        f"(worst over HTTP {max(x for *_, x in http) * 1000:.0f} ms). "
        "The one cold step above 300 ms is pricing the "
        "flags of a window (`find_flags`, the allocation of that window's GPU time: "
        f"{next(c for n, c, _ in local if '30-day' in n):.2f} s for 30 days); "
        "the server does it for the three "
        "windows in the background at startup, and the threshold slider reuses it.",
        f"30-day SM heatmap aggregated in DuckDB: {aggregated * 1000:.0f} ms; "
        "the alternative, hourly rows to "
        f"pandas and aggregated there: {naive * 1000:.0f} ms "
        f"({naive / aggregated:.1f}x slower, and it is the "
        "work a browser-side chart would repeat on every filter change).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
