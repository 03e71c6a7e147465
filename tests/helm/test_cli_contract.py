"""Every command line the chart and the systemd unit run is accepted by the real `gpulens` parser
(docs/design.md §2), so a renamed flag breaks this test instead of a DaemonSet in production."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gpulens.cli import build_parser
from tests.helm.chart import CHART, VALUES_SETS, containers, one, pod_spec, render_with, rendered, workloads
from tests.helm.test_cronjob_scripts import RECORDER, run_script
from tests.support.servers import REPO, gpulens_exe

UNIT = REPO / "deploy" / "systemd" / "gpulens-agent.service"


def parse(argv: list[str]) -> argparse.Namespace:
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse reports bad usage by exiting 2
        raise AssertionError(f"gpulens rejects {argv}") from exc


def expand(args: list[str]) -> list[str]:
    """Kubernetes' $(VAR) substitution for the variables the chart uses."""
    return [a.replace("$(NODE_NAME)", "gpu-node-1") for a in args]


def agent_argv(
    container: dict[str, Any], tmp_path: Path, instance_id: str = "", instance_type: str = ""
) -> list[str]:
    """What the agent container executes: its /bin/sh wrapper run for real, with the node identity the init
    container would have written, and a recorder standing in for `gpulens`
    (tests/helm/test_cronjob_scripts)."""
    if "command" not in container:
        return expand(container["args"])
    identity = tmp_path / "node"
    identity.mkdir(exist_ok=True)
    (identity / "instance-id").write_text(instance_id)
    (identity / "instance-type").write_text(instance_type)
    shell, flag, script, name = container["command"]
    assert (shell, flag) == ("/bin/sh", "-c")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "gpulens").write_text(RECORDER)
    (bin_dir / "gpulens").chmod(0o755)
    out = tmp_path / "argv"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ARGV_OUT": str(out)}
    subprocess.run(
        [shell, flag, script.replace("/etc/gpulens-node", str(identity)), name, *expand(container["args"])],
        env=env,
        check=True,
        timeout=30,
    )
    return out.read_text().splitlines()


@pytest.mark.parametrize("values_set", sorted(VALUES_SETS))
def test_long_running_components_start_with_valid_arguments(values_set: str, tmp_path: Path) -> None:
    for workload in workloads(rendered(values_set)):
        if workload.kind == "CronJob":
            continue
        for container in containers(pod_spec(workload)):
            if container["name"] in ("fetch-warehouse", "node-identity"):  # helper scripts, not gpulens
                interpreter, script = container["command"][:2]
                assert interpreter == "python" and (CHART / "files" / "scripts" / Path(script).name).is_file()
                continue
            args = parse(
                agent_argv(container, tmp_path) if container["name"] == "agent" else container["args"]
            )
            if workload.kind == "Job":  # the dashboard push: a client, no port
                continue
            assert args.host == "0.0.0.0", "inside a pod the port is reached through the pod IP"
            port = next(p["containerPort"] for p in container["ports"])
            assert args.port == port


def test_agent_arguments_carry_the_values_and_the_node_identity(tmp_path: Path) -> None:
    (agent,) = pod_spec(one(rendered("all-features"), "DaemonSet", "agent"))["containers"]
    args = parse(agent_argv(agent, tmp_path, "i-0123456789abcdef0", "p4d.24xlarge"))
    assert args.node == "gpu-node-1" and args.cluster == "training-east"
    assert str(args.socket) == "/run/gpulens/agent.sock" and args.backend == "auto"
    assert args.instance_id == "i-0123456789abcdef0" and args.instance_type == "p4d.24xlarge"
    off_aws = parse(agent_argv(agent, tmp_path))
    assert off_aws.instance_id == "" and off_aws.instance_type == ""


def test_without_node_identity_the_agent_runs_gpulens_directly() -> None:
    (agent,) = pod_spec(
        one(render_with({"agent": {"nodeIdentity": {"enabled": False}}}), "DaemonSet", "agent")
    )["containers"]
    assert "command" not in agent and parse(expand(agent["args"])).instance_id == ""


