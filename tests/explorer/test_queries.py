"""The explorer's queries on the demo month: the same money as `gpulens attribute`, the same flags as
`gpulens flags`, aggregated in DuckDB, and URL values that never reach SQL as text."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from gpulens.attribution.allocate import allocate_period
from gpulens.attribution.flags import find_flags
from gpulens.attribution.warehouse import Warehouse
from gpulens.dashboards.explorer import urlstate
from gpulens.dashboards.explorer.pages import cost, utilization
from gpulens.dashboards.explorer.queries import CostFilter, Queries, UtilFilter
from gpulens.demo.build import DemoBuild

OCTOBER = CostFilter(date(2026, 10, 1), date(2026, 10, 31))


@pytest.fixture(scope="module")
def queries(demo_data: DemoBuild) -> Queries:
    return Queries(demo_data.warehouse)


def test_cost_page_shows_the_allocation_of_gpulens_attribute(demo_data: DemoBuild, queries: Queries) -> None:
    """Amortized: what `gpulens attribute --format json` printed when the demo was built."""
    expected = demo_data.summary
    totals = queries.cost_totals(OCTOBER)
    for key in ("total", "idle", "unallocated"):
        assert totals[key] == pytest.approx(expected[key], abs=0.01)
    table = queries.team_table(OCTOBER).set_index("team")
    for team in expected["teams"]:  # type: ignore[attr-defined]
        assert table.loc[team["team"], "total"] == pytest.approx(team["total"], abs=0.01)
        assert table.loc[team["team"], "direct"] == pytest.approx(team["direct"], abs=0.01)
        assert table.loc[team["team"], "waste"] == pytest.approx(team["waste"], abs=0.01)
        assert table.loc[team["team"], "gpu_hours"] == pytest.approx(team["gpu_hours"], abs=0.1)
    assert queries.spend_by_day(OCTOBER).cost.sum() == pytest.approx(totals["total"])


def test_team_table_shows_gpu_and_storage_beside_each_other(demo_data: DemoBuild, queries: Queries) -> None:
    """The demo's FSx file system and checkpoint bucket are storage shared by cluster tag: each team's
    storage is the allocation's `TeamCost.storage`, its GPU instance time `TeamCost.gpu`."""
    with Warehouse(demo_data.warehouse).connect(read_only=True) as con:
        allocation = allocate_period(con, "2026-10")
    table = queries.team_table(OCTOBER).set_index("team")
    for t in allocation.teams:
        assert table.loc[t.team, "gpu_cost"] == pytest.approx(float(t.gpu), abs=0.01)
        assert table.loc[t.team, "storage"] == pytest.approx(float(t.storage), abs=0.01)
    assert sum(float(t.storage) for t in allocation.teams) > 0  # the demo's FSx and S3 reach the teams


def test_billed_view_is_the_billed_allocation(demo_data: DemoBuild, queries: Queries) -> None:
    with Warehouse(demo_data.warehouse).connect(read_only=True) as con:
        billed = allocate_period(con, "2026-10", basis="billed")
    totals = queries.cost_totals(CostFilter(OCTOBER.start, OCTOBER.end, (), "billed"))
    assert totals["total"] == pytest.approx(float(billed.total), abs=0.01)
    assert totals["unallocated"] == pytest.approx(float(billed.unallocated), abs=0.01)
    assert totals["total"] < queries.cost_totals(OCTOBER)["total"]  # the Savings Plan and RI amortized


def test_demo_month_has_every_kind_of_spend(queries: Queries) -> None:
    totals = queries.cost_totals(OCTOBER)
    assert all(totals[g] > 1000 for g in ("direct", "shared", "idle", "unallocated"))
    unallocated = queries.unallocated(OCTOBER)
    ids_ = set(unallocated.resource_id)
    assert "i-0dev5a5a5a5a5a5a5" in ids_  # the untagged dev instance, to be tagged
    assert any(i.startswith("arn:aws:savingsplans") for i in ids_)  # unused commitment
    assert any(i.startswith("vol-") for i in ids_)


