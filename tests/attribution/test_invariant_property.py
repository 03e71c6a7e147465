"""Property: for any fleet, bill and window, teams + idle + unallocated = total exactly, idle is never
negative when every cost is, and the daily rows add up to the allocation. Plus the CLI's answer when
the invariant breaks (a fault injected into one step)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpulens.attribution import allocate as alloc
from gpulens.attribution.model import TeamCost
from gpulens.attribution.warehouse import prepare, schema_sql

from .conftest import LEDGER_FILES, USAGE

T0 = datetime(2026, 10, 1)
TEAMS = st.sampled_from([None, "a", " A ", "b", "c"])
TAGS = st.sampled_from(
    [{}, {"user_team": "a"}, {"team": "B"}, {"user:cluster": "k1"}, {"user_cluster": "k2"}]
)
INSTANCES = ["i-0", "i-1", "i-2", "fs-0", None]
TYPES = st.sampled_from(["p4d.24xlarge", "g5.xlarge", "x9.unknown", None])

line = st.tuples(
    st.sampled_from(INSTANCES),
    TYPES,
    st.integers(0, 47),
    st.integers(0, 30),  # start hour, length in hours
    st.decimals(Decimal("0"), Decimal("500"), places=4),
    TAGS,
)
usage = st.tuples(
    st.sampled_from(INSTANCES[:3]),
    st.integers(0, 7),
    st.integers(0, 47),
    TEAMS,
    st.integers(0, 3600),
    st.one_of(st.none(), st.floats(0, 1)),
    st.sampled_from([None, "k1", "k2"]),
)


def _warehouse(lines: list[tuple], rows: list[tuple]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    prepare(con)
    con.execute(schema_sql())
    for resource, itype, start, hours, cost, tags in lines:
        begin = T0 + timedelta(hours=start)
        con.execute(
            "INSERT INTO cost_line_items VALUES ('2026-10', 'p', ?, ?, 'a', 'Usage', 'AmazonEC2', NULL, "
            "?, ?, 1, ?, ?, "
            "'USD', ?::MAP(VARCHAR, VARCHAR), 'test', ?, NULL, NULL)",
            [begin, begin + timedelta(hours=hours), resource, itype, cost, cost, tags, T0],
        )
    for instance, gpu, hour, team, seconds, sm, cluster in rows:
        con.execute(
            "INSERT INTO gpu_usage_hourly VALUES (?, 'n', ?, ?, ?, NULL, 'm', 'j', ?, ?, ?, NULL)",
            [T0 + timedelta(hours=hour), instance, cluster, gpu, team, float(seconds), sm],
        )
    return con


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(line, min_size=1, max_size=12),  # an empty period is refused (tested apart)
    rows=st.lists(usage, max_size=25),
    idle=st.sampled_from(["separate", "share"]),
    window=st.tuples(st.integers(0, 40), st.integers(1, 60)),
)
def test_the_invariant_holds_for_any_fleet(
    lines: list[tuple], rows: list[tuple], idle: str, window: tuple[int, int]
) -> None:
    con = _warehouse(lines, rows)
    start = T0 + timedelta(hours=window[0])
    end = start + timedelta(hours=window[1])
    period = alloc.allocate_period(con, "2026-10", idle=idle)  # __post_init__ checks the invariant
    assert period.total == sum((c for *_, c, _ in lines), Decimal(0))
    assert period.idle >= 0
    part = alloc.allocate(con, start, end, idle=idle)
    daily = alloc.daily_allocations(con, start, end, idle=idle)
    assert sum((r.cost for r in daily), Decimal(0)) == part.total
    parts = sum((t.total for t in part.teams), Decimal(0)) + part.idle + part.unallocated
    assert parts == part.total  # exactly, not only to the cent


def test_attribute_exits_1_when_the_books_do_not_balance(
    gpulens: Callable[..., int], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert gpulens("ingest", "cur", LEDGER_FILES["cur2-csv"]) == 0
    assert gpulens("ingest", "usage", USAGE) == 0
    real = alloc.team_costs

    def one_cent_too_many(
        con: duckdb.DuckDBPyConnection, rows: str, usage_table: str
    ) -> tuple[TeamCost, ...]:
        teams = real(con, rows, usage_table)
        first = teams[0]
        bumped = TeamCost(
            first.team, first.direct + Decimal("0.01"), first.shared, first.gpu_hours, first.waste
        )
        return (bumped, *teams[1:])

    monkeypatch.setattr(alloc, "team_costs", one_cent_too_many)
    capsys.readouterr()
    assert gpulens("attribute", "--period", "2026-10") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not reconcile" in err[0] and "85.96" in err[0]
