"""One `gpulens ingest cur` delivery: read, normalize, validate and replace, in one transaction.

SPEC §5: the files of a delivery replace every row already held for the same (billing period,
payer account), keyed by those two, never by file name; a delivery with any bad file changes
nothing. The happy path is one INSERT ... SELECT per file that DuckDB streams from the file itself;
only when it fails do the per-field checks run to name the first bad row and column.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType

import duckdb

from gpulens.attribution.ingest import cur2, focus, legacy
from gpulens.attribution.ingest.fields import Field, literal
from gpulens.attribution.ingest.sources import SourceFile
from gpulens.errors import GpulensError

log = logging.getLogger(__name__)

# Detection order matters: legacy and FOCUS headers are unambiguous, snake_case is CUR 2.0.
FLAVOURS: dict[str, ModuleType] = {"focus": focus, "legacy": legacy, "cur2": cur2}
RAW = "_gpulens_raw"


@dataclass(frozen=True)
class DeliveryResult:
    """What one delivery changed: rows added, rows it replaced, per (billing period, payer)."""

    format: str
    files: tuple[str, ...]
    line_items: int
    replaced: int
    periods: tuple[tuple[str, str], ...]
    currency: str


def is_parquet(path: str | Path) -> bool:
    return str(path).lower().endswith(".parquet")


def read_sql(local: str, *, row_numbers: bool = False) -> str:
    """A DuckDB table function that reads one export file; CSV cells stay text until cast."""
    path = literal(local)
    if is_parquet(local):
        extra = ", file_row_number = true" if row_numbers else ""
        return f"read_parquet({path}{extra})"
    return f"read_csv({path}, header = true, all_varchar = true, nullstr = ['', 'NULL'])"


def open_raw(con: duckdb.DuckDBPyConnection, src: SourceFile) -> dict[str, str]:
    """Creates the temp view RAW over the file; returns its columns and their DuckDB types."""
    try:
        con.execute(f"CREATE OR REPLACE TEMP VIEW {RAW} AS SELECT * FROM {read_sql(str(src.local))}")
        described = con.execute(f"DESCRIBE {RAW}").fetchall()
    except duckdb.Error as exc:
        raise unreadable(src, exc) from exc
    return {str(name): str(kind) for name, kind, *_ in described}


def unreadable(src: SourceFile, exc: Exception) -> GpulensError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return GpulensError(
        f"cannot be read ({first}); re-download the file or remove it from the delivery", path=src.name
    )


def detect(columns: dict[str, str], forced: str | None, src: SourceFile) -> ModuleType:
    """The flavour named by --format, else the first whose signature columns the file has."""
    if forced is not None:
        return FLAVOURS[forced]
    for flavour in FLAVOURS.values():
        if flavour.detect(columns):
            return flavour
    raise GpulensError(
        "not a CUR 2.0, legacy CUR or FOCUS export (no line_item_unblended_cost, "
        "lineItem/UnblendedCost or BilledCost column); pass --format if it is one",
        path=src.name,
    )


def require_columns(flavour: ModuleType, columns: dict[str, str], src: SourceFile) -> None:
    missing = flavour.missing(columns)
    if missing:
        raise GpulensError(
            f"required column missing from this {flavour.NAME} export (add it to the export definition)",
            path=src.name,
            field=missing[0],
        )


def insert_sql(
    flavour: ModuleType, columns: dict[str, str], source: str, now: datetime, *, trim: bool = True
) -> str:
    """One INSERT that normalizes the RAW view into cost_line_items (SPEC §5), amortizing (SPEC §6)."""
    typed = ",\n        ".join(f"{f.cast(trim=trim)} AS {f.name}" for f in flavour.fields(columns))
    return f"""
    INSERT INTO cost_line_items BY NAME
    SELECT
        strftime(coalesce(billing_period_start, usage_start), '%Y-%m') AS billing_period,
        payer_account_id, usage_start, usage_end, account_id, line_item_type, product_code, usage_type,
        resource_id, {flavour.INSTANCE_TYPE_SQL} AS instance_type, usage_amount, unblended_cost,
        {flavour.AMORTIZED} AS amortized_cost,
        upper(currency) AS currency, tags, {literal(source)} AS source,
        {literal(now.isoformat(sep=" "))}::TIMESTAMP AS ingested_at
    FROM (SELECT {typed}, {flavour.tags_sql(columns)} AS tags FROM {RAW})
    """


def ingest_cur(
    con: duckdb.DuckDBPyConnection,
    files: Sequence[SourceFile],
    *,
    fmt: str | None = None,
    now: datetime,
    on_file: Callable[[SourceFile], None] | None = None,
) -> DeliveryResult:
    """Loads one delivery. `now` (naive UTC) stamps the rows and tells this delivery's rows apart;
    `on_file` is called after each file is loaded (progress)."""
    if not files:
        raise GpulensError("no CUR or FOCUS files found in the given paths")
    # Let DuckDB stream large inserts out of order, and skip FSST string compression, whose analysis
    # pass costs a third of a large ingest for little space on CUR's short, repetitive strings.
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET disabled_compression_methods = 'fsst'")
    con.begin()
    try:
        flavours = []
        for src in files:
            flavours.append(_load_file(con, src, fmt, now))
            if on_file is not None:
                on_file(src)  # after the file: a progress bar advances as work is done
        result = _replace(con, files, flavours, now)
        con.commit()
    except BaseException:
        con.rollback()
        raise
    finally:
        con.execute(f"DROP VIEW IF EXISTS {RAW}")
        con.execute("RESET preserve_insertion_order")
        con.execute("RESET disabled_compression_methods")
    return result


def _load_file(con: duckdb.DuckDBPyConnection, src: SourceFile, fmt: str | None, now: datetime) -> str:
    columns = open_raw(con, src)
    flavour = detect(columns, fmt, src)
    require_columns(flavour, columns, src)
    try:
        trim = not is_parquet(src.local)
        con.execute(insert_sql(flavour, columns, f"{flavour.NAME}:{src.name}", now, trim=trim))
    except duckdb.Error as exc:
        raise diagnose(con, src, flavour, columns) or unreadable(src, exc) from exc
    return str(flavour.NAME)


def _replace(
    con: duckdb.DuckDBPyConnection, files: Sequence[SourceFile], flavours: list[str], now: datetime
) -> DeliveryResult:
    stamp = now.isoformat(sep=" ")
    currencies = [
        r[0]
        for r in con.execute(
            "SELECT DISTINCT currency FROM cost_line_items WHERE ingested_at = ?::TIMESTAMP ORDER BY 1",
            [stamp],
        ).fetchall()
    ]
    if len(currencies) > 1:
        raise _mixed_currency(con, files, flavours)
    keys = con.execute(
        "SELECT billing_period, payer_account_id, count(*) FROM cost_line_items "
        "WHERE ingested_at = ?::TIMESTAMP GROUP BY ALL ORDER BY ALL",
        [stamp],
    ).fetchall()
    if not keys:
        raise GpulensError("the delivery holds no line items", path=files[0].name)
    replaced = con.execute(
        """DELETE FROM cost_line_items c USING (
               SELECT DISTINCT billing_period, payer_account_id FROM cost_line_items
               WHERE ingested_at = ?::TIMESTAMP) k
           WHERE c.billing_period = k.billing_period AND c.payer_account_id = k.payer_account_id
             AND c.ingested_at <> ?::TIMESTAMP""",
        [stamp, stamp],
    ).fetchone()
    names = [src.name for src in files]
    for period, payer, count in keys:
        con.execute(
            "INSERT INTO deliveries VALUES (?, ?, ?, ?, ?, ?::TIMESTAMP)",
            [period, payer, ",".join(sorted(set(flavours))), names, count, stamp],
        )
    return DeliveryResult(
        format=",".join(sorted(set(flavours))),
        files=tuple(names),
        line_items=sum(int(k[2]) for k in keys),
        replaced=int(replaced[0]) if replaced else 0,
        periods=tuple((str(k[0]), str(k[1])) for k in keys),
        currency=currencies[0],
    )


# --- the error path: find the first bad row and column -------------------------------------------


def _numbered(con: duckdb.DuckDBPyConnection, src: SourceFile) -> str:
    """A temp view over the file with `_row`, the 1-based data row (header not counted)."""
    local = str(src.local)
    if is_parquet(local):
        sql = f"SELECT file_row_number + 1 AS _row, * EXCLUDE (file_row_number) FROM {read_sql(local, row_numbers=True)}"
    else:
        # One thread keeps the scan in file order, so row_number() is the data row.
        con.execute("SET threads = 1")
        sql = f"SELECT row_number() OVER () AS _row, * FROM {read_sql(local)}"
    con.execute(f"CREATE OR REPLACE TEMP TABLE _gpulens_numbered AS {sql}")
    con.execute("RESET threads")
    return "_gpulens_numbered"


def _checks(flavour: ModuleType, columns: dict[str, str]) -> list[tuple[Field, str, str]]:
    """(field, predicate that is true on a bad row, what is wrong) in the order they are reported."""
    fields = flavour.fields(columns)
    type_field = next(f for f in fields if f.name == "line_item_type")
    out: list[tuple[Field, str, str]] = []
    for f in fields:
        if f.source is not None and f.kind != "text" and f.source_type == "VARCHAR":
            raw = f"NULLIF(trim({f.raw()}), '')"
            kind = "a number" if f.kind in ("money", "number") else "a timestamp"
            out.append((f, f"{raw} IS NOT NULL AND {f.cast(safe=True)} IS NULL", f"is not {kind}"))
    for f in fields:
        if not f.required_for:
            continue
        if f.required_for == ("*",):
            applies = "TRUE"
        else:
            applies = f"{type_field.cast(safe=True)} IN ({', '.join(literal(t) for t in f.required_for)})"
        out.append((f, f"{f.cast(safe=True)} IS NULL AND ({applies})", "is empty but this line needs it"))
    return out


def diagnose(
    con: duckdb.DuckDBPyConnection, src: SourceFile, flavour: ModuleType, columns: dict[str, str]
) -> GpulensError | None:
    """The first bad cell of a file whose INSERT failed, as an error naming file, row and column."""
    con.rollback()  # the failed statement aborted the transaction; the caller's rollback is a no-op
    con.begin()
    try:
        view = _numbered(con, src)
        con.execute(f"CREATE OR REPLACE TEMP VIEW {RAW} AS SELECT * FROM {view}")
    except duckdb.Error:
        return None
    found: list[tuple[int, int, GpulensError]] = []
    for order, (f, predicate, problem) in enumerate(_checks(flavour, columns)):
        hit = con.execute(
            f"SELECT _row, {f.raw()} FROM {RAW} WHERE {predicate} ORDER BY _row LIMIT 1"
        ).fetchone()
        if hit is not None:
            value = "" if hit[1] is None else f"{hit[1]!r} "
            message = f"{value}{problem}; fix the export or remove the row, then ingest the delivery again"
            found.append(
                (int(hit[0]), order, GpulensError(message, path=src.name, row=int(hit[0]), field=f.source))
            )
    return min(found, key=lambda t: (t[0], t[1]))[2] if found else None


def _mixed_currency(
    con: duckdb.DuckDBPyConnection, files: Sequence[SourceFile], flavours: list[str]
) -> GpulensError:
    con.rollback()
    con.begin()
    first: str | None = None
    for src, name in zip(files, flavours, strict=True):
        columns = open_raw(con, src)
        currency = next(f for f in FLAVOURS[name].fields(columns) if f.name == "currency")
        view = _numbered(con, src)
        rows = con.execute(
            f"SELECT _row, upper({currency.cast()}) AS c FROM {view} WHERE c IS NOT NULL "
            + ("" if first is None else f"AND c <> {literal(first)} ")
            + "ORDER BY _row LIMIT 1"
        ).fetchone()
        if rows is None:
            continue
        if first is None:
            first = str(rows[1])
            rows = con.execute(
                f"SELECT _row, upper({currency.cast()}) AS c FROM {view} WHERE c <> {literal(first)} "
                "ORDER BY _row LIMIT 1"
            ).fetchone()
            if rows is None:
                continue
        return GpulensError(
            f"currency {rows[1]!r} differs from {first!r} earlier in the delivery; a delivery must be in one "
            "currency (ingest each billing account's export separately)",
            path=src.name,
            row=int(rows[0]),
            field=currency.source,
        )
    return GpulensError("the delivery mixes currencies", path=files[0].name)
