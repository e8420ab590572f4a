"""The highest request rate whose p99 stays under a bound: bracket, then bisect.

LoadGen's FindPeakPerformance mode (loadgen.cc: FindBoundaries, FindPeakPerformanceBinarySearch):
from a rate that meets the bound, widen the upper bound by doubling until a rate fails, then
bisect between the highest passing and the lowest failing rate. As there, a trial passes on the
performance constraint alone (p99 at or under the bound, run not cut short); the minimum
duration and count are the trial settings' business, and each trial's own validity is recorded
beside it. Unlike LoadGen we also find the lower bound: from a start that fails, the rate is
halved until one passes (down to ``floor`` times the start, then there is no answer:
each halving doubles a trial's length once the minimum request count dominates). The search
stops when the bracket is within ``resolution`` of the passing rate: the true maximum lies in
[lo, hi), at most ``resolution`` above the rate reported. Every trial uses the same seed, so
the trials differ only in rate (the same arrival pattern, scaled).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from infersweep.measure.server import ServerSummary

MAX_TRIALS = 30


@dataclass
class Search:
    bound_ms: float
    resolution: float
    best: ServerSummary | None = None  # the highest rate that met the bound
    failed_qps: float | None = None  # the lowest rate that did not
    trials: list[ServerSummary] = field(default_factory=list)
    note: str = ""  # why the search ended without the resolution asked for

    @property
    def max_qps(self) -> float | None:
        return self.best.target_qps if self.best else None

    def trial_records(self) -> list[dict]:
        """Every trial in the order run: rate, what it achieved, its p99, passed, valid."""
        return [{"qps": t.target_qps, "achieved_qps": t.achieved_qps, "p99_ms": t.request_ms_p99,
                 "passed": t.meets_bound, "valid": t.valid, "invalid_reason": t.invalid_reason}
                for t in self.trials]


def find_max_qps(trial: Callable[[float], ServerSummary], bound_ms: float, start_qps: float,
                 resolution: float = 0.05, floor: float = 1 / 16,
                 max_trials: int = MAX_TRIALS) -> Search:
    search = Search(bound_ms, resolution)

    def run(rate: float) -> bool:
        summary = trial(rate)
        search.trials.append(summary)
        return summary.meets_bound

    rate = start_qps
    while search.best is None:  # a passing lower bound
        if len(search.trials) >= max_trials:
            search.note = f"no passing rate within {max_trials} trials"
            return search
        if run(rate):
            search.best = search.trials[-1]
        else:
            search.failed_qps = rate
            rate /= 2
            if rate < start_qps * floor:
                search.note = (f"no rate down to {search.failed_qps:.3g} QPS keeps the p99 "
                               f"under {bound_ms:g} ms")
                return search
    while search.failed_qps is None:  # widen: double until a rate fails
        if len(search.trials) >= max_trials:
            search.note = f"every rate up to {search.best.target_qps:.3g} QPS passed"
            return search
        rate = search.best.target_qps * 2
        if run(rate):
            search.best = search.trials[-1]
        else:
            search.failed_qps = rate
    while (search.failed_qps - search.best.target_qps) / search.best.target_qps > resolution:
        if len(search.trials) >= max_trials:
            search.note = f"stopped after {max_trials} trials, above the resolution"
            return search
        rate = (search.best.target_qps + search.failed_qps) / 2
        if run(rate):
            search.best = search.trials[-1]
        else:
            search.failed_qps = rate
    return search
