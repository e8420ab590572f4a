"""A server-scenario case in the worker: warm up every batch size, serve, or search the max QPS.

Called by ``GroupRunner.run_case`` for a case whose scenario is ``server(...)``; it uses the
group's prepared session like any case of the group. The request's image is on the host: each
batch is copied into the input buffer of its size, run and fetched inside the loop (the result
on the host), so the latency a request sees includes the copies a real server pays, and not the
allocations it does not (a server allocates its buffers once). Every batch size the batcher may
form (1..max_batch) is placed, specialised and run in setup, never in the measured run; a
session that cannot take one of them (an ONNX file with a fixed batch) makes the case
``unsupported``.
"""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import asdict, dataclass, replace

from infersweep.case import Case, scenario_parts
from infersweep.measure.arrivals import Schedule, poisson_schedule
from infersweep.measure.maxqps import find_max_qps
from infersweep.measure.server import (LOADGEN_MIN_DURATION_S, LOADGEN_MIN_REQUESTS, ServerRules,
                                       ServerSummary, early_stopping_minimum, serve,
                                       summarize_run)
from infersweep.probes.group import short_reason
from infersweep.probes.scenario import SERVER_FIELDS
from infersweep.results.result import Result

# Runs per batch size after its specialisation. The fastest estimates capacity: on a shared CPU
# one run in three can take ten times as long, and a search started from such an estimate began
# at 0.1 QPS, where each trial lasts minutes.
WARMUP_RUNS = 5
START_LOAD = 0.25  # the search starts at this share of the capacity measured in warmup


@dataclass(frozen=True)
class ServerCase:
    max_batch: int
    max_delay_ms: float
    qps: float | None  # None: search the max QPS under the bound
    p99_ms: float | None

    @classmethod
    def of(cls, case: Case) -> ServerCase:
        params = scenario_parts(case.scenario)[1]
        qps, bound = params.get("qps"), params.get("p99_ms")
        return cls(int(params["max_batch"]), float(params["max_delay_ms"]),
                   float(qps) if qps else None, float(bound) if bound else None)


def trial_schedule(rate: float, seed: int, settings, searching: bool) -> Schedule:
    """The arrivals of one server run. A run at a rate the user gave honours their minimums (and
    is marked invalid if they are too few to judge its p99). A search trial holds at least the
    requests the binomial rule needs to pass with none over the bound (459 for the p99 at 99%
    confidence): with fewer, no trial could ever be valid, and a search on the H200 at 1 s x 100
    requests ended on a rate whose run was invalid for that reason alone."""
    min_requests = settings.server_min_requests
    if searching:
        min_requests = max(min_requests, early_stopping_minimum(0))
    return poisson_schedule(rate, seed, min_requests, settings.server_min_duration_s)


class Unsupported(Exception):
    """The session cannot run a batch size the batcher may form."""


class BatchRunner:
    """Runs a batch of n requests as the server does: the host batch copied into the input
    buffer of its size (placed once, in warmup), run, and the result fetched to the host."""

    def __init__(self, session, host: dict):
        self.session, self.host = session, host
        self.placed: dict[int, object] = {}

    def __call__(self, n: int):
        s = self.session
        return s.fetch(s.run(s.refill(self.placed[n], self.host[n])))


def warm_up_sizes(runner: BatchRunner) -> dict[int, float]:
    """Place, specialise and run every batch size; the fastest ms of each size's warm runs."""
    service = {}
    session = runner.session
    for size, batch in runner.host.items():
        try:
            runner.placed[size] = session.place(batch)
            session.specialize(runner.placed[size])
            times = []
            for _ in range(WARMUP_RUNS):
                start = time.perf_counter()
                runner(size)
                times.append((time.perf_counter() - start) * 1e3)
        except Exception as exc:
            if size == max(runner.host):
                raise  # the case's own batch size failed: a failure, not a limit of the session
            raise Unsupported(f"the session cannot run a batch of {size}, which the batcher "
                              f"may form: {short_reason(exc)}") from exc
        service[size] = min(times)
    return service


def run_server_case(runner, case: Case) -> Result:
    """One server case on ``runner`` (run/worker.py's GroupRunner) as a Result."""
    ctx = replace(runner.ctx, case=case)
    runner.probes.begin(ctx)
    try:
        return _serve_case(runner, ctx, case)
    except Unsupported as exc:
        return Result(case, "unsupported", reason=str(exc), setup_s=runner.setup_s)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        from infersweep.run.worker import is_out_of_memory

        traceback.print_exc(file=sys.stderr)
        runner._drop_session()
        status = "oom" if is_out_of_memory(exc) else "failed"
        return Result(case, status, reason=short_reason(exc), setup_s=runner.setup_s)
    finally:
        runner.probes.end(ctx)


