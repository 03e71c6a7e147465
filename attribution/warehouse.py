"""The DuckDB warehouse (docs/design.md §5): one file, the schema in `schema.sql`, UTC everywhere."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import duckdb

from gpulens.errors import GpulensError


def schema_sql() -> str:
    """The warehouse DDL, idempotent (`CREATE TABLE IF NOT EXISTS`)."""
    return resources.files("gpulens.attribution").joinpath("schema.sql").read_text(encoding="utf-8")


def prepare(con: duckdb.DuckDBPyConnection) -> None:
    """Session settings every query here assumes: naive TIMESTAMPs are UTC; no DuckDB progress bar on
    the terminal (commands draw their own, on stderr)."""
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")


class Warehouse:
    """A warehouse file. `Warehouse(path).connect()` yields a connection with the schema created."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def open_existing(cls, path: str | Path) -> Warehouse:
        """The warehouse at `path`, which must exist: only `gpulens ingest` creates one, so that a
        mistyped `--warehouse` is an error naming the path, not a new empty file and a zero bill."""
        found = cls(path)
        found.require_existing()
        return found

    def require_existing(self) -> None:
        if not self.path.is_file():
            raise GpulensError(
                "no warehouse here (only `gpulens ingest` creates one): check --warehouse or "
                "$GPULENS_WAREHOUSE, or ingest a delivery first",
                path=self.path,
            )

    @contextmanager
    def connect(self, read_only: bool = False, *, create: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection; with `create=False` a missing file is refused (`require_existing`)."""
        if not create:
            self.require_existing()
        if read_only and not self.path.exists():
            with self.connect(read_only=False):
                pass  # a reader of a new warehouse sees the empty tables, not an error
        try:
            con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.Error as exc:
            raise GpulensError(f"cannot open the warehouse: {exc}", path=self.path) from exc
        try:
            prepare(con)
            if not read_only:
                con.execute(schema_sql())
            yield con
        finally:
            con.close()
