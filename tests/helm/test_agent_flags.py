"""Issue 13 in the chart: trust mode by hostPID, the queue sysctl only through its flag, the admin token."""

from __future__ import annotations

from typing import Any

from tests.helm.chart import render_with, rendered


def _agent(manifests: tuple[Any, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    ds = next(m.doc for m in manifests if m.kind == "DaemonSet" and m.name.endswith("agent"))
    spec = ds["spec"]["template"]["spec"]
    return spec, next(c for c in spec["containers"] if c["name"] == "agent")


def test_defaults_say_trust_off_without_hostpid_and_raise_the_queue_by_flag() -> None:
    spec, agent = _agent(rendered("defaults"))
    assert "--trust=off" in agent["args"] and "--raise-dgram-qlen" in agent["args"]
    assert not any(a.startswith("--admin-token-file") for a in agent["args"])


def test_hostpid_lets_the_agent_verify_senders_by_pid() -> None:
    _spec, agent = _agent(render_with({"agent": {"hostPID": True}}))
    assert "--trust=auto" in agent["args"]
    _spec, agent = _agent(render_with({"agent": {"hostPID": True, "trust": "pid", "raiseDgramQlen": False}}))
    assert "--trust=pid" in agent["args"] and "--raise-dgram-qlen" not in agent["args"]


def test_an_admin_token_secret_is_mounted_and_passed() -> None:
    spec, agent = _agent(render_with({"agent": {"adminToken": {"existingSecret": "gl-admin", "key": "t"}}}))
    assert "--admin-token-file=/etc/gpulens-admin/token" in agent["args"]
    volume = next(v for v in spec["volumes"] if v["name"] == "admin-token")
    assert volume["secret"]["secretName"] == "gl-admin" and volume["secret"]["items"] == [
        {"key": "t", "path": "token"}
    ]
    mount = next(m for m in agent["volumeMounts"] if m["name"] == "admin-token")
    assert mount["readOnly"] is True
