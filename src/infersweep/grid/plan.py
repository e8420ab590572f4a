"""The plan: every case of the grid with what will happen to it, decided before anything runs."""

from __future__ import annotations

from dataclasses import dataclass

from infersweep.backends import registry
from infersweep.case import Case, expand
from infersweep.grid.filters import Filter
from infersweep.grid.spec import Spec

RUN, DONE, UNSUPPORTED, UNAVAILABLE = "run", "done", "unsupported", "unavailable"


@dataclass(frozen=True)
class PlannedCase:
    case: Case
    action: str  # run | done | unsupported | unavailable
    reason: str = ""


def decide(case: Case, gpu_present: bool) -> tuple[str, str]:
    backend = registry()[case.backend]
    reason = backend.supports(case)
    if reason:
        return UNSUPPORTED, reason
    if case.device == "cuda" and not gpu_present:
        return UNAVAILABLE, "no CUDA GPU is visible on this machine"
    reason = backend.available(case.device)
    if reason:
        return UNAVAILABLE, reason
    return RUN, ""


def make_plan(spec: Spec, finished: dict[str, str], gpu_present: bool, only: Filter | None = None,
              stored: dict[str, str] | None = None) -> list[PlannedCase]:
    """``finished`` maps case ids that need no run to their stored status; ``only`` keeps the
    cases that match it (``stored``: every stored status, for filters on status)."""
    planned = []
    for case in expand(spec):
        if only is not None and not only.matches(case, (stored or {}).get(case.case_id)):
            continue
        action, reason = decide(case, gpu_present)
        if action == RUN and case.case_id in finished:
            action, reason = DONE, f"already {finished[case.case_id]} in the run directory"
        planned.append(PlannedCase(case, action, reason))
    return planned
