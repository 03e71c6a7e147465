-- The warehouse (docs/design.md §5). One DuckDB file locally; the same tables as Parquet on S3 at scale.
-- Money is DECIMAL(38, 10) until presentation: sub-cent CUR lines must sum exactly.

CREATE TABLE IF NOT EXISTS cost_line_items (
    billing_period   VARCHAR NOT NULL,          -- YYYY-MM
    payer_account_id VARCHAR NOT NULL,          -- the replacement key with billing_period (docs/design.md §5)
    usage_start      TIMESTAMP NOT NULL,        -- UTC
    usage_end        TIMESTAMP NOT NULL,        -- UTC
    account_id       VARCHAR,
    line_item_type   VARCHAR NOT NULL,
    product_code     VARCHAR,
    usage_type       VARCHAR,
    resource_id      VARCHAR,
    instance_type    VARCHAR,
    usage_amount     DOUBLE,
    unblended_cost   DECIMAL(38, 10) NOT NULL,
    amortized_cost   DECIMAL(38, 10) NOT NULL,
    currency         VARCHAR NOT NULL,
    tags             MAP(VARCHAR, VARCHAR),     -- keys as delivered (user:team, user_team, team)
    source           VARCHAR NOT NULL,          -- cur2 | legacy | focus, and the file it came from
    ingested_at      TIMESTAMP NOT NULL
);

-- Capacity reservations (Capacity Blocks for ML, On-Demand Capacity Reservations): the reservation a
-- line belongs to and whether it is its used or unused part (docs/attribution.md). Added after the
-- first release: ALTER keeps older warehouse files readable.
ALTER TABLE cost_line_items ADD COLUMN IF NOT EXISTS capacity_reservation_arn VARCHAR;
ALTER TABLE cost_line_items ADD COLUMN IF NOT EXISTS capacity_reservation_status VARCHAR;

CREATE TABLE IF NOT EXISTS gpu_usage_hourly (
    hour        TIMESTAMP NOT NULL,             -- UTC start of the hour
    node        VARCHAR,
    instance_id VARCHAR,
    cluster     VARCHAR,
    gpu         INTEGER,
    gpu_uuid    VARCHAR,
    model       VARCHAR,
    job_id      VARCHAR,
    team        VARCHAR,
    gpu_seconds DOUBLE NOT NULL,                -- seconds of that hour the GPU was held by the job
    sm_active   DOUBLE,                         -- mean over those seconds; NULL where unmeasured
    utilization DOUBLE                          -- coarse NVML utilization mean: the fallback where sm_active is NULL
);

CREATE TABLE IF NOT EXISTS train_metrics (
    job_id       VARCHAR NOT NULL,
    team         VARCHAR,
    rank         INTEGER,
    step         BIGINT NOT NULL,
    ts           TIMESTAMP,
    loss         DOUBLE,
    step_seconds DOUBLE,
    tokens       BIGINT,
    mfu          DOUBLE
);
-- Added with goodput (docs/design.md §5, §8); ALTER keeps warehouses made before it loadable.
-- `redone`: a later attempt ran this (rank, step) again, so its time is wasted progress and it is not
-- counted as a step of the run (a 3,000-step run restarted at 2,000 from step 1,500 holds 3,500 rows,
-- 500 of them redone).
ALTER TABLE train_metrics ADD COLUMN IF NOT EXISTS attempt INTEGER;
ALTER TABLE train_metrics ADD COLUMN IF NOT EXISTS grad_norm DOUBLE;
ALTER TABLE train_metrics ADD COLUMN IF NOT EXISTS lr DOUBLE;
ALTER TABLE train_metrics ADD COLUMN IF NOT EXISTS redone BOOLEAN DEFAULT false;

-- Trainer `phase` records (docs/design.md §4): checkpoint save/load, data waits, eval, init, others.
CREATE TABLE IF NOT EXISTS train_phases (
    job_id  VARCHAR NOT NULL,
    team    VARCHAR,
    rank    INTEGER,
    attempt INTEGER NOT NULL,
    phase   VARCHAR NOT NULL,                   -- the name as sent; goodput counts unknown names as other
    "start" TIMESTAMP NOT NULL,
    "end"   TIMESTAMP NOT NULL,
    step    BIGINT
);

-- One row per (job, attempt), from the lowest rank's `run` records (else its first record).
CREATE TABLE IF NOT EXISTS train_runs (
    job_id     VARCHAR NOT NULL,
    team       VARCHAR,
    attempt    INTEGER NOT NULL,
    started    TIMESTAMP,
    ended      TIMESTAMP,                       -- NULL when the attempt did not end cleanly
    world_size INTEGER
);

-- docs/design.md §6 results, per period, day, team and category. `category` is explicit: direct, shared_gpu,
-- shared_other, idle, unallocated. `team` is NULL for idle and unallocated.
CREATE TABLE IF NOT EXISTS allocations (
    period      VARCHAR NOT NULL,
    basis       VARCHAR NOT NULL,               -- amortized | billed
    day         DATE NOT NULL,
    team        VARCHAR,
    category    VARCHAR NOT NULL,
    job_id      VARCHAR,
    resource_id VARCHAR,
    cost        DECIMAL(38, 10) NOT NULL,
    waste       DECIMAL(38, 10) NOT NULL DEFAULT 0,
    gpu_seconds DOUBLE NOT NULL DEFAULT 0,
    currency    VARCHAR NOT NULL,
    computed_at TIMESTAMP NOT NULL
);
-- gpu (instance time), storage (FSx, S3, EFS behind training) or other: shown beside each other per team.
ALTER TABLE allocations ADD COLUMN IF NOT EXISTS cost_kind VARCHAR DEFAULT 'other';
-- The CUR line type and service of the lines behind a row, so a reader can tell a commitment fee or a tax
-- (which no tag moves) from an untagged resource (which a tag would allocate): docs/explorer.md.
ALTER TABLE allocations ADD COLUMN IF NOT EXISTS line_item_type VARCHAR;
ALTER TABLE allocations ADD COLUMN IF NOT EXISTS product_code VARCHAR;

-- One row per `gpulens ingest cur` delivery, for data freshness in the report and the explorer.
CREATE TABLE IF NOT EXISTS deliveries (
    billing_period   VARCHAR NOT NULL,
    payer_account_id VARCHAR NOT NULL,
    source_format    VARCHAR NOT NULL,
    files            VARCHAR[] NOT NULL,
    line_items       BIGINT NOT NULL,
    ingested_at      TIMESTAMP NOT NULL
);
-- When AWS made the delivery (its manifest's time, else its newest file's), to refuse an older one.
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS created TIMESTAMP;

-- Loss anomalies per run (docs/design.md §7), found by the one detector (gpulens.trainer.health) when runs are
-- ingested, or reported online by the trainer (kind=anomaly records). `flags` and the explorer read it.
CREATE TABLE IF NOT EXISTS train_anomalies (
    job_id VARCHAR NOT NULL,
    team   VARCHAR,
    rank   INTEGER,
    step   BIGINT NOT NULL,
    kind   VARCHAR NOT NULL,                   -- nan | spike | divergence
    loss   DOUBLE
);
