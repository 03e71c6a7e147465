"""Amortized (effective) cost per line, docs/design.md §6, as SQL expressions over normalized CUR columns.

Every CUR flavour is first renamed to the CUR 2.0 column names (legacy `lineItem/UnblendedCost` ->
`line_item_unblended_cost`), so the table below is written once. FOCUS states the amortized cost
itself (`EffectiveCost`). The inputs are DECIMAL; a column the export lacks is NULL. `line_item_type` and
`unblended_cost`
are the normalized names of `line_item_line_item_type` and `line_item_unblended_cost`.
"""

from __future__ import annotations

# docs/design.md §6, one row per line type. `Fee` with a reservation ARN is an RI upfront fee, already
# amortized into DiscountedUsage/RIFee; any other Fee is real money.
CUR_AMORTIZED = """
CASE line_item_type
    WHEN 'SavingsPlanCoveredUsage' THEN savings_plan_savings_plan_effective_cost
    WHEN 'SavingsPlanRecurringFee'
        THEN savings_plan_total_commitment_to_date - savings_plan_used_commitment
    WHEN 'SavingsPlanNegation' THEN 0
    WHEN 'SavingsPlanUpfrontFee' THEN 0
    WHEN 'DiscountedUsage' THEN reservation_effective_cost
    WHEN 'RIFee'
        THEN reservation_unused_amortized_upfront_fee_for_billing_period + reservation_unused_recurring_fee
    WHEN 'Fee' THEN CASE WHEN reservation_reservation_a_r_n IS NULL THEN unblended_cost ELSE 0 END
    ELSE unblended_cost
END"""

# The amortization inputs besides `unblended_cost`, and the line type that needs each: a row of that
# type without the value is an error naming the column, never a silent zero.
CUR_AMORTIZATION_INPUTS: dict[str, tuple[str, ...]] = {
    "savings_plan_savings_plan_effective_cost": ("SavingsPlanCoveredUsage",),
    "savings_plan_total_commitment_to_date": ("SavingsPlanRecurringFee",),
    "savings_plan_used_commitment": ("SavingsPlanRecurringFee",),
    "reservation_effective_cost": ("DiscountedUsage",),
    "reservation_unused_amortized_upfront_fee_for_billing_period": ("RIFee",),
    "reservation_unused_recurring_fee": ("RIFee",),
}

FOCUS_AMORTIZED = "effective_cost"
