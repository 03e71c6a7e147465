"""`gpulens dashboards build --out DIR` / `gpulens dashboards push --url URL (--token T | --user U --password
P)`.

The token may come from `$GRAFANA_TOKEN` and the password from `$GRAFANA_PASSWORD`, so that neither
needs to appear on a command line (visible to every user in `ps`).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from gpulens.errors import GpulensError

if TYPE_CHECKING:
    from gpulens.dashboards.grafana.push import GrafanaTarget


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("dashboards", help="Grafana dashboards as JSON, or pushed to Grafana")
    sub = parser.add_subparsers(dest="dashboards_command", metavar="ACTION", required=True)

    build = sub.add_parser("build", help="write the dashboards' JSON into a directory")
    build.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory to write into")
    build.set_defaults(handler=run_build)

    up = sub.add_parser("push", help="create or update the dashboards through Grafana's HTTP API")
    up.add_argument("--url", required=True, help="Grafana base URL, e.g. http://127.0.0.1:3000")
    auth = up.add_mutually_exclusive_group()
    auth.add_argument("--token", help="service-account token (default: $GRAFANA_TOKEN)")
    auth.add_argument("--user", help="basic-auth user (with --password or $GRAFANA_PASSWORD)")
    up.add_argument("--password", help="basic-auth password (default: $GRAFANA_PASSWORD)")
    up.add_argument("--folder", default="gpulens", metavar="NAME", help="folder title (default: %(default)s)")
    up.add_argument(
        "--datasource-uid",
        metavar="UID",
        help="Prometheus data source the dashboards query "
        "(default: Grafana's default Prometheus data source)",
    )
    up.add_argument(
        "--timeout", type=float, default=10.0, metavar="SECONDS", help="per request (default: 10)"
    )
    up.set_defaults(handler=run_push)


def run_build(args: argparse.Namespace) -> int:
    # Imported here: the CLI imports every command module to build its parser, and the Grafana
    # client (niquests) alone costs a third of a second on every `gpulens` invocation.
    from gpulens.dashboards.grafana.build import write

    for path in write(args.out):
        print(path)
    return 0


def target_from(args: argparse.Namespace) -> GrafanaTarget:
    """Flags, then $GRAFANA_TOKEN / $GRAFANA_PASSWORD; exactly one way to authenticate."""
    from gpulens.dashboards.grafana.push import GrafanaTarget

    token = args.token or (None if args.user else os.environ.get("GRAFANA_TOKEN"))
    password = args.password or os.environ.get("GRAFANA_PASSWORD")
    if args.user and not password:
        raise GpulensError("--user needs --password (or $GRAFANA_PASSWORD)", field="--password")
    if not args.user and not token:
        raise GpulensError("give --token (or $GRAFANA_TOKEN), or --user and --password", field="--token")
    return GrafanaTarget(
        url=args.url,
        token=token,
        user=args.user,
        password=password if args.user else None,
        folder=args.folder,
        datasource_uid=args.datasource_uid,
        timeout=args.timeout,
    )


def run_push(args: argparse.Namespace) -> int:
    from gpulens.dashboards.grafana.build import dashboards
    from gpulens.dashboards.grafana.push import push

    for pushed in push(target_from(args), dashboards()):
        print(f"{pushed.status:9} {pushed.uid}  {pushed.title}")
    return 0
