"""`gpulens remediate serve`: the Alertmanager webhook receiver (docs/design.md §2); `remediate check`:
lint a policy."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from types import FrameType

TOKEN_ENV = "GPULENS_REMEDIATE_TOKEN"
DEFAULT_AUDIT_LOG = Path("gpulens-remediation.jsonl")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "remediate", help="turn GPU and training alerts into safe, audited actions"
    )
    sub = parser.add_subparsers(dest="remediate_command", metavar="SUBCOMMAND", required=True)

    serve = sub.add_parser(
        "serve",
        help="Alertmanager webhook receiver (POST /alerts)",
        description="Receive Alertmanager webhooks and act on them by a policy. "
        f"Dry-run unless --execute. ${TOKEN_ENV}, when set, is the required bearer token; "
        "--execute refuses to start without it.",
    )
    _add_policy_option(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=9095, help="port to bind (default: 9095)")
    serve.add_argument(
        "--execute",
        action="store_true",
        help=f"run actions for real (default: dry-run); requires a non-empty ${TOKEN_ENV}",
    )
    serve.add_argument(
        "--audit-log",
        type=Path,
        default=DEFAULT_AUDIT_LOG,
        metavar="FILE",
        help=f"JSONL audit log, appended (default: ./{DEFAULT_AUDIT_LOG})",
    )
    serve.set_defaults(handler=serve_command)

    check = sub.add_parser("check", help="validate a policy file and list its rules")
    _add_policy_option(check)
    check.set_defaults(handler=check_command)


def _add_policy_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--policy",
        type=Path,
        default=None,
        metavar="FILE",
        help="policy YAML (default: the shipped default policy)",
    )


def serve_command(args: argparse.Namespace) -> int:
    from gpulens.errors import GpulensError
    from gpulens.remediation.app import RemediationConfig, build_engine
    from gpulens.remediation.server import Metrics, RemediationServer, ServerConfig

    token = (os.environ.get(TOKEN_ENV) or "").strip() or None
    if args.execute and token is None:
        # An executing receiver without a token lets anyone who can reach the port drain nodes.
        raise GpulensError(f"--execute requires a bearer token: set ${TOKEN_ENV} to a non-empty secret")
    metrics = Metrics(execute=args.execute)
    engine = build_engine(
        RemediationConfig(audit_log=args.audit_log, policy=args.policy, execute=args.execute),
        observe=metrics.observe,
    )
    if not token and args.host not in ("127.0.0.1", "::1", "localhost"):
        print(
            f"gpulens remediate: warning: listening on {args.host} without ${TOKEN_ENV}: "
            "anyone who can reach it can post alerts (dry-run only)",
            file=sys.stderr,
        )
    try:
        server = RemediationServer(engine, metrics, ServerConfig(host=args.host, port=args.port, token=token))
    except OSError as exc:
        engine.close()
        raise GpulensError(
            f"cannot listen on {args.host}:{args.port} (--host/--port): {exc.strerror}"
        ) from exc
    signal.signal(signal.SIGTERM, _interrupt)
    print(
        f"gpulens remediate: listening on http://{args.host}:{server.port}/alerts "
        f"({'EXECUTE' if args.execute else 'dry-run'}, token {'required' if token else 'not set'}, "
        f"policy {engine.policy.source} with {len(engine.policy.rules)} rules, audit log {args.audit_log})",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        engine.close()
        engine.audit.close()
    return 0


def check_command(args: argparse.Namespace) -> int:
    from gpulens.remediation.policy import load_policy

    policy = load_policy(args.policy)
    for rule in policy.rules:
        print(f"{rule.name}: {' -> '.join(step.kind for step in rule.actions)}")
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
