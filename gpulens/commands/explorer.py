"""`gpulens explorer`: the Dash cost explorer over the warehouse (docs/design.md §2)."""

from __future__ import annotations

import argparse
import os

from gpulens.commands._options import add_warehouse_option, warehouse_path
from gpulens.errors import GpulensError

AUTH_ENV = "GPULENS_EXPLORER_AUTH"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "explorer",
        help="serve the Dash cost explorer",
        description="Serve the cost explorer (/cost, /utilization, /training) over the warehouse. "
        f"Set ${AUTH_ENV}=user:password to require HTTP basic auth (do, before --host 0.0.0.0).",
    )
    parser.add_argument("--prometheus", metavar="URL", help="Prometheus base URL for the live views")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8050, help="port (default 8050)")
    parser.add_argument(
        "--create",
        action="store_true",
        help="create an empty warehouse when there is none yet (a deployment whose first ingest has "
        "not run); without it a missing --warehouse path is refused, so a typo is not served as empty",
    )
    add_warehouse_option(parser)
    parser.set_defaults(handler=run)


def auth_from_env(value: str | None) -> tuple[str, str] | None:
    """`user:password` -> (user, password); unset or empty -> None."""
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise GpulensError(f"${AUTH_ENV} must be user:password")
    return user, password


def run(args: argparse.Namespace) -> int:
    from gpulens.dashboards.explorer.app import ExplorerConfig, ExplorerServer

    warehouse = warehouse_path(args)
    if not (args.create or warehouse.exists()):
        raise GpulensError(
            "no warehouse here; check --warehouse, load data with `gpulens ingest`, or pass --create "
            "to start on an empty one",
            path=warehouse,
        )
    config = ExplorerConfig(
        warehouse=warehouse,
        host=args.host,
        port=args.port,
        prometheus=args.prometheus,
        auth=auth_from_env(os.environ.get(AUTH_ENV)),
    )
    try:
        server = ExplorerServer(config)
    except OSError as exc:
        raise GpulensError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from exc
    print(f"gpulens explorer on {server.url}  (warehouse {config.warehouse}; Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()  # stops and waits for running queries on the way out
    except KeyboardInterrupt:
        pass
    return 0
