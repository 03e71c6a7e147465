"""Opening the warehouse from a command: read-only where the command only reads, one clear line when
another process holds it."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from gpulens.commands._options import warehouse_path
from gpulens.errors import GpulensError

_PID = re.compile(r"\(PID (\d+)\)")


@contextmanager
def open_warehouse(args: argparse.Namespace, *, read_only: bool, create: bool = False) -> Iterator[Any]:
    """The warehouse `--warehouse` names, as a DuckDB connection. DuckDB lets many processes read a
    file at once, but a writer needs it to itself: commands that only read (`flags`) open it
    read-only, so they and a running explorer never block each other. Only `ingest` passes
    `create=True`: every other command refuses a path where there is no warehouse, naming it."""
    from gpulens.attribution.warehouse import Warehouse  # imports duckdb: not while the parser is built

    path = warehouse_path(args)
    with ExitStack() as stack:
        try:
            con = stack.enter_context(Warehouse(path).connect(read_only=read_only, create=create))
        except GpulensError as exc:
            raise _locked(exc, read_only) or exc from exc.__cause__
        yield con


def _locked(exc: GpulensError, read_only: bool) -> GpulensError | None:
    """One clear line for DuckDB's file lock (its own message names the holder's PID)."""
    cause = str(exc.__cause__ or "")
    if "lock" not in cause.lower():
        return None
    found = _PID.search(cause)
    holder = f"process {found.group(1)}" if found else "another process"
    if read_only:
        what = f"{holder} is writing to it; wait for it to finish"
    else:
        what = (
            f"{holder} has it open (a running `gpulens explorer` or another command) and this command "
            "writes to it; stop that process or wait for it"
        )
    return GpulensError(f"cannot open the warehouse: {what}, then run this command again", path=exc.path)
