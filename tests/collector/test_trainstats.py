"""Trainer records (docs/design.md §4) -> aggregates; malformed datagrams are counted, never fatal."""

from __future__ import annotations

import json

import pytest

from gpulens.collector.trainstats import TrainStats

STEP = {
    "v": 1,
    "kind": "step",
    "job_id": "bgpt-50b",
    "team": "ai-research",
    "rank": 0,
    "local_rank": 0,
    "gpu": 0,
    "pid": 4242,
    "step": 1200,
    "ts": 1795600000.12,
    "step_seconds": 0.512,
    "tokens": 524288,
    "samples": 256,
    "loss": 2.31,
    "grad_norm": 1.02,
    "lr": 0.0003,
    "mfu": 0.41,
}


def _b(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_spec_example_records_aggregate() -> None:
    seen = []
    stats = TrainStats(on_step=lambda *a: seen.append(a))
    assert stats.ingest(_b(STEP))
    assert stats.ingest(_b({**STEP, "step": 1201, "step_seconds": 0.02, "loss": 2.2, "unknown_key": [1, 2]}))
    assert stats.ingest(
        _b(
            {
                "v": 1,
                "kind": "anomaly",
                "job_id": "bgpt-50b",
                "team": "ai-research",
                "rank": 0,
                "step": 1207,
                "anomaly": "spike",
                "loss": 4.7,
            }
        )
    )
    ranks, anomalies, results = stats.copy()
    s = ranks[("bgpt-50b", "ai-research", "0", "0")]
    assert (s.steps, s.tokens, s.loss, s.mfu, s.last_ts) == (2, 2 * 524288, 2.2, 0.41, 1795600000.12)
    assert s.step.total == pytest.approx(0.532) and s.step.count == 2
    cum = s.step.cumulative()
    assert cum[1] == 1 and cum[5] == 1 and cum[6] == 2 and cum[-1] == 2  # le=0.025, 0.5, 1.0, +Inf
    assert anomalies == {("bgpt-50b", "ai-research", "0", "", "spike"): 1}
    assert results == {"ok": 3, "malformed": 0, "rejected": 0, "over_limit": 0}
    assert seen == [(0, 4242, "bgpt-50b", "ai-research")]  # refreshed at most once a second per rank


def test_mapping_refresh_on_move_and_after_a_second() -> None:
    now = [0.0]
    seen = []
    stats = TrainStats(on_step=lambda *a: seen.append(a[:2]), clock=lambda: now[0])
    stats.ingest(_b(STEP))
    stats.ingest(_b({**STEP, "gpu": 1}))  # the rank moved GPU: refresh at once
    stats.ingest(_b({**STEP, "gpu": 1}))
    now[0] = 1.5
    stats.ingest(_b({**STEP, "gpu": 1}))
    assert seen == [(0, 4242), (1, 4242), (1, 4242)]


@pytest.mark.parametrize(
    "data",
    [
        b"{not json",
        b"",
        b"\xff\xfe",
        b"[1,2]",
        b"null",
        _b({"v": 2, "kind": "step", "job_id": "j"}),
        _b({"v": 1, "kind": "step"}),
        _b({"v": 1, "kind": "step", "job_id": ""}),
        _b({"v": 1, "kind": "nope", "job_id": "j"}),
        _b({"v": 1, "kind": "anomaly", "job_id": "j", "anomaly": "weird"}),
        _b({**STEP, "step_seconds": -1}),
        b"[" * 100000,
    ],
)
def test_malformed_is_counted_and_dropped(data: bytes) -> None:
    stats = TrainStats()
    assert not stats.ingest(data)
    ranks, _, results = stats.copy()
    assert ranks == {} and results["malformed"] == 1


def test_copy_is_independent() -> None:
    stats = TrainStats()
    stats.ingest(_b(STEP))
    ranks, _, _ = stats.copy()
    stats.ingest(_b(STEP))
    assert ranks[("bgpt-50b", "ai-research", "0", "0")].steps == 1


def test_rank_spellings_share_one_series_but_bool_is_not_a_number() -> None:
    stats = TrainStats()
    for rank in (0, "0", 0.0, False):
        stats.ingest(_b({**STEP, "rank": rank, "gpu": 1}))
    ranks, _, _ = stats.copy()
    assert ranks[("bgpt-50b", "ai-research", "0", "1")].steps == 2  # 0 and "0"
    assert ranks[("bgpt-50b", "ai-research", "0.0", "1")].steps == 1
    assert ranks[("bgpt-50b", "ai-research", "", "1")].steps == 1  # a bool is no rank


def test_a_null_loss_exports_nan_not_the_last_finite_loss() -> None:
    """Issue 13 item 10: the trainer sends NaN as null; before the fix the agent kept exporting 2.31."""
    stats = TrainStats()
    stats.ingest(_b(STEP))
    stats.ingest(_b({**STEP, "loss": None}))
    s = stats.copy()[0][("bgpt-50b", "ai-research", "0", "0")]
    assert s.loss != s.loss  # NaN
    stats.ingest(_b({k: v for k, v in STEP.items() if k != "loss"}))  # no loss key: the last one stays
    assert stats.copy()[0][("bgpt-50b", "ai-research", "0", "0")].loss != 2.31


def test_phase_and_run_records_become_phase_seconds_and_the_attempt() -> None:
    """Ledger: checkpoint_save 100.0 -> 220.5 (120.5 s), twice = 241.0 s; "warmup" is no named phase
    -> other, 1.25 s; the latest attempt carried is 3."""
    stats = TrainStats()
    base = {"v": 1, "job_id": "bgpt-50b", "team": "ai-research", "rank": 0}
    for start in (100.0, 1000.0):
        phase = {
            "kind": "phase",
            "phase": "checkpoint_save",
            "start": start,
            "end": start + 120.5,
            "attempt": 2,
        }
        assert stats.ingest(_b({**base, **phase}))
    assert stats.ingest(_b({**base, "kind": "phase", "phase": "warmup", "start": 5.0, "end": 6.25}))
    assert stats.ingest(_b({**base, "kind": "run", "event": "start", "attempt": 3, "ts": 1.0}))
    assert not stats.ingest(_b({**base, "kind": "phase", "phase": "eval", "start": 9.0, "end": 8.0}))
    ranks, _, results = stats.copy()
    s = ranks[("bgpt-50b", "ai-research", "0", "")]
    assert s.phases == {"checkpoint_save": 241.0, "other": 1.25}
    assert s.attempt == 3 and s.steps == 0
    assert results["ok"] == 4 and results["malformed"] == 1


def test_job_series_expire_after_the_ttl_and_new_jobs_beyond_the_limit_are_refused() -> None:
    """Issue 13 item 4. Ledger (max_jobs 2, ttl 600 s): t=0 jobs a, b admitted (b with an anomaly);
    c over_limit; t=500 a again; t=700 b (last seen 0 s, 700 > 600) expired with its anomaly,
    a (last 500 s) kept; c admitted in b's place."""
    now = [0.0]
    stats = TrainStats(clock=lambda: now[0], max_jobs=2, job_ttl=600.0)
    assert stats.ingest(_b({**STEP, "job_id": "a"})) and stats.ingest(_b({**STEP, "job_id": "b"}))
    assert stats.ingest(_b({**STEP, "job_id": "b", "kind": "anomaly", "anomaly": "nan"}))
    assert not stats.ingest(_b({**STEP, "job_id": "c"}))
    now[0] = 500.0
    assert stats.ingest(_b({**STEP, "job_id": "a"}))
    now[0] = 700.0
    assert stats.ingest(_b({**STEP, "job_id": "c"}))
    ranks, anomalies, results = stats.copy()
    assert {k[0] for k in ranks} == {"a", "c"} and anomalies == {}
    assert results["over_limit"] == 1 and results["ok"] == 5


def test_rank_and_gpu_label_sets_are_bounded_per_node() -> None:
    """One job, 60,000 unique `rank` values (a review reproduced 1,080,224 /metrics lines, 108 MB, a
    13.6 s scrape): only `max_ranks` rank label sets are kept, the rest are `over_limit`."""
    stats = TrainStats(max_ranks=8)
    for i in range(100):  # anomalies of ranks that send no step: bounded on their own (8 x 3 kinds)
        stats.ingest(_b({"v": 1, "kind": "anomaly", "job_id": "j", "rank": 1000 + i, "anomaly": "nan"}))
    for i in range(100):
        stats.ingest(_b({"v": 1, "kind": "step", "job_id": "j", "team": "t", "rank": i, "gpu": 0}))
    ranks, anomalies, results = stats.copy()
    assert len(ranks) == 8 and len(anomalies) == 8 * 3
    assert results["over_limit"] == 76 + 92 and results["ok"] == 24 + 8


def test_an_overlong_label_value_is_malformed_and_never_memoised() -> None:
    """A rejected sender's 7.9 KB `rank` values were memoised 100,000 at a time (840 MB of RSS)."""
    from gpulens.collector import trainstats

    stats = TrainStats()
    before = len(trainstats._KEYS)
    stats.ingest(_b({"v": 1, "kind": "run", "job_id": "j", "rank": "x" * 300, "event": "start"}))
    assert stats.copy()[2]["malformed"] == 1 and len(trainstats._KEYS) == before
    for i in range(trainstats.MEMO_KEYS + 5):
        trainstats._key("j", "t", i, 0)
    assert len(trainstats._KEYS) <= trainstats.MEMO_KEYS
