"""/metrics text: golden file for a seeded sim agent; our renderer equals prometheus_client's encoders."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from gpulens import metrics as M
from gpulens.collector.exposition import MetricsPage
from gpulens.collector.render import render, wants_openmetrics
from tests.collector.agent_world import seeded_registry

GOLDEN = Path(__file__).parent / "golden" / "sim_metrics.txt"


def _normalise(text: str) -> str:
    return re.sub(r'version="[^"]*"', 'version="X"', text)


def test_golden_metrics_of_a_seeded_sim_agent() -> None:
    """After an intended change, regenerate the golden file and review the diff:
        GPULENS_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/collector/test_exposition.py
        git diff tests/collector/golden
    A missing golden file fails: only that explicit request writes one."""
    text = _normalise(render(seeded_registry().collect()).decode())
    if os.environ.get("GPULENS_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text)
        pytest.skip("golden file written; review the diff and commit it")
    if not GOLDEN.exists():
        pytest.fail(f"{GOLDEN} is missing; write it with GPULENS_UPDATE_GOLDEN=1 (see this test's docstring)")
    assert text == GOLDEN.read_text()


def test_golden_content_says_what_the_issue_asks() -> None:
    text = GOLDEN.read_text()
    # XID 79 on GPU 3: up 0, counted once, classified by NVIDIA's catalog
    assert re.search(r'gpulens_gpu_up\{gpu="3",[^}]*\} 0\.0', text)
    assert re.search(
        r'gpulens_gpu_xid_errors_total\{action="reboot_node",gpu="3",[^}]*recoverable="false",'
        r'[^}]*xid="79"\} 1\.0',
        text,
    )
    assert re.search(r'gpulens_gpu_xid_errors_total\{action="restart_app",gpu="5",[^}]*xid="13"\} 1\.0', text)
    # the lost GPU has no field series
    assert not re.search(r'gpulens_gpu_power_watts\{gpu="3"', text)
    # simulated jobs hold GPUs: held seconds with job_id/team, without any trainer
    assert re.search(
        r'gpulens_gpu_held_seconds_total\{gpu="0",job_id="sim-llm-pretrain",[^}]*team="ai-research"', text
    )
    # the trainer's datagrams map GPU 7 to its job (over the static team)
    assert re.search(r'gpulens_gpu_up\{gpu="7",job_id="golden-job",[^}]*team="golden-team"', text)
    assert 'gpulens_agent_info{backend="sim"' in text
    assert (
        'gpulens_node_info{cluster="train-east",instance_id="i-0abc",instance_type="p5.48xlarge",'
        'node="golden-node"} 1.0' in text
    )
    assert 'gpulens_agent_datagrams_total{result="malformed"} 1.0' in text
    assert not re.search(r'[{,]job="', text)


def test_every_family_is_in_the_catalog_with_its_type() -> None:
    families = list(text_string_to_metric_families(render(seeded_registry().collect()).decode()))
    by_name = {f.name: f for f in families}
    for fam in families:
        name = fam.name + ("_total" if fam.type == "counter" else "")
        assert name in M.BY_NAME, name
        assert M.BY_NAME[name].type in (fam.type, "info")
    # the seeded agent (sim GPUs, a lost GPU, XIDs, trainer ranks) exercises the whole catalog
    exported = {name + ("_total" if fam.type == "counter" else "") for name, fam in by_name.items()}
    assert exported == set(M.BY_NAME)


def test_renderer_equals_prometheus_client_in_both_formats() -> None:
    registry = seeded_registry(ranks=16)
    assert render(registry.collect()) == generate_latest(registry)
    om = render(registry.collect(), openmetrics=True)
    assert om == generate_openmetrics(registry)
    assert list(parse_openmetrics(om.decode()))  # a valid OpenMetrics document


def test_openmetrics_negotiation() -> None:
    assert wants_openmetrics("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
    assert not wants_openmetrics("text/plain")
    assert not wants_openmetrics("")


def test_catalog_follows_naming_conventions() -> None:
    for spec in M.METRICS:
        assert spec.name.startswith("gpulens_")
        assert spec.name.endswith("_total") == (spec.type == "counter"), spec.name
        assert "job" not in spec.labels
        if spec.unit == "ratio":
            assert spec.name.endswith("_ratio")
        if spec.type == "gauge" and spec.unit in ("bytes", "watts", "celsius", "hertz", "seconds"):
            assert spec.unit in spec.name


def test_metrics_page_renders_again_only_after_a_change() -> None:

    calls = []

    class Counting:
        def collect(self):  # type: ignore[no-untyped-def]
            calls.append(1)
            return seeded_registry(ranks=1, ticks=1).collect()

    generation = [0]
    page = MetricsPage(Counting(), lambda: generation[0])  # type: ignore[arg-type]
    first = page.body(False)
    assert page.body(False) is first and len(calls) == 1
    assert page.body(True).endswith(b"# EOF\n") and len(calls) == 2  # each format cached apart
    generation[0] += 1
    page.body(False)
    assert len(calls) == 3


@pytest.mark.parametrize(
    "value",
    [
        0,
        1,
        0.0,
        1.0,
        1e-5,
        0.1,
        2.5,
        999999.9,
        1e6,
        1.5e6,
        8.5520809984e10,
        -2e7,
        -0.5,
        float("inf"),
        float("-inf"),
        float("nan"),
        12345678901234567890.0,
    ],
)
def test_value_formatting_matches_prometheus_client(value: float) -> None:
    from prometheus_client.utils import floatToGoString

    from gpulens.collector.render import _value

    assert _value(value) == floatToGoString(value)
