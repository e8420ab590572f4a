"""The timing loop on a fake clock: each run advances the clock by a chosen step, so the stopping
rule (min_time, min_iterations, the cap, the CI target) and warmup give exact counts that no load
on the machine can change. Real-clock behaviour is in test_fast_loop.py."""

import gc
import math
from types import SimpleNamespace

import pytest

from infersweep.measure import timing
from infersweep.measure.timing import MeasureSettings, measure, pipelined_throughput, warm_up


class FakeClock:
    """perf_counter / perf_counter_ns that move only when a run says so (nanoseconds, exact)."""

    def __init__(self):
        self.ns = 0

    def advance_ms(self, ms: float) -> None:
        self.ns += round(ms * 1_000_000)

    def runner(self, steps_ms):
        """A run that takes steps_ms(i) ms on its i-th call (0-based) and returns i."""
        calls = []

        def run():
            i = len(calls)
            calls.append(i)
            self.advance_ms(steps_ms(i))
            return i

        run.calls = calls
        return run


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter=lambda: fake.ns / 1e9,
                                                        perf_counter_ns=lambda: fake.ns))
    return fake


def settings(**kw):
    return MeasureSettings(**{"min_iterations": 10, "min_time_s": 0.0, "max_time_s": 10.0,
                              "target_ci": 0.01, "warmup_max_s": 5.0, **kw})


# Constant 1 ms runs: the median's CI is zero wide from the start, so only min_time and
# min_iterations keep the timed phase going. (Limits sit between two steps: no float ties.)

@pytest.mark.parametrize("min_time_s, expected", [(0.1005, 101), (0.0505, 51), (0.0005, 10)])
def test_timed_phase_runs_until_min_time(clock, min_time_s, expected):
    t = measure(clock.runner(lambda i: 1.0), settings(min_time_s=min_time_s))
    assert len(t.samples_ms) == expected
    assert t.samples_ms == [1.0] * expected and t.warnings == []


@pytest.mark.parametrize("min_iterations", [7, 150])
def test_timed_phase_runs_at_least_min_iterations(clock, min_iterations):
    t = measure(clock.runner(lambda i: 1.0), settings(min_iterations=min_iterations,
                                                      min_time_s=0.0055))
    assert len(t.samples_ms) == max(min_iterations, 6)


def test_cap_before_min_iterations_says_how_many_runs(clock):
    t = measure(clock.runner(lambda i: 50.0), settings(min_iterations=10, max_time_s=0.1205))
    assert len(t.samples_ms) == 3  # 150 ms >= the 120.5 ms cap
    assert t.warnings == ["hit the 0.1205 s cap after 3 runs (< 10 wanted)"]


def test_cap_before_the_ci_target_says_so(clock):
    # 1, 3, 1, 3, ... ms: the median's CI never shrinks below +-1%.
    t = measure(clock.runner(lambda i: 1.0 + 2 * (i % 2)), settings(max_time_s=0.2005,
                                                                  warmup_tolerance=1.0))
    # 3, 1, 3, ... ms from the first timed run: 100 runs make 200 ms, the 101st crosses the cap
    assert sum(t.samples_ms) == pytest.approx(203.0) and len(t.samples_ms) == 101
    assert t.warnings == ["hit the 0.2005 s cap before the median's CI reached +-1.0%"]


def test_cap_wins_over_min_time(clock):
    t = measure(clock.runner(lambda i: 1.0), settings(min_time_s=5.0, max_time_s=0.0205))
    assert len(t.samples_ms) == 21 and t.warnings == []  # CI reached: no warning at the cap


@pytest.mark.parametrize("target_ci, samples", [(0.21, 10), (0.2, 10), (0.19, 100)])
def test_ci_target_decides_when_to_stop(clock, target_ci, samples):
    # Timed runs 1, 1.5, 1, ... ms: the CI spans both values, +-20% of the median 1.25 (even n)
    # or +-25% of the median 1 (odd n).
    t = measure(clock.runner(lambda i: 1.0 + 0.5 * ((i + 1) % 2)),
                settings(target_ci=target_ci, max_time_s=0.1245, warmup_tolerance=1.0))
    assert len(t.samples_ms) == samples


def test_ci_checks_are_spaced_geometrically(clock):
    # Never reaching the target: count the CI checks (each sorts every sample).
    checked = []
    real = timing._ci_reached
    timing._ci_reached = lambda s, target: checked.append(len(s)) or real(s, target)
    try:
        measure(clock.runner(lambda i: 1.0 + 2 * (i % 2)), settings(max_time_s=0.2005,
                                                                     warmup_tolerance=1.0))
    finally:
        timing._ci_reached = real
    assert checked[:6] == [10, 11, 12, 13, 14, 15]  # +max(1, n // 10)
    assert checked[10:13] == [20, 22, 24]
    assert checked[-1] == 101  # the final check at the cap


