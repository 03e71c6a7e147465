"""`gpulens rules build --out DIR`: write the Prometheus recording and alerting rules (docs/design.md §2)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gpulens.dashboards.rules.alerts import DEFAULT_RUNBOOK_BASE, AlertOptions
from gpulens.dashboards.rules.build import write
from gpulens.errors import GpulensError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("rules", help="Prometheus recording and alerting rules")
    sub = parser.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    build = sub.add_parser("build", help="write gpulens-rules.yaml into a directory")
    build.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory to write into")
    build.add_argument(
        "--runbook-base-url",
        default=DEFAULT_RUNBOOK_BASE,
        metavar="URL",
        help="where docs/runbooks.md is published (alerts link to its headings)",
    )
    build.add_argument(
        "--agent-job",
        default=AlertOptions.agent_job,
        metavar="REGEX",
        help="Prometheus scrape job(s) of the agent, for AgentDown (default: %(default)s)",
    )
    build.add_argument(
        "--sm-threshold",
        type=float,
        default=AlertOptions.sm_threshold,
        metavar="RATIO",
        help="GpuUnderutilized threshold on mean SM activity (default: %(default)s)",
    )
    build.set_defaults(handler=run_build)


def run_build(args: argparse.Namespace) -> int:
    if not 0 < args.sm_threshold <= 1:
        raise GpulensError(f"{args.sm_threshold} is not a ratio in (0, 1]", field="--sm-threshold")
    options = AlertOptions(
        runbook_base=args.runbook_base_url, agent_job=args.agent_job, sm_threshold=args.sm_threshold
    )
    print(write(args.out, options))
    return 0
