"""`gpulens ingest cur|usage|runs`: load billing exports, GPU usage rollups and training runs into
the warehouse (docs/design.md §2, §5)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gpulens.commands._options import add_warehouse_option, warehouse_path
from gpulens.commands._warehouse import open_warehouse
from gpulens.commands.flags import utc_time
from gpulens.errors import GpulensError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("ingest", help="load CUR/FOCUS exports, GPU usage or training runs")
    sub = parser.add_subparsers(
        dest="ingest_command", metavar="WHAT", required=True, parser_class=_IntermixedParser
    )

    cur = sub.add_parser(
        "cur",
        help="load a CUR 2.0, legacy CUR or FOCUS delivery",
        description="Load one delivery: files, directories (manifests honoured) or s3://bucket/prefix. The "
        "delivery replaces every line already held for its billing periods and payer accounts, "
        "in one transaction; any bad file changes nothing. A delivery that would count money twice (two "
        "exports or two executions of one export for a period), a part whose manifest lists others, and "
        "a delivery older than the one held are refused, naming the files or periods.",
    )
    cur.add_argument("paths", nargs="+", metavar="PATH", help="file, directory or s3://bucket/prefix")
    cur.add_argument(
        "--format",
        choices=("cur2", "legacy", "focus"),
        default=None,
        help="the export flavour (default: detected from the columns); where a prefix holds two exports "
        "of a period (CUR 2.0 and FOCUS), read only this one's files",
    )
    cur.add_argument(
        "--force",
        action="store_true",
        help="load a delivery older than the one already held for its period and payer",
    )
    cur.add_argument(
        "--endpoint-url",
        default=None,
        metavar="URL",
        help="S3-compatible endpoint (default: $AWS_ENDPOINT_URL, else AWS)",
    )
    add_warehouse_option(cur)
    cur.set_defaults(handler=_cur)

    usage = sub.add_parser("usage", help="load hourly GPU usage rollups from files or Prometheus")
    usage.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="CSV or Parquet rollup files")
    usage.add_argument("--prometheus", metavar="URL", help="read the agent's metrics from this Prometheus")
    usage.add_argument("--start", type=utc_time, metavar="T", help="first hour (ISO 8601, UTC unless stated)")
    usage.add_argument("--end", type=utc_time, metavar="T", help="end of the last hour (exclusive)")
    add_warehouse_option(usage)
    usage.set_defaults(handler=_usage)

    runs = sub.add_parser("runs", help="load training-run metrics and scan their loss curves")
    runs.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="loss logs in any format `runs check` reads"
    )
    add_warehouse_option(runs)
    runs.set_defaults(handler=_runs)


class _IntermixedParser(argparse.ArgumentParser):
    """Options anywhere among the PATHs (docs/design.md §2: `ingest cur a.csv --warehouse W b.csv`): plain
    argparse stops filling a positional at the first option and rejects the PATHs after it."""

    _mixing = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._mixing:  # Python < 3.12's intermixed parsing calls back into parse_known_args
            return super().parse_known_args(args, namespace)
        self._mixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._mixing = False


def _cur(args: argparse.Namespace) -> int:
    from gpulens.attribution.ingest.delivery import ingest_cur
    from gpulens.attribution.ingest.sources import resolve, s3_client

    client = None
    if any(p.startswith("s3://") for p in args.paths):
        client = s3_client(args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    with resolve(args.paths, s3_client=client) as files:
        if not files:
            raise GpulensError(
                "no CUR or FOCUS export files (.csv, .csv.gz, .csv.zip, .parquet, or a *Manifest.json "
                "listing them) found here; give the directory or s3:// prefix that holds the delivery",
                path=", ".join(args.paths),
            )
        with _created_only_on_success(args), open_warehouse(args, read_only=False, create=True) as con:
            with _progress(len(files)) as advance:
                result = ingest_cur(con, files, fmt=args.format, now=now, on_file=advance, force=args.force)
    if result.skipped:
        print(f"skipped {len(result.skipped)} file(s) of another export than --format {args.format}")
    periods = ", ".join(f"{p} (payer {a})" for p, a in result.periods)
    print(
        f"ingested {result.line_items} {result.format} line items from {len(result.files)} file(s) "
        f"for {periods}; replaced {result.replaced} earlier line items"
    )
    return 0


@contextmanager
def _created_only_on_success(args: argparse.Namespace) -> Iterator[None]:
    """A refused first delivery leaves no empty warehouse behind: nothing refused changes anything."""
    path = Path(warehouse_path(args))
    existed = path.exists()
    try:
        yield
    except BaseException:
        if not existed:
            for leftover in (path, path.with_name(path.name + ".wal")):
                leftover.unlink(missing_ok=True)
        raise


class _progress:
    """A rich progress bar on stderr, one step per file, only when stderr is a terminal."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.bar: Any = None

    def __enter__(self) -> Any:
        if not sys.stderr.isatty():
            return lambda _src: None
        from rich.console import Console
        from rich.progress import Progress

        self.bar = Progress(transient=True, console=Console(stderr=True))
        self.bar.start()
        task = self.bar.add_task("ingesting", total=self.total)

        def advance(src: Any) -> None:
            self.bar.update(task, advance=1, description=str(src.name)[-60:])

        return advance

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def _usage(args: argparse.Namespace) -> int:
    from gpulens.attribution.ingest.usage import ingest_usage_files, ingest_usage_rows, usage_from_prometheus

    if bool(args.paths) == bool(args.prometheus):
        raise GpulensError("give rollup files or --prometheus URL --start T --end T (one of the two)")
    with open_warehouse(args, read_only=False, create=True) as con:
        if args.prometheus:
            if args.start is None or args.end is None or args.end <= args.start:
                raise GpulensError("--prometheus needs --start T and a later --end T")
            count = ingest_usage_rows(con, usage_from_prometheus(args.prometheus, args.start, args.end))
        else:
            count = ingest_usage_files(con, args.paths)
    print(f"ingested {count} hourly GPU usage rows")
    return 0


def _runs(args: argparse.Namespace) -> int:
    from gpulens.attribution.ingest.runs import ingest_runs
    from gpulens.trainer.health import scan

    with open_warehouse(args, read_only=False, create=True) as con:
        result = ingest_runs(con, args.paths, detect=scan)
    redone = f" ({result.redone} redone by a later attempt)" if result.redone else ""
    print(
        f"ingested {result.metrics} steps{redone} of {len(result.jobs)} run(s), "
        f"{result.attempts} attempt(s), {result.phases} phases; {result.anomalies} anomalies"
    )
    return 0
