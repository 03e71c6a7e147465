"""Black-box helpers: run the installed `gpulens` CLI as a user would, write small fixture files.

Nothing here imports gpulens; the contract tests see only the command line, files and HTTP.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from tests.support.servers import gpulens_exe

PAYER = "111111111111"
OTHER_PAYER = "999999999999"

CUR2_COLUMNS = (
    "identity_line_item_id",
    "bill_payer_account_id",
    "bill_billing_period_start_date",
    "line_item_usage_account_id",
    "line_item_line_item_type",
    "line_item_usage_start_date",
    "line_item_usage_end_date",
    "line_item_product_code",
    "line_item_usage_type",
    "line_item_resource_id",
    "product_instance_type",
    "line_item_usage_amount",
    "line_item_unblended_cost",
    "line_item_currency_code",
    "savings_plan_savings_plan_effective_cost",
    "savings_plan_total_commitment_to_date",
    "savings_plan_used_commitment",
    "reservation_effective_cost",
    "reservation_unused_amortized_upfront_fee_for_billing_period",
    "reservation_unused_recurring_fee",
    "reservation_reservation_a_r_n",
    "resource_tags",
)
USAGE_COLUMNS = (
    "hour",
    "node",
    "instance_id",
    "cluster",
    "gpu",
    "gpu_uuid",
    "model",
    "job_id",
    "team",
    "gpu_seconds",
    "sm_active",
)


def gl(
    *args: str | Path, cwd: Path | None = None, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run `gpulens ARGS...`; stdout/stderr captured as text. `env` entries override os.environ;
    a value of "" removes the variable."""
    full = dict(os.environ)
    for key, value in (env or {}).items():
        if value == "":
            full.pop(key, None)
        else:
            full[key] = value
    return subprocess.run(
        [gpulens_exe(), *map(str, args)], cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout
    )


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc


def as_json(proc: subprocess.CompletedProcess[str]) -> dict:
    ok(proc)
    return json.loads(proc.stdout)


def handled_error(proc: subprocess.CompletedProcess[str], *names: str) -> str:
    """docs/design.md §2: exit 1, exactly one non-empty line on stderr, naming each of `names`."""
    assert proc.returncode == 1, f"exit {proc.returncode}, expected 1\nstderr: {proc.stderr}"
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{proc.stderr}"
    for name in names:
        assert name in lines[0], f"{name!r} not named in: {lines[0]}"
    return lines[0]


def cur_line(
    lid: str,
    kind: str,
    resource: str,
    cost: str,
    *,
    start: str = "2026-10-01T00:00:00Z",
    end: str = "2026-10-01T01:00:00Z",
    payer: str = PAYER,
    product: str = "AmazonEC2",
    instance_type: str = "",
    tags: Mapping[str, str] | None = None,
    **extra: str,
) -> dict[str, str]:
    row = {c: "" for c in CUR2_COLUMNS}
    row.update(
        {
            "identity_line_item_id": lid,
            "bill_payer_account_id": payer,
            "bill_billing_period_start_date": "2026-10-01T00:00:00Z",
            "line_item_usage_account_id": "222222222222",
            "line_item_line_item_type": kind,
            "line_item_usage_start_date": start,
            "line_item_usage_end_date": end,
            "line_item_product_code": product,
            "line_item_usage_type": "x",
            "line_item_resource_id": resource,
            "product_instance_type": instance_type,
            "line_item_usage_amount": "1",
            "line_item_unblended_cost": cost,
            "line_item_currency_code": "USD",
            "resource_tags": json.dumps(tags) if tags else "",
        }
    )
    row.update(extra)
    return row


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, object]]) -> Path:
    with path.open("w", newline="") as f:
        out = csv.DictWriter(f, fieldnames=list(columns))
        out.writeheader()
        for row in rows:
            out.writerow(row)
    return path


def usage_row(
    hour: str, node: str, instance: str, cluster: str, gpu: int, job: str, team: str, seconds: int, sm: float
) -> dict[str, object]:
    return {
        "hour": hour,
        "node": node,
        "instance_id": instance,
        "cluster": cluster,
        "gpu": gpu,
        "gpu_uuid": f"GPU-{instance}-{gpu}",
        "model": "A100-SXM4-40GB",
        "job_id": job,
        "team": team,
        "gpu_seconds": seconds,
        "sm_active": sm,
    }


def write_curve(path: Path, losses: Sequence[float | str]) -> Path:
    """A `step,loss` CSV, steps 0..n-1."""
    with path.open("w") as f:
        f.write("step,loss\n")
        for step, loss in enumerate(losses):
            f.write(f"{step},{loss}\n")
    return path
