"""A warehouse filled by hand from the demo scenario's artifacts, for explorer tests that must not
depend on the attribution pipeline: usage and runs copied as they are, allocations from a simple
ledger (each held GPU-hour costs the node's on-demand rate / 8, the rest of each node-day is idle,
a few named resources are unallocated). The money is not SPEC §6's, only its shape is.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from gpulens.attribution.warehouse import Warehouse
from gpulens.demo.artifacts import Artifacts
from gpulens.demo.scenario import Scenario
from gpulens.trainer.health import scan


def fill(warehouse: Path, scenario: Scenario, artifacts: Artifacts) -> None:
    with Warehouse(warehouse).connect() as con:
        con.execute(f"INSERT INTO gpu_usage_hourly BY NAME SELECT * FROM read_parquet('{artifacts.usage_file}')")
        runs = _runs(artifacts.run_files)
        con.register("runs_df", runs)
        con.execute("INSERT INTO train_metrics BY NAME SELECT job_id, team, rank, step, "
                    "to_timestamp(ts)::TIMESTAMP AS ts, loss, step_seconds, tokens, mfu FROM runs_df")
        for job_id, part in runs.groupby("job_id"):
            for a in scan(zip(part.step, part.loss.fillna(float("nan")), strict=True)):
                con.execute("INSERT INTO train_anomalies VALUES (?, ?, 0, ?, ?, ?)",
                            [job_id, part.team.iloc[0], a.step, a.kind, a.loss])
        rates = pd.DataFrame([{"instance_id": n.instance_id, "rate": n.itype.on_demand_per_hour / 8,
                               "node_rate": n.itype.on_demand_per_hour} for n in scenario.nodes])
        con.register("rates", rates)
        con.execute(_ALLOCATIONS, [scenario.period])


def _runs(files: tuple[Path, ...]) -> pd.DataFrame:
    rows = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    steps = pd.DataFrame([r for r in rows if r["kind"] == "step"])
    return steps.assign(loss=steps.loss.astype(float))


_ALLOCATIONS = """
INSERT INTO allocations (period, basis, day, team, category, job_id, resource_id, cost, waste, gpu_seconds,
                         currency, computed_at)
WITH held AS (
    SELECT hour::DATE AS day, team, job_id, u.instance_id, sum(gpu_seconds / 3600 * rate) AS cost,
           sum(gpu_seconds / 3600 * rate * (1 - coalesce(sm_active, utilization))) AS waste,
           sum(gpu_seconds) AS gpu_seconds
    FROM gpu_usage_hourly u JOIN rates r USING (instance_id) GROUP BY ALL),
days AS (SELECT DISTINCT hour::DATE AS day FROM gpu_usage_hourly),
idle AS (
    SELECT d.day, r.instance_id, 24 * r.node_rate - coalesce(sum(h.cost), 0) AS cost
    FROM days d CROSS JOIN rates r LEFT JOIN held h ON h.day = d.day AND h.instance_id = r.instance_id
    GROUP BY d.day, r.instance_id, r.node_rate)
SELECT $1, b.basis, day, team, 'shared_gpu', job_id, instance_id, cost, waste, gpu_seconds, 'USD', now()
FROM held, (VALUES ('amortized'), ('billed')) b(basis)
UNION ALL
SELECT $1, b.basis, day, NULL, 'idle', NULL, instance_id, cost, 0, 0, 'USD', now()
FROM idle, (VALUES ('amortized'), ('billed')) b(basis)
UNION ALL
SELECT $1, b.basis, day, NULL, 'unallocated', NULL, res, c, 0, 0, 'USD', now()
FROM days, (VALUES ('amortized'), ('billed')) b(basis),
     (VALUES ('vol-0untagged01', 5.16), ('i-0dev5a5a5a5a5a5a5', 24.144), ('gpulens-demo-datasets', 29.68)) r(res, c)
"""
