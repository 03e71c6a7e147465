"""Trainer records (SPEC §4) -> aggregates; malformed datagrams are counted, never fatal."""

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
    assert s.step_sum == pytest.approx(0.532) and s.step_count == 2
    cum = s.cumulative()
    assert cum[1] == 1 and cum[5] == 1 and cum[6] == 2 and cum[-1] == 2  # le=0.025, 0.5, 1.0, +Inf
    assert anomalies == {("bgpt-50b", "ai-research", "0", "", "spike"): 1}
    assert results == {"ok": 3, "malformed": 0}
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
