"""One `gpulens ingest cur` delivery: read, normalize, validate and replace, in one transaction.

docs/design.md §5: the files of a delivery replace every row already held for the same (billing
period, payer account), keyed by those two, never by file name; a delivery with any bad file changes
nothing. A line's period is its export's billing-period column, else its `BILLING_PERIOD=` folder,
never its usage dates. The same money is never loaded twice (two exports or two executions of one
export for a period and payer are refused, naming both), and a delivery older than the one held is
refused unless forced (docs/attribution.md, "Delivery rules"). The happy path is one INSERT ... SELECT
per file that DuckDB streams from the file itself; only when it fails do the per-field checks run to
name the first bad row and column.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType

import duckdb

from gpulens.attribution.ingest import cur2, focus, legacy
from gpulens.attribution.ingest.cur2 import bad_json_tags_sql
from gpulens.attribution.ingest.fields import Field, literal
from gpulens.attribution.ingest.sources import SourceFile, file_time, path_period
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
    created: datetime | None = None
    skipped: tuple[str, ...] = ()  # files of another flavour than --format names


def is_parquet(path: str | Path) -> bool:
    return str(path).lower().endswith(".parquet")


def read_sql(local: str, *, row_numbers: bool = False, aliases: Sequence[str] = ()) -> str:
    """A DuckDB table function that reads one export file; CSV cells stay text until cast."""
    path = literal(local)
    if is_parquet(local):
        extra = ", file_row_number = true" if row_numbers else ""
        return f"read_parquet({path}{extra})"
    # FOCUS's own examples write null as `null`, real exports as `NULL` or an empty cell.
    names = "" if not aliases else ", names = [" + ", ".join(literal(a) for a in aliases) + "]"
    return f"read_csv({path}, header = true, all_varchar = true, nullstr = ['', 'NULL', 'null']{names})"


def header_aliases(local: str) -> list[str]:
    """The CSV's headers, each one that differs from an earlier one only in case renamed
    `<header>#<n>` (legacy CUR has `resourceTags/user:Team` beside `resourceTags/user:team`; DuckDB's
    names are case-insensitive and would rename them past recognition); [] when there are none."""
    if is_parquet(local):
        return []
    opener = gzip.open if local.lower().endswith(".gz") else open
    try:
        with opener(local, "rt", encoding="utf-8-sig", newline="") as fh:  # type: ignore[operator]
            header = next(csv.reader(io.StringIO(fh.readline())), [])
    except (OSError, UnicodeDecodeError, EOFError):
        return []  # DuckDB reads it and reports what is wrong
    seen: dict[str, int] = {}
    out = []
    for name in header:
        count = seen.get(name.lower(), 0)
        seen[name.lower()] = count + 1
        out.append(name if count == 0 else f"{name}#{count + 1}")
    return out if any("#" in a and a not in header for a in out) else []


def open_raw(con: duckdb.DuckDBPyConnection, src: SourceFile) -> dict[str, str]:
    """Creates the temp view RAW over the file; returns its columns and their DuckDB types."""
    try:
        sql = read_sql(str(src.local), aliases=header_aliases(str(src.local)))
        con.execute(f"CREATE OR REPLACE TEMP VIEW {RAW} AS SELECT * FROM {sql}")
        described = con.execute(f"DESCRIBE {RAW}").fetchall()
    except duckdb.Error as exc:
        raise unreadable(src, exc) from exc
    return {str(name): str(kind) for name, kind, *_ in described}


def unreadable(src: SourceFile, exc: Exception) -> GpulensError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return GpulensError(
        f"cannot be read ({first}); re-download the file or remove it from the delivery", path=src.name
    )


def detect(columns: dict[str, str], forced: str | None, src: SourceFile) -> ModuleType | None:
    """The flavour whose signature columns the file has; with --format, that flavour, or None for a
    file that is plainly another flavour's (skipped: --format chooses one export of several)."""
    found = next((f for f in FLAVOURS.values() if f.detect(columns)), None)
    if forced is not None:
        return None if found is not None and found is not FLAVOURS[forced] else FLAVOURS[forced]
    if found is not None:
        return found
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


def line_fields(flavour: ModuleType, columns: dict[str, str], period: str | None) -> list[Field]:
    """The flavour's fields; the billing-period column is required on every row when the file's path
    names no period (a line is never placed by its usage dates: a fee billed in advance carries the
    dates of the month it pays for)."""
    out = flavour.fields(columns)
    if period is not None:
        return list(out)
    return [
        Field(f.name, f.source, f.kind, f.source_type, ("*",), f.wanted)
        if f.name == "billing_period_start"
        else f
        for f in out
    ]


