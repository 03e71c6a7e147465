"""Running an external program for an action: a timeout, stdin, and failures as `ActionFailed`."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from gpulens.remediation.actions.base import ActionFailed, ActionSkipped, short


def run_program(argv: Sequence[str], *, stdin: str = "", timeout: float, missing_skips: bool = False) -> str:
    """Run `argv` (no shell) and return its stdout; a non-zero exit or the timeout raises `ActionFailed`.

    A program that is not installed raises `ActionSkipped` when `missing_skips`, else `ActionFailed`.
    """
    try:
        done = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        if missing_skips:
            raise ActionSkipped(f"{argv[0]} is not installed") from None
        raise ActionFailed(f"{argv[0]} not found") from None
    except PermissionError:
        raise ActionFailed(f"{argv[0]} is not executable") from None
    except subprocess.TimeoutExpired:
        raise ActionFailed(f"{argv[0]} did not finish within {timeout:g}s and was killed") from None
    if done.returncode != 0:
        raise ActionFailed(f"{argv[0]} exited {done.returncode}: {short(done.stderr or done.stdout)}")
    return done.stdout
