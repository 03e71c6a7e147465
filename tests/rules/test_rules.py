"""`gpulens rules build`: the committed rule file is current, promtool accepts it, and every alert is
unit-tested by promtool (tests/rules/promtool/*.yaml: fires when it should, quiet when it should not)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gpulens.attribution.ingest.promql import RECORDED
from gpulens.dashboards.rules.alerts import AlertOptions
from gpulens.dashboards.rules.build import COMMITTED, RULES_FILE, render
from gpulens.dashboards.rules.promql import metric_names, unknown_metrics
from tests.support.servers import REPO, gpulens_exe, require_binary

PROMTOOL_TESTS = sorted((Path(__file__).parent / "promtool").glob("*.yaml"))
RUNBOOKS = REPO / "docs" / "runbooks.md"


def rules() -> list[dict[str, object]]:
    doc = yaml.safe_load(render())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def alerts() -> dict[str, dict[str, object]]:
    return {str(r["alert"]): r for r in rules() if "alert" in r}


def test_committed_rule_file_is_up_to_date() -> None:
    assert COMMITTED.read_text() == render(), "run: gpulens rules build --out dashboards/rules"


def test_cli_writes_the_rule_file_and_promtool_accepts_it(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    out = subprocess.run(
        [gpulens_exe(), "rules", "build", "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        check=True,
    )
    written = tmp_path / "r" / RULES_FILE
    assert out.stdout.strip() == str(written)
    assert written.read_text() == COMMITTED.read_text()
    check = subprocess.run([promtool, "check", "rules", str(written)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 33 rules found" in check.stdout


@pytest.mark.parametrize("path", PROMTOOL_TESTS, ids=lambda p: p.stem)
def test_promtool_unit_tests(path: Path) -> None:
    promtool = require_binary("promtool")
    out = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in PROMTOOL_TESTS:
        for group in yaml.safe_load(path.read_text())["tests"]:
            for case in group.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = set(alerts())
    assert names == {
        "GpuUnderutilized",
        "TrainingLossDiverged",
        "TrainingLossNaN",
        "TrainingStalled",
        "StepTimeRegression",
        "TrainingGoodputLow",
        "GpuXidNonRecoverable",
        "GpuLost",
        "AgentDown",
    }
    assert names - firing == set(), "alerts without a test that fires"
    assert names - quiet == set(), "alerts without a test that stays quiet"


def github_anchor(heading: str) -> str:
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_every_alert_has_annotations_and_a_real_runbook_entry() -> None:
    anchors = {
        github_anchor(line[3:]) for line in RUNBOOKS.read_text().splitlines() if line.startswith("## ")
    }
    for name, rule in alerts().items():
        labels, annotations = rule["labels"], rule["annotations"]
        assert isinstance(labels, dict) and labels["severity"] in {"info", "warning", "critical"}
        assert isinstance(annotations, dict) and annotations["summary"] and annotations["description"]
        url = str(annotations["runbook_url"])
        assert url.startswith(AlertOptions().runbook_base + "#"), name
        assert url.split("#", 1)[1] in anchors, f"{name}: no '## {name}' heading in docs/runbooks.md"


def test_usage_rules_are_the_ingest_queries_verbatim() -> None:
    recorded = {str(r["record"]): r["expr"] for r in rules() if "record" in r}
    for name, expr in RECORDED.items():
        assert recorded[name] == expr


def test_rules_only_use_catalog_metrics() -> None:
    exprs = [str(r["expr"]) for r in rules()]
    used = metric_names(exprs)
    assert used and unknown_metrics(exprs) == set()
    assert unknown_metrics(["gpulens_gpu_up_total + gpulens_train_loss_bucket"]) == {
        "gpulens_gpu_up_total",
        "gpulens_train_loss_bucket",
    }
    assert "gpulens_train_step_seconds_bucket" in used


def test_xid_alert_keeps_the_labels_remediation_matches_on() -> None:
    expr = str(alerts()["GpuXidNonRecoverable"]["expr"])
    assert expr.startswith("sum by (node, gpu, uuid, xid, action) (")


def test_options_reach_the_rules(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpulens",
            "rules",
            "build",
            "--out",
            str(tmp_path),
            "--runbook-base-url",
            "https://wiki.example/gpu",
            "--agent-job",
            "dcgm|gpulens",
            "--sm-threshold",
            "0.3",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    text = Path(out.stdout.strip()).read_text()
    assert "https://wiki.example/gpu#gpulost" in text
    assert 'up{job=~"dcgm|gpulens"} == 0' in text
    assert ") < 0.3\n" in text and "below 30%." in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sm-threshold", "1.5"], "column --sm-threshold: 1.5 is not a ratio in (0, 1]"),
        (["--out", "/proc/no/such"], "/proc/no/such: cannot write rules"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(tmp_path: Path, args: list[str], message: str) -> None:
    argv = [sys.executable, "-m", "gpulens", "rules", "build", "--out", str(tmp_path), *args]
    out = subprocess.run(argv, capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and message in out.stderr
