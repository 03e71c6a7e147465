"""One-shot check of `gpulens agent --backend nvml` on a real GPU (run once by the lead on an H100).

Starts the agent on a free port, scrapes /metrics twice 3 s apart, and prints: which docs/design.md §3
`gpulens_gpu_*` families appeared (GPM ones included) and which were absent, the
gpulens_agent_info labels, how the counters moved between the scrapes, and the first sample lines.
Exit status is nonzero only if the agent failed to start. Only the standard library is used.
If $OUT is set, both scrapes and the agent's log are written there.

    python benchmarks/gpu/agent_nvml_check.py
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

GPU_FAMILIES = (
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
)
GPM = {
    "gpulens_gpu_sm_active_ratio",
    "gpulens_gpu_sm_occupancy_ratio",
    "gpulens_gpu_tensor_active_ratio",
    "gpulens_gpu_dram_active_ratio",
    "gpulens_gpu_sm_active_seconds_total",
    "gpulens_gpu_tensor_active_seconds_total",
    "gpulens_gpu_dram_active_seconds_total",
}
# Absent on an idle node for good reasons, not failures:
EXPECTED_ABSENT = {
    "gpulens_gpu_held_seconds_total": "no job mapped (no trainer, no GPULENS_JOB_ID process)",
    "gpulens_gpu_xid_errors_total": "no XID happened",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def families(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            out.setdefault(name, []).append(line)
    return out


def total(lines: list[str]) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def run_quiet(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"({' '.join(cmd)} failed: {exc})"


def start_agent(tmp: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "gpulens",
        "agent",
        "--backend",
        "nvml",
        "--port",
        str(port),
        "--socket",
        str(tmp / "agent.sock"),
        "--node",
        socket.gethostname(),
        "--interval",
        "1.0",
    ]
    print("$", " ".join(cmd), flush=True)
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            get(f"{url}/healthz")
            return True
        except OSError:
            time.sleep(0.25)
    return False


def report(first: str, second: str) -> None:
    f1, f2 = families(first), families(second)
    present = [f for f in GPU_FAMILIES if f in f2 or f in f1]
    absent = [f for f in GPU_FAMILIES if f not in present]
    print("\n== docs/design.md §3 gpulens_gpu_* families present ==")
    for f in present:
        tag = " [GPM]" if f in GPM else ""
        print(f"  {f}{tag}: {len(f2.get(f, f1.get(f, [])))} series")
    print("\n== absent ==")
    for f in absent:
        why = EXPECTED_ABSENT.get(
            f, "GPM profiling field: not supported or not readable" if f in GPM else "not supported"
        )
        print(f"  {f}  ({why})")
    print(f"\nGPM families present: {sorted(set(present) & GPM) or 'none'}")
    info = f2.get("gpulens_agent_info", [])
    print("\n== gpulens_agent_info ==\n  " + ("\n  ".join(info) if info else "(missing)"))
    up = f2.get("gpulens_gpu_up", [])
    print(
        f"\ngpulens_gpu_up: {sum(1 for x in up if x.endswith(' 1.0'))} up, "
        f"{sum(1 for x in up if x.endswith(' 0.0'))} down"
    )
    print("\n== counters between the two scrapes (3 s apart) ==")
    for f in (
        "gpulens_gpu_energy_joules_total",
        "gpulens_gpu_sm_active_seconds_total",
        "gpulens_gpu_tensor_active_seconds_total",
        "gpulens_gpu_dram_active_seconds_total",
        "gpulens_agent_sample_seconds_count",
    ):
        if f in f1 or f in f2:
            print(f"  {f}: {total(f1.get(f, [])):.3f} -> {total(f2.get(f, [])):.3f}")
    print("\n== first sample lines ==")
    samples = [line for line in second.splitlines() if line.startswith("gpulens_gpu_")]
    for line in samples[:25]:
        print("  " + line)
    sample_hist = f2.get("gpulens_agent_sample_seconds_sum", []) + f2.get(
        "gpulens_agent_sample_seconds_count", []
    )
    print("\n" + "\n".join("  " + x for x in sample_hist))


def main() -> int:
    print(
        "nvidia-smi -L:\n"
        + (run_quiet(["nvidia-smi", "-L"]) if shutil.which("nvidia-smi") else "(no nvidia-smi)")
    )
    out_dir = Path(os.environ["OUT"]) if os.environ.get("OUT") else None
    with tempfile.TemporaryDirectory(prefix="gpulens-nvml-check-") as d:
        tmp = Path(d)
        port = free_port()
        log = tmp / "agent.log"
        proc = start_agent(tmp, port, log)
        url = f"http://127.0.0.1:{port}"
        try:
            if not wait_healthy(url, proc):
                print(
                    f"AGENT FAILED TO START (exit {proc.poll()}); its log:\n{log.read_text(errors='replace')}"
                )
                return 1
            time.sleep(2.0)  # two ticks: GPM needs two samples for a window
            first = get(f"{url}/metrics")
            time.sleep(3.0)
            second = get(f"{url}/metrics")
            om = urllib.request.Request(f"{url}/metrics", headers={"Accept": "application/openmetrics-text"})
            with urllib.request.urlopen(om, timeout=10) as resp:
                print(f"OpenMetrics negotiation: {resp.headers.get('Content-Type')}")
            report(first, second)
            if out_dir is not None:
                out_dir.mkdir(parents=True, exist_ok=True)
                (out_dir / "agent_nvml_metrics_1.txt").write_text(first)
                (out_dir / "agent_nvml_metrics_2.txt").write_text(second)
        except Exception as exc:  # noqa: BLE001 - one try on the GPU: report, never crash before the log
            print(f"scrape failed after the agent started: {type(exc).__name__}: {exc}")
        finally:
            proc.terminate()
            try:
                print(f"\nagent exit status after SIGTERM: {proc.wait(timeout=15)}")
            except subprocess.TimeoutExpired:
                proc.kill()
                print("\nagent did not stop within 15 s of SIGTERM; killed")
            text = log.read_text(errors="replace")
            print("\n== agent log (last 30 lines) ==\n" + "\n".join(text.splitlines()[-30:]))
            if out_dir is not None:
                (out_dir / "agent_nvml.log").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
