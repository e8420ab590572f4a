"""How long cases took, kept across runs in the cache directory, for `plan`'s time estimates,
and how far per-process medians of one case have moved between worker processes on this machine
(--repeats), for `compare` to say how much noise a single-process comparison cannot see.

One JSON line per finished case (append-only, so concurrent runs and kills cannot corrupt
earlier lines; a torn last line is skipped when read).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infersweep.artefacts.cache import cache_root
from infersweep.results.result import Result


def _path() -> Path:
    return cache_root() / "history.jsonl"


def record(result: Result, process_medians_ms: list[float] | None = None) -> None:
    """One process's result; ``process_medians_ms``: the case's per-process medians so far."""
    if result.wall_s is None:
        return
    _path().parent.mkdir(parents=True, exist_ok=True)
    case = result.case
    entry = {"case_id": case.case_id, "wall_s": round(result.wall_s, 3),
             "status": result.status, "quick": result.quick, "finished_at": result.finished_at,
             "combination": [case.backend, case.device, case.precision]}
    spent = result.info.get("spent_s")
    if isinstance(spent, dict) and "measuring" in spent:  # for --budget: wall - measuring
        entry["measuring_s"] = round(spent["measuring"], 3)
    if result.status == "ok" and result.samples_ms:  # for --budget: how long one run takes
        entry["median_ms"] = round(float(np.median(result.samples_ms)), 6)
    if process_medians_ms and len(process_medians_ms) >= 2:
        entry["process_medians_ms"] = [round(m, 6) for m in process_medians_ms]
    line = json.dumps(entry)
    with open(_path(), "a") as f:
        f.write(line + "\n")


def wall_times(quick: bool = False) -> dict[str, float]:
    """The latest wall time of each case measured in the same mode (quick or full)."""
    return {entry["case_id"]: entry["wall_s"] for entry in _entries()
            if entry.get("quick", False) == quick and "wall_s" in entry}


def proven_combinations() -> set[tuple[str, str, str]]:
    """The (backend, device, precision) combinations that ended ok at least once on this machine
    with this cache: a run need not scout them again (grid/order.py)."""
    return {tuple(entry["combination"]) for entry in _entries()
            if entry.get("status") == "ok" and isinstance(entry.get("combination"), list)
            and len(entry["combination"]) == 3}


@dataclass(frozen=True)
class CaseCost:
    """What a case cost on this machine the last time it ran, for --budget (grid/budget.py)."""
    overhead_s: float  # its wall time minus its measuring: setup, probes, storing
    median_ms: float | None  # one run's latency; None where the case did not end ok


def case_costs() -> dict[str, CaseCost]:
    """case id -> its latest cost, for the cases whose entry says how long they measured (in
    either mode: neither setup nor a run's latency depends on how long the case was timed)."""
    return {entry["case_id"]: CaseCost(max(0.0, entry["wall_s"] - entry["measuring_s"]),
                                       entry.get("median_ms"))
            for entry in _entries() if "wall_s" in entry and "measuring_s" in entry}


@dataclass(frozen=True)
class ProcessNoise:
    """How far per-process medians of one case moved on this machine, over the cases that were
    measured with --repeats (the latest entry of each case)."""
    cases: int
    median_spread: float  # median over cases of (max - min) / median of the process medians
    max_spread: float


def process_noise() -> ProcessNoise | None:
    """None where no case has been measured with --repeats 2 or more here."""
    latest: dict[str, list[float]] = {}
    for entry in _entries():
        medians = entry.get("process_medians_ms")
        if isinstance(medians, list) and len(medians) >= 2:
            latest[entry["case_id"]] = medians  # later entries of a case supersede earlier
    spreads = [(max(m) - min(m)) / float(np.median(m)) for m in latest.values()
               if float(np.median(m)) > 0]
    if not spreads:
        return None
    return ProcessNoise(len(spreads), float(np.median(spreads)), float(max(spreads)))


def _entries() -> list[dict]:
    out = []
    try:
        with open(_path()) as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(entry, dict) and "case_id" in entry:
                    out.append(entry)
    except OSError:
        pass
    return out
