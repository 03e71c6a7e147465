"""Presentation pieces of the explorer, without a browser: CSV downloads that name what they hold and
never carry a formula, cards whose parts add up, stable team colours, URL values said to be ignored,
the loss figure's marks and smoothing."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from datetime import date
from decimal import Decimal
from typing import Any

import pandas as pd

from gpulens.dashboards.explorer import figures
from gpulens.dashboards.explorer.figures import CurveOptions
from gpulens.dashboards.explorer.pages import cost, utilization
from gpulens.dashboards.explorer.queries import CostFilter


def test_csv_download_escapes_formula_cells_but_not_numbers() -> None:
    """A tag value such as `=HYPERLINK(...)` reaches the file as text (leading apostrophe), as the
    report's CSV does (`present.csv_text`); negative numbers stay numbers."""
    frame = pd.DataFrame(
        {
            "team": ['=HYPERLINK("http://evil","x")', "+cmd", "search", "@sum(A1)", "-2+3"],
            "total": [1.5, -2.0, 3.25, 0.0, -1.0],
        }
    )
    text = cost.csv_frame(frame).to_csv(index=False)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["team"] for r in rows] == [
        '\'=HYPERLINK("http://evil","x")',
        "'+cmd",
        "search",
        "'@sum(A1)",
        "'-2+3",
    ]
    assert [r["total"] for r in rows] == ["1.5", "-2.0", "3.25", "0.0", "-1.0"]
    assert frame.team[0].startswith("=")  # the table on screen is not changed


def test_csv_name_says_view_basis_days_and_filter() -> None:
    month = CostFilter(date(2026, 10, 1), date(2026, 10, 31))
    assert cost.csv_name(cost.CostState(month, "category", "teams")) == (
        "gpulens-cost-teams-amortized-20261001-20261031-all-teams.csv"
    )
    billed = CostFilter(date(2026, 10, 1), date(2026, 10, 7), ("search", "vision"), "billed")
    assert cost.csv_name(cost.CostState(billed, "category", "jobs")) == (
        "gpulens-cost-jobs-billed-20261001-20261007-search-vision.csv"
    )
    # Unallocated and idle belong to no team: the team filter does not apply to them.
    assert cost.csv_name(cost.CostState(billed, "category", "unallocated")).endswith("-all-teams.csv")


def test_cards_round_parts_together_so_they_add_up_to_the_total() -> None:
    """Direct 1.40 + shared 1.40 + idle 1.20 + unallocated 0.00 = 4.00. Each rounded alone to whole
    dollars gives 1 + 1 + 1 + 0 = 3 under a total of 4; largest remainder gives the missing dollar to
    the largest remainder (0.40, a tie: the larger part, then the earlier: direct): 2 + 1 + 1 + 0."""
    exact = {
        "direct": Decimal("1.40"),
        "shared": Decimal("1.40"),
        "idle": Decimal("1.20"),
        "unallocated": Decimal("0.00"),
        "total": Decimal("4.00"),
    }
    shown = stat_values(cost.cards(exact, 0.5, "USD"))
    assert shown == {
        "Total": "$4",
        "Direct": "$2",
        "Shared": "$1",
        "Idle": "$1",
        "Unallocated": "$0",
        "Of which wasted": "$1",
    }


def stat_values(component: Any) -> dict[str, str]:
    """label -> value of every stat card under `component`."""
    found: dict[str, str] = {}
    children = getattr(component, "children", None)
    if (
        getattr(component, "className", "").startswith("stat ")
        or getattr(component, "className", "") == "stat"
    ):
        label, value = children
        return {label.children: value.children}
    for child in children if isinstance(children, list) else [children] if children is not None else []:
        if hasattr(child, "children"):
            found.update(stat_values(child))
    return found


def test_team_colour_is_the_same_in_every_process() -> None:
    """`hash()` of a str is salted per process (PYTHONHASHSEED); a team's colour must not be."""
    script = "from gpulens.dashboards.explorer.figures import team_color; print(team_color('new-team', ()))"
    colours = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert len(colours) == 1 and colours <= set(figures.TEAM_COLORS)


