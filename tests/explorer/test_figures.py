"""Figure builders are pure: small frames in, the traces the pages promise out."""

from __future__ import annotations

from datetime import date

import pandas as pd

from gpulens.dashboards.explorer import figures

TEAMS = ("ai-research", "search")
SPEND = pd.DataFrame(
    {
        "day": [date(2026, 10, 1)] * 4 + [date(2026, 10, 2)] * 2,
        "team": ["ai-research", "search", None, None, "search", None],
        "grp": ["direct", "shared", "idle", "unallocated", "shared", "idle"],
        "cost": [10.0, 20.0, 5.0, 1.0, 7.0, 3.0],
    }
)


def test_spend_by_category_stacks_the_four_groups_in_order() -> None:
    fig = figures.spend_stack(SPEND, stack="category", currency="USD", teams=TEAMS)
    assert [t.name for t in fig.data] == ["direct", "shared", "idle", "unallocated"]
    assert sum(sum(t.y) for t in fig.data) == SPEND.cost.sum()
    assert fig.layout.barmode == "stack"


def test_spend_by_team_keeps_idle_and_unallocated_so_bars_add_up() -> None:
    fig = figures.spend_stack(SPEND, stack="team", currency="USD", teams=TEAMS)
    assert [t.name for t in fig.data] == ["ai-research", "search", "idle", "unallocated"]
    assert sum(sum(t.y) for t in fig.data) == SPEND.cost.sum()
    assert all(set(t.customdata) == {t.name} for t in fig.data)  # what a click drills into


def test_loss_curve_marks_each_anomaly_and_skips_non_finite_points() -> None:
    curve = pd.DataFrame(
        {
            "step": [1, 2, 3, 4],
            "loss": [3.0, 2.5, float("nan"), float("nan")],
            "step_seconds": [1.0] * 4,
            "mfu": [0.4] * 4,
        }
    )
    anomalies = pd.DataFrame({"step": [3], "kind": ["nan"]})
    fig = figures.loss_curve(curve, anomalies, job_id="run")
    line, marker = fig.data
    assert list(line.x) == [1, 2] and marker.name == "nan" and list(marker.x) == [3]
    assert list(marker.y) == [2.5]  # drawn at the last finite loss


def test_empty_frames_give_a_message_not_an_error() -> None:
    empty = SPEND.iloc[0:0]
    fig = figures.spend_stack(empty, stack="category", currency="USD", teams=TEAMS)
    assert fig.layout.annotations[0].text == "No allocated cost in this range"
    heat = figures.sm_heatmap(
        pd.DataFrame(columns=["gpu_label", "model", "bucket", "value", "measure"]), threshold=0.25
    )
    assert "No GPU usage" in heat.layout.annotations[0].text


def _goodput_run(job: str, team: str, **costs: float) -> dict[str, object]:
    from gpulens.attribution.goodput import BUCKETS

    row: dict[str, object] = {"job_id": job, "team": team, "goodput": 0.5, "step_mfu": 0.45}
    row["effective_mfu"] = 0.15
    for b in BUCKETS:
        row[f"{b}_s"] = 3600.0 * costs.get(b, 0.0)
        row[f"{b}_cost"] = costs.get(b, 0.0)
    return row


def test_goodput_bar_stacks_every_bucket_and_puts_both_mfus_in_the_title() -> None:
    fig = figures.goodput_bar(
        _goodput_run("j1", "a", productive=5.0, restart=1.8, data_wait=0.7), currency="USD"
    )
    assert [t.name for t in fig.data][:3] == ["productive", "wasted_progress", "checkpoint_save"]
    assert sum(t.x[0] for t in fig.data) == 7.5  # hours: 5 + 1.8 + 0.7
    title = fig.layout.title.text
    assert "badput 2.50 USD" in title and "step MFU 45.0%" in title and "effective MFU 15.0%" in title


def test_badput_by_team_sums_each_cause_per_team_without_productive() -> None:
    runs = pd.DataFrame(
        [
            _goodput_run("j1", "a", productive=5.0, restart=1.8),
            _goodput_run("j2", "a", restart=0.2, eval=1.0),
            _goodput_run("j3", "b", data_wait=3.0),
        ]
    )
    fig = figures.badput_by_team(runs, currency="USD")
    by_cause = {t.name: dict(zip(t.x, t.y, strict=True)) for t in fig.data}
    assert "productive" not in by_cause
    assert by_cause["restart"] == {"a": 2.0, "b": 0.0}
    assert by_cause["data_wait"]["b"] == 3.0 and by_cause["eval"]["a"] == 1.0
