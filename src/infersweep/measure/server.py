"""The server scenario's loop: Poisson arrivals, a batcher, the runtime, request latencies.

One thread, real time. The schedule is drawn before the run (arrivals.py). The loop admits every
request whose arrival time has passed into the batcher's queue, runs a batch when the batcher
releases one (batcher.py), and stamps each request of the batch with the batch's completion.
A request's latency runs from its *scheduled* arrival to its result on the host, so waiting
behind a slow batch counts, as in MLPerf LoadGen (latency from the scheduled issue time). While
the runtime is busy nothing else happens: the single thread is also what a runtime that takes
one batch at a time gives a server.

The clock, the sleep and the batch runner are injected: tests drive the loop with a fake clock
and a fake service time, and check latency accounting against queueing theory, instantly.

Validity (``ServerRules``), each rule from LoadGen (loadgen/results.cc, test_settings.h):
- a minimum duration and request count (LoadGen: the test runs until both are met; its own
  defaults, 10 s and 100 queries, are ours);
- the server kept up: achieved QPS not more than ``max_shortfall`` below the scheduled QPS;
- with a p99 bound: p99 at or under it (LoadGen's "performance constraints"), and early stopping:
  with t of n requests over the bound, the binomial rule at 99% confidence must hold (n >= h + t,
  h the fewest requests under the bound that make "the true p99 is over the bound" less than 1%
  likely; ``early_stopping_ok``). At t = 0 that needs 459 requests.
"""

from __future__ import annotations

import gc
import math
import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from infersweep.measure.arrivals import Schedule
from infersweep.measure.batcher import Batcher

# LoadGen's own defaults (test_settings.h: min_duration_ms = 10000, min_query_count = 100);
# MLPerf submissions ask for 600 s (mlperf.conf: *.Server.min_duration = 600000).
LOADGEN_MIN_DURATION_S = 10.0
LOADGEN_MIN_REQUESTS = 100
PERCENTILE = 0.99  # the server's latency percentile (LoadGen: server_target_latency_percentile)
CONFIDENCE = 0.99  # early stopping's confidence (LoadGen: results.cc EarlyStopping)
SPIN_S = 0.0005  # the last half millisecond of a wait is spun: time.sleep overshoots by ~0.1 ms


def precise_sleep(seconds: float) -> None:
    """Sleep, then spin the last ``SPIN_S``: the runtime is idle while the loop waits, so the
    spin takes no core from it."""
    end = time.perf_counter() + seconds
    if seconds > SPIN_S:
        time.sleep(seconds - SPIN_S)
    while time.perf_counter() < end:
        pass


@dataclass(frozen=True)
class ServerRules:
    min_duration_s: float = LOADGEN_MIN_DURATION_S
    min_requests: int = LOADGEN_MIN_REQUESTS
    p99_bound_ms: float | None = None
    # The server fell behind when it completed requests this much slower than they were scheduled.
    max_shortfall: float = 0.10


@dataclass
class ServerRun:
    """What one run did: per served request (in arrival order) its latency and its wait."""
    schedule: Schedule
    max_batch: int
    max_delay_ms: float
    latency_ms: np.ndarray  # completion - scheduled arrival
    queue_ms: np.ndarray  # batch start - scheduled arrival
    batch_sizes: list[int]
    last_completion_s: float
    stopped: str = ""  # why the run ended before every request was served ("" when it did not)

    @property
    def served(self) -> int:
        return len(self.latency_ms)


