"""Summary statistics of latency samples. Pure functions of the samples: easy to test by hand."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z_95 = 1.959963984540054


@dataclass(frozen=True)
class Stats:
    iterations: int
    mean: float
    median: float
    trimmed: float  # 10% trimmed mean: the best and worst 10% dropped (the user's course's method)
    std: float
    min: float
    max: float
    p90: float
    p99: float
    ci_low: float  # 95% confidence interval of the median (distribution-free)
    ci_high: float

    @property
    def ci_halfwidth_rel(self) -> float:
        """Half-width of the median's CI relative to the median (0.01 means +-1%)."""
        return (self.ci_high - self.ci_low) / 2 / self.median if self.median > 0 else math.inf


def median_ci(sorted_samples: np.ndarray) -> tuple[float, float]:
    """95% CI of the median from order statistics (binomial, normal approximation).

    Distribution-free: latency samples are skewed with a long right tail, so a mean +- t*sigma
    interval would be wrong. Ranks are n/2 -+ z*sqrt(n)/2, widened to whole ranks. With fewer than
    6 samples no such interval exists at 95%, and the full range is returned.
    """
    n = len(sorted_samples)
    if n < 6:
        return float(sorted_samples[0]), float(sorted_samples[-1])
    half = Z_95 * math.sqrt(n) / 2
    lo = max(0, math.floor(n / 2 - half) - 1)  # 0-based index of the lower order statistic
    hi = min(n - 1, math.ceil(n / 2 + half))
    return float(sorted_samples[lo]), float(sorted_samples[hi])


def trimmed_mean(sorted_samples: np.ndarray, proportion: float = 0.1) -> float:
    n = len(sorted_samples)
    k = int(n * proportion)
    return float(np.mean(sorted_samples[k:n - k]))


def summarize(samples_ms) -> Stats:
    s = np.sort(np.asarray(samples_ms, dtype=np.float64))
    if s.size == 0:
        raise ValueError("no samples")
    lo, hi = median_ci(s)
    return Stats(
        iterations=int(s.size),
        mean=float(s.mean()),
        median=float(np.median(s)),
        trimmed=trimmed_mean(s),
        std=float(s.std(ddof=1)) if s.size > 1 else 0.0,
        min=float(s[0]),
        max=float(s[-1]),
        p90=float(np.percentile(s, 90)),
        p99=float(np.percentile(s, 99)),
        ci_low=lo,
        ci_high=hi,
    )
