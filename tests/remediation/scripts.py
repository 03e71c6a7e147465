"""Real executables written into a test's tmp_path: a fake `scontrol` and hooks that record what they got."""

from __future__ import annotations

import stat
from pathlib import Path


def executable(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def fake_scontrol(bin_dir: Path, record: Path, exit_code: int = 0) -> Path:
    """`scontrol` that appends its arguments, one per line then a blank line, to `record`."""
    return executable(
        bin_dir / "scontrol",
        f"""for arg in "$@"; do printf '%s\\n' "$arg" >> '{record}'; done
printf '\\n' >> '{record}'
[ {exit_code} -eq 0 ] || echo "slurm_update error: Invalid node name specified" >&2
exit {exit_code}
""",
    )


def recording_hook(path: Path, record: Path, exit_code: int = 0) -> Path:
    """A hook that appends its stdin and then a line with its arguments to `record`."""
    return executable(
        path,
        f"""cat >> '{record}'
printf '\\nargs:%s\\n' "$*" >> '{record}'
exit {exit_code}
""",
    )


def parse_scontrol_calls(record: Path) -> list[list[str]]:
    if not record.exists():
        return []
    return [call.splitlines() for call in record.read_text().split("\n\n") if call.strip()]
