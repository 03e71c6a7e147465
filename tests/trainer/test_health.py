"""docs/design.md §7 detector: synthetic curves with known anomalies, real logs, and property tests on
healthy noise."""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gpulens.trainer.health import Anomaly, HealthConfig, LossHealth, scan

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "loss"


def decaying(n: int, start: float = 4.0, end: float = 2.0) -> list[float]:
    return [end + (start - end) * math.exp(-i / 200) for i in range(n)]


def curve(losses: list[float]) -> list[tuple[int, float]]:
    return list(enumerate(losses))


def test_clean_decaying_curve_raises_nothing() -> None:
    assert scan(curve(decaying(2000))) == []


def test_nan_is_reported_at_its_first_step_once_per_episode() -> None:
    losses = decaying(300)
    losses[100] = losses[101] = losses[102] = math.nan  # one episode of three steps
    losses[200] = math.inf  # a second episode
    found = scan(curve(losses))
    assert [(a.step, a.kind) for a in found] == [(100, "nan"), (200, "nan")]
    assert math.isnan(found[0].loss) and found[1].loss == math.inf


def test_spike_of_three_steps_is_confirmed_at_its_third_step_and_is_not_a_divergence() -> None:
    losses = decaying(400)
    for i in (150, 151, 152, 153, 154):
        losses[i] *= 2.0
    found = scan(curve(losses))
    assert found == [Anomaly(152, "spike", losses[152])]


def test_two_step_excursion_even_of_5x_is_noise() -> None:
    losses = decaying(400)
    losses[150] *= 5
    losses[151] *= 5
    assert scan(curve(losses)) == []


def test_mild_spike_just_above_25_percent_counts_and_just_below_does_not() -> None:
    flat = [2.0] * 100
    above = flat + [2.0 * 1.26] * 3 + flat
    below = flat + [2.0 * 1.24] * 10 + flat
    assert [a.kind for a in scan(curve(above))] == ["spike"]
    assert scan(curve(below)) == []


def test_divergence_is_reported_once_after_50_steps_away_from_the_minimum() -> None:
    losses = decaying(300) + [4.0 + 0.01 * i for i in range(200)]  # jumps 60 % and keeps climbing
    found = scan(curve(losses))
    kinds = [(a.kind, a.step) for a in found]
    assert kinds[0] == ("spike", 302)
    assert [k for k, _ in kinds] == ["spike", "divergence"]
    assert 300 + 50 <= kinds[1][1] <= 300 + 60


def test_slow_creep_without_a_spike_is_a_divergence() -> None:
    losses = [2.0] * 100 + [2.0 * (1 + 0.004 * i) for i in range(200)]  # +0.4 %/step, never 25 % in a step
    found = scan(curve(losses))
    assert [a.kind for a in found] == ["divergence"]


def test_divergence_that_recovers_and_returns_is_two_episodes() -> None:
    flat = [2.0] * 200
    away = [3.0] * 80
    found = scan(curve(flat + away + flat + away))
    assert [a.kind for a in found] == ["spike", "divergence", "spike", "divergence"]


def test_online_and_offline_agree_and_config_is_respected() -> None:
    losses = decaying(300)
    for i in range(100, 104):
        losses[i] *= 1.6
    strict = HealthConfig(spike_steps=5)
    online = LossHealth()
    assert [a for i, v in enumerate(losses) if (a := online.observe(i, v))] == scan(curve(losses))
    assert scan(curve(losses), strict) == []


# -- property tests: noisy healthy curves raise nothing --


@st.composite
def healthy_curves(draw: st.DrawFn) -> list[float]:
    n = draw(st.integers(min_value=200, max_value=1500))
    start = draw(st.floats(min_value=2.0, max_value=11.0))
    end = draw(st.floats(min_value=0.5, max_value=start))
    tau = draw(st.floats(min_value=20, max_value=2000))
    noise = draw(st.floats(min_value=0.0, max_value=0.10))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    losses = [(end + (start - end) * math.exp(-i / tau)) * (1 + rng.uniform(-noise, noise)) for i in range(n)]
    # one-step blips of up to 2x, never two in a row, at most one per 20 steps on average
    previous_blip = False
    for i in range(1, n - 1):
        blip = not previous_blip and rng.random() < 0.05
        if blip:
            losses[i] *= rng.uniform(1.3, 2.0)
        previous_blip = blip
    return losses


@settings(max_examples=60, deadline=None)
@given(healthy_curves())
def test_noisy_healthy_curves_with_one_step_blips_raise_nothing(losses: list[float]) -> None:
    assert scan(curve(losses)) == []


@settings(max_examples=40, deadline=None)
@given(healthy_curves(), st.floats(min_value=1.4, max_value=10.0), st.integers(min_value=3, max_value=20))
def test_a_sustained_jump_in_a_healthy_curve_is_always_a_spike(
    losses: list[float], factor: float, width: int
) -> None:
    at = len(losses) // 2
    base = sorted(losses[at - 30 : at])[15]  # a jump relative to the local median, above any blip
    bumped = losses[:at] + [base * factor * 1.1] * width + losses[at:]
    found = scan(curve(bumped))
    assert any(a.kind == "spike" and at <= a.step < at + width for a in found)


# -- real logs --


def test_llmc_gpt2_124m_8xh100_log_is_healthy() -> None:
    """Karpathy's llm.c GPT-2 124M run (modded-nanogpt records, MIT): 19,560 steps, no incident."""
    with (DATA / "llmc_gpt2_124M_8xH100_train_loss.csv").open() as handle:
        points = [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(handle)]
    assert len(points) == 19560
    assert scan(points) == []


def bigscience(source: str, first: int, last: int) -> list[tuple[int, float]]:
    with (DATA / "bigscience_chronicles_loglines_extracted.csv").open() as handle:
        return [
            (int(r["iteration"]), float(r["lm_loss"]))
            for r in csv.DictReader(handle)
            if r["source_file"] == source and first <= int(r["iteration"]) <= last and r["lm_loss"]
        ]


def test_bloom_176b_spike_at_31219_is_a_spike_and_recovers() -> None:
    """BLOOM-176B chronicles: lm loss 2.2 -> 5.1 (31219) -> 2.8 (31222) -> 2.2 (31250), no divergence."""
    found = scan(bigscience("bigscience_tr11-176B-ml_chronicles.md", 31214, 31251))
    assert [(a.kind, a.step) for a in found] == [("spike", 31221)]


def test_tr8b_104b_fp16_overflow_spike_at_17062() -> None:
    found = scan(bigscience("bigscience_tr8b-104B_chronicles.md", 16800, 17068))
    assert [(a.kind, a.step) for a in found] == [("spike", 17064)]


def test_tr1_13b_spike_at_29050_logged_every_10_steps() -> None:
    found = scan(bigscience("bigscience_tr1-13B-base_chronicles.md", 29020, 29090))
    assert [(a.kind, a.step) for a in found] == [("spike", 29070)]
