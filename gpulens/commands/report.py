"""`gpulens report weekly`: the weekly finance report (issue 7), written to a folder or S3 and mailed.

Flags win over `GPULENS_SMTP_*` variables; the SMTP user and password come only from the environment
(`GPULENS_SMTP_USER`, `GPULENS_SMTP_PASSWORD`) so that they never sit in a shell history or `ps`.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from gpulens.commands._options import add_warehouse_option, warehouse_path
from gpulens.errors import GpulensError
from gpulens.metrics import SM_THRESHOLD_DEFAULT

if TYPE_CHECKING:
    from gpulens.attribution.report.mail import SmtpConfig
    from gpulens.attribution.report.model import WeeklyReport

log = logging.getLogger(__name__)
TLS_MODES = ("starttls", "ssl", "none")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="finance reports from the warehouse")
    kinds = parser.add_subparsers(dest="report_kind", metavar="KIND", required=True)
    weekly = kinds.add_parser(
        "weekly",
        help="the weekly GPU spend report: report.html, .pdf, .csv, .xlsx",
        description="Allocate one ISO week (Monday 00:00 UTC to Monday) and its previous week, and write "
        "report.html, report.pdf, report.csv and report.xlsx to a folder or s3://bucket/prefix; "
        "optionally mail them. SMTP settings: flags, else GPULENS_SMTP_HOST, _PORT, _TLS, _FROM, "
        "_TO; login from GPULENS_SMTP_USER and GPULENS_SMTP_PASSWORD.",
    )
    weekly.add_argument("--week", required=True, metavar="YYYY-Www", help="ISO week, e.g. 2026-W47")
    weekly.add_argument("--out", required=True, metavar="DIR|s3://bucket/prefix", help="where the files go")
    add_warehouse_option(weekly)
    weekly.add_argument("--endpoint-url", metavar="URL", help="S3-compatible endpoint for an s3:// --out")
    weekly.add_argument(
        "--tag-key", default="team", help="cost allocation tag naming the team (default team)"
    )
    weekly.add_argument(
        "--cluster-tag-key", default="cluster", help="tag naming the cluster (default cluster)"
    )
    weekly.add_argument(
        "--idle",
        choices=("separate", "share"),
        default="separate",
        help="keep idle GPU time apart (default) or share it over the instance's teams",
    )
    weekly.add_argument(
        "--cost",
        choices=("amortized", "billed"),
        default="amortized",
        help="amortized (default) or billed cost",
    )
    weekly.add_argument(
        "--sm-threshold",
        type=float,
        default=SM_THRESHOLD_DEFAULT,
        help=f"SM activity below which a held GPU is underutilized (default {SM_THRESHOLD_DEFAULT})",
    )
    weekly.add_argument("--top", type=int, default=20, help="underutilized GPUs to list (default 20)")
    weekly.add_argument(
        "--allow-empty",
        action="store_true",
        help="write (and mail) the report even for a week without any CUR usage line or GPU usage rollup; "
        "without it such a week is refused (exit 1)",
    )
    smtp = weekly.add_argument_group("email (optional; sent when a host and recipients are given)")
    smtp.add_argument("--smtp-host", metavar="H")
    smtp.add_argument(
        "--smtp-port", type=int, metavar="P", help="default 587, 465 with --smtp-tls ssl, 25 with none"
    )
    smtp.add_argument("--smtp-tls", choices=TLS_MODES, help="default starttls")
    smtp.add_argument("--smtp-from", metavar="A", help="sender address")
    smtp.add_argument("--smtp-to", metavar="A,B", help="recipients, comma-separated")
    weekly.set_defaults(handler=run_weekly)


def run_weekly(args: argparse.Namespace) -> int:
    # Imported here: the CLI imports every command module to build its parser.
    from gpulens.attribution.report.model import IsoWeek, ReportOptions

    week = IsoWeek.parse(args.week)  # usage errors first, before any work
    smtp = smtp_config(args, os.environ)

    from gpulens.attribution.report.build import build_weekly_report
    from gpulens.attribution.report.deliver import split_s3_url
    from gpulens.attribution.report.render import render_all
    from gpulens.attribution.warehouse import Warehouse

    if args.out.startswith("s3://"):
        split_s3_url(args.out)  # a malformed URL fails before the week is computed
    path = warehouse_path(args)
    if not path.exists():
        raise GpulensError(
            "no warehouse here; load data with `gpulens ingest cur/usage` or pass --warehouse", path=path
        )
    if not 0 <= args.sm_threshold <= 1:
        raise GpulensError(f"--sm-threshold {args.sm_threshold} must be between 0 and 1")
    options = ReportOptions(
        tag_key=args.tag_key,
        cluster_tag_key=args.cluster_tag_key,
        idle=args.idle,
        basis=args.cost,
        sm_threshold=args.sm_threshold,
        top=args.top,
    )
    with Warehouse(path).connect(read_only=True) as con:
        report = build_weekly_report(con, week, options)
    if report.is_empty and not args.allow_empty:
        raise GpulensError(_empty_week(report))
    files = render_all(report)
    for target in _deliver(files, args):
        print(target)
    if report.incomplete_reasons:
        log.warning("week %s is incomplete: %s", week.label, "; ".join(report.incomplete_reasons))
    if smtp is not None:
        from gpulens.attribution.report.mail import build_message, send_email

        state = " (no data)" if report.is_empty else " (incomplete)" if report.incomplete_reasons else ""
        subject = f"GPU spend, week {week.label}{state}"
        msg = build_message(
            subject,
            files["report.html"].decode("utf-8"),
            files,
            sender=smtp.sender,
            recipients=smtp.recipients,
        )
        send_email(smtp, msg)
        print(f"mailed to {', '.join(smtp.recipients)} via {smtp.host}:{smtp.port}")
    return 0


def _empty_week(report: WeeklyReport) -> str:
    """One line: the week has no data, what the warehouse does hold, and how to report anyway."""
    f = report.freshness
    held = [
        f"CUR usage up to {f.newest_cur_usage_end:%Y-%m-%d %H:%M}"
        if f.newest_cur_usage_end
        else "no CUR usage",
        f"GPU usage up to {f.newest_usage_hour:%Y-%m-%d %H:00}" if f.newest_usage_hour else "no GPU usage",
    ]
    return (
        f"week {report.week.label} ({report.week.start:%Y-%m-%d} to {report.week.end:%Y-%m-%d}) has no "
        f"CUR usage line and no GPU usage rollup; the warehouse holds {' and '.join(held)} (UTC). "
        "Pass --allow-empty to write the report anyway"
    )


def _deliver(files: dict[str, bytes], args: argparse.Namespace) -> list[str]:
    from gpulens.attribution.report.deliver import deliver_local, deliver_s3

    if args.out.startswith("s3://"):
        return list(deliver_s3(files, args.out, endpoint_url=args.endpoint_url))
    return [str(p) for p in deliver_local(files, Path(args.out))]


def smtp_config(args: argparse.Namespace, env: Mapping[str, str]) -> SmtpConfig | None:
    """The SMTP settings from flags, else `GPULENS_SMTP_*`; `None` when no host is configured."""
    from gpulens.attribution.report.mail import SmtpConfig

    host = args.smtp_host or env.get("GPULENS_SMTP_HOST")
    if not host:
        if args.smtp_to or args.smtp_from:
            raise GpulensError("--smtp-to/--smtp-from given without --smtp-host (or GPULENS_SMTP_HOST)")
        return None
    tls = args.smtp_tls or env.get("GPULENS_SMTP_TLS") or "starttls"
    if tls not in TLS_MODES:
        raise GpulensError(f"GPULENS_SMTP_TLS={tls!r}: use one of {', '.join(TLS_MODES)}")
    port_text = args.smtp_port or env.get("GPULENS_SMTP_PORT") or {"ssl": 465, "none": 25}.get(tls, 587)
    try:
        port = int(port_text)
    except ValueError:
        raise GpulensError(f"GPULENS_SMTP_PORT={port_text!r} is not a port number") from None
    sender = args.smtp_from or env.get("GPULENS_SMTP_FROM")
    recipients = tuple(
        a.strip() for a in (args.smtp_to or env.get("GPULENS_SMTP_TO") or "").split(",") if a.strip()
    )
    if not sender or not recipients:
        raise GpulensError(
            "email needs a sender and recipients: --smtp-from and --smtp-to "
            "(or GPULENS_SMTP_FROM and GPULENS_SMTP_TO)"
        )
    return SmtpConfig(
        host=host,
        port=port,
        sender=sender,
        recipients=recipients,
        tls=tls,  # type: ignore[arg-type]
        user=env.get("GPULENS_SMTP_USER") or None,
        password=env.get("GPULENS_SMTP_PASSWORD") or None,
    )