def test_underutilized_table_is_find_flags(demo_data: DemoBuild, queries: Queries) -> None:
    with Warehouse(demo_data.warehouse).connect(read_only=True) as con:
        flags = find_flags(con)
    shown = queries.underutilized(UtilFilter())
    assert sorted(zip(shown.node, shown.gpu, shown.job_id, strict=True)) == sorted(
        (u.node, u.gpu, u.job_id) for u in flags.underutilized
    )
    assert {"node-08", "node-10", "node-16"} <= set(shown.node)
    h100 = queries.underutilized(UtilFilter(model="h100"))
    assert set(h100.gpu_family) == {"H100"} and 0 < len(h100) < len(shown)
    search = queries.underutilized(UtilFilter(teams=("search",)))
    assert set(search.team) == {"search"}


def test_a100_without_dcgm_is_labelled_coarse(queries: Queries) -> None:
    assert queries.coarse_nodes(720) == ("node-05",)
    heat = queries.heatmap(UtilFilter(window_hours=720), limit=200)
    assert set(heat[heat.gpu_label.str.startswith("node-05")].measure) == {"utilization"}
    assert set(heat[~heat.gpu_label.str.startswith("node-05")].measure) == {"sm_active"}


@pytest.mark.parametrize(("hours", "bucket_hours"), [(24, 1), (168, 6), (720, 24)])
def test_heatmap_is_aggregated_in_duckdb(queries: Queries, hours: int, bucket_hours: int) -> None:
    heat = queries.heatmap(UtilFilter(window_hours=hours), limit=48)
    assert heat.gpu_label.nunique() == 48
    assert heat.groupby("gpu_label").bucket.nunique().max() <= hours // bucket_hours
    assert heat.value.between(0, 1).all()


def test_runs_put_anomalies_first_with_the_cost_after_onset(queries: Queries) -> None:
    runs = queries.runs()
    assert list(runs.job_id[:2]) == ["llm-70b-pretrain", "asr-conformer-xl"]  # the dearer one first
    assert runs.cost_after_onset[0] > runs.cost_after_onset[1] > 0
    assert runs.last_loss[1] != runs.last_loss[1]  # NaN: the run ended non-finite
    assert runs.anomalies[2:].eq("").all()


def test_loss_curve_is_bucketed(queries: Queries) -> None:
    curve = queries.curve("llm-70b-pretrain", points=100)
    assert 50 <= len(curve) <= 100
    assert curve.step.is_monotonic_increasing


def test_url_values_never_reach_sql_as_text(queries: Queries) -> None:
    rng = queries.data_range()
    hostile = {
        "team": "search') OR 1=1 --,vision",
        "start": "2026-10-01'; DROP TABLE allocations;--",
        "basis": "amortized' OR '1'='1",
        "view": "nope",
    }
    state = cost.state_from_params(hostile, rng.first_day, rng.last_day, rng.teams)
    assert state.filter.teams == ("vision",)
    assert (
        state.filter.start == date(2026, 10, 1)
        and state.filter.basis == "amortized"
        and state.view == "teams"
    )
    # Even a filter built by hand with a hostile team is a bound parameter: it matches nothing.
    assert queries.team_table(CostFilter(OCTOBER.start, OCTOBER.end, ("x' OR '1'='1",))).empty
    assert queries.counts()["allocations"] > 0
    util = utilization.filter_from_params(
        {"threshold": "1; DROP", "window": "1y", "model": "a100"}, rng.teams
    )
    assert (util.sm_threshold, util.window_hours, util.model) == (0.25, 24, "a100")


def test_url_state_round_trips() -> None:
    search = urlstate.encode(
        {"start": date(2026, 10, 1), "team": ("ai-research", "search"), "view": "jobs", "empty": ()}
    )
    assert search == "?start=2026-10-01&team=ai-research,search&view=jobs"
    assert urlstate.parse(search) == {"start": "2026-10-01", "team": "ai-research,search", "view": "jobs"}
    assert urlstate.encode({}) == ""


def test_money_is_read_not_resplit(queries: Queries, demo_data: DemoBuild) -> None:
    """The explorer's daily rows are exactly the allocations table `gpulens attribute` wrote."""
    with Warehouse(demo_data.warehouse).connect(read_only=True) as con:
        stored = con.execute("SELECT sum(cost) FROM allocations WHERE basis = 'amortized'").fetchone()[0]
    assert Decimal(str(round(queries.spend_by_day(OCTOBER).cost.sum(), 2))) == round(stored, 2)