def serve(run_batch: Callable[[int], object], schedule: Schedule, max_batch: int,
          max_delay_s: float, *, clock: Callable[[], float] = time.perf_counter,
          sleep: Callable[[float], None] = precise_sleep, p99_bound_s: float | None = None,
          max_run_s: float | None = None) -> ServerRun:
    """Serve ``schedule``; ``run_batch(n)`` runs one batch of n requests to its result.

    The run stops early, as LoadGen's early outs do, when the p99 is certain to be over the bound
    (so many requests are over it, served or still waiting, that the rest cannot pull the p99
    under), or when it has run ``max_run_s`` (default: twice the schedule, at least 1 s more):
    the server is overloaded and its queue only grows."""
    arrivals = schedule.arrivals_s.tolist()  # list: bisect with bounds, fast indexing
    n = len(arrivals)
    limit = max_run_s if max_run_s is not None else max(2 * arrivals[-1], arrivals[-1] + 1.0)
    # The LoadGen percentile is sorted[int(n * p)]: it is over the bound once this many are.
    certain_fail = n - int(n * PERCENTILE) if p99_bound_s is not None else None
    batcher = Batcher(max_batch, max_delay_s)
    # As in the timed loop (timing.py): collect now, and no collection inside the run, where a
    # full one (0.1 s or more in a process holding a runtime) would land on some requests.
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _serve(run_batch, schedule, batcher, clock, sleep, limit, certain_fail,
                      p99_bound_s)
    finally:
        if gc_was_enabled:
            gc.enable()


def _serve(run_batch, schedule: Schedule, batcher: Batcher, clock, sleep, limit: float,
           certain_fail: int | None, p99_bound_s: float | None) -> ServerRun:
    """The loop of ``serve``, with the garbage collector off."""
    arrivals = schedule.arrivals_s.tolist()  # list: bisect with bounds, fast indexing
    n = len(arrivals)
    started = np.zeros(n)
    done = np.zeros(n)
    sizes: list[int] = []
    admitted = served = over = 0
    stopped = ""
    t0 = clock()
    end = 0.0
    while served < n:
        now = clock() - t0
        while admitted < n and arrivals[admitted] <= now:
            batcher.add(admitted, arrivals[admitted])
            admitted += 1
        if not batcher.ready(now):
            next_event = min(arrivals[admitted] if admitted < n else math.inf,
                             batcher.deadline() or math.inf)
            sleep(max(0.0, next_event - now))
            continue
        ids = batcher.take()  # FIFO: always requests served .. served + len(ids) - 1
        begin = clock() - t0
        run_batch(len(ids))
        end = clock() - t0
        started[served:served + len(ids)] = begin
        done[served:served + len(ids)] = end
        sizes.append(len(ids))
        served += len(ids)
        if certain_fail is not None:
            over += sum(end - arrivals[i] > p99_bound_s for i in ids)
            # unserved requests (admitted or not yet) that arrived more than the bound ago
            waiting = bisect_left(arrivals, end - p99_bound_s, served, n)
            if over + waiting - served >= certain_fail:
                stopped = (f"stopped early: {over + waiting - served} of {n} requests already "
                           f"over the {p99_bound_s * 1e3:g} ms bound, p99 certainly above it")
                break
        if end > limit:
            stopped = (f"stopped early: overloaded, {n - served} of {n} requests still unserved "
                       f"after {end:.1f} s (schedule {arrivals[-1]:.1f} s)")
            break
    arr = schedule.arrivals_s[:served]
    return ServerRun(schedule, batcher.max_batch, batcher.max_delay_s * 1e3,
                     (done[:served] - arr) * 1e3,
                     (started[:served] - arr) * 1e3, sizes, end, stopped)


def loadgen_percentile(sorted_ms: np.ndarray, p: float) -> float:
    """LoadGen's percentile: the sample at index int(n * p) of the sorted samples."""
    return float(sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * p))])


def binomial_cdf(t: int, n: int, q: float) -> float:
    """P(X <= t) for X ~ Binomial(n, q), summed in log space (n may be 10^5)."""
    total = 0.0
    for k in range(t + 1):
        log_term = (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                    + k * math.log(q) + (n - k) * math.log1p(-q))
        total += math.exp(log_term)
    return min(1.0, total)


def early_stopping_ok(n: int, over: int, percentile: float = PERCENTILE,
                      confidence: float = CONFIDENCE) -> bool:
    """LoadGen's server early-stopping rule: were the true percentile exactly at the bound (each
    request over it with probability 1 - percentile), seeing ``over`` or fewer of ``n`` over it
    would have at most 1 - confidence probability."""
    return over < n and binomial_cdf(over, n, 1 - percentile) <= 1 - confidence


