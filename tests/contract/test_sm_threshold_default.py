"""docs/design.md §7: one default SM threshold (0.25) behind every place that flags an underutilized GPU."""

from __future__ import annotations

import inspect

from gpulens.attribution.flags import find_flags
from gpulens.attribution.report.model import ReportOptions
from gpulens.cli import build_parser
from gpulens.dashboards.explorer.queries import UtilFilter
from gpulens.dashboards.grafana.fleet import THRESHOLD
from gpulens.dashboards.rules.alerts import AlertOptions
from gpulens.metrics import SM_THRESHOLD_DEFAULT


def test_the_default_is_the_documented_quarter() -> None:
    assert SM_THRESHOLD_DEFAULT == 0.25


def test_every_consumer_takes_the_one_default() -> None:
    parser = build_parser()
    flags = parser.parse_args(["flags"])
    report = parser.parse_args(["report", "weekly", "--week", "2026-W01", "--out", "x"])
    assert flags.sm_threshold == report.sm_threshold == SM_THRESHOLD_DEFAULT
    assert inspect.signature(find_flags).parameters["sm_threshold"].default == SM_THRESHOLD_DEFAULT
    assert ReportOptions().sm_threshold == UtilFilter().sm_threshold == SM_THRESHOLD_DEFAULT
    assert AlertOptions().sm_threshold == SM_THRESHOLD_DEFAULT
    assert THRESHOLD.default == str(SM_THRESHOLD_DEFAULT)
    assert str(SM_THRESHOLD_DEFAULT) in THRESHOLD.query.split(", ")
