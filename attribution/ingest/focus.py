"""FOCUS 1.0 and later (FinOps Open Cost and Usage Specification), CSV or Parquet.

FOCUS states the amortized cost itself (`EffectiveCost`) and the cash view (`BilledCost`); tags are
a JSON object in `Tags`. It has no instance-type column, so the EC2 instance type is taken from the
charge description (`... g5.4xlarge ...`) for the GPU-count table (docs/design.md §6).
"""

from __future__ import annotations

from gpulens.attribution.amortize import FOCUS_AMORTIZED
from gpulens.attribution.ingest.cur2 import json_tags_sql
from gpulens.attribution.ingest.fields import Field, field, quote

NAME = "focus"
REQUIRED = (
    "BillingAccountId",
    "ChargeCategory",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "BilledCost",
    "EffectiveCost",
    "BillingCurrency",
)
AMORTIZED = FOCUS_AMORTIZED
_ALL = ("*",)
# An EC2 instance type such as p4d.24xlarge, g5.xlarge, p5.48xlarge inside free text.
INSTANCE_TYPE_PATTERN = r"\b([a-z][a-z0-9-]*\.[0-9]*x?(?:large|metal|medium|small|micro|nano))\b"


def detect(columns: dict[str, str]) -> bool:
    return "BilledCost" in columns and "ChargePeriodStart" in columns


def missing(columns: dict[str, str]) -> list[str]:
    return [c for c in REQUIRED if c not in columns]


def fields(columns: dict[str, str]) -> list[Field]:
    c = columns
    described = "ChargeDescription" in c
    instance = field(c, "instance_type", "ChargeDescription" if described else "x_InstanceType", "text")
    return [
        field(c, "billing_period_start", "BillingPeriodStart", "timestamp"),
        field(c, "payer_account_id", "BillingAccountId", "text", _ALL),
        field(c, "usage_start", "ChargePeriodStart", "timestamp", _ALL),
        field(c, "usage_end", "ChargePeriodEnd", "timestamp", _ALL),
        field(c, "account_id", "SubAccountId", "text"),
        field(c, "line_item_type", "ChargeCategory", "text", _ALL),
        field(c, "product_code", "ServiceName", "text"),
        field(c, "usage_type", "SkuPriceId", "text"),
        field(c, "resource_id", "ResourceId", "text"),
        instance,
        field(c, "usage_amount", "ConsumedQuantity", "number"),
        field(c, "unblended_cost", "BilledCost", "money", _ALL),
        field(c, "effective_cost", "EffectiveCost", "money", _ALL),
        field(c, "currency", "BillingCurrency", "text", _ALL),
        field(c, "capacity_reservation_arn", "CapacityReservationId", "text"),
        field(c, "capacity_reservation_status", "CapacityReservationStatus", "text"),
    ]


# The instance type named in the description, if any.
INSTANCE_TYPE_SQL = f"NULLIF(regexp_extract(instance_type, '{INSTANCE_TYPE_PATTERN}', 1), '')"


def tags_sql(columns: dict[str, str]) -> str:
    if "Tags" not in columns:
        return "CAST(NULL AS MAP(VARCHAR, VARCHAR))"
    tags = quote("Tags")
    if columns["Tags"].startswith("MAP"):
        return f"CAST({tags} AS MAP(VARCHAR, VARCHAR))"
    return json_tags_sql("Tags")


def json_tags_column(columns: dict[str, str]) -> str | None:
    kind = columns.get("Tags")
    return "Tags" if kind is not None and not kind.startswith("MAP") else None
