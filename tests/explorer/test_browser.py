"""The explorer in a real headless Chromium, on the demo month loaded through the real commands.

What is on screen is compared with what the commands print: the flagged GPUs and runs with
`gpulens flags --format json`, the CSV download with the table's cells.
"""

from __future__ import annotations

import csv
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from gpulens.dashboards.explorer import ids
from tests.explorer.conftest import Served
from tests.support.browser import full_page_screenshot, wait_until

pytestmark = pytest.mark.timeout(240)


def open_page(browser: Any, url: str) -> None:
    browser.get(url)
    wait_until(lambda: browser.execute_script("return !!document.querySelector('#page > div')"), what="page")


def cells(browser: Any, table: str, column: str) -> list[str]:
    return [
        td.text for td in browser.find_elements("css selector", f"#{table} td[data-dash-column='{column}']")
    ]


def rows(browser: Any, table: str, columns: list[str]) -> list[tuple[str, ...]]:
    return list(zip(*(cells(browser, table, c) for c in columns), strict=True))


def trace_names(browser: Any, graph: str) -> list[str]:
    return browser.execute_script(
        f"const g = document.querySelector('#{graph} .js-plotly-plot'); "
        "return g && g.data ? g.data.map(t => t.name) : [];"
    )


def query(browser: Any) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlparse(browser.current_url).query))


def settle(browser: Any) -> None:
    """Wait until Dash has no callback in flight (its loading state leaves the DOM)."""
    time.sleep(0.3)
    wait_until(
        lambda: not browser.find_elements("css selector", "[data-dash-is-loading='true']"), what="callbacks"
    )


@pytest.mark.parametrize("path", ["/cost", "/utilization", "/training"])
def test_each_page_loads_on_demo_data(explorer: Served, browser: Any, artifacts_dir: Path, path: str) -> None:
    open_page(browser, explorer.url + path)
    graph = {"/cost": ids.COST_CHART, "/utilization": ids.UTIL_HEATMAP, "/training": ids.TRAIN_LOSS}[path]
    wait_until(lambda: trace_names(browser, graph), what=f"{graph} drawn")
    settle(browser)
    assert "active" in browser.find_element("id", f"nav-{path.strip('/')}").get_attribute("class")
    assert "2026-10" in browser.find_element("id", ids.FRESHNESS).text
    full_page_screenshot(browser, artifacts_dir / f"explorer{path.replace('/', '-')}.png")


def money(text: str) -> float:
    """`$124,880.25` as shown -> 124880.25."""
    return float(text.replace("$", "").replace(",", ""))


def gpu_rows(browser: Any) -> list[tuple[str, int, str, str]]:
    """(node, gpu, job, waste as shown) of every GPU row of the grouped /utilization table."""
    return [
        (
            r.get_attribute("data-node"),
            int(r.get_attribute("data-gpu")),
            r.get_attribute("data-job"),
            r.find_element("css selector", "td.money").get_attribute("textContent"),
        )
        for r in browser.find_elements("css selector", f"#{ids.UTIL_TABLE} tr.gpu-row")
    ]


def test_flagged_gpus_are_exactly_those_of_gpulens_flags(explorer: Served, browser: Any) -> None:
    expected = explorer.flags["underutilized"]
    assert len(expected) > 0
    open_page(browser, explorer.url + "/utilization")
    shown = wait_until(lambda: gpu_rows(browser), what="table")
    assert sorted((n, g, j) for n, g, j, _ in shown) == sorted(
        (e["node"], e["gpu"], e["job_id"]) for e in expected
    )
    # Each GPU's waste to the cent; rows are rounded together (round_parts) so they add up to the total.
    waste = {(e["node"], e["gpu"], e["job_id"]): float(e["waste"]) for e in expected}
    assert all(w.startswith("$") and abs(money(w) - waste[(n, g, j)]) < 0.0101 for n, g, j, w in shown)
    assert round(sum(money(w) for *_, w in shown), 2) == round(sum(waste.values()), 2)


def test_flagged_runs_are_exactly_those_of_gpulens_flags(explorer: Served, browser: Any) -> None:
    expected = {(r["job_id"], r["kind"]) for r in explorer.flags["divergent_runs"]}
    assert {kind for _, kind in expected} >= {"divergence", "nan"}
    open_page(browser, explorer.url + "/training")
    shown = wait_until(lambda: rows(browser, ids.TRAIN_TABLE, ["job_id", "anomalies"]), what="runs table")
    flagged = {(job, kind) for job, kinds in shown if kinds for kind in kinds.split(", ")}
    assert flagged == expected
    # Divergent runs come first, and the money spent after the onset is shown for each.
    first = [job for job, kinds in shown[: len({j for j, _ in expected})]]
    assert set(first) == {j for j, _ in expected}
    assert all(c and money(c) > 0 for c in cells(browser, ids.TRAIN_TABLE, "cost_after_onset")[:2])


