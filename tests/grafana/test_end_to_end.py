"""End to end with real parts: a real Prometheus scrapes a real `gpulens agent --backend sim` while a
trainer stand-in sends docs/design.md §4 datagrams; every panel query of every dashboard (variables set to
match-all), every annotation and variable query, and every recording rule returns series; and the XID and
NaN alerts fire with the labels remediation matches on.

What is shortened, and why: the test runs for about 25 s, so windows meant for hours are shrunk
before querying: `$__range` -> 20s, `[1h]` -> `[10s]`, `[5m]`/`[2m]` -> `[10s]`, `$__rate_interval`
-> 4s, the 5 min waste slices -> 2s; the rule file is loaded with windows of 10-20 s, offsets of
10 s and a 1 s evaluation interval. The SM threshold variable is set to 1, so every held GPU lands
in the "underutilized" table (the sim's jobs are busy; the threshold logic itself is covered by
the promtool tests). The queries are otherwise exactly the committed ones.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
from decimal import Decimal
from pathlib import Path

import pytest

from gpulens.attribution.prices import GpuPrice
from gpulens.dashboards.grafana.build import dashboards
from gpulens.dashboards.rules import prices
from gpulens.dashboards.rules.build import render
from tests.grafana.datagrams import JOB_ID, TEAM, Trainer
from tests.support.servers import Prometheus, http_get, run_agent, run_prometheus

MATCH_ALL = {"$cluster": ".*", "$node": ".*", "$gpu": ".*", "$team": ".*", "$job_id": ".*", "$threshold": "1"}
SHORTER = [
    ("$__rate_interval", "4s"),
    ("$__interval", "1s"),
    ("$__range", "20s"),
    ("[1h]", "[10s]"),
    ("[5m]", "[10s]"),
    ("[2m]", "[10s]"),
    ("offset 2m", "offset 10s"),
    (":5m]", ":2s]"),
]


def substitute(expr: str) -> str:
    for old, new in [*MATCH_ALL.items(), *SHORTER]:
        expr = expr.replace(old, new)
    assert "$" not in expr, expr
    return expr


def shortened_rules() -> str:
    text = render()
    for old, new in [
        ("[1h]", "[20s]"),
        ("[5m]", "[10s]"),
        ("[10m]", "[10s]"),
        ("[15m]", "[10s]"),
        ("offset 10m", "offset 10s"),
        ("offset 15m", "offset 10s"),
        ("interval: 1m", "interval: 1s"),
    ]:
        text = text.replace(old, new)
    return text


def panel_queries() -> list[tuple[str, str]]:
    """(where, expr) for every target, annotation and query variable of every dashboard."""
    found = []
    for name, model in dashboards().items():
        for panel in model["panels"]:
            for target in panel.get("targets", []):
                found.append((f"{name}: {panel['title']} [{target['refId']}]", target["expr"]))
        for annotation in model["annotations"]["list"]:
            if "expr" in annotation:
                found.append((f"{name}: annotation {annotation['name']}", annotation["expr"]))
    return found


def variable_queries() -> list[tuple[str, str, str]]:
    """(where, series selector, label) of every `label_values(selector, label)` variable."""
    found = []
    for name, model in dashboards().items():
        for var in model["templating"]["list"]:
            if var["type"] == "query":
                selector, label = re.fullmatch(r"label_values\((.+), (\w+)\)", var["definition"]).groups()
                found.append((f"{name}: variable {var['name']}", selector, label))
    return found


def recording_rules() -> list[str]:
    return sorted(
        {
            line.split(": ", 1)[1]
            for line in shortened_rules().splitlines()
            if line.strip().startswith("- record: ")
        }
    )


def series_count(prom: Prometheus, expr: str) -> int | str:
    """Series `expr` returns now, or Prometheus' error message for a query it rejects."""
    q = urllib.parse.urlencode({"query": expr})
    try:
        body = json.loads(http_get(f"{prom.url}/api/v1/query?{q}"))
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read()).get("error", str(exc))
    return len(body["data"]["result"])


def label_values(prom: Prometheus, selector: str, label: str) -> list[str]:
    q = urllib.parse.urlencode({"match[]": selector})
    body = json.loads(http_get(f"{prom.url}/api/v1/series?{q}"))
    return sorted({s[label] for s in body["data"] if s.get(label)})


def query_panel(title: str, ref: str = "A") -> str:
    return substitute(dict(panel_queries())[title + f" [{ref}]"])


def first(prom: Prometheus, expr: str) -> float | None:
    result = prom.query(expr)
    return float(result[0]["value"][1]) if result else None


