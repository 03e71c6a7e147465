"""GPU -> job from the environment of the processes NVML says run on it (`/proc/<pid>/environ`).

`GPULENS_JOB_ID`/`GPULENS_TEAM` win over Slurm's SLURM_JOB_ID/SLURM_JOB_ACCOUNT. A mapping ends
when its process exits: entries of pids no longer running are dropped each tick.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from gpulens.collector.backends.base import GpuReading
from gpulens.collector.mapping.slurm import slurm_job


class ProcReader:
    """Reads a /proc tree (a real one, or a fixture directory in tests)."""

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self.proc = proc

    def alive(self, pid: int) -> bool:
        return (self.proc / str(pid)).is_dir()

    def cgroup(self, pid: int) -> str | None:
        """The text of /proc/<pid>/cgroup (which pod or Slurm job it runs in), or None."""
        try:
            return (self.proc / str(pid) / "cgroup").read_text(errors="replace")
        except OSError:
            return None

    def environ(self, pid: int) -> dict[str, str] | None:
        """The process's environment, or None if it exited or is not ours to read."""
        try:
            raw = (self.proc / str(pid) / "environ").read_bytes()
        except OSError:
            return None
        env: dict[str, str] = {}
        for item in raw.split(b"\0"):
            key, sep, value = item.partition(b"=")
            if sep:
                env[key.decode(errors="replace")] = value.decode(errors="replace")
        return env


def job_from_env(env: dict[str, str]) -> tuple[str, str] | None:
    """(job_id, team) declared by gpulens variables, else by Slurm, else None."""
    job = env.get("GPULENS_JOB_ID", "").strip()
    if job:
        return job, env.get("GPULENS_TEAM", "").strip()
    return slurm_job(env)


class ProcMapper:
    """Maps a GPU to the job of the first of its compute processes that declares one."""

    def __init__(self, reader: ProcReader) -> None:
        self.reader = reader
        self._cache: dict[int, tuple[str, str] | None] = {}

    def _job(self, pid: int) -> tuple[str, str] | None:
        if pid not in self._cache:
            env = self.reader.environ(pid)
            self._cache[pid] = None if env is None else job_from_env(env)
        return self._cache[pid]

    def annotate(self, readings: Sequence[GpuReading]) -> list[GpuReading]:
        running = {pid for r in readings for pid in r.pids}
        for pid in [p for p in self._cache if p not in running or not self.reader.alive(p)]:
            del self._cache[pid]  # the mapping ends with the process
        out = []
        for r in readings:
            job = next((j for j in map(self._job, r.pids) if j is not None), None)
            out.append(replace(r, job_id=job[0], team=job[1]) if job else r)
        return out
