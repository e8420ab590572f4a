"""--budget 5m: choose how long each case is timed so that the sweep's estimated wall time fits.

The estimate of a sweep, every worker process counted (--repeats N: N per case):
- fixed: the parent's start, the plan, the final reports (SWEEP_FIXED_S);
- per worker process the run's group order starts (grid/order.py: one per change of backend or
  device, and again in each --repeats round): its interpreter, the runtime's imports, a CUDA
  context (WORKER_START_S);
- per case: setup and harness: this machine's history where the case ran before (its wall time
  minus what it measured, results/history.py), else a stated default per backend and device;
- per case: measuring, at most: the cold run, warmup to its cap, and the timed phase to its cap
  once, plus once more per contention re-measure (--remeasure); each phase may overrun its cap
  by the run in flight, and warmup takes two runs at least. Where the history knows how long one
  run of the case takes that is counted; where it does not, the runs are taken as instant (the
  line says for how many cases the history spoke).

The default timing is kept where its bound fits. Otherwise every case gets the same timing,
chosen from a measuring share A per case by ``choose`` (more time buys a longer minimum, a
longer cap and a tighter target), with the largest A whose bound fits the budget:
    min_time   = A / 4, between 0.1 s and 1 s (warmup lasts at least as long)
    max_time   = 3/4 of A over the timed phases (1 + remeasure), up to 10 s
    warmup_max = what is left of A, between min_time and 5 s
    target CI  = +-1% from a min_time of 1 s, +-2% from 0.4 s, else +-5%: a tighter target in
                 less time would only run every case to its cap
    min_iterations = 10 from a min_time of 0.4 s, else 5
A budget that cannot fit even at the floor (A = 0) is refused before anything runs (exit 2).
Timing flags the user gave (--min-time, --max-time, --target-ci, --min-iterations) win: they are
kept as given and the budget chooses the rest; a budget that they alone overrun is refused the
same way. --quick is a timing choice of its own: --budget and --quick together are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from infersweep.case import Case, group_cases
from infersweep.grid.order import order_groups, worker_starts
from infersweep.measure.timing import MeasureSettings

DEFAULTS = MeasureSettings()
FLOOR_MIN_TIME_S, FLOOR_MAX_TIME_S, FLOOR_WARMUP_S = 0.1, 0.3, 0.2
SWEEP_FIXED_S = 5.0  # parent start, validation, plan, final reports and plots
# A new worker process, to its first case: interpreter, torch and the runtime imported (CPU box);
# on an H200 the gap before a new worker's first case was 5.7-13.3 s, median ~10.5 s (CUDA
# context, NVML, the energy probe's idle reading; benchmarks/results/h200-seed_grid-cold-partial.log)
WORKER_START_S = {"cpu": 3.0, "cuda": 10.0}
# Setup and harness per case without history (model build, export, session, probes, storing):
# measured on the 2-core CPU box (benchmarks/fast_loop.py: 0.6-1.2 s) and on an H200 (issue 16:
# ONNX Runtime 4-5 s per group with exhaustive cuDNN search, torch-compile 7-14 s per case).
DEFAULT_CASE_S = {"cpu": 1.0, "cuda": 2.0}
DEFAULT_BACKEND_CASE_S = {"torch-compile": 10.0, "torch-tensorrt": 30.0, "onnxruntime-trt": 30.0}
# The timing flags and the settings they set (grid/spec.py).
TIMING_FLAGS = {"min_time": "min_time_s", "max_time": "max_time_s", "target_ci": "target_ci",
                "min_iterations": "min_iterations"}

_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([smh]?)\s*")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


class BudgetError(ValueError):
    """A budget that is not a duration, or that the sweep cannot fit: exit 2."""


def parse_duration(text: str) -> float:
    """'300', '300s', '5m', '1.5h' -> seconds."""
    match = _DURATION.fullmatch(str(text))
    seconds = float(match[1]) * _UNIT_S[match[2]] if match else 0.0
    if seconds <= 0:
        raise BudgetError(f"--budget {text!r}: expected a duration such as 300s, 5m or 1.5h")
    return seconds


@dataclass(frozen=True)
class CaseCost:
    """What one case is expected to cost besides its timing settings."""
    overhead_s: float  # setup and harness
    run_s: float = 0.0  # one run's latency (0: unknown)
    known: bool = False  # from this machine's history


def upper_measuring(s: MeasureSettings, run_s: float = 0.0) -> float:
    """Measuring of one case at most: cold run, warmup, timed phases, each cap overrun by one
    run; warmup takes two runs at least."""
    phases = 1 + s.remeasure
    return run_s + max(s.warmup_max_s + run_s, 2 * run_s) + phases * (s.max_time_s + run_s)


def least_measuring(s: MeasureSettings, run_s: float = 0.0) -> float:
    """Measuring of one case that settles and reaches its CI as early as it can."""
    warmup = min(max(s.warmup_floor_s, 2 * s.warmup_window * run_s), s.warmup_max_s + run_s)
    timed = min(max(s.min_time_s, s.min_iterations * run_s), s.max_time_s + run_s)
    return run_s + warmup + timed


@dataclass(frozen=True)
class BudgetPlan:
    """What the budget chose and what it expects the sweep to take."""
    budget_s: float
    settings: MeasureSettings
    costs: tuple[CaseCost, ...]  # one per case to run
    repeats: int
    groups: int
    given: tuple[str, ...] = ()  # settings the user gave, kept as given
    starts: tuple[str, ...] = ()  # the device of each worker process the run starts

    @property
    def overhead_s(self) -> float:
        workers = sum(WORKER_START_S.get(device, WORKER_START_S["cuda"])
                      for device in self.starts)
        return SWEEP_FIXED_S + self.repeats * (workers + sum(c.overhead_s for c in self.costs))

    @property
    def upper_s(self) -> float:
        return self.overhead_s + self.repeats * sum(upper_measuring(self.settings, c.run_s)
                                                    for c in self.costs)

    @property
    def least_s(self) -> float:
        return self.overhead_s + self.repeats * sum(least_measuring(self.settings, c.run_s)
                                                    for c in self.costs)

    def what(self) -> str:
        repeats = f" x {self.repeats} processes" if self.repeats > 1 else ""
        return f"{len(self.costs)} cases{repeats}"

    def overhead_per_case_s(self) -> float:
        return (self.overhead_s - SWEEP_FIXED_S) / (self.repeats * len(self.costs))

    def line(self) -> str:
        s = self.settings
        if not self.costs:
            return f"budget {_duration(self.budget_s)}: nothing to run"
        given = f" ({_flags(s, self.given)} as given)" if self.given else ""
        known = sum(c.known for c in self.costs)
        return (f"budget {_duration(self.budget_s)}: min-time {s.min_time_s:.2g} s, max-time "
                f"{s.max_time_s:.2g} s, warmup at most {s.warmup_max_s:.2g} s, target CI "
                f"±{s.target_ci:.0%}, at least {s.min_iterations} runs{given}; estimated "
                f"{self.least_s:.0f}-{self.upper_s:.0f} s for {self.what()} (setup and harness "
                f"~{self.overhead_per_case_s():.1f} s each; {known} of {len(self.costs)} cases "
                "known from this machine's history)")


def _flags(settings: MeasureSettings, given: tuple[str, ...]) -> str:
    """'--max-time 3, --target-ci 0.02': the given settings as the flags that set them."""
    return ", ".join(f"--{flag.replace('_', '-')} {getattr(settings, name):g}"
                     for flag, name in TIMING_FLAGS.items() if name in given)


def _duration(seconds: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def choose(share_s: float, current: MeasureSettings, given: tuple[str, ...]) -> MeasureSettings:
    """Timing for a measuring share of ``share_s`` seconds per case (0: the floor; infinite:
    the defaults); more share never buys less. ``current``'s ``given`` settings are kept."""
    def pick(name: str, value):
        return getattr(current, name) if name in given else value

    phases = 1 + current.remeasure  # a re-measured case runs its timed phase again
    min_time = pick("min_time_s", _clamp(share_s / 4, FLOOR_MIN_TIME_S, DEFAULTS.min_time_s))
    # Warmup as long as the timed minimum at least (it protects it), the floor's at least.
    warm_low = max(min(min_time, DEFAULTS.warmup_max_s), FLOOR_WARMUP_S)
    max_low = max(min_time, FLOOR_MAX_TIME_S)
    max_time = pick("max_time_s", _clamp(min(share_s * 3 / 4, share_s - warm_low) / phases,
                                         max_low, max(max_low, DEFAULTS.max_time_s)))
    warmup_max = _clamp(share_s - phases * max_time, warm_low, max(warm_low, DEFAULTS.warmup_max_s))
    target = 0.01 if min_time >= 1.0 else 0.02 if min_time >= 0.4 else 0.05
    return replace(current, min_time_s=min_time, warmup_max_s=warmup_max, max_time_s=max_time,
                   target_ci=pick("target_ci", max(target, DEFAULTS.target_ci)),
                   min_iterations=pick("min_iterations",
                                       DEFAULTS.min_iterations if min_time >= 0.4 else 5))


