"""Slurm's job environment -> (job_id, team): SLURM_JOB_ID and the account it is billed to.

Slurm exports SLURM_JOB_ID and SLURM_JOB_ACCOUNT into every task it launches
(https://slurm.schedmd.com/sbatch.html#SECTION_OUTPUT-ENVIRONMENT-VARIABLES); the account is
the closest thing Slurm has to a team.
"""

from __future__ import annotations

from collections.abc import Mapping


def slurm_job(env: Mapping[str, str]) -> tuple[str, str] | None:
    """(job_id, team) from a process environment, or None outside Slurm."""
    job = env.get("SLURM_JOB_ID", "").strip()
    if not job:
        return None
    return job, env.get("SLURM_JOB_ACCOUNT", "").strip()
