"""Where a run's time went: measuring, setup, and the harness around them.

- measuring: the cold run, warmup and timed runs of every case, re-measures and runs discarded
  for drift included (what the worker spent in the measuring loop);
- setup: export, compilation, engine builds, session creation (the group's, charged to the case
  that prepared it) and per-shape specialisation;
- harness: the rest of the wall time: worker start and imports, probes (memory, FLOPs, the fp32
  reference) and pipelined throughput (GPU), storing and reports after each case, the gaps
  between cases, failed cases.

The worker records what it spent on each case (``info["spent_s"]``, run/worker.py); a row
without it (a worker that does not record it) falls back on what a Result keeps: cold run +
warmup + timed samples, and the group's setup_s once per group. A run that was resumed is split
per session (one invocation of `run`); the report sums the sessions, each with its own wall time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from infersweep.results.result import Result


@dataclass(frozen=True)
class TimeSplit:
    wall_s: float
    measuring_s: float
    setup_s: float
    # Worker slots that ran cases side by side (--gpus 0,1: 2): the shares are of workers x wall,
    # the time the workers had, so that parallel measuring cannot exceed 100%.
    workers: int = 1
    sessions: int = 1
    cases: int = 0  # worker processes that ran a case (with --repeats, each process counts)

    @property
    def capacity_s(self) -> float:
        return self.wall_s * self.workers

    @property
    def harness_s(self) -> float:
        # Never negative: parallel workers on Ray are not counted in ``workers`` (unknown here).
        return max(0.0, self.capacity_s - self.measuring_s - self.setup_s)

    def percent(self, seconds: float) -> float:
        return 100.0 * seconds / self.capacity_s if self.capacity_s > 0 else 0.0

    def harness_per_case_s(self) -> float | None:
        return self.harness_s / self.cases if self.cases else None

    def parts(self) -> list[tuple[str, float]]:
        return [("measuring", self.measuring_s), ("setup", self.setup_s),
                ("harness", self.harness_s)]

    def line(self) -> str:
        """One line: 'wall 100.0 s: measuring 60.0 s (60%), setup 15.0 s (15%), harness ...'."""
        parts = ", ".join(f"{name} {s:.1f} s ({self.percent(s):.0f}%)" for name, s in self.parts())
        where = f" over {self.sessions} sessions" if self.sessions > 1 else ""
        workers = f" x {self.workers} workers" if self.workers > 1 else ""
        return f"wall {self.wall_s:.1f} s{workers}{where}: {parts}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TimeSplit:
        return cls(**{k: d[k] for k in ("wall_s", "measuring_s", "setup_s", "workers",
                                         "sessions", "cases") if k in d})


def case_spent(result: Result, first_of_group: bool = True) -> tuple[float, float]:
    """(measuring, setup) seconds one worker process spent on one case."""
    spent = result.info.get("spent_s")
    if isinstance(spent, dict):
        return float(spent.get("measuring", 0.0)), float(spent.get("setup", 0.0))
    measuring = 0.0
    if result.status == "ok" and result.samples_ms:
        measuring = ((result.first_iter_ms or 0.0) + result.info.get("warmup_ms", 0.0)
                     + sum(result.samples_ms)) / 1000
    return measuring, (result.setup_s or 0.0) if first_of_group else 0.0


def time_split(results: Iterable[Result], wall_s: float, workers: int = 1) -> TimeSplit:
    """The split of one session: ``results`` are the per-process results it produced (not the
    rows merged over --repeats), ``wall_s`` the session's wall time."""
    measuring = setup = 0.0
    groups: set[tuple] = set()
    count = 0
    for result in results:
        key = result.case.group_key
        m, s = case_spent(result, first_of_group=key not in groups)
        groups.add(key)
        measuring += m
        setup += s
        count += 1
    return TimeSplit(wall_s, measuring, setup, max(1, workers), 1, count)


def total(splits: Iterable[TimeSplit]) -> TimeSplit | None:
    """Sessions summed: wall, measuring and setup add up. Workers: the sessions' worker time
    over their wall time, rounded (exact where every session had the same number)."""
    splits = list(splits)
    if not splits:
        return None
    wall = sum(s.wall_s for s in splits)
    workers = round(sum(s.capacity_s for s in splits) / wall) if wall > 0 else 1
    return TimeSplit(wall, sum(s.measuring_s for s in splits), sum(s.setup_s for s in splits),
                     max(1, workers), sum(s.sessions for s in splits),
                     sum(s.cases for s in splits))


@dataclass(frozen=True)
class BackendTime:
    """What one (backend, device)'s cases took, summed over their processes: where a sweep's
    time went in terms a user can act on (a torch-compile sweep whose setup is a third of the
    wall, an autotuning first run in every case)."""
    backend: str
    device: str
    cases: int
    wall_s: float  # the cases' own wall times (not the gaps between them)
    measuring_s: float
    first_runs_s: float  # of measuring: each case's cold first run (cuDNN/ORT autotuning lives here)
    setup_s: float


def by_backend(results: Iterable[Result]) -> list[BackendTime]:
    """The cases' time per (backend, device), in order of first appearance."""
    sums: dict[tuple[str, str], list[float]] = {}
    groups: set[tuple] = set()
    for result in results:
        key = result.case.group_key
        measuring, setup = case_spent(result, first_of_group=key not in groups)
        groups.add(key)
        row = sums.setdefault((result.case.backend, result.case.device), [0, 0.0, 0.0, 0.0, 0.0])
        row[0] += 1
        row[1] += result.wall_s or 0.0
        row[2] += measuring
        row[3] += (result.first_iter_ms or 0.0) / 1000 if result.status == "ok" else 0.0
        row[4] += setup
    return [BackendTime(backend, device, int(n), wall, measuring, first, setup)
            for (backend, device), (n, wall, measuring, first, setup) in sums.items()]