def case_cost(case: Case, history: dict) -> CaseCost:
    """From this machine's history (results.history.case_costs), else the stated defaults."""
    seen = history.get(case.case_id)
    if seen is not None:
        return CaseCost(seen.overhead_s, (seen.median_ms or 0.0) / 1000, True)
    return CaseCost(DEFAULT_BACKEND_CASE_S.get(case.backend, DEFAULT_CASE_S.get(case.device, 2.0)))


def fit(budget_s: float, cases: list[Case], repeats: int, current: MeasureSettings,
        given: tuple[str, ...], history: dict, text: str = "",
        proven: set[tuple] = frozenset()) -> BudgetPlan:
    """The timing that fits ``cases`` (to run, ``repeats`` processes each) in ``budget_s``;
    BudgetError where even the floor does not. ``given``: the settings the user fixed;
    ``proven``: the combinations this machine has seen work (not scouted: fewer worker starts)."""
    costs = tuple(case_cost(c, history) for c in cases)
    groups = group_cases(cases)
    # The worker starts of the order the run will take (sweep.py gives it the same ``proven``)
    starts = tuple(device for _, device in worker_starts(order_groups(groups, set(proven))))

    def plan(share_s: float) -> BudgetPlan:
        return BudgetPlan(budget_s, choose(share_s, current, given), costs, repeats,
                          len(groups), given, starts)

    if not cases:
        return BudgetPlan(budget_s, current, (), repeats, 0, given)
    best = plan(float("inf"))
    if best.upper_s <= budget_s:
        return best
    floor = plan(0.0)
    if floor.upper_s > budget_s:
        flags = f" with {_flags(current, given)} as given" if given else ""
        raise BudgetError(
            f"--budget {text or _duration(budget_s)}: the {floor.what()} need at least "
            f"{floor.upper_s:.0f} s{flags} (setup and harness ~{floor.overhead_per_case_s():.1f}"
            f" s each, measuring up to {floor.upper_s - floor.overhead_s:.0f} s in all); raise "
            "it or shrink the grid")
    # The largest share, in whole milliseconds, whose bound fits (the bound grows with it).
    low, high = 0, int(4000 * upper_measuring(DEFAULTS))
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if plan(middle / 1000).upper_s <= budget_s else (low, middle - 1)
    return plan(low / 1000)


def given_settings(raw: dict) -> tuple[str, ...]:
    """The MeasureSettings fields that a sweep's flags or file set explicitly."""
    return tuple(setting for flag, setting in TIMING_FLAGS.items() if raw.get(flag) is not None)