def test_filter_change_updates_chart_and_url(explorer: Served, browser: Any) -> None:
    open_page(browser, explorer.url + "/cost")
    wait_until(lambda: trace_names(browser, ids.COST_CHART), what="chart")
    assert set(trace_names(browser, ids.COST_CHART)) <= {"direct", "shared", "idle", "unallocated"}
    browser.find_element("css selector", f"#{ids.COST_STACK} input[value='team']").click()
    teams = {t["team"] for t in explorer.data.summary["teams"]}  # type: ignore[attr-defined]
    wait_until(lambda: teams <= set(trace_names(browser, ids.COST_CHART)), what="chart stacked by team")
    wait_until(lambda: query(browser).get("stack") == "team", what="URL updated")
    assert query(browser)["start"] == "2026-10-01" and query(browser)["end"] == "2026-10-31"


def test_url_filters_are_shareable(explorer: Served, browser: Any) -> None:
    open_page(browser, explorer.url + "/utilization?model=h100&window=24h")
    wait_until(lambda: gpu_rows(browser), what="table")
    settle(browser)
    models = [
        r.find_element("css selector", "td:nth-child(2)").get_attribute("textContent")
        for r in browser.find_elements("css selector", f"#{ids.UTIL_TABLE} tr.gpu-row")
    ]
    assert models and all("H100" in m for m in models)
    assert browser.find_element("css selector", f"#{ids.UTIL_MODEL} input[value='h100']").is_selected()


def test_drill_down_from_team_to_jobs_and_instances(explorer: Served, browser: Any) -> None:
    open_page(browser, explorer.url + "/cost")
    wait_until(lambda: "search" in cells(browser, ids.COST_TABLE, "team"), what="team table")
    row = cells(browser, ids.COST_TABLE, "team").index("search")
    browser.find_elements("css selector", f"#{ids.COST_TABLE} td[data-dash-column='team']")[row].click()
    wait_until(
        lambda: query(browser).get("view") == "jobs" and query(browser).get("team") == "search", what="URL"
    )
    wait_until(lambda: cells(browser, ids.COST_TABLE, "job_id"), what="jobs table")
    assert set(cells(browser, ids.COST_TABLE, "team")) == {"search"}
    assert any(r.startswith("i-") for r in cells(browser, ids.COST_TABLE, "resource_id"))


def test_csv_download_holds_the_rows_on_screen(explorer: Served, browser: Any, downloads: Path) -> None:
    open_page(browser, explorer.url + "/cost?view=teams")
    columns = ["team", "direct", "shared", "total", "gpu_hours", "waste"]
    shown = wait_until(lambda: rows(browser, ids.COST_TABLE, columns), what="table")
    before = set(downloads.glob("*.csv"))
    browser.find_element("id", ids.COST_CSV_BUTTON).click()
    path = wait_until(lambda: next(iter(set(downloads.glob("*.csv")) - before), None), what="CSV downloaded")
    # The file says what it holds: the view, the cost basis, the days and that no team filter applied.
    assert path.name == "gpulens-cost-teams-amortized-20261001-20261031-all-teams.csv"
    with path.open() as fh:
        saved = [tuple(r[c] for c in columns) for r in csv.DictReader(fh)]
    assert len(saved) == len(shown) > 4

    def same(screen: str, file: str) -> bool:
        try:
            return abs(money(screen) - float(file)) < 0.05
        except ValueError:
            return screen == file

    assert all(same(s, f) for a, b in zip(shown, saved, strict=True) for s, f in zip(a, b, strict=True))


def test_date_range_from_the_url_limits_chart_and_table(explorer: Served, browser: Any) -> None:
    open_page(browser, explorer.url + "/cost?start=2026-10-05&end=2026-10-11&view=teams")
    wait_until(lambda: trace_names(browser, ids.COST_CHART), what="chart")
    settle(browser)
    days = browser.execute_script(
        f"const g = document.querySelector('#{ids.COST_CHART} .js-plotly-plot');"
        "return [...new Set(g.data.flatMap(t => t.x.map(String)))];"
    )
    assert sorted(d[:10] for d in days) == [f"2026-10-{d:02d}" for d in range(5, 12)]
    totals = [money(c) for c in cells(browser, ids.COST_TABLE, "total")]
    month = explorer.data.summary["total"]  # type: ignore[index]
    assert 0 < sum(totals) < month / 3  # a week of a month
    # Dash 4's picker puts the component id on its start input.
    shown = browser.execute_script(
        "return [...document.querySelectorAll('input.dash-datepicker-input')].map(i => i.value);"
    )
    assert shown == ["2026-10-05", "2026-10-11"]


def test_training_shows_the_runs_goodput_and_the_fleets_badput(explorer: Served, browser: Any) -> None:
    """docs/design.md §8 on /training: the selected run's wall time by bucket, and badput by team."""
    crashed = next(j for j in explorer.data.scenario.jobs if j.crash_at is not None)
    open_page(browser, explorer.url + f"/training?run={crashed.job_id}")
    names = wait_until(lambda: trace_names(browser, ids.TRAIN_GOODPUT), what="goodput bar drawn")
    assert names[:2] == ["productive", "wasted_progress"] and "restart" in names
    causes = wait_until(lambda: trace_names(browser, ids.TRAIN_BADPUT), what="badput chart drawn")
    assert "productive" not in causes and {"wasted_progress", "checkpoint_save", "data_wait"} <= set(causes)
    title = browser.find_element("id", ids.TRAIN_GOODPUT).text
    assert "effective MFU" in title and "step MFU" in title and "badput" in title
