"""How a case is timed: cold iteration, warmup until the running median settles, adaptive timing.

The same loop times every backend. `run` must return only when the work is complete (the backend
synchronizes its device), so wall-clock time around it is the latency of one batch. Inputs are
placed before timing starts; nothing but `run` is inside the timed region.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from infersweep.measure.stats import median_ci


Clock = Callable[[], int]  # nanoseconds; injected by tests (a fake clock that a fake run advances)


@dataclass(frozen=True)
class MeasureSettings:
    min_iterations: int = 10
    min_time_s: float = 1.0
    max_time_s: float = 10.0  # cap on the timed phase of one case
    target_ci: float = 0.01  # stop once the median's 95% CI is within +-1%
    warmup_window: int = 3  # warmup compares medians of consecutive windows of this many runs
    warmup_tolerance: float = 0.05  # ... and is settled when they differ by less than 5%
    warmup_max_s: float = 5.0
    # Warmup lasts at least this long whatever the windows say: a slow transient (clocks ramping,
    # caches and allocators growing) changes too little between two windows of 3 runs to be seen.
    # None: as long as min_time_s, i.e. warmup is at least as long as the timed phase it protects.
    warmup_min_s: float | None = None
    # A case that the contention guard flagged is timed again up to this many times (--remeasure)
    remeasure: int = 1
    # Server scenario (measure/server.py): each run lasts at least this long and this many
    # requests (LoadGen's defaults); the max-QPS search stops within this fraction of the rate.
    server_min_duration_s: float = 10.0
    server_min_requests: int = 100
    qps_resolution: float = 0.05
    # (quick mode overrides target_ci, min/max time, min_iterations and warmup_max_s)

    @property
    def warmup_floor_s(self) -> float:
        floor = self.min_time_s if self.warmup_min_s is None else self.warmup_min_s
        return min(floor, self.warmup_max_s)


@dataclass
class Timing:
    first_iter_ms: float
    warmup_iterations: int
    warmup_ms: float  # wall time of the warmup phase
    samples_ms: list[float]
    warnings: list[str] = field(default_factory=list)
    # What the last timed run returned: the agreement check reads it, so no extra (untimed but
    # not free: a second at a large CPU batch) run is needed after timing.
    last_output: object = None
    # Timed runs thrown away because the samples still trended (a transient outlasting warmup)
    discarded_iterations: int = 0


def _timed(run: Callable[[], object], clock: Clock | None = None) -> tuple[float, object]:
    """(milliseconds, what run returned): one run, with nothing but the run in the clock."""
    clock = clock or time.perf_counter_ns  # looked up per call: tests patch time
    start = clock()
    output = run()
    return (clock() - start) / 1e6, output


def warm_up(run: Callable[[], object], settings: MeasureSettings,
            clock: Clock | None = None) -> tuple[int, list[str]]:
    """Run for at least ``warmup_floor_s``, then until the median of the last window is within
    tolerance of the window before it."""
    clock = clock or time.perf_counter_ns  # looked up per call: tests patch time
    w = settings.warmup_window
    history: list[float] = []
    start = clock()

    def settled() -> bool:
        prev = statistics.median(history[-2 * w:-w])
        return abs(statistics.median(history[-w:]) - prev) <= settings.warmup_tolerance * prev

    while True:
        history.append(_timed(run, clock)[0])
        elapsed = (clock() - start) / 1e9
        if (elapsed >= settings.warmup_floor_s and len(history) >= 2 * w
                and len(history) % w == 0 and settled()):
            return len(history), []
        if elapsed >= settings.warmup_max_s and len(history) >= 2:
            # A floor as long as the cap (min_time >= warmup_max) ends here: settled is no news
            if len(history) >= 2 * w and settled():
                return len(history), []
            return len(history), [
                f"warmup did not settle in {settings.warmup_max_s:g} s ({len(history)} runs)"]


def _ci_reached(samples: list[float], target: float) -> bool:
    s = np.sort(np.asarray(samples))
    lo, hi = median_ci(s)
    med = float(np.median(s))
    return med > 0 and (hi - lo) / 2 / med <= target


def trend(samples: list[float], target: float) -> tuple[float, float] | None:
    """(first-half median, second-half median) where the timed runs trend; None where not.

    A trend is a difference beyond the target that noise cannot explain: the halves' 95% CIs do
    not overlap. The target alone is not enough: on a noisy machine two halves whose median is
    each known to +-1.4% differ by more than 1% about a third of the time.
    """
    n = len(samples)
    if n < 12:  # 6 per half: the fewest that give a 95% CI of a median
        return None
    first, second = np.sort(samples[:n // 2]), np.sort(samples[n // 2:])
    m1, m2 = float(np.median(first)), float(np.median(second))
    (lo1, hi1), (lo2, hi2) = median_ci(first), median_ci(second)
    separated = hi1 < lo2 or hi2 < lo1
    return (m1, m2) if separated and abs(m2 - m1) > target * min(m1, m2) else None


@dataclass
class TimedPhase:
    samples_ms: list[float]
    warnings: list[str]
    last_output: object
    discarded_iterations: int


def timed_phase(run: Callable[[], object], settings: MeasureSettings,
                clock: Clock | None = None,
                on_start: Callable[[], object] | None = None) -> TimedPhase:
    """Time runs until the median's CI reaches the target with no trend left, or the cap.

    ``on_start`` (the probes' after_warmup: energy, memory and contention windows open there) is
    called after the garbage collection that precedes the loop: a full collection in a process
    that holds a runtime takes a tenth of a second or more, and belongs to no window."""
    clock = clock or time.perf_counter_ns  # looked up per call: tests patch time
    samples: list[float] = []
    warnings: list[str] = []
    discarded = 0
    next_check = settings.min_iterations
    gc.collect()
    if on_start is not None:
        on_start()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside the timed loop is noise that belongs to us, not the model
    try:
        start = kept_since = clock()
        while True:
            ms, last_output = _timed(run, clock)
            samples.append(ms)
            now = clock()
            if (now - start) / 1e9 >= settings.max_time_s:
                warnings += _cap_warnings(samples, settings)
                break
            # The CI check sorts all samples; do it at geometrically spaced counts, not every run.
            if len(samples) >= next_check and (now - kept_since) / 1e9 >= settings.min_time_s:
                if _ci_reached(samples, settings.target_ci):
                    if trend(samples, settings.target_ci) is None:
                        break
                    # Still settling: the first half was warmup after all. Keep measuring.
                    half = len(samples) // 2
                    discarded += half
                    samples = samples[half:]
                    kept_since = now - int(sum(samples) * 1e6)
                next_check = len(samples) + max(1, len(samples) // 10)
    finally:
        if gc_was_enabled:
            gc.enable()
    return TimedPhase(samples, warnings, last_output, discarded)


def measure(run: Callable[[], object], settings: MeasureSettings,
            after_warmup: Callable[[], object] | None = None,
            clock: Clock | None = None) -> Timing:
    clock = clock or time.perf_counter_ns  # looked up per call: tests patch time
    first_iter_ms = _timed(run, clock)[0]  # cold: lazy init, kernel selection, allocator growth
    warmup_start = clock()
    warmup_iterations, warnings = warm_up(run, settings, clock)
    warmup_ms = (clock() - warmup_start) / 1e6
    phase = timed_phase(run, settings, clock, on_start=after_warmup)
    return Timing(first_iter_ms, warmup_iterations, warmup_ms, phase.samples_ms,
                  warnings + phase.warnings, phase.last_output, phase.discarded_iterations)


def time_again(run: Callable[[], object], settings: MeasureSettings, timing: Timing,
               after_warmup: Callable[[], object] | None = None,
               clock: Clock | None = None) -> Timing:
    """The timed phase once more (the case is warm): a Timing with the new samples and the
    first timing's cold run and warmup."""
    clock = clock or time.perf_counter_ns  # looked up per call: tests patch time
    phase = timed_phase(run, settings, clock, on_start=after_warmup)
    kept = [w for w in timing.warnings if w.startswith("warmup")]
    return Timing(timing.first_iter_ms, timing.warmup_iterations, timing.warmup_ms,
                  phase.samples_ms, kept + phase.warnings, phase.last_output,
                  phase.discarded_iterations)


def _cap_warnings(samples: list[float], settings: MeasureSettings) -> list[str]:
    cap = settings.max_time_s
    if len(samples) < settings.min_iterations:
        return [f"hit the {cap:g} s cap after {len(samples)} runs "
                f"(< {settings.min_iterations} wanted)"]
    warnings = []
    if not _ci_reached(samples, settings.target_ci):
        warnings.append(f"hit the {cap:g} s cap before the median's CI reached "
                        f"+-{settings.target_ci:.1%}")
    drift = trend(samples, settings.target_ci)
    if drift is not None:
        m1, m2 = drift
        warnings.append(f"timed runs drifted until the {cap:g} s cap: median {m1:.4g} ms in the "
                        f"first half, {m2:.4g} ms in the second ({m2 / m1 - 1:+.1%})")
    return warnings


PIPELINED_SHARE = 0.05  # of a case's measuring time, at most, for its pipelined throughput


def pipelined_window_s(measuring_s: float, repeats: int = 3) -> float:
    """The window of each of ``repeats`` pipelined runs: 50 ms, less where a case measured so
    briefly (a --budget or --max-time well under a second) that 3 x 50 ms would be more than
    PIPELINED_SHARE of it (on the H200 with --max-time 0.6: 0.15 s of a 1.1 s case)."""
    return min(0.05, PIPELINED_SHARE * measuring_s / repeats)


def pipelined_throughput(launch: Callable[[], object], run: Callable[[], object],
                         batch_size: int, median_ms: float, target_s: float = 0.05,
                         repeats: int = 3) -> float:
    """Images/s with N back-to-back launches and one synchronisation at the end.

    This keeps the GPU's launch queue full, as a serving system does; per-run latency includes
    the launch gap that pipelining hides. ``run`` is the last launch, which synchronizes.
    Three windows of 50 ms: on the H200 three of 250 ms were 0.75 s of a case's ~3 s, the most
    of its harness time; the first launch's latency and the last synchronisation (tens of
    microseconds) stay under 0.1% of a 50 ms window.
    """
    n = max(4, math.ceil(target_s * 1000 / median_ms))
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n - 1):
            launch()
        run()
        rates.append(n * batch_size / (time.perf_counter() - start))
    return statistics.median(rates)