def test_warmup_waits_for_a_slow_start_to_settle(clock):
    run = clock.runner(lambda i: 20.0 if i < 5 else 2.0)  # call 0 is the cold run
    t = measure(run, settings(min_iterations=5, min_time_s=0.0505))
    # Windows of 3: slow,slow,slow | slow,fast,fast differ; fast,fast,fast after that is
    # compared with the mixed window (medians 2 and 2): settled after 9 warmup runs.
    assert t.warmup_iterations == 9 and t.first_iter_ms == 20.0
    assert t.warmup_ms == pytest.approx(4 * 20.0 + 5 * 2.0)
    assert set(t.samples_ms) == {2.0}  # no slow run leaked into the samples


@pytest.mark.parametrize("change, settled", [(1.04, 6), (1.06, 9)])
def test_warmup_tolerance_is_relative_to_the_window_before(clock, change, settled):
    # First window at 10 ms, every later run at 10 * change ms: within 5% settles at once,
    # beyond it only when the next window agrees.
    run = clock.runner(lambda i: 10.0 if i < 3 else 10.0 * change)
    assert warm_up(run, settings()) == (settled, [])


def test_warmup_that_never_settles_stops_at_its_deadline(clock):
    run = clock.runner(lambda i: 10.0 * 1.2 ** i)  # 20% slower every run
    n, warnings = warm_up(run, settings(warmup_max_s=0.1))
    elapsed = sum(10.0 * 1.2 ** i for i in range(n))
    assert elapsed >= 100.0 > elapsed - 10.0 * 1.2 ** (n - 1)  # the run that crossed it
    assert warnings == [f"warmup did not settle in 0.1 s ({n} runs)"]


def test_warmup_needs_two_runs_even_past_its_deadline(clock):
    n, warnings = warm_up(clock.runner(lambda i: 1000.0 * (i + 1)), settings(warmup_max_s=0.0))
    assert n == 2 and warnings == ["warmup did not settle in 0 s (2 runs)"]


def test_after_warmup_runs_between_warmup_and_timing_and_last_output_is_kept(clock):
    run = clock.runner(lambda i: 1.0)
    seen = []
    was_enabled = gc.isenabled()
    t = measure(run, settings(min_iterations=10, min_time_s=0.0),
                after_warmup=lambda: seen.append(len(run.calls)))
    assert seen == [1 + t.warmup_iterations]  # cold run + warmup, no timed run yet
    assert len(run.calls) == 1 + t.warmup_iterations + len(t.samples_ms)
    assert t.last_output == run.calls[-1]
    assert gc.isenabled() == was_enabled


def test_probe_windows_open_after_the_collection_that_precedes_the_timed_loop(clock, monkeypatch):
    """A full gc in a process holding a runtime takes 0.1-0.4 s (seen as an H200 energy window
    0.37 s longer than its timed runs): it must fall before after_warmup opens the windows."""
    events = []
    monkeypatch.setattr(timing.gc, "collect", lambda *a: events.append("collect"))
    run = clock.runner(lambda i: 1.0)
    t = measure(run, settings(min_iterations=10, min_time_s=0.0),
                after_warmup=lambda: events.append("window opens"))
    timing.time_again(run, settings(min_iterations=10, min_time_s=0.0), t,
                      after_warmup=lambda: events.append("window opens"))
    assert events == ["collect", "window opens"] * 2


def test_gc_is_off_inside_the_timed_loop_only(clock):
    states = []
    run = clock.runner(lambda i: 1.0)
    measure(lambda: states.append(gc.isenabled()) or run(), settings(min_iterations=10))
    assert states[:7] == [True] * 7 and states[7:] == [False] * (len(states) - 7)
    assert gc.isenabled()


def test_pipelined_throughput_counts_every_launch(clock):
    launch = clock.runner(lambda i: 1.0)
    last = clock.runner(lambda i: 1.0)
    ips = pipelined_throughput(launch, last, batch_size=8, median_ms=10.0, target_s=0.25)
    n = math.ceil(250 / 10.0)  # 25 batches of 8 per repeat, 25 ms each repeat
    assert ips == pytest.approx(n * 8 / 0.025)
    assert len(launch.calls) == 3 * (n - 1) and len(last.calls) == 3


def test_pipelined_throughput_launches_at_least_four(clock):
    launch = clock.runner(lambda i: 2.0)
    last = clock.runner(lambda i: 4.0)
    ips = pipelined_throughput(launch, last, batch_size=1, median_ms=1000.0, repeats=1)
    assert len(launch.calls) == 3 and ips == pytest.approx(4 / 0.010)


def test_the_pipelined_window_is_50_ms_or_a_twentieth_of_a_brief_cases_measuring():
    from infersweep.measure.timing import pipelined_window_s

    assert pipelined_window_s(10.0) == 0.05 and pipelined_window_s(3.0) == 0.05
    assert abs(3 * pipelined_window_s(1.2) - 0.06) < 1e-12  # 5% of 1.2 s in three windows
