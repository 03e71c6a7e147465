"""Job mapping from a fixture /proc tree, Slurm variables, trainer datagrams, static labels."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gpulens.collector.backends.base import GpuIdentity, GpuReading
from gpulens.collector.mapping.proc import ProcMapper, ProcReader
from gpulens.collector.mapping.slurm import slurm_job
from gpulens.collector.mapping.static import StaticMapper, parse_labels
from gpulens.collector.mapping.trainer import TrainerMapper
from gpulens.errors import GpulensError

FIXTURES = Path(__file__).parent / "fixtures"


def _readings(*pids: tuple[int, ...]) -> list[GpuReading]:
    return [GpuReading(GpuIdentity(i, f"GPU-{i}", "NVIDIA Test"), pids=p) for i, p in enumerate(pids)]


def test_proc_environ_gpulens_wins_over_slurm_and_unknown_stays_unmapped() -> None:
    mapper = ProcMapper(ProcReader(FIXTURES / "proc"))
    out = mapper.annotate(_readings((1001,), (1002,), (1003,), (9999,), ()))
    assert [(r.job_id, r.team) for r in out] == [
        ("bgpt-50b", "ai-research"),
        ("778812", "search"),
        (None, None),
        (None, None),
        (None, None),
    ]


def test_proc_mapping_ends_when_the_process_exits(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    shutil.copytree(FIXTURES / "proc", proc)
    mapper = ProcMapper(ProcReader(proc))
    assert mapper.annotate(_readings((1001,)))[0].job_id == "bgpt-50b"
    shutil.rmtree(proc / "1001")
    assert mapper.annotate(_readings((1001,)))[0].job_id is None


def test_slurm_job() -> None:
    assert slurm_job({"SLURM_JOB_ID": "42", "SLURM_JOB_ACCOUNT": "vision"}) == ("42", "vision")
    assert slurm_job({"SLURM_JOB_ID": "42"}) == ("42", "")
    assert slurm_job({}) is None


def test_trainer_mapping_expires_and_ends_with_the_process() -> None:
    now = [0.0]
    alive = {4242: True}
    mapper = TrainerMapper(timeout=60.0, alive=lambda pid: alive.get(pid, False), clock=lambda: now[0])
    mapper.observe(3, 4242, "bgpt", "ai")
    mapper.observe(5, 5555, "other", "ml")  # pid 5555 is invisible here (another pid namespace)
    out = mapper.annotate(_readings((), (), (), (), (), ()))
    assert (out[3].job_id, out[3].team) == ("bgpt", "ai") and (out[5].job_id, out[5].team) == ("other", "ml")
    now[0] = 30.0
    assert mapper.current() == {3: ("bgpt", "ai"), 5: ("other", "ml")}
    alive[4242] = (
        False  # the visible process exited: its mapping ends now; the invisible one waits for the timeout
    )
    assert mapper.current() == {5: ("other", "ml")}
    now[0] = 61.0
    assert mapper.current() == {}
    alive[4242] = True
    mapper.observe(3, 4242, "bgpt", "ai")
    now[0] = 122.0  # 61 s without a record
    assert mapper.current() == {}


def test_static_labels_fill_only_unmapped() -> None:
    mapper = StaticMapper(parse_labels(["team=search", "job_id=dedicated"]))
    readings = _readings((), ())
    readings[0] = GpuReading(readings[0].identity, job_id="j", team="t")
    out = mapper.annotate(readings)
    assert [(r.job_id, r.team) for r in out] == [("j", "t"), ("dedicated", "search")]


@pytest.mark.parametrize("bad", ["team", "job=x", "team=", "=x"])
def test_bad_label_is_one_clear_error(bad: str) -> None:
    with pytest.raises(GpulensError, match="--label"):
        parse_labels([bad])
