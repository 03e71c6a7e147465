"""The trainer's time model (docs/design.md §4, §8): `run` and `phase` records, the attempt, one boundary per
step, written by the real StepMonitor with a fake clock, so every figure below is exact.

The run (seconds after T0 = 1,795,600,000; every step computes for 1 s; a batch that is ready takes
0.5 ms to fetch, below the 1 ms `gap`, so it is part of the next step's time when that step follows
another step directly, and "other" time when it follows a phase):

attempt 1, built at 0: init 0-10; step 0 (10.0005-11.0005, 1 s: the first step has its own start);
step 1 (1.0005 s, from step 0's end); the loader stalls 3 s before step 2 (data_wait 12.001-15.001);
step 2 (1 s, its own start after the wait); step 3 (1.0005 s); checkpoint_save 17.0015-22.0015 (holds
steps 0-3: step 4 next); step 4 (1 s); eval 23.002-25.002; step 5 (1 s, ends 26.0025); the process dies
as it fetches step 6's batch: no clean end.
attempt 2, built 60 s after attempt 1's last record (86.0025): init 10 s; checkpoint_load 4 s (resumes
at step 4); steps 4-7 (1 s, then 1.0005 s x 3, the last ending 104.0045); checkpoint_save 5 s; clean end
at 109.0045.

The buckets of docs/design.md §8 for it, worked out by hand (also in
tests/fixtures/runs/goodput_two_attempts.md, beside the log this module writes):
    wall_seconds     109.0045  (0 to the clean end)
    productive         8.0025  (attempt 1 steps 0-3: 1 + 1.0005 + 1 + 1.0005 = 4.001; attempt 2 steps
                                4-7: 1 + 3 x 1.0005 = 4.0015)
    wasted_progress    2       (attempt 1 steps 4 and 5, run again by attempt 2)
    checkpoint_save   10       (5 + 5)
    checkpoint_load    4
    data_wait          3
    eval               2
    init              20       (10 + 10)
    restart           60       (26.0025, attempt 1's last record, to 86.0025, attempt 2's start)
    other              0.002   (four 0.5 ms fetches after a phase or before the first step:
                                10-10.0005, 22.0015-22.002, 25.002-25.0025, 100.0025-100.003)
    goodput = 8.0025 / 109.0045 = 0.073414...
Effective (wall-clock) MFU: each step's mfu x step_seconds is its useful FLOPs over the peak (100 tokens
x 1e9 FLOP/token / 1e12 FLOP/s = 0.1 s), so 8 kept steps give 0.8 / 109.0045 = 0.0073392 against a
step MFU of ~0.1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpulens.trainer import StepMonitor
from gpulens.trainer.context import restart_attempt
from gpulens.trainer.sinks import JsonlSink
from gpulens.trainer.timing import CpuTiming
from tests.support.servers import REPO

T0 = 1_795_600_000.0
FETCH, STEP = 0.0005, 1.0
FIXTURE = REPO / "tests" / "fixtures" / "runs" / "goodput_two_attempts.jsonl"
PID = 4242  # the fixture's pid, whatever process wrote it


class Clock:
    """Wall clock (epoch seconds) and perf clock (from 0) advancing together, only when told."""

    def __init__(self) -> None:
        self.t = 0.0

    def wall(self) -> float:
        return T0 + self.t

    def perf(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t = round(self.t + seconds, 9)


class NodeLost(RuntimeError):
    pass


def monitor(clock: Clock, log: Path, attempt: int) -> StepMonitor:
    return StepMonitor(
        "gpt-goodput",
        "ai-research",
        flops_per_token=1e9,
        peak_flops=1e12,
        sinks=[JsonlSink(log)],
        env={},
        attempt=attempt,
        clock=clock.wall,
        timing=CpuTiming(clock.perf),
        report_interval=0,
    )


def loader(clock: Clock, first: int, stall_at: int | None = None) -> Iterator[int]:
    """Batches `first`, `first` + 1, ...; each takes FETCH to fetch, the one of `stall_at` 3 s."""
    index = first
    while True:
        clock.advance(3.0 if index == stall_at else FETCH)
        yield index
        index += 1


def train_step(mon: StepMonitor, clock: Clock, index: int) -> None:
    with mon.step(tokens=100, step=index) as step:
        clock.advance(STEP)
        step.record(loss=3.0 - index / 10, lr=0.001)


def phase(mon: StepMonitor, clock: Clock, name: str, seconds: float, step: int | None = None) -> None:
    with mon.phase(name) as p:
        clock.advance(seconds)
        if step is not None:
            p.step = step


def write_two_attempts(log: Path) -> None:
    """The run of the module docstring, through the real StepMonitor, appended to `log`."""
    clock = Clock()
    with pytest.raises(NodeLost), monitor(clock, log, attempt=1) as first:
        phase(first, clock, "init", 10)
        for index in first.data(loader(clock, 0, stall_at=2)):
            if index == 6:
                raise NodeLost("the node is gone")  # leaves the `with`: closed without a clean end
            train_step(first, clock, index)
            if index == 3:
                phase(first, clock, "checkpoint_save", 5)
            if index == 4:
                phase(first, clock, "eval", 2)
    clock.advance(60 - FETCH)  # the scheduler notices and starts attempt 2, 60 s after the last record
    with monitor(clock, log, attempt=2) as second:
        phase(second, clock, "init", 10)
        phase(second, clock, "checkpoint_load", 4, step=4)
        for index in second.data(loader(clock, 4)):
            train_step(second, clock, index)
            if index == 7:
                break
        phase(second, clock, "checkpoint_save", 5)


def read(log: Path) -> list[dict[str, Any]]:
    """The log's records, times rounded to 0.1 µs (epoch floats carry ~0.2 µs of rounding), pid fixed."""
    out = []
    for line in log.read_text().splitlines():
        record = json.loads(line)
        for key in ("ts", "start", "end", "step_seconds", "mfu"):
            if key in record:
                record[key] = round(record[key], 7)
        if "pid" in record:
            record["pid"] = PID
        out.append(record)
    return out


