"""docs/deploy.md's Parquet export runs on a real warehouse (attribution/schema.sql) and the Athena table
it declares matches the files the export writes: the same columns, money still DECIMAL(38,10)."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from tests.support.servers import REPO

DOC = (REPO / "docs" / "deploy.md").read_text()
ATHENA_TYPES = {
    "string": "VARCHAR",
    "timestamp": "TIMESTAMP",
    "double": "DOUBLE",
    "decimal(38,10)": "DECIMAL(38,10)",
    "map<string,string>": "MAP(VARCHAR, VARCHAR)",
}


def sql_blocks() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", DOC, re.S)


def export_statements(target: Path) -> str:
    """The COPY statements of the doc, writing to a local folder instead of s3://BUCKET (no extension
    needed)."""
    block = next(b for b in sql_blocks() if "COPY cost_line_items" in b)
    copies = block[block.index("COPY") :]
    return copies.replace("s3://BUCKET/gpulens/", f"{target}/")


def athena_columns() -> tuple[dict[str, str], str]:
    """({column: duckdb type}, partition column) of the doc's CREATE EXTERNAL TABLE cost_line_items."""
    ddl = next(b for b in sql_blocks() if "CREATE EXTERNAL TABLE" in b)
    body = ddl[ddl.index("(") + 1 : ddl.index(")\nPARTITIONED BY")]
    columns = {}
    for name, kind in re.findall(r"(\w+) ((?:decimal\(\d+,\d+\)|map<\w+,\w+>|\w+))", body):
        columns[name] = ATHENA_TYPES[kind]
    partition = re.search(r"PARTITIONED BY \((\w+) string\)", ddl)
    assert partition is not None
    return columns, partition.group(1)


def warehouse(path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path))
    con.execute((REPO / "attribution" / "schema.sql").read_text())
    con.execute("""INSERT INTO cost_line_items (billing_period, payer_account_id, usage_start, usage_end,
        account_id, line_item_type, product_code, usage_type, resource_id, instance_type, usage_amount,
        unblended_cost, amortized_cost, currency, tags, source, ingested_at)
        VALUES ('2026-10', '111122223333', '2026-10-01 00:00:00',
        '2026-10-01 01:00:00', '444455556666', 'Usage', 'AmazonEC2', 'BoxUsage:p4d.24xlarge', 'i-0abc',
        'p4d.24xlarge', 1.0, 32.7726000000, 21.9600000000, 'USD', MAP {'user:team': 'search'}, 'cur2',
        now())""")
    con.execute("""INSERT INTO gpu_usage_hourly VALUES ('2026-10-01 00:00:00', 'n1', 'i-0abc', 'east', 0,
        'GPU-1', 'A100', 'job', 'search', 3600, 0.5, 0.9)""")
    con.execute("""INSERT INTO allocations (period, basis, day, team, category, job_id, resource_id, cost,
        waste, gpu_seconds, currency, computed_at)
        VALUES ('2026-10', 'amortized', '2026-10-01', 'search', 'direct',
        'job', 'i-0abc', 21.96, 1.5, 3600, 'USD', now())""")
    con.execute(
        "INSERT INTO train_metrics (job_id, team, rank, step, ts, loss, step_seconds, tokens, mfu) "
        "VALUES ('job', 'search', 0, 1, now(), 2.5, 0.5, 4096, 0.4)"
    )
    return con


def test_the_documented_export_writes_what_athena_declares(tmp_path: Path) -> None:
    con = warehouse(tmp_path / "w.duckdb")
    (tmp_path / "out").mkdir()
    con.execute(export_statements(tmp_path / "out"))
    files = sorted((tmp_path / "out" / "cost_line_items").glob("*/*.parquet"))
    assert [f.parent.name for f in files] == ["billing_period=2026-10"]
    described = con.execute(
        f"DESCRIBE SELECT * FROM read_parquet('{files[0]}', hive_partitioning = false)"
    ).fetchall()
    written = {row[0]: row[1] for row in described}
    declared, partition = athena_columns()
    assert partition == "billing_period" and partition not in written
    assert declared == written
    usage = sorted((tmp_path / "out" / "gpu_usage_hourly").glob("*/*.parquet"))
    assert [f.parent.name for f in usage] == ["period=2026-10"]
    assert (tmp_path / "out" / "allocations" / "period=2026-10").is_dir()
    amount = con.execute(f"SELECT sum(amortized_cost) FROM read_parquet('{files[0]}')").fetchone()
    assert amount is not None and str(amount[0]) == "21.9600000000"
