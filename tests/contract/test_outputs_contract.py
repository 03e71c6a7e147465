"""docs/design.md §2 outputs of `rules build`, `dashboards build` and `explorer`, checked from the outside:
rules pass promtool and name only docs/design.md §3 metrics (or recording rules built on them), dashboards are
Grafana JSON, the explorer answers on 127.0.0.1."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.contract.support import gl, ok
from tests.support.servers import free_port, gpulens_exe, http_get, require_binary, stop, wait_http

# docs/design.md §3, verbatim (histograms add _bucket/_sum/_count).
SPEC_METRICS = {
    "gpulens_gpu_up",
    "gpulens_gpu_utilization_ratio",
    "gpulens_gpu_sm_active_ratio",
    "gpulens_gpu_sm_occupancy_ratio",
    "gpulens_gpu_tensor_active_ratio",
    "gpulens_gpu_dram_active_ratio",
    "gpulens_gpu_memory_used_bytes",
    "gpulens_gpu_memory_total_bytes",
    "gpulens_gpu_power_watts",
    "gpulens_gpu_energy_joules_total",
    "gpulens_gpu_temperature_celsius",
    "gpulens_gpu_sm_clock_hertz",
    "gpulens_gpu_sm_active_seconds_total",
    "gpulens_gpu_tensor_active_seconds_total",
    "gpulens_gpu_dram_active_seconds_total",
    "gpulens_gpu_held_seconds_total",
    "gpulens_gpu_xid_errors_total",
    "gpulens_gpu_ecc_errors_total",
    "gpulens_train_step_seconds",
    "gpulens_train_steps_total",
    "gpulens_train_tokens_total",
    "gpulens_train_loss",
    "gpulens_train_mfu_ratio",
    "gpulens_train_last_step_timestamp_seconds",
    "gpulens_train_loss_anomalies_total",
    "gpulens_train_phase_seconds_total",  # docs/design.md §3 "Also exported" (goodput, §8)
    "gpulens_train_attempt",
    "gpulens_agent_info",
    "gpulens_agent_sample_seconds",
    "gpulens_agent_datagrams_total",
    "gpulens_node_info",
}


def _known(name: str) -> bool:
    return name in SPEC_METRICS or any(
        name.endswith(s) and name[: -len(s)] in SPEC_METRICS for s in ("_bucket", "_sum", "_count")
    )


def test_rules_build_passes_promtool_and_uses_spec_names(tmp_path: Path) -> None:
    ok(gl("rules", "build", "--out", tmp_path / "rules"))
    files = sorted((tmp_path / "rules").glob("*.y*ml"))
    assert files
    promtool = require_binary("promtool")
    check = subprocess.run([promtool, "check", "rules", *map(str, files)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    text = "\n".join(f.read_text() for f in files)
    recorded = set(re.findall(r"record:\s*['\"]?([a-zA-Z_:][a-zA-Z0-9_:]*)", text))
    used = set(re.findall(r"\bgpulens_[a-z_]+\b", text)) - recorded
    assert not {n for n in used if not _known(n)}, sorted(n for n in used if not _known(n))
    alerts = set(re.findall(r"alert:\s*['\"]?(\w+)", text))
    assert {"TrainingLossNaN", "TrainingLossDiverged", "GpuUnderutilized"} <= alerts, alerts


def test_dashboards_build_writes_grafana_json(tmp_path: Path) -> None:
    ok(gl("dashboards", "build", "--out", tmp_path / "dash"))
    files = sorted((tmp_path / "dash").glob("*.json"))
    assert files
    for f in files:
        doc = json.loads(f.read_text())
        assert doc.get("uid") and doc.get("title") and doc.get("panels"), f.name
        exprs = re.findall(r'"expr":\s*"((?:[^"\\]|\\.)*)"', f.read_text())
        names = {n for e in exprs for n in re.findall(r"\bgpulens_[a-z_]+\b", e)}
        assert exprs and names, f.name


def test_explorer_serves_on_localhost(tmp_path: Path, warehouse: Path) -> None:
    port = free_port()
    with (tmp_path / "explorer.log").open("wb") as log:
        proc = subprocess.Popen(
            [gpulens_exe(), "explorer", "--port", str(port), "--warehouse", str(warehouse)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/", timeout=60, proc=proc)
        page = http_get(f"http://127.0.0.1:{port}/")
        assert "<title>gpulens explorer</title>" in page and 'id="_dash-config"' in page, page[:500]
        # the app's own layout, not just Dash's shell: its header and the links to its three pages
        layout = http_get(f"http://127.0.0.1:{port}/_dash-layout")
        assert "cost explorer" in layout, layout[:500]
        hrefs = {href.partition("?")[0] for href in _hrefs(json.loads(layout))}
        assert {"/cost", "/utilization", "/training"} <= hrefs, sorted(hrefs)
    finally:
        stop(proc)


def _hrefs(node: object) -> list[str]:
    """Every `href` prop in a Dash layout (JSON of components, their props and children)."""
    if isinstance(node, list):
        return [h for child in node for h in _hrefs(child)]
    if not isinstance(node, dict):
        return []
    props = node.get("props", {})
    own = [props["href"]] if isinstance(props.get("href"), str) else []
    return own + _hrefs(props.get("children"))


def test_hourly_sm_active_rollup_survives_a_job_change(tmp_path: Path) -> None:
    # docs/design.md §3: GPU series gain job_id/team when a job is mapped, so one GPU's
    # gpulens_gpu_sm_active_seconds_total is two series in an hour where a job starts at :30.
    # SM activity is 0.5 all hour (30 s per 1-minute sample) -> the hourly mean must be ~0.5, not 0.25.
    rules = tmp_path / "rules"
    ok(gl("rules", "build", "--out", rules))
    files = sorted(rules.glob("*.y*ml"))
    gpu = 'node="n", gpu="0", uuid="u", model="m"'
    test = {
        "rule_files": [str(f) for f in files],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f"gpulens_gpu_sm_active_seconds_total{{{gpu}}}", "values": "0+30x30"},
                    {
                        "series": f'gpulens_gpu_sm_active_seconds_total{{{gpu}, job_id="j", team="t"}}',
                        "values": "_x30 900+30x30",
                    },
                ],
                "promql_expr_test": [
                    {
                        "expr": "gpulens:gpu_sm_active:mean1h > 0.45 and gpulens:gpu_sm_active:mean1h < 0.55",
                        "eval_time": "60m",
                        "exp_samples": [
                            {"labels": f"gpulens:gpu_sm_active:mean1h{{{gpu}}}", "value": 0.5083333333333333}
                        ],
                    }
                ],
            }
        ],
    }
    spec = tmp_path / "sm_test.yaml"
    spec.write_text(json.dumps(test))
    promtool = require_binary("promtool")
    out = subprocess.run([promtool, "test", "rules", str(spec)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