def run(event: str, attempt: int, t: float) -> dict[str, Any]:
    base = {"v": 1, "kind": "run", "job_id": "gpt-goodput", "team": "ai-research", "rank": 0}
    return {**base, "event": event, "attempt": attempt, "ts": round(T0 + t, 7), "world_size": 1}


def phase_record(attempt: int, name: str, start: float, end: float, step: int) -> dict[str, Any]:
    base = {"v": 1, "kind": "phase", "job_id": "gpt-goodput", "team": "ai-research", "rank": 0}
    times = {"start": round(T0 + start, 7), "end": round(T0 + end, 7)}
    return {**base, "attempt": attempt, "phase": name, **times, "step": step}


def step_record(attempt: int, index: int, end: float, seconds: float) -> dict[str, Any]:
    return {
        "v": 1,
        "kind": "step",
        "job_id": "gpt-goodput",
        "team": "ai-research",
        "rank": 0,
        "local_rank": 0,
        "gpu": 0,
        "pid": PID,
        "attempt": attempt,
        "step": index,
        "ts": round(T0 + end, 7),
        "step_seconds": seconds,
        "tokens": 100,
        "mfu": round(0.1 / seconds, 7),  # 100 tokens x 1e9 FLOP / (seconds x 1e12 FLOP/s)
        "loss": 3.0 - index / 10,
        "lr": 0.001,
    }


EXPECTED = [
    run("start", 1, 0),
    phase_record(1, "init", 0, 10, 0),
    step_record(1, 0, 11.0005, 1.0),  # the first step: a start boundary of its own
    step_record(1, 1, 12.001, 1.0005),  # from step 0's end: the 0.5 ms fetch is in it
    phase_record(1, "data_wait", 12.001, 15.001, 2),
    step_record(1, 2, 16.001, 1.0),  # after a phase: its own start
    step_record(1, 3, 17.0015, 1.0005),
    phase_record(1, "checkpoint_save", 17.0015, 22.0015, 4),
    step_record(1, 4, 23.002, 1.0),
    phase_record(1, "eval", 23.002, 25.002, 5),
    step_record(1, 5, 26.0025, 1.0),
    # no clean end of attempt 1
    run("start", 2, 86.0025),
    phase_record(2, "init", 86.0025, 96.0025, 0),
    phase_record(2, "checkpoint_load", 96.0025, 100.0025, 4),
    step_record(2, 4, 101.003, 1.0),  # numbered from the checkpoint's step
    step_record(2, 5, 102.0035, 1.0005),
    step_record(2, 6, 103.004, 1.0005),
    step_record(2, 7, 104.0045, 1.0005),
    phase_record(2, "checkpoint_save", 104.0045, 109.0045, 8),
    run("end", 2, 109.0045),
]