def test_goodput_of_the_demo_run_that_crashed(queries: Queries, demo_data: DemoBuild) -> None:
    """The demo's crashed job (gpulens/demo/runs.py): attempt 1 crashes in the slot before a checkpoint,
    so attempt 2 redoes seven 30-minute records; the restart gap is 900 s; init runs twice (600 s each),
    the checkpoint load once (300 s). Its buckets' money adds up to what its GPU time cost."""
    from gpulens.attribution.allocate import Window, job_gpu_cost
    from gpulens.attribution.goodput import BUCKETS

    crashed = next(j for j in demo_data.scenario.jobs if j.crash_at is not None)
    runs = queries.goodput()
    run = runs[runs.job_id == crashed.job_id].iloc[0]
    assert run.attempts == 2
    assert (run.restart_s, run.init_s, run.checkpoint_load_s) == (900.0, 1200.0, 300.0)
    assert 6 * 1500 < run.wasted_progress_s < 7 * 1800
    assert 0 < run.effective_mfu < run.step_mfu
    with Warehouse(demo_data.warehouse).connect(read_only=True) as con:
        hours = con.execute("SELECT min(hour), max(hour) + INTERVAL 1 HOUR FROM gpu_usage_hourly").fetchone()
        priced = job_gpu_cost(con, Window(*hours))
        (cost,) = con.execute(
            f"SELECT sum(cost) FROM {priced.cost} WHERE job_id = ?", [crashed.job_id]
        ).fetchone()
    assert sum(run[f"{b}_cost"] for b in BUCKETS) == pytest.approx(float(cost), abs=1e-6)
    assert run.wasted_progress_cost > 0
    fleet = runs.groupby("team")[[f"{b}_cost" for b in BUCKETS if b != "productive"]].sum()
    assert (fleet.sum(axis=1) > 0).all()


def test_effective_mfu_is_useful_flops_over_wall_time(tmp_path: Path) -> None:
    """tests/fixtures/runs/goodput_two_attempts.md: the 8 kept steps hold 0.8 s of peak-rate FLOPs
    (mfu x step_seconds), the 2 redone steps count for nothing, the wall is 109.0045 s: effective MFU
    0.8 / 109.0045 = 0.0073392, against a step MFU of ~0.1."""
    from gpulens.cli import main

    log = Path(__file__).parents[1] / "fixtures" / "runs" / "goodput_two_attempts.jsonl"
    warehouse = tmp_path / "w.duckdb"
    assert main(["ingest", "runs", str(log), "--warehouse", str(warehouse)]) == 0
    run = Queries(warehouse).goodput().iloc[0]
    assert run.job_id == "gpt-goodput" and run.attempts == 2
    assert run.effective_mfu == pytest.approx(0.8 / 109.0045, rel=1e-5)
    assert run.step_mfu == pytest.approx(0.1, rel=1e-3)


def test_cost_since_onset_stops_on_the_day_the_episode_ended(tmp_path: Path) -> None:
    """Job j (team t) was allocated 10.00 a day, Oct 1-5; its anomaly is at step 1 (Oct 2). Until the
    episode's end is known the cost runs to the last day: Oct 2-5 = 40.00; when it recovered on Oct 3,
    Oct 2-3 = 20.00 (days count whole: `allocations` is daily). A redone copy of step 1 logged on Oct 1
    by an earlier attempt does not move the onset."""
    from datetime import datetime

    with Warehouse(tmp_path / "w.duckdb").connect() as con:
        for day in range(1, 6):
            con.execute(
                "INSERT INTO allocations (period, basis, day, team, category, job_id, cost, currency,"
                " computed_at) VALUES ('2026-10', 'amortized', ?, 't', 'shared', 'j', 10, 'USD', now())",
                [date(2026, 10, day)],
            )
        con.execute(
            "INSERT INTO train_metrics (job_id, team, rank, step, ts, attempt, redone) VALUES"
            " ('j', 't', 0, 1, ?, 1, true), ('j', 't', 0, 1, ?, 2, false), ('j', 't', 0, 2, ?, 2, false)",
            [datetime(2026, 10, 1, 6), datetime(2026, 10, 2, 6), datetime(2026, 10, 3, 6)],
        )
    queries = Queries(tmp_path / "w.duckdb")
    assert queries.cost_after({"j": 1}) == {"j": 40.0}
    assert queries.cost_after({"j": 1}, {"j": date(2026, 10, 3)}) == {"j": 20.0}
