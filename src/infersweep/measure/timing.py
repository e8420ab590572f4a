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


@dataclass(frozen=True)
class MeasureSettings:
    min_iterations: int = 10
    min_time_s: float = 1.0
    max_time_s: float = 10.0  # cap on the timed phase of one case
    target_ci: float = 0.01  # stop once the median's 95% CI is within +-1%
    warmup_window: int = 3  # warmup compares medians of consecutive windows of this many runs
    warmup_tolerance: float = 0.05  # ... and is settled when they differ by less than 5%
    warmup_max_s: float = 5.0
    # (quick mode overrides target_ci, min/max time, min_iterations and warmup_max_s)


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


def _timed(run: Callable[[], object]) -> tuple[float, object]:
    """(milliseconds, what run returned): one run, with nothing but the run in the clock."""
    start = time.perf_counter_ns()
    output = run()
    return (time.perf_counter_ns() - start) / 1e6, output


def warm_up(run: Callable[[], object], settings: MeasureSettings) -> tuple[int, list[str]]:
    """Run until the median of the last window is within tolerance of the window before it."""
    w = settings.warmup_window
    history: list[float] = []
    deadline = time.perf_counter() + settings.warmup_max_s
    while True:
        history.append(_timed(run)[0])
        if len(history) >= 2 * w and len(history) % w == 0:
            prev = statistics.median(history[-2 * w:-w])
            last = statistics.median(history[-w:])
            if abs(last - prev) <= settings.warmup_tolerance * prev:
                return len(history), []
        if time.perf_counter() >= deadline and len(history) >= 2:
            return len(history), [
                f"warmup did not settle in {settings.warmup_max_s:g} s ({len(history)} runs)"]


def _ci_reached(samples: list[float], target: float) -> bool:
    s = np.sort(np.asarray(samples))
    lo, hi = median_ci(s)
    med = float(np.median(s))
    return med > 0 and (hi - lo) / 2 / med <= target


def measure(run: Callable[[], object], settings: MeasureSettings,
            after_warmup: Callable[[], object] | None = None) -> Timing:
    first_iter_ms = _timed(run)[0]  # cold: lazy init, kernel selection, allocator growth
    warmup_start = time.perf_counter()
    warmup_iterations, warnings = warm_up(run, settings)
    warmup_ms = (time.perf_counter() - warmup_start) * 1000
    if after_warmup is not None:
        after_warmup()

    samples: list[float] = []
    next_check = settings.min_iterations
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside the timed loop is noise that belongs to us, not the model
    try:
        start = time.perf_counter()
        while True:
            ms, last_output = _timed(run)
            samples.append(ms)
            elapsed = time.perf_counter() - start
            if elapsed >= settings.max_time_s:
                if len(samples) < settings.min_iterations:
                    warnings.append(f"hit the {settings.max_time_s:g} s cap after {len(samples)} "
                                    f"runs (< {settings.min_iterations} wanted)")
                elif not _ci_reached(samples, settings.target_ci):
                    warnings.append(f"hit the {settings.max_time_s:g} s cap before the median's "
                                    f"CI reached +-{settings.target_ci:.1%}")
                break
            # The CI check sorts all samples; do it at geometrically spaced counts, not every run.
            if len(samples) >= next_check and elapsed >= settings.min_time_s:
                if _ci_reached(samples, settings.target_ci):
                    break
                next_check = len(samples) + max(1, len(samples) // 10)
    finally:
        if gc_was_enabled:
            gc.enable()
    return Timing(first_iter_ms, warmup_iterations, warmup_ms, samples, warnings, last_output)


def pipelined_throughput(launch: Callable[[], object], run: Callable[[], object],
                         batch_size: int, median_ms: float, target_s: float = 0.25,
                         repeats: int = 3) -> float:
    """Images/s with N back-to-back launches and one synchronisation at the end.

    This keeps the GPU's launch queue full, as a serving system does; per-run latency includes
    the launch gap that pipelining hides. ``run`` is the last launch, which synchronizes.
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
