"""A sweep from a validated spec to a finished run directory: plan, execute, store, report."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from infersweep import PROCESS_START
from infersweep import env as envmod
from infersweep.results import history, repeats
from infersweep.case import Case, group_cases
from infersweep.grid.filters import Filter
from infersweep.artefacts.models import remember_input_sizes
from infersweep.grid.order import order_groups
from infersweep.run.executor import Executor, make_executor
from infersweep.run.protocol import WorkerJob
from infersweep.probes.peaks import peak_for
from infersweep.grid.plan import DONE, RUN, UNAVAILABLE, UNSUPPORTED, PlannedCase, make_plan
from infersweep.reports.formats import write_reports
from infersweep.results.result import Result
from infersweep.grid.constraints import Constraints
from infersweep.grid.spec import Spec
from infersweep.results.store import Store
from infersweep.results.time_split import TimeSplit, time_split


class Observer(Protocol):
    def planned(self, plan: list[PlannedCase]) -> None: ...
    def case_started(self, case: Case) -> None: ...
    def case_finished(self, result: Result) -> None: ...


@dataclass
class SweepOutcome:
    rows: list[dict]
    ran: int  # cases measured by this invocation
    interrupted: bool
    ok: int = 0  # cases of this sweep's plan with an ok result in the store (earlier runs too)
    # Ctrl-C arrived while the final reports were written: report.html and plots/ may be
    # missing or out of date (results.sqlite is complete; `infersweep report DIR` rebuilds them).
    reports_interrupted: bool = False
    time_split: TimeSplit | None = None  # where this session's wall time went


def _spec_json(spec: Spec) -> dict:
    d = asdict(spec)
    d["out"] = str(spec.out) if spec.out else None
    return d


def run_sweep(spec: Spec, out_dir: Path, observer: Observer, *, fresh: bool = False,
              retry_failed: bool = False, gpu_present: bool = False,
              only: Filter | None = None) -> SweepOutcome:
    started = time.monotonic()
    # Seconds from this process's start to each step before the first case: the parent's share
    # of "run start to first case" (store meta "parent_phases"; benchmarks/seed_grid.py).
    phases = {"run_sweep": round(started - PROCESS_START, 3)}
    store = Store(out_dir / "results.sqlite")
    executor: Executor | None = None
    try:
        job = WorkerJob(settings=spec.measure, seed=spec.seed, opset=spec.opset,
                        timeout_s=spec.timeout_s, log_dir=out_dir / "logs",
                        worker_per_group=spec.worker_per_group)
        # Made before the plan: Ray starts (or is reached) once, and its GPUs count as present.
        executor = make_executor(spec.executor, job, gpus=spec.gpus,
                                 usable_cores=envmod.usable_cores(),
                                 ray_address=spec.ray_address, retries=spec.retries, store=store)
        gpu_present = gpu_present or bool(executor.gpu_count())

        # Where the time goes (results/time_split.py): this session's per-process results,
        # recorded in the store's meta after each case, so a killed session keeps its share.
        session_results: list[Result] = []
        workers = len(spec.gpus) if len(spec.gpus) > 1 else 1
        earlier_sessions = [] if fresh else store.get_meta("sessions", [])

        def record_session() -> TimeSplit:
            split = time_split(session_results, time.monotonic() - started, workers)
            store.set_meta("sessions", earlier_sessions + [split.to_dict()])
            return split

        def write(*args, **kwargs) -> list[dict]:
            # The machines the cases ran on (a Ray sweep keeps them in the store's meta
            # "nodes"): reports describe them, grouped when they differ.
            return write_reports(*args, nodes=store.get_meta("nodes"),
                                 constraints=spec.constraints,
                                 sessions=store.get_meta("sessions"), **kwargs)

        if fresh:
            store.delete_all()
        (out_dir / "logs").mkdir(exist_ok=True)

        # --repeats: an ok case measured in fewer processes than asked runs the missing ones.
        stored = {r.case.case_id: r for r in store.results() if spec.quick or not r.quick}
        short = repeats.missing(list(stored.values()), spec.repeats)
        finished = {cid: status for cid, status in store.finished(retry_failed, spec.quick).items()
                    if cid not in short}
        # Seen working in this run, or before on this machine with this cache: not scouted.
        proven = {(r.case.backend, r.case.device, r.case.precision) for r in store.results()
                  if r.status == "ok"} | history.proven_combinations()

        def ordered_groups(plan: list[PlannedCase]) -> list[list[Case]]:
            return order_groups(group_cases([p.case for p in plan if p.action == RUN]), proven)

        # The first worker's interpreter and runtime import (torch: 6 s on the H200) run while
        # this process plans, describes the machine and writes the first reports. It starts
        # before the plan's dry runs (does the model take each size?), which import torch here
        # when the cache has no answers yet (7-10 s of a cold run's parent on the H200): planned
        # without them, the first group is the same unless they refuse a size, and a worker
        # started for a group that then does not come first is let go.
        guess = ordered_groups(make_plan(spec, finished, gpu_present, only, store.statuses(),
                                       dry_runs=False))
        if guess:
            executor.start_early(guess[0])
            phases["first_worker_started"] = round(time.monotonic() - PROCESS_START, 3)
        plan = make_plan(spec, finished, gpu_present, only, store.statuses())
        phases["plan"] = round(time.monotonic() - PROCESS_START, 3)
        to_run = [p.case for p in plan if p.action == RUN]
        order = ordered_groups(plan)
        env = envmod.collect()
        store.set_meta("env", env)
        store.set_meta("spec", _spec_json(spec))
        (out_dir / "env.json").write_text(json.dumps(env, indent=1))
        remember_input_sizes()  # the plan's dry runs, for the next run's plan
        for p in plan:
            if p.action in (UNSUPPORTED, UNAVAILABLE):
                store.put(Result(p.case, p.action, reason=p.reason))
        peaks = store.get_meta("peaks", {})
        for device, precision in sorted({(p.case.device, p.case.precision) for p in plan
                                         if p.action in (RUN, DONE)}):
            found = peak_for(device, precision, env)
            if found:
                peaks[f"{device}:{precision}"] = found
        store.set_meta("peaks", peaks)
        observer.planned(plan)
        record_session()
        write(out_dir, store.results(), env, spec.baseline, peaks)

        ran = 0
        lock = threading.Lock()  # results arrive from one thread per GPU in a multi-GPU sweep
        needed = {c.case_id: short.get(c.case_id, spec.repeats) for c in to_run}
        rows_so_far = {cid: stored[cid] for cid in short}  # merged into, process by process
        stopped: set[str] = set()  # cases whose last process failed: no further rounds

        def on_start(case: Case) -> None:
            with lock:
                observer.case_started(case)

        def on_result(result: Result) -> None:
            nonlocal ran
            with lock:
                result.quick = spec.quick
                cid = result.case.case_id
                merged = repeats.merge(rows_so_far.get(cid), result, spec.repeats)
                merged.quick = spec.quick
                rows_so_far[cid] = merged
                store.put(merged)  # durable before anything else happens
                history.record(result, merged.process_medians_ms)
                session_results.append(result)
                record_session()
                last = repeats.repeats_done(merged) >= spec.repeats or merged.status != "ok"
                if merged.status != "ok":
                    stopped.add(cid)
                write(out_dir, store.results(), env, spec.baseline, peaks)
                if last:
                    ran += 1
                    observer.case_finished(merged)

        phases["cases_begin"] = round(time.monotonic() - PROCESS_START, 3)
        store.set_meta("parent_phases", phases)
        interrupted = False
        try:
            # Round robin: every case once, then every case again..., so that slow drift of the
            # machine (thermal, other load) hits all cases alike instead of the last ones.
            for round_index in range(max(needed.values(), default=0)):
                cases = [c for c in to_run
                         if needed[c.case_id] > round_index and c.case_id not in stopped]
                if not cases:
                    break
                groups = order if round_index == 0 else order_groups(group_cases(cases), proven)
                executor.run(groups, on_start, on_result)
        except KeyboardInterrupt:
            executor.stop()
            interrupted = True
        split = record_session()  # to the last case: the final reports are not in it
        rows, reports_interrupted = [], False
        try:
            rows = write(out_dir, store.results(), env, spec.baseline, peaks, visuals=True)
        except KeyboardInterrupt:
            interrupted = reports_interrupted = True
        statuses = store.statuses()
        ok = sum(statuses.get(p.case.case_id) == "ok" for p in plan)
        return SweepOutcome(rows, ran, interrupted, ok, reports_interrupted, split)
    finally:
        store.close()
        if executor is not None:
            executor.close()


@dataclass
class StoredRun:
    """What a run directory's store holds, read once."""
    results: list[Result]
    spec: dict
    env: dict | None
    peaks: dict
    nodes: dict | None
    sessions: list | None = None  # results/time_split.py: where each session's time went


def load_run(run_dir: Path) -> StoredRun:
    """Read DIR/results.sqlite without writing to it (a read-only mount works); StoreError when
    it is damaged."""
    store = Store(run_dir / "results.sqlite", readonly=True)
    try:
        return StoredRun(store.results(), store.get_meta("spec", {}), store.get_meta("env"),
                         store.get_meta("peaks", {}), store.get_meta("nodes"),
                         store.get_meta("sessions"))
    finally:
        store.close()


def rebuild_reports(run: StoredRun, to: Path, baseline: str | None = None,
                    only: Filter | None = None, formats=None) -> list[dict]:
    """Write the reports of a stored run to the folder ``to``. formats: names of report formats
    (formats.FORMATS); None: all of them."""
    return write_reports(to, run.results, run.env or envmod.collect(),
                         baseline or run.spec.get("baseline") or "torch", run.peaks,
                         nodes=run.nodes, visuals=True, only=only, formats=formats,
                         constraints=Constraints.from_dict(run.spec.get("constraints")),
                         sessions=run.sessions)
