"""Legacy CUR (CUR 1.0): `lineItem/UnblendedCost` headers and `resourceTags/user:team` columns.

The headers are renamed to CUR 2.0 names the way AWS's own Athena integration does
(`savingsPlan/SavingsPlanEffectiveCost` -> `savings_plan_savings_plan_effective_cost`,
`reservation/ReservationARN` -> `reservation_reservation_a_r_n`), then read as CUR 2.0.
"""

from __future__ import annotations

import re

from gpulens.attribution.ingest import cur2
from gpulens.attribution.ingest.fields import Field

NAME = "legacy"
TAG_PREFIX = "resourceTags/"
INSTANCE_TYPE_SQL = "instance_type"
AMORTIZED = cur2.AMORTIZED
_UPPER = re.compile(r"(?<!^)(?=[A-Z])")


def snake(header: str) -> str:
    """`lineItem/UnblendedCost` -> `line_item_unblended_cost` (each capital starts a word)."""
    category, _, name = header.partition("/")
    parts = [_UPPER.sub("_", category), _UPPER.sub("_", name)] if name else [_UPPER.sub("_", category)]
    return "_".join(parts).lower()


def detect(columns: dict[str, str]) -> bool:
    return "lineItem/UnblendedCost" in columns


def renamed(columns: dict[str, str]) -> dict[str, str]:
    """CUR 2.0 name -> original header, for every non-tag column."""
    return {snake(h): h for h in columns if not h.startswith(TAG_PREFIX)}


_LEGACY_REQUIRED = (
    "bill/PayerAccountId",
    "lineItem/LineItemType",
    "lineItem/UsageStartDate",
    "lineItem/UsageEndDate",
    "lineItem/UnblendedCost",
    "lineItem/CurrencyCode",
)


def missing(columns: dict[str, str]) -> list[str]:
    """The required headers the file lacks."""
    names = renamed(columns)
    return [h for h in _LEGACY_REQUIRED if snake(h) not in names]


# Legacy spellings of the CUR 2.0 columns that amortization and the period need, to name a column a
# file lacks in the export's own spelling.
LEGACY_HEADERS = {
    "bill_billing_period_start_date": "bill/BillingPeriodStartDate",
    "savings_plan_savings_plan_effective_cost": "savingsPlan/SavingsPlanEffectiveCost",
    "savings_plan_total_commitment_to_date": "savingsPlan/TotalCommitmentToDate",
    "savings_plan_used_commitment": "savingsPlan/UsedCommitment",
    "reservation_effective_cost": "reservation/EffectiveCost",
    "reservation_unused_amortized_upfront_fee_for_billing_period": (
        "reservation/UnusedAmortizedUpfrontFeeForBillingPeriod"
    ),
    "reservation_unused_recurring_fee": "reservation/UnusedRecurringFee",
    "reservation_reservation_a_r_n": "reservation/ReservationARN",
}


def fields(columns: dict[str, str]) -> list[Field]:
    names = renamed(columns)
    as_cur2 = {snake_name: columns[header] for snake_name, header in names.items()}
    out = []
    for f in cur2.fields(as_cur2):
        source = names[f.source] if f.source else None
        wanted = source or LEGACY_HEADERS.get(f.wanted or "", f.wanted)
        out.append(Field(f.name, source, f.kind, f.source_type, f.required_for, wanted=wanted))
    return out


# A header that differs from an earlier one only in case is read under an alias `<header>#<n>`
# (delivery.open_raw); its tag key is the header as written.
_ALIAS = re.compile(r"#\d+$")


def json_tags_column(columns: dict[str, str]) -> str | None:
    return None  # legacy CUR spreads tags over one column per key


def tags_sql(columns: dict[str, str]) -> str:
    flat = {_ALIAS.sub("", h.removeprefix(TAG_PREFIX)): h for h in columns if h.startswith(TAG_PREFIX)}
    return cur2.flat_tags_sql(flat)