def early_stopping_minimum(over: int, percentile: float = PERCENTILE,
                           confidence: float = CONFIDENCE) -> int:
    """The fewest requests for which ``over`` requests over the bound pass the rule."""
    hi = max(1, over + 1)
    while not early_stopping_ok(hi, over, percentile, confidence):
        hi *= 2
    lo = hi // 2
    while hi - lo > 1:  # the rule holds at hi, not at lo
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if early_stopping_ok(mid, over, percentile, confidence) else (mid, hi)
    return hi


@dataclass
class ServerSummary:
    """The figures of one server run, and whether it is valid (``invalid_reason`` says why not)."""
    target_qps: float
    scheduled_qps: float
    achieved_qps: float
    request_ms_p50: float | None
    request_ms_p90: float | None
    request_ms_p99: float | None
    request_ms_p999: float | None
    mean_batch: float | None
    queue_share_pct: float | None
    requests: int
    run_s: float
    p99_bound_ms: float | None
    valid: bool
    invalid_reason: str = ""
    schedule: dict = field(default_factory=dict)

    @property
    def meets_bound(self) -> bool:
        """LoadGen's performance constraint (what its peak search bisects on): the run was not
        cut short and its p99 is at or under the bound."""
        return (self.p99_bound_ms is not None and self.request_ms_p99 is not None
                and "stopped early" not in self.invalid_reason
                and self.request_ms_p99 <= self.p99_bound_ms)

    def to_dict(self) -> dict:
        return asdict(self)


def summarize_run(run: ServerRun, rules: ServerRules) -> ServerSummary:
    s = np.sort(run.latency_ms)
    schedule = run.schedule
    scheduled_qps = schedule.count / schedule.duration_s
    achieved_qps = run.served / run.last_completion_s if run.last_completion_s > 0 else 0.0
    pct = {p: loadgen_percentile(s, p) if run.served else None for p in (0.5, 0.9, 0.99, 0.999)}
    broken = problems(run, rules, scheduled_qps, achieved_qps, pct[0.99], s)
    total_ms = float(run.latency_ms.sum())
    return ServerSummary(
        target_qps=schedule.rate, scheduled_qps=scheduled_qps, achieved_qps=achieved_qps,
        request_ms_p50=pct[0.5], request_ms_p90=pct[0.9], request_ms_p99=pct[0.99],
        request_ms_p999=pct[0.999],
        mean_batch=float(np.mean(run.batch_sizes)) if run.batch_sizes else None,
        queue_share_pct=100 * float(run.queue_ms.sum()) / total_ms if total_ms > 0 else None,
        requests=run.served, run_s=run.last_completion_s, p99_bound_ms=rules.p99_bound_ms,
        valid=not broken, invalid_reason="; ".join(broken), schedule=schedule.record())


def problems(run: ServerRun, rules: ServerRules, scheduled_qps: float, achieved_qps: float,
             p99: float | None, sorted_ms: np.ndarray) -> list[str]:
    """The rules the run broke, in words ([] for a valid run)."""
    broken = [run.stopped] if run.stopped else []
    last_arrival = float(run.schedule.arrivals_s[run.served - 1]) if run.served else 0.0
    if last_arrival < rules.min_duration_s:
        broken.append(f"ran {last_arrival:.2f} s of arrivals, below the minimum "
                      f"{rules.min_duration_s:g} s")
    if run.served < rules.min_requests:
        broken.append(f"{run.served} requests, below the minimum {rules.min_requests}")
    if achieved_qps < scheduled_qps * (1 - rules.max_shortfall):
        broken.append(f"fell behind: achieved {achieved_qps:.1f} QPS, more than "
                      f"{rules.max_shortfall:.0%} below the scheduled {scheduled_qps:.1f}")
    bound = rules.p99_bound_ms
    if bound is not None and p99 is not None:
        if p99 > bound:
            broken.append(f"p99 {p99:.2f} ms is over the {bound:g} ms bound")
        over = int(len(sorted_ms) - np.searchsorted(sorted_ms, bound, side="right"))
        if not run.stopped and not early_stopping_ok(run.served, over):
            broken.append(f"early stopping: {run.served} requests with {over} over the bound, "
                          f"fewer than the {early_stopping_minimum(over)} that the binomial rule "
                          "at 99% confidence needs")
    return broken
