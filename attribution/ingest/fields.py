"""Typed reads of raw export columns: one cast per kind, and the matching check that finds a bad cell.

Every flavour (cur2, legacy, focus) describes its columns as `Field`s; `delivery.py` turns them into
one INSERT (the happy path, a single pass over the file) and, only when that fails, into per-field
checks that name the first bad row and column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["text", "money", "number", "timestamp"]

MONEY = "DECIMAL(38, 10)"
_TARGET = {"money": MONEY, "number": "DOUBLE", "timestamp": "TIMESTAMP", "text": "VARCHAR"}


def quote(name: str) -> str:
    """A column name as a SQL identifier (export headers contain `/`, `:` and spaces)."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class Field:
    """One normalized column: `name` in the warehouse, read from `source` in the file.

    `source` is None when the export lacks the column (the value is NULL). `required_for`: the line
    types for which NULL is an error (`("*",)` = every row).
    """

    name: str
    source: str | None
    kind: Kind
    source_type: str = "VARCHAR"
    required_for: tuple[str, ...] = ()
    # The column's name in this export's spelling, kept when the file lacks it, for messages.
    wanted: str | None = None

    def cast(self, *, safe: bool = False, trim: bool = True) -> str:
        """SQL producing the typed value; `safe` uses TRY_CAST (NULL instead of an error); `trim` strips
        text cells (CSV; Parquet strings are taken as written, which saves a pass over every string)."""
        target = _TARGET[self.kind]
        if self.source is None:
            return f"CAST(NULL AS {target})"
        col = quote(self.source)
        fn = "TRY_CAST" if safe else "CAST"
        if self.source_type == "VARCHAR":
            col = f"NULLIF(trim({col}), '')" if trim else f"NULLIF({col}, '')"
        elif self.source_type == target or (self.kind == "text"):
            return col if self.source_type == target else f"CAST({col} AS VARCHAR)"
        if self.kind == "timestamp":
            # Strings in every spelling AWS uses (Z, .000Z, a space instead of T) parse as TIMESTAMPTZ;
            # the session is UTC, so the naive result is UTC.
            return f"CAST({fn}({col} AS TIMESTAMPTZ) AS TIMESTAMP)"
        return f"{fn}({col} AS {target})"

    def raw(self) -> str:
        """The untyped cell, for error messages."""
        return "NULL" if self.source is None else f"CAST({quote(self.source)} AS VARCHAR)"


def present(columns: dict[str, str], name: str) -> tuple[str | None, str]:
    """(source, type) of a column if the file has it, else (None, VARCHAR)."""
    return (name, columns[name]) if name in columns else (None, "VARCHAR")


def field(
    columns: dict[str, str], name: str, source: str, kind: Kind, required_for: tuple[str, ...] = ()
) -> Field:
    src, typ = present(columns, source)
    return Field(name, src, kind, typ, required_for, wanted=source)
