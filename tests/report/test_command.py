"""`gpulens report weekly` flags and environment: the week, SMTP settings, one-line errors."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

import pytest

from gpulens.attribution.report.model import IsoWeek
from gpulens.cli import main
from gpulens.commands.report import smtp_config
from gpulens.errors import GpulensError


def _args(**flags: object) -> argparse.Namespace:
    base = {"smtp_host": None, "smtp_port": None, "smtp_tls": None, "smtp_from": None, "smtp_to": None}
    return argparse.Namespace(**{**base, **flags})


@pytest.mark.parametrize(
    ("text", "start", "previous"),
    [
        ("2026-W47", datetime(2026, 11, 16), "2026-W46"),
        ("2026-W01", datetime(2025, 12, 29), "2025-W52"),  # ISO week 1 starts in the previous year
        ("2020-W53", datetime(2020, 12, 28), "2020-W52"),
    ],
)
def test_iso_weeks(text: str, start: datetime, previous: str) -> None:
    week = IsoWeek.parse(text)
    assert (week.start, (week.end - week.start).days, week.previous().label) == (start, 7, previous)


@pytest.mark.parametrize("bad", ["2026-47", "2026-W54", "2025-W53", "W47"])
def test_bad_week_is_one_line_exit_1(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "weekly", "--week", bad, "--out", "x"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("gpulens report: error: --week") and "\n" not in err


def test_smtp_from_environment_with_flags_winning() -> None:
    env = {
        "GPULENS_SMTP_HOST": "mail.internal",
        "GPULENS_SMTP_TLS": "ssl",
        "GPULENS_SMTP_FROM": "a@x.org",
        "GPULENS_SMTP_TO": "b@x.org, c@x.org",
        "GPULENS_SMTP_USER": "u",
        "GPULENS_SMTP_PASSWORD": "pw",
    }
    cfg = smtp_config(_args(smtp_to="d@x.org"), env)
    assert cfg is not None
    assert (cfg.host, cfg.port, cfg.tls, cfg.sender, cfg.recipients) == (
        "mail.internal",
        465,
        "ssl",
        "a@x.org",
        ("d@x.org",),
    )
    assert (cfg.user, cfg.password) == ("u", "pw") and "pw" not in repr(cfg)
    assert smtp_config(_args(), {}) is None


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({"smtp_to": "b@x.org"}, {}, "without --smtp-host"),
        ({"smtp_host": "h"}, {"GPULENS_SMTP_TO": "b@x.org"}, "needs a sender and recipients"),
        ({"smtp_host": "h"}, {"GPULENS_SMTP_TLS": "tls"}, "GPULENS_SMTP_TLS='tls'"),
        ({"smtp_host": "h"}, {"GPULENS_SMTP_PORT": "smtp"}, "not a port number"),
    ],
)
def test_bad_smtp_settings(flags: dict[str, str], env: dict[str, str], message: str) -> None:
    with pytest.raises(GpulensError, match=message):
        smtp_config(_args(**flags), env)


def test_missing_warehouse_is_an_error_not_an_empty_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.duckdb"
    assert (
        main(
            [
                "report",
                "weekly",
                "--week",
                "2026-W47",
                "--out",
                str(tmp_path / "out"),
                "--warehouse",
                str(missing),
            ]
        )
        == 1
    )
    assert f"{missing}: no warehouse here" in capsys.readouterr().err
    assert not missing.exists() and not (tmp_path / "out").exists()