def test_two_attempts_with_checkpoints_a_data_wait_eval_and_a_crash_are_these_records(tmp_path: Path) -> None:
    log = tmp_path / "run.jsonl"
    write_two_attempts(log)
    assert read(log) == EXPECTED


def test_the_fixture_is_what_the_trainer_writes(tmp_path: Path) -> None:
    """tests/fixtures/runs/goodput_two_attempts.jsonl (for `runs goodput` and `ingest runs`) is this run."""
    log = tmp_path / "run.jsonl"
    write_two_attempts(log)
    assert read(FIXTURE) == read(log)


def test_step_times_add_up_to_the_wall_time_they_cover() -> None:
    """Consecutive end boundaries: a chain of steps covers its span exactly once (no gap, no overlap)."""
    by_attempt: dict[int, list[dict[str, Any]]] = {}
    for record in EXPECTED:
        if record["kind"] == "step":
            by_attempt.setdefault(record["attempt"], []).append(record)
    steps_1_to_3 = by_attempt[1][1:4]  # step 1 chains on step 0; the data wait breaks the chain at step 2
    assert steps_1_to_3[0]["step_seconds"] == pytest.approx(12.001 - 11.0005)
    chain = by_attempt[2]  # steps 4-7 of attempt 2, after the checkpoint load
    covered = sum(r["step_seconds"] for r in chain)
    assert covered == pytest.approx(chain[-1]["ts"] - (chain[0]["ts"] - chain[0]["step_seconds"]))


@pytest.mark.parametrize(
    ("env", "attempt"),
    [
        ({}, 1),
        ({"TORCHELASTIC_RESTART_COUNT": "0", "TORCHELASTIC_MAX_RESTARTS": "3"}, 1),
        ({"TORCHELASTIC_RESTART_COUNT": "2", "TORCHELASTIC_MAX_RESTARTS": "3"}, 3),
        ({"SLURM_RESTART_COUNT": "1"}, 2),
        ({"JOBSET_RESTART_ATTEMPT": "2"}, 3),
        # a requeued Slurm job (1 requeue) whose torchrun (up to 3 restarts) restarted once: launch 2
        # starts at attempt 1 + 1 x 4 = 5, its first torchrun restart is 6
        (
            {"SLURM_RESTART_COUNT": "1", "TORCHELASTIC_RESTART_COUNT": "1", "TORCHELASTIC_MAX_RESTARTS": "3"},
            6,
        ),
        ({"GPULENS_ATTEMPT": "7", "SLURM_RESTART_COUNT": "1"}, 7),  # set by the user: wins
        ({"SLURM_RESTART_COUNT": "bogus"}, 1),
    ],
)
def test_attempt_from_the_launchers_restart_counters(env: dict[str, str], attempt: int) -> None:
    assert restart_attempt(env) == attempt
    assert StepMonitor("j", "t", sinks=[], env=env).attempt == attempt
    assert StepMonitor("j", "t", sinks=[], env=env, attempt=9).attempt == 9  # the argument wins


def test_phases_never_raise_into_the_loop_and_keep_the_loops_own_exceptions(tmp_path: Path) -> None:
    log = tmp_path / "p.jsonl"
    mon = StepMonitor("j", "t", sinks=[JsonlSink(log)], env={}, report_interval=0)
    with pytest.raises(OSError, match="disk full"), mon.phase("checkpoint_save"):
        raise OSError("disk full")  # the save failed: its time was still spent, and the error is the loop's
    with mon.phase(object()):  # type: ignore[arg-type]  # a name no encoder takes: dropped and counted
        pass
    mon.close()
    mon.add_phase("eval", 1.0, 2.0)  # after close: dropped, not raised
    kinds = [(r["kind"], r.get("phase")) for r in map(json.loads, log.read_text().splitlines())]
    assert kinds == [("run", None), ("phase", "checkpoint_save"), ("run", None)]
    assert mon.dropped == 2


def test_a_loader_keeps_its_length_and_short_waits_are_no_phase(tmp_path: Path) -> None:
    clock = Clock()
    log = tmp_path / "d.jsonl"
    mon = monitor(clock, log, attempt=1)
    batches = mon.data([1, 2, 3])
    assert len(batches) == 3 and list(batches) == [1, 2, 3]
    mon.close()
    assert [r["kind"] for r in map(json.loads, log.read_text().splitlines())] == ["run", "run"]
