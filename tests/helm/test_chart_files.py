"""The chart ships exactly the rules and dashboards the generators wrote (dashboards/rules,
dashboards/grafana)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import helm_python as helm
import pytest
import yaml

from tests.helm.chart import CHART, of_kind, one, render_with, rendered
from tests.support.servers import REPO

RULES = REPO / "dashboards" / "rules" / "gpulens-rules.yaml"
DASHBOARDS = REPO / "dashboards" / "grafana"
WITH_RULES = {"prometheusRule": {"enabled": True}}


def load_sync() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sync_files", REPO / "helm" / "sync_files.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_rules_copy_is_identical_to_the_generated_file() -> None:
    if not RULES.exists():
        pytest.skip("dashboards/rules/gpulens-rules.yaml not generated yet")
    assert (CHART / "files" / "rules" / RULES.name).read_bytes() == RULES.read_bytes(), (
        "run `python helm/sync_files.py`"
    )


def test_dashboard_copies_are_identical_to_the_generated_files() -> None:
    originals = sorted(DASHBOARDS.glob("*.json"))
    if not originals:
        pytest.skip("dashboards/grafana/*.json not generated yet")
    copies = sorted((CHART / "files" / "dashboards").glob("*.json"))
    assert [p.name for p in copies] == [p.name for p in originals], "run `python helm/sync_files.py`"
    for original in originals:
        assert (CHART / "files" / "dashboards" / original.name).read_bytes() == original.read_bytes(), (
            original.name
        )


def test_sync_files_check_reports_nothing() -> None:
    assert load_sync().differences() == [], "run `python helm/sync_files.py`"


def test_sync_files_refreshes_changed_and_removes_stale_copies(tmp_path: Path) -> None:
    (tmp_path / "dashboards" / "rules").mkdir(parents=True)
    (tmp_path / "dashboards" / "grafana").mkdir()
    (tmp_path / "dashboards" / "rules" / "gpulens-rules.yaml").write_text("groups: []\n")
    (tmp_path / "dashboards" / "grafana" / "fleet.json").write_text('{"title": "Fleet"}')
    stale = tmp_path / "helm" / "gpulens" / "files" / "dashboards" / "gone.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    sync = load_sync()
    assert len(sync.differences(tmp_path)) == 3
    sync.sync(tmp_path)
    assert sync.differences(tmp_path) == [] and not stale.exists()
    assert (
        tmp_path / "helm" / "gpulens" / "files" / "rules" / "gpulens-rules.yaml"
    ).read_text() == "groups: []\n"


def test_prometheus_rule_holds_exactly_the_generated_rules() -> None:
    if not RULES.exists():
        pytest.skip("dashboards/rules/gpulens-rules.yaml not generated yet")
    rule = one(render_with(WITH_RULES), "PrometheusRule", "rules").doc
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"], (
        "run `python helm/sync_files.py`"
    )


def test_the_rendered_rules_pass_promtool(tmp_path: Path) -> None:
    if not RULES.exists():
        pytest.skip("dashboards/rules/gpulens-rules.yaml not generated yet")
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    rule = one(render_with(WITH_RULES), "PrometheusRule", "rules").doc
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    out = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_dashboard_is_in_its_own_labelled_config_map() -> None:
    copies = sorted((CHART / "files" / "dashboards").glob("*.json"))
    if not copies:
        pytest.skip("no dashboards in helm/gpulens/files/dashboards yet")
    maps = [
        m.doc
        for m in of_kind(rendered("all-features"), "ConfigMap")
        if m.doc["metadata"]["labels"].get("app.kubernetes.io/component") == "dashboards"
    ]
    by_key = {key: (cm, text) for cm in maps for key, text in cm["data"].items()}
    assert sorted(by_key) == [p.name for p in copies] and len(maps) == len(copies)
    for path in copies:
        cm, text = by_key[path.name]
        assert json.loads(text) == json.loads(path.read_text())
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"] == {"grafana_folder": "GPU fleet"}
        # ConfigMaps are capped at 1 MiB; stay well clear of it.
        assert len(text.encode()) < 900_000, path.name


def test_dashboard_label_and_folder_are_configurable() -> None:
    if not list((CHART / "files" / "dashboards").glob("*.json")):
        pytest.skip("no dashboards in helm/gpulens/files/dashboards yet")
    values = {
        "grafana": {
            "dashboards": {
                "label": "dash",
                "labelValue": "yes",
                "folderAnnotation": "k8s-sidecar-target-directory",
                "folder": "/tmp/dashboards/gpu",
                "namespace": "monitoring",
            }
        }
    }
    for m in of_kind(render_with(values), "ConfigMap"):
        if m.doc["metadata"]["labels"].get("app.kubernetes.io/component") == "dashboards":
            assert m.doc["metadata"]["labels"]["dash"] == "yes"
            assert m.doc["metadata"]["annotations"] == {"k8s-sidecar-target-directory": "/tmp/dashboards/gpu"}
            assert m.doc["metadata"]["namespace"] == "monitoring"


def test_dashboard_config_maps_carry_json_verbatim(tmp_path: Path) -> None:
    """Against a copy of the chart with two dashboards, whatever the generator has written so far: Grafana's
    own `{{ }}` legend templates and non-ASCII text pass through untouched, one ConfigMap per file."""
    chart = tmp_path / "gpulens"
    shutil.copytree(CHART, chart)
    boards = {
        "gpu_fleet.json": {
            "title": "GPU fleet — utilization",
            "uid": "gpulens-fleet",
            "panels": [
                {"targets": [{"expr": "gpulens:gpu_sm_active:mean5m", "legendFormat": "{{node}}/{{gpu}}"}]}
            ],
        },
        "team-cost.json": {"title": "Team cost", "uid": "gpulens-cost", "panels": []},
    }
    for stale in (chart / "files" / "dashboards").glob("*.json"):
        stale.unlink()
    for name, board in boards.items():
        (chart / "files" / "dashboards" / name).write_text(json.dumps(board, ensure_ascii=False, indent=2))
    with helm.Chart.load(chart) as loaded:
        files = loaded.render(values=None, name="gl", namespace="gpulens")
    maps = [d for d in yaml.safe_load_all(files["gpulens/templates/grafana-dashboards.yaml"]) if d]
    assert sorted(m["metadata"]["name"] for m in maps) == [
        "gl-gpulens-dashboards-gpu-fleet",
        "gl-gpulens-dashboards-team-cost",
    ]
    for m in maps:
        ((key, text),) = m["data"].items()
        assert json.loads(text) == boards[key]
        assert m["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert m["metadata"]["annotations"] == {"grafana_folder": "gpulens"}
