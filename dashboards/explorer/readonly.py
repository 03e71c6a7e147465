"""A shared read-only connection to the warehouse that lets go of the file when the explorer is idle.

Opening the DuckDB file costs ~30 ms, more than most of the explorer's queries, so callbacks share
one read-only connection (a cursor each, so threads never share a client context). A read-only
connection still holds a lock that keeps writers (`gpulens ingest`, `gpulens attribute`) out, so it is
closed `idle_s` seconds after the last query; a changed file (a new ingest) is opened afresh.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from gpulens.attribution.warehouse import Warehouse, prepare
from gpulens.errors import GpulensError


class ReadOnlyWarehouse:
    def __init__(self, path: Path, *, idle_s: float = 2.0) -> None:
        self.path = Path(path)
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._opened_version = 0
        self._users = 0
        self._timer: threading.Timer | None = None
        self._cursors: set[duckdb.DuckDBPyConnection] = set()
        # Close before the interpreter tears down: a connection left to finalization, with an idle
        # timer thread still pending, can abort the process from DuckDB's C++ side on exit.
        atexit.register(self.close)

    def version(self) -> int:
        """Changes whenever the file is rewritten (mtime in ns); 0 while it does not exist."""
        return self.path.stat().st_mtime_ns if self.path.exists() else 0

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            con = self._acquire()
            cur = con.cursor()
            self._cursors.add(cur)
        try:
            prepare(cur)
            yield cur
        finally:
            with self._lock:
                self._cursors.discard(cur)
                cur.close()
                self._release()

    def _acquire(self) -> duckdb.DuckDBPyConnection:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._con is not None and self._users == 0 and self._opened_version != self.version():
            self._close()
        if self._con is None:
            if not self.path.exists():
                with Warehouse(self.path).connect():
                    pass  # a new warehouse shows its empty tables (and empty states), not an error
            try:
                self._con = duckdb.connect(str(self.path), read_only=True)
            except duckdb.Error as exc:
                raise GpulensError(f"cannot open the warehouse: {exc}", path=self.path) from exc
            self._opened_version = self.version()
        self._users += 1
        return self._con

    def _release(self) -> None:
        self._users -= 1
        if self._users == 0:
            self._timer = threading.Timer(self.idle_s, self._close_if_idle)
            self._timer.daemon = True
            self._timer.start()

    def _close_if_idle(self) -> None:
        with self._lock:
            if self._users == 0:
                self._close()

    def _close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def interrupt(self) -> None:
        """Cancels every running query (they raise); used when the explorer shuts down."""
        with self._lock:
            for cur in self._cursors:
                cur.interrupt()

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._close()
