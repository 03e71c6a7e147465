"""The dashboards as code: committed JSON is current, valid against the shipped Grafana dashboard
schema, and holds to what the issue asks (regex variables with All = .*, units, thresholds, links,
descriptions that explain SM activity, the utilization fallback, stable UIDs)."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gpulens.dashboards.grafana.build import DASHBOARDS, HERE, dashboards, render
from gpulens.dashboards.grafana.validate import layout_errors, problems, schema_errors, variable_errors
from gpulens.dashboards.rules.prices import PRICE_METRIC
from gpulens.dashboards.rules.promql import metric_names, unknown_metrics

UIDS = {
    "gpulens-fleet-overview.json": "gpulens-fleet",
    "gpulens-node-gpu.json": "gpulens-node",
    "gpulens-training-job.json": "gpulens-training",
    "gpulens-team-usage.json": "gpulens-team",
}
MODELS = dashboards()


def targets(model: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    return [(p, t["expr"]) for p in model["panels"] for t in p.get("targets", [])]


def test_committed_json_is_up_to_date() -> None:
    assert sorted(p.name for p in HERE.glob("*.json")) == sorted(DASHBOARDS)
    for name, model in MODELS.items():
        assert (HERE / name).read_text() == render(model), f"run: gpulens dashboards build --out {HERE}"


def test_cli_build_writes_the_committed_files(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gpulens", "dashboards", "build", "--out", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert [Path(line).name for line in out.stdout.splitlines()] == list(DASHBOARDS)
    for name in DASHBOARDS:
        assert (tmp_path / "d" / name).read_text() == (HERE / name).read_text()


def test_cli_build_into_unwritable_directory_is_one_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gpulens", "dashboards", "build", "--out", "/proc/no/such"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "cannot write dashboards" in out.stderr


@pytest.mark.parametrize("name", list(DASHBOARDS))
def test_dashboard_validates_against_the_schema(name: str) -> None:
    model = json.loads((HERE / name).read_text())
    assert problems(model) == []
    assert model["uid"] == UIDS[name]


def broken(mutate: Any) -> dict[str, Any]:
    model = copy.deepcopy(MODELS["gpulens-fleet-overview.json"])
    mutate(model)
    return model


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda d: d["panels"][2]["gridPos"].update(w=30), "30 is greater than the maximum of 24"),
        (lambda d: d["panels"][2]["targets"][0].pop("refId"), "'refId' is a required property"),
        (lambda d: d["templating"]["list"][1].update(type="bogus"), "'bogus' is not one of"),
        (lambda d: d.pop("title"), "'title' is a required property"),
        (lambda d: d.update(schemaVersion="39"), "'39' is not of type 'integer'"),
        (lambda d: d["panels"][0]["gridPos"].update(w=12), "24 was expected"),
        (lambda d: d["panels"][2].update(targets=[]), "[] should be non-empty"),
        (lambda d: d.update(uid="has spaces"), "does not match"),
    ],
)
def test_schema_rejects_broken_dashboards(mutate: Any, error: str) -> None:
    assert any(error in e for e in schema_errors(broken(mutate)))


def test_layout_and_variable_checks_catch_mistakes() -> None:
    overlapping = broken(lambda d: d["panels"][2]["gridPos"].update(x=0, y=0))
    assert any("overlaps" in e for e in layout_errors(overlapping))
    undefined = broken(lambda d: d["panels"][2]["targets"][0].update(expr='up{node=~"$nodes"}'))
    assert variable_errors(undefined) == ["undefined variable $nodes"]


@pytest.mark.parametrize("name", list(DASHBOARDS))
def test_variables_are_regex_matchers_with_all_as_dot_star(name: str) -> None:
    variables = {v["name"]: v for v in MODELS[name]["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    for var in ("cluster", "node", "gpu", "team", "job_id"):
        v = variables[var]
        assert (v["type"], v["includeAll"], v["allValue"], v["multi"]) == ("query", True, ".*", True)
    text = json.dumps(MODELS[name])
    assert re.findall(r'\w+\s*!?=\s*\\"\$\w+', text) == []  # never an exact `label="$var"`
    for var in ("node", "team", "job_id"):
        assert f'{var}=~\\"${var}\\"' in text


@pytest.mark.parametrize("name", list(DASHBOARDS))
def test_every_query_uses_catalog_metrics_and_the_datasource_variable(name: str) -> None:
    model = MODELS[name]
    exprs = [expr for _, expr in targets(model)]
    # The price is not an agent metric but the series `gpulens prices` writes as rules.
    assert metric_names(exprs) and unknown_metrics(exprs) - {PRICE_METRIC} == set()
    datasources = {json.dumps(p["datasource"]) for p in model["panels"] if "datasource" in p}
    assert datasources == {'{"type": "prometheus", "uid": "${datasource}"}'}


@pytest.mark.parametrize("name", list(DASHBOARDS))
def test_panels_have_descriptions_units_and_sm_activity_explained(name: str) -> None:
    for panel, expr in targets(MODELS[name]):
        assert len(panel["description"]) > 40, panel["title"]
        if "gpulens_gpu_sm_active_seconds_total" in expr:
            # The fallback is in the query and said in the words (docs/design.md §3).
            assert "gpulens_gpu_utilization_ratio" in expr and 'source", "utilization_ratio"' in expr
            assert '"GPU utilization"' in panel["description"] and "fall back" in panel["description"]
            unit = panel["fieldConfig"]["defaults"]["unit"]
            assert unit in ("percentunit", "h", "none", "currencyUSD"), panel["title"]
        if panel["fieldConfig"]["defaults"]["unit"] == "percentunit" and panel["type"] != "heatmap":
            steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
            assert len(steps) >= 2 or panel["title"].startswith("GPU utilization"), panel["title"]


def test_dashboards_link_to_each_other_by_stable_uid() -> None:
    uids = set(UIDS.values())
    for name, model in MODELS.items():
        linked = {link["url"].removeprefix("/d/") for link in model["links"]}
        assert linked == uids - {UIDS[name]}
        assert all(link["keepTime"] and link["includeVars"] for link in model["links"])
        for panel in model["panels"]:
            for link in panel.get("fieldConfig", {}).get("defaults", {}).get("links", []):
                assert re.match(r"/d/([\w-]+)", link["url"]).group(1) in uids


def test_issue_panels_exist() -> None:
    titles = {name: {p["title"] for p in model["panels"]} for name, model in MODELS.items()}
    assert {
        "GPUs: busy vs held vs idle",
        "SM activity across GPUs",
        "Underutilized GPUs (last hour)",
        "XID errors",
    } <= titles["gpulens-fleet-overview.json"]
    assert {
        "Step time quantiles",
        "Tokens per second",
        "MFU",
        "Loss",
        "Goodput buckets",
        "Step MFU vs effective MFU",
    } <= titles["gpulens-training-job.json"]
    assert {
        "GPU-hours held, by team",
        "SM activity while held, by team",
        "Wasted GPU-hours, by team",
    } <= titles["gpulens-team-usage.json"]
    heatmap = next(p for p in MODELS["gpulens-fleet-overview.json"]["panels"] if p["type"] == "heatmap")
    assert heatmap["options"]["calculate"] is True
    annotations = MODELS["gpulens-training-job.json"]["annotations"]["list"]
    assert any("gpulens_train_loss_anomalies_total" in a.get("expr", "") for a in annotations)


def test_per_node_and_per_job_dashboards_do_not_open_on_all() -> None:
    """On a fleet of hundreds, Node & GPU opens on one node and Training job on one job (an empty
    `current` makes Grafana pick the first value); the fleet and team views keep All."""

    def current(name: str, var: str) -> Any:
        return next(v for v in MODELS[name]["templating"]["list"] if v["name"] == var)["current"]

    assert current("gpulens-node-gpu.json", "node") == {}
    assert current("gpulens-training-job.json", "job_id") == {}
    assert current("gpulens-fleet-overview.json", "node")["value"] == ["$__all"]
    assert current("gpulens-team-usage.json", "job_id")["value"] == ["$__all"]
    gpu = next(v for v in MODELS["gpulens-node-gpu.json"]["templating"]["list"] if v["name"] == "gpu")
    assert gpu["definition"] == 'label_values(gpulens_gpu_up{node=~"$node"}, gpu)'
    assert 'gpu=~\\"$gpu\\"' in json.dumps(MODELS["gpulens-node-gpu.json"]["panels"])


@pytest.mark.parametrize("name", list(DASHBOARDS))
def test_time_series_legends_are_tables_with_mean_last_max(name: str) -> None:
    series = [p for p in MODELS[name]["panels"] if p["type"] == "timeseries"]
    assert series
    for panel in series:
        legend = panel["options"]["legend"]
        assert legend["displayMode"] == "table", panel["title"]
        assert legend["calcs"] == ["mean", "lastNotNull", "max"], panel["title"]


def test_gpu_states_have_fixed_colours_on_every_panel() -> None:
    expected = {
        "busy": "green",
        "held, not busy": "orange",
        "idle (not held)": "blue",
        "not answering": "red",
    }
    panels = [
        p
        for p in MODELS["gpulens-fleet-overview.json"]["panels"]
        if any("{{state}}" == t["legendFormat"] for t in p.get("targets", []))
    ]
    assert len(panels) == 2
    for panel in panels:
        colours = {
            o["matcher"]["options"]: o["properties"][0]["value"]["fixedColor"]
            for o in panel["fieldConfig"]["overrides"]
        }
        assert colours == expected, panel["title"]


@pytest.mark.parametrize(
    "name", ["gpulens-fleet-overview.json", "gpulens-node-gpu.json", "gpulens-team-usage.json"]
)
def test_descriptions_are_one_sentence_with_a_link(name: str) -> None:
    """Short: one sentence (links aside) and a link to the runbook or the docs, where the long
    explanations (SM activity vs utilization) live."""
    for panel in MODELS[name]["panels"]:
        if panel["type"] == "row":
            continue
        text = panel["description"]
        assert re.search(r"\]\(https://\S+\)", text), panel["title"]
        words = re.sub(r"\(?\[[^\]]*\]\([^)]*\)\)?", "", text).strip()
        sentences = [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", words) if s]
        assert len(sentences) == 1, (panel["title"], sentences)


def test_money_panels_multiply_gpu_time_by_the_price_per_gpu_second() -> None:
    """Spend = held GPU-seconds x price; waste = held x (1 - SM activity) x price; shown in the
    currency's Grafana unit, the price joined by the node's instance type and the job's team, with
    the instance type's own price (team="") where a team has none."""
    money = {
        (name, p["title"]): p
        for name, model in MODELS.items()
        for p in model["panels"]
        if p.get("fieldConfig", {}).get("defaults", {}).get("unit") == "currencyUSD"
    }
    assert {title for _, title in money} >= {
        "GPU spend now (per hour)",
        "Wasted now (per hour)",
        "Spend, by team",
        "Waste in money, by team",
        "Spend rate, by team (per hour)",
    }
    for panel in money.values():
        expr = panel["targets"][0]["expr"]
        assert f"group_left (currency) {PRICE_METRIC}" in expr
        assert f'{PRICE_METRIC}{{team=""}}' in expr
        assert "group_left (instance_type)" in expr and "gpulens_node_info" in expr
    waste = money[("gpulens-fleet-overview.json", "Wasted now (per hour)")]["targets"][0]["expr"]
    assert "(1 - (" in waste