def test_explorer_and_remediation_arguments_carry_the_values() -> None:
    manifests = rendered("all-features")
    (explorer,) = pod_spec(one(manifests, "Deployment", "explorer"))["containers"]
    args = parse(explorer["args"])
    assert str(args.warehouse) == "/var/lib/gpulens/gpulens.duckdb"
    assert args.prometheus == "http://kube-prometheus-stack-prometheus.monitoring:9090"
    (receiver,) = pod_spec(one(manifests, "Deployment", "remediation"))["containers"]
    args = parse(receiver["args"])
    assert args.execute is True and str(args.policy) == "/etc/gpulens/policy.yaml"


@pytest.mark.parametrize("component", ["ingest-cur", "ingest-usage", "weekly-report"])
def test_cron_job_commands_parse(component: str, tmp_path: Path) -> None:
    args = parse(run_script(component, tmp_path))
    assert str(args.warehouse) == "/var/lib/gpulens/gpulens.duckdb"


def unit_exec_start(env: dict[str, str]) -> list[str]:
    """ExecStart of the unit with systemd's expansion: ${VAR} as one word, $VAR split on whitespace."""
    text = UNIT.read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("ExecStart="))[len("ExecStart=") :]
    defaults = dict(re.findall(r"^Environment=(\w+)=(.*)$", text, re.M))
    defaults.update(env)
    words: list[str] = []
    for word in shlex.split(line):
        if re.fullmatch(r"\$\w+", word):
            words.extend(defaults[word[1:]].split())
        else:
            words.append(re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], word))
    return words


def test_the_systemd_unit_runs_a_valid_agent_command() -> None:
    argv = unit_exec_start({"GPULENS_AGENT_ARGS": "--cluster slurm-east --instance-type p4d.24xlarge"})
    assert argv[0] == "/opt/gpulens/bin/gpulens"
    args = parse(argv[1:])
    assert args.command == "agent" and args.cluster == "slurm-east" and args.instance_type == "p4d.24xlarge"
    assert str(args.socket) == "/run/gpulens/agent.sock" and args.port == 9400
    assert parse(unit_exec_start({})[1:]).cluster == ""


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    # verify checks that ExecStart exists: point it at this checkout's gpulens.
    unit = tmp_path / UNIT.name
    exe = shutil.which(gpulens_exe())
    assert exe is not None
    unit.write_text(UNIT.read_text().replace("/opt/gpulens/bin/gpulens", exe))
    out = subprocess.run(
        [analyze, "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    assert out.returncode == 0 and UNIT.name not in out.stderr, out.stderr


def test_dashboard_push_job_arguments_and_token() -> None:
    job = one(rendered("all-features"), "Job", "dashboards")
    assert job.doc["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    (push,) = pod_spec(job)["containers"]
    args = parse(push["args"])
    assert args.url == "https://g-abc123.grafana-workspace.us-east-1.amazonaws.com"
    assert args.folder == "gpulens"
    assert args.datasource_uid == "amp" and args.token is None  # the token comes from $GRAFANA_TOKEN
    token = next(e for e in push["env"] if e["name"] == "GRAFANA_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "gpulens-grafana", "key": "token"}


def test_the_receiver_policy_in_the_config_map_passes_remediate_check(tmp_path: Path) -> None:
    manifests = rendered("all-features")
    policy = tmp_path / "policy.yaml"
    policy.write_text(one(manifests, "ConfigMap", "remediation").doc["data"]["policy.yaml"])
    out = subprocess.run(
        [gpulens_exe(), "remediate", "check", "--policy", str(policy)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "xid-node-fault" in out.stdout and "gpu-lost" in out.stdout
    (receiver,) = pod_spec(one(manifests, "Deployment", "remediation"))["containers"]
    assert receiver["livenessProbe"]["httpGet"]["path"] == "/healthz"
    audit = next(
        v for v in pod_spec(one(manifests, "Deployment", "remediation"))["volumes"] if v["name"] == "audit"
    )
    assert audit["persistentVolumeClaim"]["claimName"] == "gl-gpulens-remediation-audit"
