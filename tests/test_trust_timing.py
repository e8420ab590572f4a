"""Warmup and drift rules against a fake clock: a fake run advances the clock by what it costs.

Every assert is a ratio to the true steady-state cost, never an absolute time.
"""

import math
import random

import pytest

from infersweep.measure.stats import summarize
from infersweep.measure.timing import MeasureSettings, measure

BASE_NS = 1_000_000  # the steady-state cost of one run: 1 ms of fake time


class FakeRun:
    """A run whose cost follows ``factor(i)`` (i: how many runs came before), with +-1% jitter."""

    def __init__(self, factor, seed=0):
        self.now = 0
        self.i = 0
        self.factor = factor
        self.rng = random.Random(seed)

    def clock(self) -> int:
        return self.now

    def __call__(self):
        jitter = 1 + self.rng.uniform(-0.01, 0.01)
        self.now += int(BASE_NS * self.factor(self.i) * jitter)
        self.i += 1


def transient(tau_runs: float, excess: float = 0.5):
    """+50% at first, decaying with a time constant of tau_runs runs (a slow clock/cache ramp)."""
    return lambda i: 1 + excess * math.exp(-i / tau_runs)


def median_ratio(timing) -> float:
    return summarize(timing.samples_ms).median / (BASE_NS / 1e6)


def test_slow_transient_is_waited_out_by_the_minimum_warmup_time():
    # The case: windows of 3 runs settle at run 6, and the median came out 5% high.
    run = FakeRun(transient(200))
    timing = measure(run, MeasureSettings(), clock=run.clock)
    assert timing.warnings == []
    assert median_ratio(timing) < 1.01  # within the 1% target of the true cost
    # warmup ran for at least min_time_s (1 s) of fake time, not 6 runs
    assert timing.warmup_ms >= 1000
    assert timing.warmup_iterations > 600


def test_transient_outlasting_warmup_is_seen_as_a_trend_and_its_runs_dropped():
    # A short warmup floor (0.1 s = ~90 runs) ends while the transient is still at +30%:
    # the timed runs trend, their first half is dropped until they no longer do.
    run = FakeRun(transient(300))
    settings = MeasureSettings(warmup_min_s=0.1, max_time_s=30.0)
    timing = measure(run, settings, clock=run.clock)
    assert timing.warnings == []
    assert timing.discarded_iterations > 0
    assert median_ratio(timing) < 1.01
    assert timing.samples_ms[0] / (BASE_NS / 1e6) < 1.03  # kept runs begin after the transient


def test_steady_drift_runs_to_the_cap_and_warns():
    # +10% per 1000 runs, for ever: no amount of dropping makes it settle
    run = FakeRun(lambda i: 1 + 0.1 * i / 1000)
    settings = MeasureSettings(max_time_s=5.0)
    timing = measure(run, settings, clock=run.clock)
    drift = [w for w in timing.warnings if w.startswith("timed runs drifted")]
    assert len(drift) == 1, timing.warnings
    # the timed phase ran to the cap (5 s of fake time), kept and dropped runs together
    timed_s = run.now / 1e9 - (timing.first_iter_ms + timing.warmup_ms) / 1000
    assert timed_s >= 5.0


@pytest.mark.parametrize("seed", range(5))
def test_a_stationary_noisy_run_is_not_called_a_trend(seed):
    # +-1% jitter and an occasional 20% outlier, no trend: stops at min_time_s, no warning
    rng = random.Random(100 + seed)
    run = FakeRun(lambda i: 1.2 if rng.random() < 0.05 else 1.0, seed=seed)
    timing = measure(run, MeasureSettings(target_ci=0.01), clock=run.clock)
    assert timing.warnings == []
    assert timing.discarded_iterations == 0
    assert sum(timing.samples_ms) / 1000 < 1.5  # stopped near min_time_s, far from the cap


def test_warmup_floor_defaults_to_min_time_and_never_exceeds_the_warmup_cap():
    assert MeasureSettings(min_time_s=0.3).warmup_floor_s == 0.3
    assert MeasureSettings(warmup_min_s=2.0).warmup_floor_s == 2.0
    assert MeasureSettings(warmup_min_s=9.0, warmup_max_s=5.0).warmup_floor_s == 5.0


def test_quick_settings_keep_a_warmup_floor_shorter_than_their_cap():
    from infersweep.grid.spec import QUICK_SETTINGS

    quick = MeasureSettings(**QUICK_SETTINGS)
    assert 0 < quick.warmup_floor_s <= quick.warmup_max_s
    assert quick.warmup_floor_s + quick.max_time_s <= 3.5  # quick stays quick