def billing_period_of(flavour: ModuleType, columns: dict[str, str], src: SourceFile) -> str | None:
    """The period the file's path names; refuses a file with neither that nor a period column."""
    period = path_period(src.name)
    column = next(f for f in flavour.fields(columns) if f.name == "billing_period_start")
    if period is None and column.source is None:
        raise GpulensError(
            "no billing period: the file has no billing-period column and is not under a "
            "BILLING_PERIOD=YYYY-MM folder (add the column to the export, or keep AWS's folder layout)",
            path=src.name,
            field=column.wanted,
        )
    return period


def insert_sql(
    flavour: ModuleType,
    columns: dict[str, str],
    source: str,
    now: datetime,
    *,
    trim: bool = True,
    period: str | None = None,
) -> str:
    """One INSERT that normalizes the RAW view into cost_line_items (docs/design.md §5), amortizing
    (§6); `period` (YYYY-MM) is the file's period folder, for lines without the period column."""
    typed = ",\n        ".join(
        f"{f.cast(trim=trim)} AS {f.name}" for f in line_fields(flavour, columns, period)
    )
    fallback = "NULL" if period is None else literal(period)
    return f"""
    INSERT INTO cost_line_items BY NAME
    SELECT
        coalesce(strftime(billing_period_start, '%Y-%m'), {fallback}) AS billing_period,
        payer_account_id, usage_start, usage_end, account_id, line_item_type, product_code, usage_type,
        resource_id, {flavour.INSTANCE_TYPE_SQL} AS instance_type, usage_amount, unblended_cost,
        {flavour.AMORTIZED} AS amortized_cost,
        upper(currency) AS currency, tags, {literal(source)} AS source,
        {literal(now.isoformat(sep=" "))}::TIMESTAMP AS ingested_at,
        capacity_reservation_arn, capacity_reservation_status
    FROM (SELECT {typed}, {flavour.tags_sql(columns)} AS tags FROM {RAW})
    """


def ingest_cur(
    con: duckdb.DuckDBPyConnection,
    files: Sequence[SourceFile],
    *,
    fmt: str | None = None,
    now: datetime,
    on_file: Callable[[SourceFile], None] | None = None,
    force: bool = False,
) -> DeliveryResult:
    """Loads one delivery. `now` (naive UTC) stamps the rows and tells this delivery's rows apart;
    `on_file` is called after each file is loaded (progress); `force` loads a delivery older than the
    one held for its period and payer."""
    if not files:
        raise GpulensError("no CUR or FOCUS files found in the given paths")
    # Let DuckDB stream large inserts out of order, and skip FSST string compression, whose analysis
    # pass costs a third of a large ingest for little space on CUR's short, repetitive strings.
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET disabled_compression_methods = 'fsst'")
    con.begin()
    try:
        loaded: list[SourceFile] = []
        flavours: list[str] = []
        skipped: list[str] = []
        for src in files:
            flavour = _load_file(con, src, fmt, now)
            if flavour is None:
                skipped.append(src.name)
            else:
                loaded.append(src)
                flavours.append(flavour)
            if on_file is not None:
                on_file(src)  # after the file: a progress bar advances as work is done
        if not loaded:
            raise GpulensError(f"no {fmt} export among the given files", path=", ".join(skipped))
        result = _replace(con, loaded, flavours, now, force=force, skipped=tuple(skipped))
        con.commit()
    except BaseException:
        con.rollback()
        raise
    finally:
        con.execute(f"DROP VIEW IF EXISTS {RAW}")
        con.execute("RESET preserve_insertion_order")
        con.execute("RESET disabled_compression_methods")
    return result


def _load_file(con: duckdb.DuckDBPyConnection, src: SourceFile, fmt: str | None, now: datetime) -> str | None:
    columns = open_raw(con, src)
    flavour = detect(columns, fmt, src)
    if flavour is None:
        return None
    require_columns(flavour, columns, src)
    period = billing_period_of(flavour, columns, src)
    try:
        trim = not is_parquet(src.local)
        con.execute(insert_sql(flavour, columns, f"{flavour.NAME}:{src.name}", now, trim=trim, period=period))
    except duckdb.Error as exc:
        raise diagnose(con, src, flavour, columns, period) or unreadable(src, exc) from exc
    return str(flavour.NAME)


