"""The contract ledger: one month (2026-10), payer 111111111111, USD, CUR 2.0 CSV + usage rollups.

Lines, money as billed (line_item_unblended_cost) / amortized (docs/design.md §6 table):
  L1 Usage                   i-shared p4d.24xlarge 8 GPUs 00:00-01:00  32.00 / 32.00 tag user_cluster=c1
  L2 SavingsPlanCoveredUsage i-direct g5.xlarge 1 GPU     00:00-01:00   1.50 /  1.00 tag user_team=" ML "
  L3 Usage                   bucket-search (S3)           1 day         3.00 /  3.00 tag team="Search"
  L4 Usage                   fs-1 (FSx)                   1 day        10.00 / 10.00 tag user_cluster=c1
  L5 Tax                     (no resource)                              5.00 /  5.00 no tags
  L6 Usage                   i-orphan, no usage rollups   00:00-01:00   7.00 /  7.00 no tags
  L7 SavingsPlanRecurringFee sp-1  commitment 25.00 used 20.00         25.00 /  5.00 no tags
  L8 Usage                   vol-1 (EBS)                  1 day         2.00 /  2.00 tag "user:team"="search "
  amortized total = 32 + 1 + 3 + 10 + 5 + 7 + 5 + 2 = 65.00;   billed total = 85.50

Usage rollups, hour 2026-10-01 00:00:
  i-shared (node-a, cluster c1): gpus 0-3 job j-s team " Search " 3600 s each, sm 0.5  -> search 14400 s
                                 gpu 4    job j-m team "ML"        3600 s,      sm 0.1  -> ml 3600 s
  i-direct (node-b, cluster c2): gpu 0    job j-d team "ml"        3600 s,      sm 0.2

Allocation (amortized, --idle separate):
  L1 per GPU-second 32/(8*3600): search 14400 s -> 16.00 ; ml 3600 s -> 4.00 ; idle 32-20 = 12.00
  L4 cluster c1 GPU-seconds search 14400 : ml 3600 -> search 8.00 ; ml 2.00
  search: direct 3.00 + 2.00 = 5.00   shared 16.00 + 8.00 = 24.00  total 29.00  gpu_hours 4
          waste 16.00 * (1 - 0.5) = 8.00
  ml:     direct 1.00                 shared  4.00 + 2.00 =  6.00  total  7.00  gpu_hours 2
          waste 4.00 * 0.9 + 1.00 * 0.8 (own direct g5) = 4.40
  idle 12.00   unallocated L5 + L6 + L7 = 5.00 + 7.00 + 5.00 = 17.00    29 + 7 + 12 + 17 = 65 ✓
--idle share: L1 idle 12.00 split 14400:3600 -> search +9.60 = 38.60, ml +2.40 = 9.40, idle 0
--cost billed: ml direct 1.50 -> ml 7.50; unallocated 5 + 7 + 25 = 37.00; total 85.50
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from tests.contract.support import (
    CUR2_COLUMNS,
    PAYER,
    USAGE_COLUMNS,
    cur_line,
    usage_row,
    write_csv,
)

DAY = {"start": "2026-10-01T00:00:00Z", "end": "2026-10-02T00:00:00Z"}
SP_ARN = "arn:aws:savingsplans::111111111111:savingsplan/sp-1"

TOTAL = Decimal("65.00")
BILLED_TOTAL = Decimal("85.50")
SEARCH = {
    "direct": Decimal("5.00"),
    "shared": Decimal("24.00"),
    "total": Decimal("29.00"),
    "gpu_hours": Decimal("4"),
    "waste": Decimal("8.00"),
}
ML = {
    "direct": Decimal("1.00"),
    "shared": Decimal("6.00"),
    "total": Decimal("7.00"),
    "gpu_hours": Decimal("2"),
    "waste": Decimal("4.40"),
}
IDLE = Decimal("12.00")
UNALLOCATED = Decimal("17.00")


def cur_rows(payer: str = PAYER, l1_cost: str = "32.00") -> list[dict[str, str]]:
    return [
        cur_line(
            "L1",
            "Usage",
            "i-shared",
            l1_cost,
            payer=payer,
            instance_type="p4d.24xlarge",
            tags={"user_cluster": "c1"},
        ),
        cur_line(
            "L2",
            "SavingsPlanCoveredUsage",
            "i-direct",
            "1.50",
            payer=payer,
            instance_type="g5.xlarge",
            tags={"user_team": " ML "},
            savings_plan_savings_plan_effective_cost="1.00",
        ),
        cur_line(
            "L3",
            "Usage",
            "bucket-search",
            "3.00",
            payer=payer,
            product="AmazonS3",
            tags={"team": "Search"},
            **DAY,
        ),
        cur_line(
            "L4",
            "Usage",
            "fs-1",
            "10.00",
            payer=payer,
            product="AmazonFSx",
            tags={"user_cluster": "c1"},
            **DAY,
        ),
        cur_line("L5", "Tax", "", "5.00", payer=payer, **DAY),
        cur_line("L6", "Usage", "i-orphan", "7.00", payer=payer, instance_type="m5.large"),
        cur_line(
            "L7",
            "SavingsPlanRecurringFee",
            SP_ARN,
            "25.00",
            payer=payer,
            product="ComputeSavingsPlans",
            savings_plan_total_commitment_to_date="25.00",
            savings_plan_used_commitment="20.00",
            **DAY,
        ),
        cur_line("L8", "Usage", "vol-1", "2.00", payer=payer, tags={"user:team": "search "}, **DAY),
    ]


def write_cur(path: Path, payer: str = PAYER, l1_cost: str = "32.00") -> Path:
    return write_csv(path, CUR2_COLUMNS, cur_rows(payer, l1_cost))


def write_usage(path: Path) -> Path:
    hour = "2026-10-01 00:00:00"
    rows = [usage_row(hour, "node-a", "i-shared", "c1", g, "j-s", " Search ", 3600, 0.5) for g in range(4)]
    rows.append(usage_row(hour, "node-a", "i-shared", "c1", 4, "j-m", "ML", 3600, 0.1))
    rows.append(usage_row(hour, "node-b", "i-direct", "c2", 0, "j-d", "ml", 3600, 0.2))
    return write_csv(path, USAGE_COLUMNS, rows)


# The same ledger in legacy CUR (CSV.gz, `resourceTags/user:<key>` columns) and FOCUS 1.x (CSV, JSON
# `Tags`, `EffectiveCost` given). Legacy tags always carry the `user:` prefix, so L3's `team` becomes
# `user:team` there.
LEGACY_NAMES = {
    "identity_line_item_id": "identity/LineItemId",
    "bill_payer_account_id": "bill/PayerAccountId",
    "bill_billing_period_start_date": "bill/BillingPeriodStartDate",
    "line_item_usage_account_id": "lineItem/UsageAccountId",
    "line_item_line_item_type": "lineItem/LineItemType",
    "line_item_usage_start_date": "lineItem/UsageStartDate",
    "line_item_usage_end_date": "lineItem/UsageEndDate",
    "line_item_product_code": "lineItem/ProductCode",
    "line_item_usage_type": "lineItem/UsageType",
    "line_item_resource_id": "lineItem/ResourceId",
    "product_instance_type": "product/instanceType",
    "line_item_usage_amount": "lineItem/UsageAmount",
    "line_item_unblended_cost": "lineItem/UnblendedCost",
    "line_item_currency_code": "lineItem/CurrencyCode",
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
LEGACY_TAGS = ("resourceTags/user:team", "resourceTags/user:cluster")


def write_legacy_gz(path: Path, payer: str = PAYER) -> Path:
    import csv
    import gzip
    import json

    with gzip.open(path, "wt", newline="") as f:
        out = csv.writer(f)
        out.writerow([*LEGACY_NAMES.values(), *LEGACY_TAGS])
        for row in cur_rows(payer):
            tags = json.loads(row["resource_tags"] or "{}")
            team = next((v for k, v in tags.items() if k.split(":")[-1].split("_")[-1] == "team"), "")
            cluster = next((v for k, v in tags.items() if k.endswith("cluster")), "")
            out.writerow([*(row[c] for c in LEGACY_NAMES), team, cluster])
    return path


FOCUS_COLUMNS = (
    "BillingAccountId",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeDescription",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ServiceName",
    "ResourceId",
    "BilledCost",
    "EffectiveCost",
    "BillingCurrency",
    "Tags",
)
FOCUS_CATEGORY = {
    "Usage": "Usage",
    "SavingsPlanCoveredUsage": "Usage",
    "Tax": "Tax",
    "SavingsPlanRecurringFee": "Purchase",
}
AMORTIZED = {
    "L1": "32.00",
    "L2": "1.00",
    "L3": "3.00",
    "L4": "10.00",
    "L5": "5.00",
    "L6": "7.00",
    "L7": "5.00",
    "L8": "2.00",
}


def write_focus(path: Path, payer: str = PAYER) -> Path:
    import json

    rows = []
    for row in cur_rows(payer):
        tags = {
            ("user:" + k.removeprefix("user_").removeprefix("user:")): v
            for k, v in json.loads(row["resource_tags"] or "{}").items()
        }
        rows.append(
            {
                "BillingAccountId": payer,
                "BillingPeriodStart": "2026-10-01T00:00:00Z",
                "ChargeCategory": FOCUS_CATEGORY[row["line_item_line_item_type"]],
                "ChargeDescription": (
                    f"{row['product_instance_type']} {row['line_item_line_item_type']}".strip()
                ),
                "ChargePeriodStart": row["line_item_usage_start_date"],
                "ChargePeriodEnd": row["line_item_usage_end_date"],
                "ServiceName": row["line_item_product_code"],
                "ResourceId": row["line_item_resource_id"],
                "BilledCost": row["line_item_unblended_cost"],
                "EffectiveCost": AMORTIZED[row["identity_line_item_id"]],
                "BillingCurrency": "USD",
                "Tags": json.dumps(tags) if tags else "",
            }
        )
    return write_csv(path, FOCUS_COLUMNS, rows)


def write_cur2_parquet(path: Path, payer: str = PAYER) -> Path:
    """The ledger as AWS Data Exports writes CUR 2.0 Parquet: timestamps, doubles, `resource_tags` a map."""
    import json
    from datetime import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    money = {
        "line_item_usage_amount",
        "line_item_unblended_cost",
        "savings_plan_savings_plan_effective_cost",
        "savings_plan_total_commitment_to_date",
        "savings_plan_used_commitment",
        "reservation_effective_cost",
        "reservation_unused_amortized_upfront_fee_for_billing_period",
        "reservation_unused_recurring_fee",
    }
    times = {"bill_billing_period_start_date", "line_item_usage_start_date", "line_item_usage_end_date"}
    rows = cur_rows(payer)
    columns: dict[str, pa.Array] = {}
    for name in CUR2_COLUMNS:
        values = [r[name] for r in rows]
        if name in money:
            columns[name] = pa.array([float(v) if v else None for v in values], pa.float64())
        elif name in times:
            columns[name] = pa.array(
                [datetime.fromisoformat(v.replace("Z", "")) for v in values], pa.timestamp("ms")
            )
        elif name == "resource_tags":
            columns[name] = pa.array(
                [list(json.loads(v).items()) if v else [] for v in values], pa.map_(pa.string(), pa.string())
            )
        else:
            columns[name] = pa.array([v or None for v in values], pa.string())
    pq.write_table(pa.table(columns), path)
    return path
