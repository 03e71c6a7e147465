"""What a GPU-second costs, per instance type and team, from the warehouse: the input that lets live
Grafana panels show money (held seconds x price), in the spirit of OpenCost's `node_gpu_hourly_cost`.

Two kinds of price, both from one billing period and one cost basis (docs/design.md §6):
- per (instance type, team): the money `gpulens attribute` allocated to the team on instances of that
  type (direct and shared GPU time) over the GPU-seconds the team held there. This is what the team
  really paid per held GPU-second, Savings Plan and RI discounts included, and idle time on its own
  tagged instances included.
- per instance type, `team=""`: the instance usage cost of that type (on-demand, Savings Plan
  covered and reserved lines) over its GPU capacity (instance-hours x GPUs per instance). It prices
  GPU time of teams or jobs that have no price of their own yet (a new team, an unmapped GPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import duckdb

from gpulens.attribution.instances import GPUS_PER_INSTANCE
from gpulens.attribution.model import Basis
from gpulens.errors import GpulensError

USAGE_TYPES = ("Usage", "SavingsPlanCoveredUsage", "DiscountedUsage")


@dataclass(frozen=True)
class GpuPrice:
    instance_type: str
    team: str  # "" for the instance type's own price
    currency: str
    per_gpu_second: Decimal


def gpu_prices(
    con: duckdb.DuckDBPyConnection, period: str, basis: Basis = "amortized"
) -> tuple[GpuPrice, ...]:
    """Prices of `period` (YYYY-MM) on `basis`; the period must have been allocated on that basis."""
    held = con.execute(
        "SELECT count(*) FROM allocations WHERE period = ? AND basis = ?", [period, basis]
    ).fetchone()
    if not held or not held[0]:
        raise GpulensError(
            f"no {basis} allocation for {period}: run `gpulens attribute --period {period} --cost {basis}`",
            field="period",
        )
    return _type_prices(con, period, basis) + _team_prices(con, period, basis)


def _team_prices(con: duckdb.DuckDBPyConnection, period: str, basis: str) -> tuple[GpuPrice, ...]:
    rows = con.execute(
        """
        WITH types AS (
            SELECT resource_id, any_value(regexp_replace(instance_type, '^ml\\.', '')) AS instance_type
            FROM cost_line_items WHERE coalesce(instance_type, '') <> '' GROUP BY resource_id),
        a AS (
            SELECT t.instance_type, a.team, a.currency, sum(a.cost) AS cost,
                   sum(a.gpu_seconds) AS gpu_seconds
            FROM allocations a JOIN types t USING (resource_id)
            WHERE a.period = ? AND a.basis = ? AND a.team IS NOT NULL
              AND a.category IN ('direct', 'shared_gpu')
            GROUP BY ALL)
        SELECT instance_type, team, currency, cost, gpu_seconds FROM a
        WHERE gpu_seconds > 0 AND list_contains(?::VARCHAR[], instance_type) ORDER BY 1, 2""",
        [period, basis, list(GPUS_PER_INSTANCE)],
    ).fetchall()
    return tuple(
        GpuPrice(itype, team, currency, Decimal(cost) / Decimal(str(seconds)))
        for itype, team, currency, cost, seconds in rows
    )


def _type_prices(con: duckdb.DuckDBPyConnection, period: str, basis: str) -> tuple[GpuPrice, ...]:
    cost = "amortized_cost" if basis == "amortized" else "unblended_cost"
    rows = con.execute(
        f"""
        SELECT regexp_replace(instance_type, '^ml\\.', '') AS itype, currency, sum({cost}),
               sum(usage_amount)
        FROM cost_line_items
        WHERE billing_period = ? AND list_contains(?::VARCHAR[], line_item_type) AND usage_amount > 0
        GROUP BY itype, currency HAVING list_contains(?::VARCHAR[], itype) ORDER BY 1, 2""",
        [period, list(USAGE_TYPES), list(GPUS_PER_INSTANCE)],
    ).fetchall()
    return tuple(
        GpuPrice(
            itype, "", currency, Decimal(total) / (Decimal(str(hours)) * 3600 * GPUS_PER_INSTANCE[itype])
        )
        for itype, currency, total, hours in rows
        if total is not None and Decimal(total) > 0
    )