def test_ignored_url_values_are_listed() -> None:
    params = {"team": "search,nosuchteam", "threshold": "0.01", "window": "9h", "model": "a100"}
    ignored = utilization.ignored_params(params, ("search", "vision"))
    assert ignored == [
        "window=9h (one of 24h, 7d, 30d)",
        "threshold=0.01 (one of 0.1, 0.15, 0.25, 0.35, 0.5)",
        "team=nosuchteam (no such team in the warehouse)",
    ]
    f = utilization.filter_from_params(params, ("search", "vision"))
    assert (f.window_hours, f.sm_threshold, f.model, f.teams) == (24, 0.25, "a100", ("search",))
    assert utilization.ignored_params({"window": "7d", "threshold": "0.5"}, ()) == []
    assert cost.ignored_params(
        {"team": "nosuchteam", "view": "bogus", "start": "2026-13-01", "basis": "billed"}, ("search",)
    ) == [
        "start=2026-13-01 (not a date YYYY-MM-DD)",
        "view=bogus (one of teams, jobs, idle, unallocated)",
        "team=nosuchteam (no such team in the warehouse)",
    ]


def test_smoothing_is_tensorboards_debiased_moving_average() -> None:
    """weight 0.5 over [2, 4, nan, 4]: 1st 0.5*2 = 1, debiased 1 / (1 - 0.5) = 2; 2nd 0.5*1 + 0.5*4 =
    2.5, debiased 2.5 / (1 - 0.25) = 3.333...; the NaN stays out; 3rd 0.5*2.5 + 0.5*4 = 3.25, debiased
    3.25 / (1 - 0.125) = 3.714..."""
    out = figures.smoothed(pd.Series([2.0, 4.0, float("nan"), 4.0]), 0.5)
    assert out[0] == 2.0 and abs(out[1] - 2.5 / 0.75) < 1e-12 and out[2] != out[2]
    assert abs(out[3] - 3.25 / 0.875) < 1e-12


def test_loss_curve_marks_detection_and_last_good_step_and_overlays() -> None:
    curve = pd.DataFrame(
        {"step": [1, 2, 3, 4, 5], "loss": [3.0, 2.0, 2.5, 3.5, 4.0], "step_seconds": 1.0, "mfu": 0.4}
    )
    anomalies = pd.DataFrame(
        {"step": [5], "kind": ["divergence"], "ts": [None], "last_good_step": [2], "last_good_loss": [2.0]}
    )
    other = curve.assign(loss=curve.loss + 1)
    fig = figures.loss_curve(
        curve, anomalies, job_id="run", options=CurveOptions(log=True, smooth=0.6), others={"b": other}
    )
    by_name = {t.name: t for t in fig.data}
    assert list(by_name["last good before divergence"].x) == [2]
    assert list(by_name["last good before divergence"].y) == [2.0]
    assert list(by_name["divergence"].x) == [5]
    assert {"run", "run (raw)", "b", "b (raw)"} <= set(by_name)
    assert fig.layout.yaxis.type == "log"


def test_heatmap_colour_scale_breaks_at_the_threshold() -> None:
    df = pd.DataFrame(
        {
            "gpu_label": ["n / GPU 0"],
            "model": ["H100"],
            "bucket": [pd.Timestamp("2026-10-01")],
            "value": [0.1],
            "measure": ["sm_active"],
        }
    )
    fig = figures.sm_heatmap(df, threshold=0.35)
    stops = [s[0] for s in fig.data[0].colorscale]
    assert stops.count(0.35) == 2  # a hard break: red below, blue-green above
    assert "35% ◀ flagged below" in fig.data[0].colorbar.ticktext


def test_grouped_utilization_sends_the_groups_that_waste_most_and_keeps_the_total() -> None:
    """70 nodes x 2 GPUs, node i wasting $i.005 per GPU: the 40 nodes that waste most are rows, the
    other 30 one line, and rows + that line add up to the total at the foot (rounded together)."""
    rows = [
        {
            "node": f"node-{i:02d}",
            "instance_id": f"i-{i:02d}",
            "gpu": g,
            "model": "H100",
            "gpu_family": "H100",
            "team": "t",
            "job_id": f"job-{i}",
            "hours": 10.0,
            "sm_active": 0.1,
            "measure": "sm_active",
            "waste": Decimal(i) + Decimal("0.005"),
        }
        for i in range(70)
        for g in range(2)
    ]
    table = utilization.grouped_table(pd.DataFrame(rows), "USD")
    details = [c for c in table if type(c).__name__ == "Details"]
    more = [c for c in table if getattr(c, "className", "") == "grow more"]
    assert len(details) == utilization.MAX_GROUPS and len(more) == 1
    assert "node-69" in str(details[0]) and "30 more groups" in str(more[0])

    def money(part: Any) -> Decimal:
        return Decimal(part.children[-1].children.replace("$", "").replace(",", ""))

    shown = [money(d.children[0]) for d in details] + [money(more[0])]
    total = money(table[-1].children)
    assert total == Decimal("4830.70")  # 2 x (0 + 1 + ... + 69) + 140 x 0.005
    assert sum(shown) == total
