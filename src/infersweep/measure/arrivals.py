"""Arrival schedules of the server scenario: a seeded Poisson process, precomputed.

As MLPerf LoadGen does (loadgen.cc ``ScheduleDistribution<Server>``: exponential inter-arrival
times from a seeded generator), the gaps between requests are exponential with mean 1/rate, so
arrivals form a Poisson process at the target rate. The whole schedule is drawn before the run
(nothing random happens while it runs), and (seed, rate, count) reproduce it exactly: that is
what a result stores. Like LoadGen, the schedule is long enough for both minimums: its last
arrival is at or after ``min_duration_s`` and it holds at least ``min_requests`` requests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHUNK = 4096  # gaps drawn per call: one generator, so the first N gaps never depend on the chunking


@dataclass(frozen=True)
class Schedule:
    rate: float  # requests per second asked for
    seed: int
    arrivals_s: np.ndarray  # arrival time of each request from the start of the run, ascending

    @property
    def count(self) -> int:
        return len(self.arrivals_s)

    @property
    def duration_s(self) -> float:
        """The last scheduled arrival (LoadGen's "final query scheduled time")."""
        return float(self.arrivals_s[-1])

    def record(self) -> dict:
        """What reproduces the schedule: stored with the result."""
        return {"kind": "poisson", "rate": self.rate, "seed": self.seed, "count": self.count}


def poisson_schedule(rate: float, seed: int, min_requests: int = 1,
                     min_duration_s: float = 0.0) -> Schedule:
    """Arrivals of a Poisson process at ``rate``/s until both minimums are met."""
    if not rate > 0:
        raise ValueError(f"rate must be > 0, got {rate!r}")
    rng = np.random.default_rng(seed)
    gaps: list[np.ndarray] = []
    total, count = 0.0, 0
    while count < min_requests or total < min_duration_s:
        chunk = rng.exponential(1.0 / rate, CHUNK)
        gaps.append(chunk)
        total += float(chunk.sum())
        count += CHUNK
    arrivals = np.cumsum(np.concatenate(gaps))
    # Cut to the first arrival that meets both minimums.
    at_duration = int(np.searchsorted(arrivals, min_duration_s, side="left")) + 1
    return Schedule(rate, seed, arrivals[:max(min_requests, at_duration)])
