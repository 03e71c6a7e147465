"""The one error type library code raises; the CLI turns it into one stderr line and exit 1."""

from __future__ import annotations

from pathlib import Path


class GpulensError(Exception):
    """A handled failure a user can act on.

    `path`, `row` and `field` locate bad input; `str()` renders them into one line such as
    ``cur.csv.gz: row 1204, column line_item_unblended_cost: 'abc' is not a number``.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = None if path is None else str(path)
        self.row = row
        self.field = field

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.field is not None:
            where.append(f"column {self.field}")
        prefix = self.path or ""
        if where:
            prefix = f"{prefix}: {', '.join(where)}" if prefix else ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message