def sanity_values(prom: Prometheus) -> dict[str, object]:
    states = prom.query(f"sum({query_panel('gpulens-fleet-overview.json: GPUs by state')})")
    tokens = prom.query(query_panel("gpulens-training-job.json: Tokens per second"))
    marks = prom.query(
        substitute(dict(panel_queries())["gpulens-training-job.json: annotation Loss anomalies"])
    )
    return {
        "states": float(states[0]["value"][1]) if states else None,
        "gpus": float(prom.query("count(gpulens_gpu_up)")[0]["value"][1]),
        "lost": first(prom, query_panel("gpulens-fleet-overview.json: GPUs not answering")),
        "xids": first(prom, query_panel("gpulens-fleet-overview.json: Non-recoverable XIDs")),
        "tokens": sum(float(r["value"][1]) for r in tokens if r["metric"].get("job_id") == JOB_ID),
        "anomaly_kinds": sorted({r["metric"]["kind"] for r in marks}),
        "teams": [r["metric"].get("team") for r in prom.query("gpulens:team_gpu_held_seconds:increase1h")],
    }


@pytest.mark.timeout(120)
def test_every_query_and_recording_rule_returns_series_and_alerts_fire(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(shortened_rules())
    # What `gpulens prices` writes: a team price and the instance type's own (for GPUs no team holds).
    price_file = prices.write(
        tmp_path / "prices",
        [
            GpuPrice("p5.48xlarge", "", "USD", Decimal("0.002")),
            GpuPrice("p5.48xlarge", TEAM, "USD", Decimal("0.0015")),
        ],
        "2026-10",
        "amortized",
    )
    # Evaluated every second, as the shortened rules are: a 1m group may first run up to a minute in.
    price_file.write_text(price_file.read_text().replace("interval: 1m", "interval: 1s"))
    # XID 79 once Prometheus has scraped the agent for more than the (shortened) 10 s "offset", so
    # GpuXidNonRecoverable must fire; XID 13 at once, before that, and recoverable anyway.
    faults = ("--sim-fault", "79:3:20", "--sim-fault", "13:2:2")
    with (
        run_agent(
            tmp_path, "--interval", "0.5", "--cluster", "e2e", "--instance-type", "p5.48xlarge", *faults
        ) as agent,
        run_prometheus(tmp_path, [f"127.0.0.1:{agent.port}"], rule_files=[rules, price_file]) as prom,
    ):
        trainer = Trainer(agent.socket)
        trainer.start()
        try:
            # Prometheus must hold more than the (shortened) 10 s "offset" of this job's history, so the
            # anomaly below counts as new, not pre-existing: polled, not slept.
            prom.wait_for(f'gpulens_train_steps_total{{job_id="{JOB_ID}"}} offset 11s', timeout=60)
            # The XID the agent injects 20 s in, and the prices, are there before the anomaly is sent, so
            # every panel is asked while the anomaly is still new.
            prom.wait_for('gpulens_gpu_xid_errors_total{xid="79"}', timeout=40)
            prom.wait_for("gpulens_gpu_price_per_second", timeout=20)
            trainer.anomaly("spike")
            trainer.anomaly("nan")
            prom.wait_for('gpulens_train_loss_anomalies_total{kind="nan"}', timeout=15)
            # The alert firing shows the rules have evaluated since the anomaly was scraped (polled, not
            # slept); the panels are asked at once, well inside the 10 s in which the anomaly is new.
            nan_alert = prom.wait_for('ALERTS{alertname="TrainingLossNaN",alertstate="firing"}', timeout=10)
            records = recording_rules()
            answers = {where: series_count(prom, substitute(expr)) for where, expr in panel_queries()}
            empty = [
                f"{where}: {answer}"
                for where, answer in answers.items()
                if answer == 0 or isinstance(answer, str)
            ]
            empty += [
                where
                for where, selector, label in variable_queries()
                if not label_values(prom, substitute(selector), label)
            ]
            empty += [f"recording rule {r}" for r in records if not prom.query(r)]
            xid_alert = prom.wait_for(
                'ALERTS{alertname="GpuXidNonRecoverable",alertstate="firing"}', timeout=30
            )
            values = sanity_values(prom)
        finally:
            trainer.stop()
    assert len(records) == 22 and len(panel_queries()) > 40
    # Beyond presence, a few numbers that must hold whatever the sim does.
    assert values["states"] == values["gpus"] == 8, values  # every GPU is in exactly one state
    # --sim-fault 79:3:20: GPU 3 falls off the bus (non-recoverable); 13:2:2 is recoverable.
    assert values["lost"] == 1 and values["xids"] == 1, values
    assert 10_000 < values["tokens"] < 200_000, values  # 2 ranks x ~10 steps/s x 4096 tokens
    assert values["anomaly_kinds"] == ["nan", "spike"], values
    assert "e2e-team" in values["teams"], values
    # The alerts the remediation service acts on carry what its policy matches on.
    [xid] = [a["metric"] for a in xid_alert]
    assert (xid["node"], xid["gpu"], xid["xid"], xid["severity"]) == ("testnode", "3", "79", "critical"), xid
    assert xid["uuid"].startswith("GPU-") and xid["action"], xid
    assert [(a["metric"]["job_id"], a["metric"]["kind"]) for a in nan_alert] == [(JOB_ID, "nan")]
    assert empty == [], "queries that returned no series:\n" + "\n".join(empty)
