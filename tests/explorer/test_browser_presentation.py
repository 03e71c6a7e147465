"""What a finance analyst, a platform engineer and a researcher read on the explorer (issue 16), in a
real headless Chromium on the demo month: money shown as money, the loading state, the Billed
explanation, the grouped utilization table, URL values that are ignored said so, the /training
controls; and each view saved as a screenshot."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from gpulens.dashboards.explorer import ids
from tests.explorer.conftest import Served
from tests.explorer.test_browser import cells, open_page, query, settle, trace_names
from tests.support.browser import full_page_screenshot, wait_until

pytestmark = pytest.mark.timeout(240)

MONEY = re.compile(r"^-?\$\d{1,3}(,\d{3})*\.\d\d$")
WHOLE_MONEY = re.compile(r"^-?\$\d{1,3}(,\d{3})*$")


def amount(text: str) -> float:
    """`$124,880.25` -> 124880.25 (what the screen shows, back as a number)."""
    return float(text.replace("$", "").replace(",", ""))


def card(browser: Any, label: str) -> str:
    for stat in browser.find_elements("css selector", f"#{ids.COST_CARDS} .stat"):
        if stat.find_element("css selector", ".stat-label").text.strip().lower() == label.lower():
            return str(stat.find_element("css selector", ".stat-value").text)
    raise AssertionError(f"no card {label!r}")


def graph(browser: Any, element: str) -> Any:
    return browser.execute_script(
        f"const g = document.querySelector('#{element} .js-plotly-plot');"
        "if (!g || !g.data) return null;"
        "return {data: g.data.map(t => ({name: t.name, x: t.x, y: t.y})), layout: g.layout};"
    )


def test_money_is_shown_as_money_and_cards_add_up(explorer: Served, browser: Any) -> None:
    """Every money cell reads `$124,880.25`; hours `17,508.0`; the headline cards are whole dollars
    and Direct + Shared + Idle + Unallocated add up to the Total shown (largest remainder), with the
    waste card apart from them and named 'Of which wasted'."""
    open_page(browser, explorer.url + "/cost?view=teams")
    wait_until(lambda: cells(browser, ids.COST_TABLE, "total"), what="team table")
    settle(browser)
    for column in ("direct", "shared", "total", "waste"):
        shown = cells(browser, ids.COST_TABLE, column)
        assert shown and all(MONEY.match(c) for c in shown), (column, shown)
    assert all(re.match(r"^\d{1,3}(,\d{3})*\.\d$", c) for c in cells(browser, ids.COST_TABLE, "gpu_hours"))
    parts = [card(browser, label) for label in ("Direct", "Shared", "Idle", "Unallocated")]
    total = card(browser, "Total")
    assert all(WHOLE_MONEY.match(c) for c in [*parts, total]), parts
    assert sum(amount(p) for p in parts) == amount(total)
    assert round(amount(total)) == round(explorer.data.summary["total"])  # type: ignore[index]
    apart = browser.find_element("css selector", f"#{ids.COST_CARDS} .stats.apart")
    assert "OF WHICH WASTED" in apart.text.upper()
    assert "Waste" not in browser.find_element("css selector", f"#{ids.COST_CARDS} .stats.sum").text


def test_loading_state_dims_stale_figures_while_a_new_basis_computes(explorer: Served, browser: Any) -> None:
    """With every request slowed by 1.5 s (Chromium's network emulation), switching to Billed shows
    the spinner over the old figures, which stay on screen dimmed; then the billed figures arrive."""
    open_page(browser, explorer.url + "/cost")
    wait_until(lambda: trace_names(browser, ids.COST_CHART), what="chart")
    settle(browser)
    before = card(browser, "Total")
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 1500, "downloadThroughput": -1, "uploadThroughput": -1},
    )
    try:
        browser.find_element("css selector", f"#{ids.COST_BASIS} input[value='billed']").click()
        wait_until(
            lambda: browser.find_elements(
                "css selector", f"#{ids.COST_LOADING}.dash-spinner, #{ids.COST_LOADING} .dash-spinner"
            ),
            what="spinner",
        )
        assert card(browser, "Total") == before  # the stale figures are still there ...
        opacity = browser.execute_script(
            f"return getComputedStyle(document.getElementById('{ids.COST_CARDS}').parentElement).opacity"
        )
        assert float(opacity) < 1  # ... dimmed
    finally:
        browser.execute_cdp_cmd("Network.disable", {})
    wait_until(lambda: card(browser, "Total") != before, what="billed figures")
    wait_until(lambda: not browser.find_elements("css selector", ".dash-spinner"), what="spinner gone")


def test_billed_view_explains_the_commitment_fees(explorer: Served, browser: Any) -> None:
    """Under Billed the note names the commitment fees sitting in unallocated, and that amount is the
    sum of the commitment-fee rows of the Unallocated view, each of which says no tag moves it."""
    open_page(browser, explorer.url + "/cost?basis=billed&view=unallocated")
    note = wait_until(lambda: browser.find_element("id", ids.COST_BILLED_NOTE).text, what="billed note")
    assert "commitment" in note and "Amortized" in note
    fees_in_note = amount(re.search(r"\$[\d,]+\.\d\d", note).group(0))  # type: ignore[union-attr]
    wait_until(lambda: cells(browser, ids.COST_TABLE, "line_item_type"), what="unallocated table")
    settle(browser)
    rows = list(
        zip(
            cells(browser, ids.COST_TABLE, "line_item_type"),
            cells(browser, ids.COST_TABLE, "cost"),
            cells(browser, ids.COST_TABLE, "action"),
            strict=True,
        )
    )
    fees = [(t, c, a) for t, c, a in rows if t in ("SavingsPlanRecurringFee", "RIFee")]
    assert fees and all("no tag moves it" in a for _, _, a in fees)
    assert sum(amount(c) for _, c, _ in fees) == pytest.approx(fees_in_note, abs=0.011)
    assert any("Tag this resource" in a for t, _, a in rows if t == "Usage")
    # Under Amortized the note is gone.
    browser.find_element("css selector", f"#{ids.COST_BASIS} input[value='amortized']").click()
    wait_until(lambda: not browser.find_elements("id", ids.COST_BILLED_NOTE), what="note removed")


def test_idle_and_unallocated_rows_drill_down(explorer: Served, browser: Any) -> None:
    open_page(browser, explorer.url + "/cost?view=teams")
    wait_until(lambda: "(idle)" in cells(browser, ids.COST_TABLE, "team"), what="team table")
    row = cells(browser, ids.COST_TABLE, "team").index("(idle)")
    browser.find_elements("css selector", f"#{ids.COST_TABLE} td[data-dash-column='team']")[row].click()
    wait_until(lambda: query(browser).get("view") == "idle", what="idle view")
    wait_until(lambda: cells(browser, ids.COST_TABLE, "day"), what="idle table")
    assert all(r.startswith("i-") for r in cells(browser, ids.COST_TABLE, "resource_id"))
    assert any(cells(browser, ids.COST_TABLE, "instance_type"))


def test_jobs_view_labels_rows_without_a_job_and_names_node_and_instance_type(
    explorer: Served, browser: Any
) -> None:
    open_page(browser, explorer.url + "/cost?team=vision&view=jobs")
    wait_until(lambda: cells(browser, ids.COST_TABLE, "job_id"), what="jobs table")
    settle(browser)
    jobs = cells(browser, ids.COST_TABLE, "job_id")
    assert "-" not in jobs
    assert any(j.startswith("(") and "no job" in j for j in jobs)
    assert any(n.startswith("node-") for n in cells(browser, ids.COST_TABLE, "node"))
    assert any(t.startswith("p") for t in cells(browser, ids.COST_TABLE, "instance_type"))


def test_utilization_groups_gpus_by_node_and_job(explorer: Served, browser: Any) -> None:
    """One row per (node, job), expandable to its GPUs; the GPUs are exactly `gpulens flags`'s pairs
    and the money total at the foot is the sum of their waste."""
    expected = explorer.flags["underutilized"]
    open_page(browser, explorer.url + "/utilization")
    wait_until(lambda: browser.find_elements("css selector", f"#{ids.UTIL_TABLE} details"), what="groups")
    settle(browser)
    groups = browser.find_elements("css selector", f"#{ids.UTIL_TABLE} details")
    gpus = browser.find_elements("css selector", f"#{ids.UTIL_TABLE} tr.gpu-row")
    assert len(groups) == len({(e["node"], e["job_id"]) for e in expected}) < len(gpus)
    shown = sorted(
        (g.get_attribute("data-node"), int(g.get_attribute("data-gpu")), g.get_attribute("data-job"))
        for g in gpus
    )
    assert shown == sorted((e["node"], e["gpu"], e["job_id"]) for e in expected)
    total = browser.find_element("id", f"{ids.UTIL_TABLE}-total").find_element("css selector", ".money").text
    assert MONEY.match(total)
    assert amount(total) == pytest.approx(sum(float(e["waste"]) for e in expected), abs=0.011)
    first = groups[0]
    assert not first.find_element("css selector", "tr.gpu-row").is_displayed()
    first.find_element("css selector", "summary").click()
    wait_until(lambda: first.find_element("css selector", "tr.gpu-row").is_displayed(), what="expanded")
    # The colour bar marks the threshold, and the page says what a blank heatmap cell means.
    ticks = browser.execute_script(
        f"return document.querySelector('#{ids.UTIL_HEATMAP} .js-plotly-plot').data[0].colorbar.ticktext;"
    )
    assert any("flagged below" in t for t in ticks)
    assert "Blank cells" in browser.find_element("id", ids.UTIL_HEATMAP).find_element("xpath", "..").text


def test_bad_url_values_are_named_not_ignored_silently(explorer: Served, browser: Any) -> None:
    open_page(browser, explorer.url + "/utilization?team=nosuchteam&threshold=0.01&window=9h")
    note = wait_until(lambda: browser.find_element("id", ids.UTIL_URL_NOTE).text, what="URL note")
    assert "team=nosuchteam" in note and "threshold=0.01" in note and "window=9h" in note
    open_page(browser, explorer.url + "/utilization?window=7d")
    settle(browser)
    assert not browser.find_elements("id", ids.UTIL_URL_NOTE)
    open_page(browser, explorer.url + "/cost?team=nosuchteam&view=bogus")
    note = wait_until(lambda: browser.find_element("id", ids.COST_URL_NOTE).text, what="cost URL note")
    assert "team=nosuchteam" in note and "view=bogus" in note
    open_page(browser, explorer.url + "/training?run=nosuchrun")
    note = wait_until(lambda: browser.find_element("id", ids.TRAIN_URL_NOTE).text, what="training URL note")
    assert "run=nosuchrun" in note


def _last_good(run_file: Path, detected: int) -> int:
    """The step of the lowest finite loss at or before `detected`, from the run's own JSONL log."""
    steps = [json.loads(line) for line in run_file.read_text().splitlines()]
    finite = [
        (r["loss"], r["step"])
        for r in steps
        if r.get("kind") == "step" and r.get("loss") is not None and r["step"] <= detected
    ]
    return min(finite)[1]


def test_training_marks_detection_and_last_good_step_and_has_curve_controls(
    explorer: Served, browser: Any
) -> None:
    """The diverged run shows the divergence where it was detected and the last good step (the loss
    minimum before it, worked out here from the run's own log); x by wall clock, log scale, smoothing
    and an overlaid run each change the figure; grad norm and learning rate are drawn."""
    [(job, detected)] = [
        (r["job_id"], r["step"]) for r in explorer.flags["divergent_runs"] if r["kind"] == "divergence"
    ]
    run_file = next(p for p in explorer.data.artifacts.run_files if p.stem == job)  # type: ignore[attr-defined]
    other = next(p.stem for p in explorer.data.artifacts.run_files if p.stem != job)  # type: ignore[attr-defined]
    open_page(browser, explorer.url + f"/training?run={job}")
    wait_until(lambda: "last good before divergence" in trace_names(browser, ids.TRAIN_LOSS), what="marks")
    settle(browser)
    fig = graph(browser, ids.TRAIN_LOSS)
    marks = {
        t["name"]: t["x"][0]
        for t in fig["data"]
        if t["name"] in ("divergence", "last good before divergence")
    }
    assert marks == {"divergence": detected, "last good before divergence": _last_good(run_file, detected)}
    assert marks["last good before divergence"] < detected
    assert set(trace_names(browser, ids.TRAIN_OPTIMIZER)) == {"grad norm", "learning rate"}

    browser.find_element("css selector", f"#{ids.TRAIN_XAXIS} input[value='time']").click()
    wait_until(lambda: query(browser).get("x") == "time", what="x=time in the URL")
    wait_until(
        lambda: str(graph(browser, ids.TRAIN_LOSS)["data"][0]["x"][0]).startswith("2026-"), what="dates"
    )
    browser.find_element("css selector", f"#{ids.TRAIN_YSCALE} input[value='log']").click()
    wait_until(lambda: graph(browser, ids.TRAIN_LOSS)["layout"]["yaxis"].get("type") == "log", what="log y")
    browser.find_element("css selector", f"#{ids.TRAIN_SMOOTH} input[value='0.9']").click()
    wait_until(lambda: f"{job} (raw)" in trace_names(browser, ids.TRAIN_LOSS), what="smoothed")
    wait_until(lambda: query(browser).get("smooth") == "0.9", what="smooth=0.9 in the URL")
    assert query(browser).get("scale") == "log"

    open_page(browser, explorer.url + f"/training?run={job}&compare={other}")
    wait_until(lambda: other in trace_names(browser, ids.TRAIN_LOSS), what="overlay")
    assert job in trace_names(browser, ids.TRAIN_LOSS)


VIEWS = (
    ("cost-amortized", "/cost", ids.COST_CHART),
    ("cost-billed", "/cost?basis=billed", ids.COST_CHART),
    ("cost-unallocated", "/cost?basis=billed&view=unallocated", ids.COST_CHART),
    ("utilization", "/utilization?window=7d", ids.UTIL_HEATMAP),
    ("training", "/training", ids.TRAIN_LOSS),
)


@pytest.mark.parametrize(("name", "path", "element"), VIEWS)
def test_screenshot_of_each_view(
    explorer: Served, browser: Any, artifacts_dir: Path, name: str, path: str, element: str
) -> None:
    """Saved for a reader under the test artifacts (docs/make_screenshots.py writes docs/screenshots)."""
    open_page(browser, explorer.url + path)
    wait_until(lambda: trace_names(browser, element), what=f"{element} drawn")
    settle(browser)
    time.sleep(0.3)
    out = artifacts_dir / f"explorer-{name}.png"
    full_page_screenshot(browser, out)
    assert out.stat().st_size > 20_000
