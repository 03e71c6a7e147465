"""The reference trainer end to end on the CPU: a real sim agent receives its datagrams (SPEC §3, §4)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gpulens.cli import main
from gpulens.trainer.reference.run import ReferenceConfig, train
from tests.support.servers import REPO, gpulens_exe, run_agent

STEPS, NAN_AT, DIVERGE_AT, TOKENS_PER_STEP = 110, 10, 40, 16 * 64


def train_samples(text: str, job_id: str) -> dict[tuple[str, str | None], float]:
    return {
        (s.name, s.labels.get("kind")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("job_id") == job_id
    }


def test_agent_shows_steps_tokens_loss_mfu_nan_and_divergence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "ref.jsonl"
    with run_agent(tmp_path, gpus=2) as agent:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "gpulens.trainer.reference",
                "--job-id",
                "ref-e2e",
                "--team",
                "demo",
                "--steps",
                str(STEPS),
                "--socket",
                str(agent.socket),
                "--log",
                str(log),
                "--nan-at",
                str(NAN_AT),
                "--diverge-at",
                str(DIVERGE_AT),
                "--threads",
                "1",
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=240,
        )
        assert out.returncode == 0, out.stderr
        deadline = time.monotonic() + 10
        while True:  # the agent folds datagrams in on its own schedule
            got = train_samples(agent.metrics(), "ref-e2e")
            if got.get(("gpulens_train_steps_total", None)) == STEPS or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert got[("gpulens_train_steps_total", None)] == STEPS
    assert got[("gpulens_train_tokens_total", None)] == STEPS * TOKENS_PER_STEP
    assert got[("gpulens_train_loss", None)] > 0
    assert 0 < got[("gpulens_train_mfu_ratio", None)] < 1.5
    assert got[("gpulens_train_loss_anomalies_total", "nan")] == 1
    assert got[("gpulens_train_loss_anomalies_total", "divergence")] == 1

    records = [json.loads(line) for line in log.read_text().splitlines()]
    anomalies = [(r["anomaly"], r["step"]) for r in records if r["kind"] == "anomaly"]
    assert anomalies[0] == ("nan", NAN_AT)  # at exactly its step
    assert [k for k, _ in anomalies] == ["nan", "spike", "divergence"]
    assert DIVERGE_AT < anomalies[1][1] < anomalies[2][1] <= DIVERGE_AT + 80
    losses = {r["step"]: r["loss"] for r in records if r["kind"] == "step"}
    assert losses[NAN_AT] is None
    assert losses[DIVERGE_AT - 1] < 0.8 * losses[0]  # it really learned before the blow-up
    assert (
        min(losses[s] for s in range(DIVERGE_AT + 20, STEPS)) > 1.5 * losses[DIVERGE_AT - 1]
    )  # and stayed away
    # offline, the same detector finds what the trainer reported online
    assert main(["runs", "check", str(log), "--format", "json"]) == 0
    offline = [(a["kind"], a["step"]) for a in json.loads(capsys.readouterr().out)["anomalies"]]
    assert offline == anomalies
    summary = out.stdout.strip().splitlines()[-1]
    assert summary.startswith("gpulens reference trainer: job ref-e2e: 110 steps") and "dropped 0" in summary


def test_no_agent_listening_the_run_finishes_and_counts_drops(tmp_path: Path) -> None:
    summary = train(ReferenceConfig("lonely", "t", steps=12, socket=tmp_path / "nobody.sock", threads=1))
    assert summary.steps == 12 and summary.sent == 0 and summary.dropped == 12


def test_input_stall_shows_in_that_steps_time(tmp_path: Path) -> None:
    log = tmp_path / "stall.jsonl"
    train(
        ReferenceConfig(
            "stall",
            "t",
            steps=8,
            socket=tmp_path / "none.sock",
            log=log,
            stall_at=5,
            stall_seconds=0.6,
            threads=1,
        )
    )
    seconds = {r["step"]: r["step_seconds"] for r in map(json.loads, log.read_text().splitlines())}
    assert seconds[5] >= 0.6 and max(v for k, v in seconds.items() if k != 5) < 0.6


def test_gpulens_train_is_the_same_trainer() -> None:
    out = subprocess.run([gpulens_exe(), "train", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--diverge-at" in out.stdout and "--nan-at" in out.stdout
    bad = subprocess.run([gpulens_exe(), "train", "--team", "t"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--job-id" in bad.stderr


def test_sigterm_closes_the_monitor_and_keeps_every_record_whole(tmp_path: Path) -> None:
    log = tmp_path / "term.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gpulens.trainer.reference",
            "--job-id",
            "term",
            "--team",
            "t",
            "--steps",
            "100000",
            "--socket",
            str(tmp_path / "none.sock"),
            "--log",
            str(log),
            "--threads",
            "1",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not (log.exists() and log.stat().st_size > 0) and time.monotonic() < deadline:
            time.sleep(0.1)  # flushed once per reporting batch, long before close
        assert log.stat().st_size > 0
        before = len(log.read_text().splitlines())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 130
    finally:
        proc.kill()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) >= before and [r["step"] for r in records] == list(range(len(records)))
