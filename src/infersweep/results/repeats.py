"""Process repeats (--repeats N): one case measured in N separate worker processes.

Two levels of noise (Kalibera & Jones, "Rigorous Benchmarking in Reasonable Time", 2013): the
iterations within one process, and the processes within a run (memory layout, where the
allocator put the weights, which cores the threads landed on, clocks). The second level is
usually the larger one and a single process cannot see it. With repeats, a row's median is the
median of the per-process medians and its 95% interval comes from the spread between processes:
a Student t interval of the mean of the process medians (n - 1 degrees of freedom), because with
3 to 10 processes a bootstrap or an order-statistic interval of the median cannot reach 95%
(with 3 values the range covers a median with 75% only). The interval is widened where needed to
contain the reported median, so that the two never contradict each other.

A Result keeps every process's samples pooled in ``samples_ms`` (mean, p99 and the others describe
all of them) and the per-process medians in ``process_medians_ms``, in the order they ran.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # result.py imports this module: only the type is needed here
    from infersweep.results.result import Result

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom; above 30 the normal's.
_T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
          2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
          2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_975(df: int) -> float:
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, not {df}")
    return _T_975[df - 1] if df <= len(_T_975) else 1.959963984540054


@dataclass(frozen=True)
class ProcessStats:
    """The between-process figures of one case."""
    processes: int
    median: float  # median of the per-process medians
    ci_low: float
    ci_high: float
    spread_rel: float  # (max - min) / median of the per-process medians


def process_stats(medians: list[float]) -> ProcessStats:
    """Median and 95% t interval over per-process medians (at least 2)."""
    m = np.asarray(medians, dtype=np.float64)
    if m.size < 2:
        raise ValueError("a between-process interval needs at least 2 process medians")
    center = float(np.median(m))
    half = t_975(m.size - 1) * float(m.std(ddof=1)) / math.sqrt(m.size)
    mean = float(m.mean())
    low, high = min(mean - half, center), max(mean + half, center)
    return ProcessStats(int(m.size), center, max(low, 0.0), high,
                        float((m.max() - m.min()) / center) if center > 0 else math.inf)


def process_medians(result: Result) -> list[float]:
    """The per-process medians of an ok result: stored ones, or the one process it had (rows
    stored before repeats existed). A server case has no batch samples: its one median is its
    requests' (run/serve.py)."""
    if result.status != "ok" or not (result.samples_ms or result.process_medians_ms):
        return []
    return list(result.process_medians_ms) or [float(np.median(result.samples_ms))]


def repeats_done(result: Result | None) -> int:
    return len(process_medians(result)) if result is not None else 0


def merge(stored: Result | None, new: Result, asked: int) -> Result:
    """The case's row after one more process ran it. ``stored``: its row so far (None for the
    first process). A process that fails makes the row fail: a case that cannot be measured
    reliably is not ok, and the medians of the processes that did run stay in info."""
    if new.status == "ok" and new.samples_ms and not new.process_medians_ms:
        new = replace(new, process_medians_ms=[float(np.median(new.samples_ms))])
    earlier = process_medians(stored) if stored is not None else []
    if not earlier:
        return new
    done = len(earlier) + 1
    if new.status != "ok":
        info = {**new.info, "process_medians_ms": earlier}
        return replace(new, reason=f"process {done} of {asked}: {new.reason}", info=info)
    warnings = list(dict.fromkeys(stored.warnings + new.warnings))
    measured, info = new.measured, new.info
    # The contention guard's cell: the row pools every process's median, so a process timed
    # while disturbed keeps the row flagged, named by its number, whatever the last one found.
    noises = _process_noise(stored) + [new.measured.get("noise") or ""]
    if "noise" in new.measured or any(noises):
        measured = {**measured, "noise": "; ".join(f"process {i} of {asked}: {cause}"
                                                   for i, cause in enumerate(noises, 1) if cause)}
        info = {**info, "process_noise": noises}
    return replace(new, samples_ms=stored.samples_ms + new.samples_ms,
                   process_medians_ms=earlier + new.process_medians_ms, warnings=warnings,
                   setup_s=stored.setup_s, first_iter_ms=stored.first_iter_ms,
                   wall_s=(stored.wall_s or 0) + (new.wall_s or 0), measured=measured, info=info)


def _process_noise(result: Result) -> list[str]:
    """Each merged process's noise cell ("" when quiet), in order. A row without the list (one
    process, or merged before it was kept) holds its last process's cell."""
    kept = result.info.get("process_noise")
    if kept is not None:
        return list(kept)
    return [""] * (max(1, len(process_medians(result))) - 1) + [result.measured.get("noise") or ""]


def missing(results: list[Result], asked: int) -> dict[str, int]:
    """case id -> how many more processes an ok case needs to reach ``asked``."""
    out = {}
    for r in results:
        done = repeats_done(r)
        if r.status == "ok" and 0 < done < asked:
            out[r.case.case_id] = asked - done
    return out


def ratio_interval(a: list[float], b: list[float]) -> tuple[float, float]:
    """95% interval of median(B) / median(A) from per-process medians (2 or more per side):
    Welch's t interval of the difference of mean log medians, exponentiated. Logs, because a
    ratio's noise is multiplicative; Welch, because the two runs need not be equally noisy."""
    la, lb = np.log(np.asarray(a, dtype=np.float64)), np.log(np.asarray(b, dtype=np.float64))
    va, vb = la.var(ddof=1) / la.size, lb.var(ddof=1) / lb.size
    diff = float(lb.mean() - la.mean())
    se = math.sqrt(va + vb)
    if se == 0:
        return math.exp(diff), math.exp(diff)
    # Welch-Satterthwaite degrees of freedom, rounded down (the conservative side).
    df = (va + vb) ** 2 / (va ** 2 / (la.size - 1) + vb ** 2 / (lb.size - 1))
    half = t_975(max(1, int(df))) * se
    return math.exp(diff - half), math.exp(diff + half)
