"""CUR 2.0 (AWS Data Exports): snake_case columns, tags in the `resource_tags` map (Parquet) or as a
JSON string (CSV). The Athena flavour of legacy CUR shares these names but flattens tags into one
`resource_tags_<key>` column per key; both are read here.
"""

from __future__ import annotations

from gpulens.attribution.amortize import CUR_AMORTIZATION_INPUTS, CUR_AMORTIZED
from gpulens.attribution.ingest.fields import Field, field, literal, quote

NAME = "cur2"
# Without these a line cannot be placed in time, money or a delivery (docs/design.md §5).
REQUIRED = (
    "bill_payer_account_id",
    "line_item_line_item_type",
    "line_item_usage_start_date",
    "line_item_usage_end_date",
    "line_item_unblended_cost",
    "line_item_currency_code",
)
INSTANCE_TYPE_SQL = "instance_type"
AMORTIZED = CUR_AMORTIZED
_ALL = ("*",)


def detect(columns: dict[str, str]) -> bool:
    return "line_item_unblended_cost" in columns


def missing(columns: dict[str, str]) -> list[str]:
    """The required columns the file lacks."""
    return [c for c in REQUIRED if c not in columns]


def fields(columns: dict[str, str]) -> list[Field]:
    """The normalized columns, read from CUR 2.0 names (legacy headers are renamed to these first)."""
    c = columns
    out = [
        field(c, "billing_period_start", "bill_billing_period_start_date", "timestamp"),
        field(c, "payer_account_id", "bill_payer_account_id", "text", _ALL),
        field(c, "usage_start", "line_item_usage_start_date", "timestamp", _ALL),
        field(c, "usage_end", "line_item_usage_end_date", "timestamp", _ALL),
        field(c, "account_id", "line_item_usage_account_id", "text"),
        field(c, "line_item_type", "line_item_line_item_type", "text", _ALL),
        field(c, "product_code", "line_item_product_code", "text"),
        field(c, "usage_type", "line_item_usage_type", "text"),
        field(c, "resource_id", "line_item_resource_id", "text"),
        field(c, "instance_type", "product_instance_type", "text"),
        field(c, "usage_amount", "line_item_usage_amount", "number"),
        field(c, "unblended_cost", "line_item_unblended_cost", "money", _ALL),
        field(c, "currency", "line_item_currency_code", "text", _ALL),
        field(c, "reservation_reservation_a_r_n", "reservation_reservation_a_r_n", "text"),
        # Added by the export's INCLUDE CAPACITY RESERVATION DATA (Capacity Blocks, ODCRs).
        field(c, "capacity_reservation_arn", "capacity_reservation_capacity_reservation_arn", "text"),
        field(c, "capacity_reservation_status", "capacity_reservation_capacity_reservation_status", "text"),
    ]
    out += [field(c, name, name, "money", types) for name, types in CUR_AMORTIZATION_INPUTS.items()]
    return out


def tags_sql(columns: dict[str, str]) -> str:
    """The line's tags as MAP(VARCHAR, VARCHAR), keys as delivered."""
    kind = columns.get("resource_tags")
    if kind is not None and kind.startswith("MAP"):
        return "CAST(resource_tags AS MAP(VARCHAR, VARCHAR))"
    if kind is not None:
        return json_tags_sql("resource_tags")
    flat = {
        name.removeprefix("resource_tags_"): name for name in columns if name.startswith("resource_tags_")
    }
    return flat_tags_sql(flat)


def json_tags_column(columns: dict[str, str]) -> str | None:
    """The column holding tags as a JSON string, if this file has one (checked row by row on error)."""
    kind = columns.get("resource_tags")
    return "resource_tags" if kind is not None and not kind.startswith("MAP") else None


def json_tags_sql(column: str) -> str:
    """Tags from a JSON object string; anything else fails the load (and is then named by row)."""
    return f"CAST(CAST({_cell(column)} AS JSON) AS MAP(VARCHAR, VARCHAR))"


def _cell(column: str) -> str:
    """The trimmed cell; empty, `NULL` and `null` (Parquet strings keep them as text) are null."""
    return f"CASE WHEN upper(trim({quote(column)})) IN ('', 'NULL') THEN NULL ELSE trim({quote(column)}) END"


def bad_json_tags_sql(column: str) -> str:
    """True on a cell that is not a JSON object of tags."""
    cell = _cell(column)
    return f"{cell} IS NOT NULL AND TRY_CAST(TRY_CAST({cell} AS JSON) AS MAP(VARCHAR, VARCHAR)) IS NULL"


def flat_tags_sql(flat: dict[str, str]) -> str:
    """Tags spread over one column per key (legacy `resourceTags/user:team`, Athena
    `resource_tags_user_team`)."""
    if not flat:
        return "CAST(NULL AS MAP(VARCHAR, VARCHAR))"
    entries = ", ".join(
        f"struct_pack(key := {literal(key)}, value := NULLIF(CAST({quote(col)} AS VARCHAR), ''))"
        for key, col in flat.items()
    )
    return f"map_from_entries(list_filter([{entries}], lambda e: e.value IS NOT NULL))"