def _replace(
    con: duckdb.DuckDBPyConnection,
    files: Sequence[SourceFile],
    flavours: list[str],
    now: datetime,
    *,
    force: bool,
    skipped: tuple[str, ...],
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
    parts = con.execute(
        "SELECT billing_period, payer_account_id, source, count(*) FROM cost_line_items "
        "WHERE ingested_at = ?::TIMESTAMP GROUP BY ALL ORDER BY ALL",
        [stamp],
    ).fetchall()
    if not parts:
        raise GpulensError("the delivery holds no line items", path=files[0].name)
    keys: dict[tuple[str, str], int] = {}
    sources: dict[tuple[str, str], list[str]] = {}
    for period, payer, source, count in parts:
        keys[(period, payer)] = keys.get((period, payer), 0) + int(count)
        sources.setdefault((period, payer), []).append(str(source))
    for (period, payer), named in sources.items():
        _refuse_two_exports(period, payer, named)
    created = max((f.created or file_time(f.local) for f in files), default=None)
    # Each period and payer is dated by its own files: an old month given beside a newer one is
    # still older than the delivery held for it.
    created_by_key = _created_by_key(files, sources)
    if not force:
        for period, payer in keys:
            _refuse_older(con, period, payer, created_by_key[(period, payer)], stamp)
    replaced = con.execute(
        """DELETE FROM cost_line_items c USING (
               SELECT DISTINCT billing_period, payer_account_id FROM cost_line_items
               WHERE ingested_at = ?::TIMESTAMP) k
           WHERE c.billing_period = k.billing_period AND c.payer_account_id = k.payer_account_id
             AND c.ingested_at <> ?::TIMESTAMP""",
        [stamp, stamp],
    ).fetchone()
    names = [src.name for src in files]
    fmt = ",".join(sorted(set(flavours)))
    for (period, payer), count in keys.items():
        con.execute(
            "INSERT INTO deliveries (billing_period, payer_account_id, source_format, files, line_items, "
            "ingested_at, created) VALUES (?, ?, ?, ?, ?, ?::TIMESTAMP, ?)",
            [period, payer, fmt, names, count, stamp, created_by_key[(period, payer)]],
        )
    return DeliveryResult(
        format=fmt,
        files=tuple(names),
        line_items=sum(keys.values()),
        replaced=int(replaced[0]) if replaced else 0,
        periods=tuple(keys),
        currency=currencies[0],
        created=created,
        skipped=skipped,
    )


def _created_by_key(
    files: Sequence[SourceFile], sources: dict[tuple[str, str], list[str]]
) -> dict[tuple[str, str], datetime | None]:
    """When AWS wrote each (period, payer) of a delivery: the newest time of the files holding its lines
    (a line's `source` is `flavour:name`)."""
    created_of = {f.name: f.created or file_time(f.local) for f in files}
    return {
        key: max((created_of[s.partition(":")[2]] for s in named if s.partition(":")[2] in created_of),
                 default=None)
        for key, named in sources.items()
    }  # fmt: skip


# An AWS part: `<export or report name>-<part number>.<ext>` (`ledger-00001.csv.gz`, `daily-1.csv.zip`).
_PART = re.compile(r"^(?P<export>.+?)[-_](?P<part>\d+)$")


def export_of(name: str) -> tuple[str, str] | None:
    """(folder, export name) of a part named the way AWS names them, else None (a file the user
    named: its export cannot be told from its name)."""
    folder, _, base = name.replace("\\", "/").rpartition("/")
    stem = base.split(".", 1)[0]
    found = _PART.match(stem)
    return (folder, found.group("export")) if found else None


def _refuse_two_exports(period: str, payer: str, sources: list[str]) -> None:
    """One period and payer from two exports (CUR 2.0 beside FOCUS, an hourly beside a daily legacy
    report) or from two executions of one export: the same money twice."""
    by_flavour: dict[str, str] = {}
    by_export: dict[str, tuple[str, str]] = {}
    for source in sources:
        flavour, _, name = source.partition(":")
        by_flavour.setdefault(flavour, name)
        found = export_of(name)
        if found is None:
            continue
        folder, export = found
        other = by_export.setdefault(export, (folder, name))
        if other[0] != folder:
            raise GpulensError(
                f"{period} (payer {payer}) is delivered twice: {other[1]} and {name} are two executions of "
                f"export {export!r}; give its manifest (the metadata/ folder) so that the current one is "
                "read, or only the newest execution's folder",
                path=name,
            )
    if len(by_flavour) > 1:
        (f1, n1), (f2, n2) = list(by_flavour.items())[:2]
        raise GpulensError(
            f"{period} (payer {payer}) is in two exports: {n1} ({f1}) and {n2} ({f2}); the same money would "
            f"count twice: ingest one of them, or pass --format {f1} (or {f2}) to read only that one",
            path=n2,
        )
    if len(by_export) > 1:
        (e1, (_, n1)), (e2, (_, n2)) = list(by_export.items())[:2]
        raise GpulensError(
            f"{period} (payer {payer}) is in two exports: {n1} (export {e1!r}) and {n2} (export {e2!r}); "
            "the same money would count twice: give one export's files (its folder or manifest)",
            path=n2,
        )


def _refuse_older(
    con: duckdb.DuckDBPyConnection, period: str, payer: str, created: datetime | None, stamp: str
) -> None:
    """A delivery made before the one already held for its period and payer would bring back
    figures AWS has since restated."""
    # The delivery held is the last one ingested (one loaded with --force replaced a newer one).
    row = con.execute(
        "SELECT created FROM deliveries WHERE billing_period = ? AND payer_account_id = ? "
        "AND ingested_at <> ?::TIMESTAMP ORDER BY ingested_at DESC LIMIT 1",
        [period, payer, stamp],
    ).fetchone()
    held = row[0] if row else None
    if held is None or created is None or created >= held:
        return
    raise GpulensError(
        f"{period} (payer {payer}): this delivery was made {created:%Y-%m-%d %H:%M:%S} UTC, before the one "
        f"already held ({held:%Y-%m-%d %H:%M:%S} UTC); it would bring back older figures. Ingest the newest "
        "delivery, or pass --force to load this one anyway"
    )


# --- the error path: find the first bad row and column -------------------------------------------


def _numbered(con: duckdb.DuckDBPyConnection, src: SourceFile) -> str:
    """A temp view over the file with `_row`, the 1-based data row (header not counted)."""
    local = str(src.local)
    if is_parquet(local):
        reader = read_sql(local, row_numbers=True)
        sql = f"SELECT file_row_number + 1 AS _row, * EXCLUDE (file_row_number) FROM {reader}"
    else:
        # One thread keeps the scan in file order, so row_number() is the data row.
        con.execute("SET threads = 1")
        sql = f"SELECT row_number() OVER () AS _row, * FROM {read_sql(local, aliases=header_aliases(local))}"
    con.execute(f"CREATE OR REPLACE TEMP TABLE _gpulens_numbered AS {sql}")
    con.execute("RESET threads")
    return "_gpulens_numbered"


def _checks(flavour: ModuleType, columns: dict[str, str], period: str | None) -> list[tuple[Field, str, str]]:
    """(field, predicate that is true on a bad row, what is wrong) in the order they are reported."""
    fields = line_fields(flavour, columns, period)
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
        problem = "is empty but this line needs it"
        if f.source is None:
            problem = "is missing from the export but this line needs it (add it to the export definition)"
        out.append((f, f"{f.cast(safe=True)} IS NULL AND ({applies})", problem))
    tags = flavour.json_tags_column(columns)
    if tags is not None:
        check = Field("tags", tags, "text", columns[tags], wanted=tags)
        out.append((check, bad_json_tags_sql(tags), "is not a JSON object of tags"))
    return out


def diagnose(
    con: duckdb.DuckDBPyConnection,
    src: SourceFile,
    flavour: ModuleType,
    columns: dict[str, str],
    period: str | None = None,
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
    for order, (f, predicate, problem) in enumerate(_checks(flavour, columns, period)):
        hit = con.execute(
            f"SELECT _row, {f.raw()} FROM {RAW} WHERE {predicate} ORDER BY _row LIMIT 1"
        ).fetchone()
        if hit is not None:
            value = "" if hit[1] is None else f"{hit[1]!r} "
            message = f"{value}{problem}; fix the export or remove the row, then ingest the delivery again"
            found.append(
                (
                    int(hit[0]),
                    order,
                    GpulensError(message, path=src.name, row=int(hit[0]), field=f.source or f.wanted),
                )
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