def _serve_case(runner, ctx, case: Case) -> Result:
    server = ServerCase.of(case)
    settings = runner.ctx.settings
    runner._prepare(case)
    session = runner.session
    batches = runner.batch_source(case)
    host = {b: batches.batch(b, case.image_size) for b in range(1, server.max_batch + 1)}
    start = time.perf_counter()
    run_batch = BatchRunner(session, host)
    service_ms = warm_up_sizes(run_batch)
    setup_s = runner.setup_s + (time.perf_counter() - start)
    placed = run_batch.placed[server.max_batch]
    ctx.session, ctx.batches, ctx.host_batch, ctx.placed = session, batches, host[
        server.max_batch], placed
    runner.probes.hook("before", ctx)
    runner.probes.hook("after_warmup", ctx)

    rules = ServerRules(settings.server_min_duration_s, settings.server_min_requests,
                        server.p99_ms)
    runs = {}
    summaries: list[ServerSummary] = []

    def trial(rate: float) -> ServerSummary:
        schedule = trial_schedule(rate, runner.ctx.seed, settings, server.qps is None)
        bound_s = server.p99_ms / 1e3 if server.p99_ms is not None else None
        run = serve(run_batch, schedule, server.max_batch, server.max_delay_ms / 1e3,
                    p99_bound_s=bound_s)
        runs[rate] = run
        summaries.append(summarize_run(run, rules))
        s = summaries[-1]  # progress in the worker's log: a search may take minutes
        print(f"server {case.scenario}: {rate:.1f} QPS -> achieved {s.achieved_qps:.1f}, p99 "
              f"{s.request_ms_p99 or float('nan'):.2f} ms, {s.requests} requests in {s.run_s:.1f} s"
              f"{'' if s.valid else ', invalid: ' + s.invalid_reason}", file=sys.stderr, flush=True)
        return s

    info: dict = {"settings": asdict(settings), "service_ms_by_batch": service_ms}
    measured: dict = {}
    if server.qps is not None:
        summary = trial(server.qps)
    else:
        capacity = server.max_batch / (service_ms[server.max_batch] / 1e3)
        search = find_max_qps(trial, server.p99_ms, capacity * START_LOAD,
                              settings.qps_resolution)
        summary = search.best
        info.update(trials=search.trial_records(), capacity_estimate_qps=capacity,
                    search_resolution=search.resolution, search_failed_qps=search.failed_qps)
        if search.note:
            info["search_note"] = search.note
        measured["max_qps"] = search.max_qps
        if summary is None:  # no rate met the bound
            measured.update(p99_bound_ms=server.p99_ms, valid=False,
                            invalid_reason=search.note)
    if summary is not None:
        run = runs[summary.target_qps]
        measured.update({k: v for k, v in summary.to_dict().items() if k in SERVER_FIELDS})
        info.update(schedule=summary.schedule, invalid_reason=summary.invalid_reason,
                    request_latencies_ms=[round(x, 4) for x in run.latency_ms.tolist()],
                    batch_sizes=run.batch_sizes)
    runner.probes.noise(ctx)  # closes the contention window; a server run is not re-timed
    ctx.output = run_batch(server.max_batch)
    # The process's median: its requests' (the reported run's, else the last trial's), so that
    # resume and --repeats count this process like any other case's.
    p50 = (summary or summaries[-1]).request_ms_p50
    result = Result(case, "ok", setup_s=setup_s, info=info, warnings=_loadgen_notes(settings),
                    process_medians_ms=[p50] if p50 is not None else [])
    result.measured.update(measured)
    for reading in runner.probes.readings(ctx):
        result.measured.update(reading.fields)
        result.warnings += reading.warnings
        result.info.update(reading.info)
    result.warnings += runner.probes.warnings
    result.info.update(session.info)
    return result


def _loadgen_notes(settings) -> list[str]:
    """Minimums lowered below LoadGen's defaults are the user's choice (the run is judged by
    them), said next to the figures."""
    if settings.server_min_duration_s < LOADGEN_MIN_DURATION_S \
            or settings.server_min_requests < LOADGEN_MIN_REQUESTS:
        return [f"server runs shorter than LoadGen's minimum ({LOADGEN_MIN_DURATION_S:g} s and "
                f"{LOADGEN_MIN_REQUESTS} requests): {settings.server_min_duration_s:g} s, "
                f"{settings.server_min_requests} requests"]
    return []
