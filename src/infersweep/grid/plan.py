"""The plan: every case of the grid with what will happen to it, decided before anything runs."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import product

from infersweep.artefacts.model_ref import ONNX, onnx_input, parse_model
from infersweep.artefacts.models import input_size_problem
from infersweep.backends import registry
from infersweep.case import Case, weights_label
from infersweep.grid.filters import Filter
from infersweep.grid.spec import Spec
from infersweep.results.history import wall_times

RUN, DONE, UNSUPPORTED, UNAVAILABLE = "run", "done", "unsupported", "unavailable"


@dataclass(frozen=True)
class PlannedCase:
    case: Case
    action: str  # run | done | unsupported | unavailable
    reason: str = ""


def expand(spec: Spec) -> list[Case]:
    """The full grid, in a stable order: grouped so that a worker serves a whole group."""
    cases = []
    # (scenario, batch): the fixed-batch measurement at every batch size unless --scenarios
    points = [(scenario, batch) for scenario, batches in spec.scenario_points()
              for batch in batches]
    for model, backend, device, size, data, scope, (scenario, batch) in product(
            spec.models, spec.backends, spec.devices, spec.sizes, spec.data, spec.scopes,
            points):
        precisions = spec.precisions + (spec.gpu_extra_precisions if device == "cuda" else ())
        # Each combination of a backend's multi-valued options ("threads=1|2") is its own case.
        cases += [Case(
            model=model,
            weights=_weights(model, spec, size),
            backend=backend, device=device, precision=precision,
            image_size=size, batch_size=batch, data=data, scope=scope,
            options=options, scenario=scenario,
        ) for options in spec.case_options[backend, device] for precision in precisions]
    return cases


def _weights(model: str, spec: Spec, size: int) -> str:
    """An ONNX file carries its weights: its label is the file's content hash, so a changed
    file is a new case (never "already done")."""
    ref = parse_model(model)
    if ref.kind == ONNX:
        return f"onnx({onnx_input(ref.target).digest})"
    return weights_label(spec.weights, size, spec.seed)


@lru_cache(maxsize=None)
def _input_size_problem(model: str, image_size: int) -> str | None:
    # One dry run per (model, size) for the whole plan, not one per case.
    return input_size_problem(model, image_size)


def decide(case: Case, gpu_present: bool, dry_runs: bool = True) -> tuple[str, str]:
    backend = registry()[case.backend]
    reason = backend.supports(case) or backend.supports_model(case)
    if reason:
        return UNSUPPORTED, reason
    # A model with a fixed input size (ViT: 224 px) fails every case at another size, after a
    # long export: found here in milliseconds instead. Test backends that never build the model
    # run at any size.
    reason = dry_runs and backend.needs_model and _input_size_problem(case.model, case.image_size)
    if reason:
        return UNSUPPORTED, reason
    if case.device == "cuda" and not gpu_present:
        return UNAVAILABLE, "no CUDA GPU is visible on this machine"
    reason = backend.available(case.device)
    if reason:
        return UNAVAILABLE, reason
    return RUN, ""


def make_plan(spec: Spec, finished: dict[str, str], gpu_present: bool, only: Filter | None = None,
              stored: dict[str, str] | None = None, dry_runs: bool = True) -> list[PlannedCase]:
    """``finished`` maps case ids that need no run to their stored status; ``only`` keeps the
    cases that match it (``stored``: every stored status, for filters on status). Without
    ``dry_runs`` every image size is taken to suit the model: a first guess at the plan, made
    before the dry runs import torch."""
    planned = []
    for case in expand(spec):
        if only is not None and not only.matches(case, (stored or {}).get(case.case_id)):
            continue
        action, reason = decide(case, gpu_present, dry_runs)
        if action == RUN and case.case_id in finished:
            action, reason = DONE, f"already {finished[case.case_id]} in the run directory"
        planned.append(PlannedCase(case, action, reason))
    return planned


def time_estimate(cases: list[Case], quick: bool) -> str:
    """How long the cases to run will take, from the wall times of earlier runs (one line)."""
    known = wall_times(quick)
    seen = [known[c.case_id] for c in cases if c.case_id in known]
    if not cases:
        return "nothing to run"
    if not seen:
        return "no history for these cases yet: no time estimate (the first run records one)"
    total = sum(seen) * len(cases) / len(seen)  # unseen cases assumed like the seen ones
    note = "" if len(seen) == len(cases) else \
        f" ({len(cases) - len(seen)} of {len(cases)} cases without history, assumed average)"
    return f"estimated time: {total / 60:.1f} min from earlier runs{note}"
