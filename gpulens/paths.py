"""Default locations shared by the agent and the training processes that report to it (docs/design.md §4)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

SYSTEM_SOCKET = Path("/run/gpulens/agent.sock")


def default_socket_path(env: Mapping[str, str] | None = None, uid: int | None = None) -> Path:
    """`$GPULENS_SOCKET`, else `/run/gpulens/agent.sock` for root, else `$XDG_RUNTIME_DIR/gpulens/agent.sock`.

    Both the agent (through the CLI) and `gpulens.trainer` call this, so they agree without a flag.
    """
    env = os.environ if env is None else env
    if env.get("GPULENS_SOCKET"):
        return Path(env["GPULENS_SOCKET"])
    uid = os.geteuid() if uid is None else uid
    if uid == 0:
        return SYSTEM_SOCKET
    runtime = env.get("XDG_RUNTIME_DIR") or f"/tmp/gpulens-{uid}"
    return Path(runtime) / "gpulens" / "agent.sock"


def default_warehouse_path(env: Mapping[str, str] | None = None) -> Path:
    """`$GPULENS_WAREHOUSE`, else `./gpulens.duckdb` (docs/design.md §2)."""
    env = os.environ if env is None else env
    return Path(env.get("GPULENS_WAREHOUSE") or "gpulens.duckdb")
