"""The demo month's AWS bill as CUR 2.0 line items (Data Exports snake_case columns, `resource_tags` map).

Lines follow AWS's conventions, so the amortized cost of each is the one docs/design.md §6 gives:
- p5 nodes run under a Compute Savings Plan: per hour a `SavingsPlanCoveredUsage` line (on-demand cost
  unblended, `savings_plan_savings_plan_effective_cost` at the plan rate), a `SavingsPlanNegation` line
  that cancels the on-demand cost, and one `SavingsPlanRecurringFee` line for the hourly commitment
  (`total_commitment_to_date` vs `used_commitment`: the unused part is real spend, unallocated);
- node-01..04 run on a 5-instance p4d Reserved Instance: `DiscountedUsage` lines (unblended 0,
  `reservation_effective_cost` = amortized upfront + recurring per hour) and one monthly `RIFee` line
  whose unused-instance share is in `reservation_unused_*`;
- a SageMaker training job bills `AmazonSageMaker` `USE1-Train:ml.p4d.24xlarge` hours on its training-job
  ARN, untagged: its agent reports the job's name as instance id, so its cost lands on its team;
- a Capacity Block for two p5 is paid in advance as one `Fee` line over the block's dates on the
  reservation's ARN; its instances' own hourly lines (0.00: Linux) name the reservation
  (`capacity_reservation_*` columns), which is how the fee finds the GPU time held in it;
- everything else is `Usage` at on-demand rates, plus one `Tax` line.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa

from gpulens.demo.scenario import CAPACITY_BLOCK_DAYS, CLUSTER, ML_P4D, P4D, P5, SAGEMAKER_JOB, Node, Scenario

PAYER = "111122223333"
ACCOUNT = "444455556666"
REGION = "us-east-1"
SP_ARN = f"arn:aws:savingsplans::{PAYER}:savingsplan/3f1c2b9e-0d4a-4c59-9b1e-demo00000001"
RI_ARN = f"arn:aws:ec2:{REGION}:{ACCOUNT}:reserved-instances/7d3e2c1a-demo-4f0b-8a5e-p4d000000005"
SP_DISCOUNT = 0.60  # plan rate as a fraction of on-demand
SP_COMMITMENT_PER_HOUR = 400.0  # USD/h; six p5 at the plan rate use 353.952 of it
RI_COUNT = 5  # reserved p4d instances; node-01..04 use four, one sits unused
RI_RECURRING_PER_HOUR = 11.0  # USD per instance-hour, partial upfront
RI_UPFRONT_PER_HOUR = 8.22  # amortized upfront, USD per instance-hour
FSX_ID = f"arn:aws:fsx:{REGION}:{ACCOUNT}:file-system/fs-0a1b2c3d4e5f60718"
TAX = 1250.0
SAGEMAKER_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{SAGEMAKER_JOB}"
CAPACITY_BLOCK_ARN = f"arn:aws:ec2:{REGION}:{ACCOUNT}:capacity-reservation/cr-0demo5b10c4000001"
CAPACITY_BLOCK_PER_HOUR = 31.464  # USD per p5.48xlarge instance-hour, paid up front

Row = dict[str, Any]


def cur_table(scenario: Scenario) -> pa.Table:
    """Every line of the month, as the CUR 2.0 Parquet export holds them."""
    rows = list(_lines(scenario))
    for i, row in enumerate(rows):
        row["identity_line_item_id"] = f"demo{scenario.seed:04d}{i:08d}"
    schema = pa.schema([(name, typ) for name, typ in COLUMNS])
    return pa.Table.from_pylist([{name: row.get(name) for name, _ in COLUMNS} for row in rows], schema=schema)


def _lines(s: Scenario) -> Iterator[Row]:
    for node in s.nodes:
        yield from _node_hours(s, node)
    yield from _savings_plan_fees(s)
    yield _ri_fee(s)
    yield from _daily_others(s)
    yield from _dev_instance(s)
    yield from _sagemaker_job(s)
    yield from _capacity_block(s)
    yield _line(s, s.start, s.end, "Tax", "AmazonEC2", "Tax", None, 1.0, TAX, {}, description="Sales tax")


def _hour_starts(s: Scenario) -> Iterator[datetime]:
    for h in range(s.hours):
        yield s.start + timedelta(hours=h)


def _node_tags(node: Node) -> dict[str, str]:
    tags = {"user_cluster": CLUSTER}
    if node.team_tag is not None:
        tags["user_team"] = node.team_tag
    return tags


def _node_hours(s: Scenario, node: Node) -> Iterator[Row]:
    rate = node.itype.on_demand_per_hour
    usage_type = f"USE1-BoxUsage:{node.itype.name}"
    tags = _node_tags(node)
    for t in _hour_starts(s):
        end = t + timedelta(hours=1)
        common: dict[str, Any] = {
            "product_instance_type": node.itype.name,
            "line_item_operation": "RunInstances",
            "pricing_public_on_demand_cost": rate,
        }
        if node.pricing == "savings_plan":
            effective = round(rate * SP_DISCOUNT, 6)
            yield _line(
                s,
                t,
                end,
                "SavingsPlanCoveredUsage",
                "AmazonEC2",
                usage_type,
                node.instance_id,
                1.0,
                rate,
                tags,
                savings_plan_savings_plan_a_r_n=SP_ARN,
                savings_plan_savings_plan_rate=effective,
                savings_plan_savings_plan_effective_cost=effective,
                **common,
            )
            yield _line(
                s,
                t,
                end,
                "SavingsPlanNegation",
                "AmazonEC2",
                usage_type,
                node.instance_id,
                1.0,
                -rate,
                tags,
                savings_plan_savings_plan_a_r_n=SP_ARN,
                **common,
            )
        elif node.pricing == "reserved":
            yield _line(
                s,
                t,
                end,
                "DiscountedUsage",
                "AmazonEC2",
                usage_type,
                node.instance_id,
                1.0,
                0.0,
                tags,
                reservation_reservation_a_r_n=RI_ARN,
                reservation_effective_cost=RI_RECURRING_PER_HOUR + RI_UPFRONT_PER_HOUR,
                reservation_amortized_upfront_fee_for_billing_period=RI_UPFRONT_PER_HOUR,
                reservation_recurring_fee_for_usage=RI_RECURRING_PER_HOUR,
                **common,
            )
        else:
            yield _line(
                s, t, end, "Usage", "AmazonEC2", usage_type, node.instance_id, 1.0, rate, tags, **common
            )


def _savings_plan_fees(s: Scenario) -> Iterator[Row]:
    covered = [n for n in s.nodes if n.pricing == "savings_plan"]
    used = round(sum(round(n.itype.on_demand_per_hour * SP_DISCOUNT, 6) for n in covered), 6)
    for t in _hour_starts(s):
        yield _line(
            s,
            t,
            t + timedelta(hours=1),
            "SavingsPlanRecurringFee",
            "ComputeSavingsPlans",
            "ComputeSP:1yrNoUpfront",
            SP_ARN,
            1.0,
            SP_COMMITMENT_PER_HOUR,
            {},
            savings_plan_savings_plan_a_r_n=SP_ARN,
            savings_plan_total_commitment_to_date=SP_COMMITMENT_PER_HOUR,
            savings_plan_used_commitment=used,
        )


def _ri_fee(s: Scenario) -> Row:
    hours = s.hours
    unused = RI_COUNT - sum(1 for n in s.nodes if n.pricing == "reserved")
    return _line(
        s,
        s.start,
        s.end,
        "RIFee",
        "AmazonEC2",
        f"USE1-HeavyUsage:{P4D.name}",
        RI_ARN,
        float(RI_COUNT * hours),
        round(RI_COUNT * hours * RI_RECURRING_PER_HOUR, 6),
        {},
        reservation_reservation_a_r_n=RI_ARN,
        product_instance_type=P4D.name,
        reservation_unused_recurring_fee=round(unused * hours * RI_RECURRING_PER_HOUR, 6),
        reservation_unused_amortized_upfront_fee_for_billing_period=round(
            unused * hours * RI_UPFRONT_PER_HOUR, 6
        ),
        description=f"{RI_COUNT} x {P4D.name} reserved, partial upfront",
    )


def _daily_others(s: Scenario) -> Iterator[Row]:
    """Storage and networking, one line per day: the shared FSx for Lustre, EBS, S3, a NAT gateway."""
    days = s.hours // 24
    for d in range(days):
        t, end = s.start + timedelta(days=d), s.start + timedelta(days=d + 1)
        yield _line(
            s,
            t,
            end,
            "Usage",
            "AmazonFSx",
            "USE1-Lustre-PersistentSSD2-125MBps-Storage",
            FSX_ID,
            120_000 / days,
            round(120_000 * 0.145 / days, 6),
            {"user_cluster": CLUSTER},
        )
        yield _line(
            s,
            t,
            end,
            "Usage",
            "AmazonVPC",
            "USE1-NatGateway-Hours",
            f"arn:aws:ec2:{REGION}:{ACCOUNT}:natgateway/nat-0f1e2d3c4b5a69788",
            24.0,
            24 * 0.045,
            {"user_cluster": CLUSTER},
        )
        yield _line(
            s,
            t,
            end,
            "Usage",
            "AmazonS3",
            "USE1-TimedStorage-ByteHrs",
            "gpulens-demo-datasets",
            40_000 / days,
            round(40_000 * 0.023 / days, 6),
            {},
        )
        for node in s.nodes:
            # Root volumes of the older nodes carry the cluster tag; node-13..16's were never tagged.
            tags = {"user_cluster": CLUSTER} if node.name <= "node-12" else {}
            yield _line(
                s,
                t,
                end,
                "Usage",
                "AmazonEC2",
                "USE1-EBS:VolumeUsage.gp3",
                f"vol-0{node.instance_id[3:]}",
                2000 / days,
                round(2000 * 0.08 / days, 6),
                tags,
            )


def _dev_instance(s: Scenario) -> Iterator[Row]:
    """An untagged g5.xlarge someone left running: no gpulens agent, so no usage: unallocated."""
    for t in _hour_starts(s):
        yield _line(
            s,
            t,
            t + timedelta(hours=1),
            "Usage",
            "AmazonEC2",
            "USE1-BoxUsage:g5.xlarge",
            "i-0dev5a5a5a5a5a5a5",
            1.0,
            1.006,
            {},
            product_instance_type="g5.xlarge",
            line_item_operation="RunInstances",
            pricing_public_on_demand_cost=1.006,
        )


def _sagemaker_job(s: Scenario) -> Iterator[Row]:
    job = next(j for j in s.jobs if j.job_id == SAGEMAKER_JOB)
    hours = int((job.end - job.start).total_seconds() // 3600)
    for h in range(hours):
        t = job.start + timedelta(hours=h)
        yield _line(
            s,
            t,
            t + timedelta(hours=1),
            "Usage",
            "AmazonSageMaker",
            f"USE1-Train:{ML_P4D.name}",
            SAGEMAKER_ARN,
            1.0,
            ML_P4D.on_demand_per_hour,
            {},
            product_instance_type=ML_P4D.name,
            line_item_operation="RunInstance",
        )


def _capacity_block(s: Scenario) -> Iterator[Row]:
    start, end = (s.start + timedelta(days=d) for d in CAPACITY_BLOCK_DAYS)
    hours = int((end - start).total_seconds() // 3600)
    block = [n for n in s.managed if n.itype is P5]
    reservation = {"capacity_reservation_capacity_reservation_arn": CAPACITY_BLOCK_ARN}
    yield _line(
        s,
        start,
        end,
        "Fee",
        "AmazonEC2",
        f"USE1-CapacityBlock:{P5.name}",
        CAPACITY_BLOCK_ARN,
        float(len(block) * hours),
        round(len(block) * hours * CAPACITY_BLOCK_PER_HOUR, 6),
        {},
        product_instance_type=P5.name,
        description=f"Capacity Block, {len(block)} x {P5.name} for {hours} h, paid up front",
        **reservation,
    )
    for node in block:
        for h in range(hours):
            t = start + timedelta(hours=h)
            yield _line(
                s,
                t,
                t + timedelta(hours=1),
                "Usage",
                "AmazonEC2",
                f"USE1-BoxUsage:{P5.name}",
                node.instance_id,
                1.0,
                0.0,
                {"user_cluster": CLUSTER},
                product_instance_type=P5.name,
                capacity_reservation_capacity_reservation_status="Used",
                **reservation,
            )


def _line(
    s: Scenario,
    start: datetime,
    end: datetime,
    line_type: str,
    product: str,
    usage_type: str,
    resource_id: str | None,
    amount: float,
    cost: float,
    tags: dict[str, str],
    *,
    description: str | None = None,
    **extra: Any,
) -> Row:
    row: Row = {
        "identity_time_interval": f"{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}",
        "bill_invoice_id": f"EUINUS{s.period.replace('-', '')}01",
        "bill_billing_entity": "AWS",
        "bill_bill_type": "Anniversary",
        "bill_payer_account_id": PAYER,
        "bill_billing_period_start_date": s.start,
        "bill_billing_period_end_date": s.end,
        "line_item_usage_account_id": ACCOUNT,
        "line_item_line_item_type": line_type,
        "line_item_usage_start_date": start,
        "line_item_usage_end_date": end,
        "line_item_product_code": product,
        "line_item_usage_type": usage_type,
        "line_item_availability_zone": f"{REGION}a" if product == "AmazonEC2" else None,
        "line_item_resource_id": resource_id,
        "line_item_usage_amount": amount,
        "line_item_currency_code": "USD",
        "line_item_unblended_rate": round(cost / amount, 6) if amount else None,
        "line_item_unblended_cost": cost,
        "line_item_blended_cost": cost,
        "line_item_line_item_description": description or f"{usage_type} ({line_type})",
        "product_region_code": REGION,
        "product_servicecode": product,
        "resource_tags": list(tags.items()),
    }
    row.update(extra)
    return row


_STR, _F64, _TS = pa.string(), pa.float64(), pa.timestamp("ms")
COLUMNS: tuple[tuple[str, pa.DataType], ...] = (
    ("identity_line_item_id", _STR),
    ("identity_time_interval", _STR),
    ("bill_invoice_id", _STR),
    ("bill_billing_entity", _STR),
    ("bill_bill_type", _STR),
    ("bill_payer_account_id", _STR),
    ("bill_billing_period_start_date", _TS),
    ("bill_billing_period_end_date", _TS),
    ("line_item_usage_account_id", _STR),
    ("line_item_line_item_type", _STR),
    ("line_item_usage_start_date", _TS),
    ("line_item_usage_end_date", _TS),
    ("line_item_product_code", _STR),
    ("line_item_usage_type", _STR),
    ("line_item_operation", _STR),
    ("line_item_availability_zone", _STR),
    ("line_item_resource_id", _STR),
    ("line_item_usage_amount", _F64),
    ("line_item_currency_code", _STR),
    ("line_item_unblended_rate", _F64),
    ("line_item_unblended_cost", _F64),
    ("line_item_blended_cost", _F64),
    ("line_item_line_item_description", _STR),
    ("product_instance_type", _STR),
    ("product_region_code", _STR),
    ("product_servicecode", _STR),
    ("pricing_public_on_demand_cost", _F64),
    ("savings_plan_savings_plan_a_r_n", _STR),
    ("savings_plan_savings_plan_rate", _F64),
    ("savings_plan_savings_plan_effective_cost", _F64),
    ("savings_plan_total_commitment_to_date", _F64),
    ("savings_plan_used_commitment", _F64),
    ("reservation_reservation_a_r_n", _STR),
    ("reservation_effective_cost", _F64),
    ("reservation_unused_amortized_upfront_fee_for_billing_period", _F64),
    ("reservation_unused_recurring_fee", _F64),
    ("reservation_amortized_upfront_fee_for_billing_period", _F64),
    ("reservation_recurring_fee_for_usage", _F64),
    ("capacity_reservation_capacity_reservation_arn", _STR),
    ("capacity_reservation_capacity_reservation_status", _STR),
    ("resource_tags", pa.map_(pa.string(), pa.string())),
)
