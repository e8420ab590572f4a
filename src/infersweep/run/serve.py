"""A server-scenario case in the worker: warm up every batch size, serve, or search the max QPS.

Called by ``GroupRunner.run_case`` for a case whose scenario is ``server(...)``; it uses the
group's prepared session like any case of the group. The request's image is on the host: each
batch is copied into the input buffer of its size, run and fetched inside the loop (the result
on the host), so the latency a request sees includes the copies a real server pays, and not the
allocations it does not (a server allocates its buffers once). Every batch size the batcher may
form (1..max_batch) is placed, specialised and run in setup, never in the measured run; a
session that cannot take one of them (an ONNX file with a fixed batch) makes the case
``unsupported``. With ``pad_batches`` only max_batch is placed and run: every batch the batcher
forms runs as one of max_batch (the rest of the buffer is padding), as a server with one static
input shape does. Without it, setup measures what a change of batch size costs (``shape_switch``)
and says so where it is large: ONNX Runtime's CUDA provider (1.20 and later) re-plans its cuDNN
convolutions on every change of input shape (microsoft/onnxruntime#23006); on an H200 its max
batch 8 server at 224 px paid 75-600 ms per change and no rate kept a p99 under 20 ms.
"""

from __future__ import annotations

import statistics
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
# Runs alternating the largest and the smallest batch size, after warmup: what a change of size
# costs beyond a run of that size again. Worth a warning from SWITCH_WARN_MS and at least half
# the largest batch's run: a server at load changes size often, and each change lands on requests.
SWITCH_RUNS = 6
SWITCH_WARN_MS = 1.0
START_LOAD = 0.25  # the search starts at this share of the capacity measured in warmup


@dataclass(frozen=True)
class ServerCase:
    max_batch: int
    max_delay_ms: float
    qps: float | None  # None: search the max QPS under the bound
    p99_ms: float | None
    pad: bool = False  # every batch runs at max_batch

    @classmethod
    def of(cls, case: Case) -> ServerCase:
        params = scenario_parts(case.scenario)[1]
        qps, bound = params.get("qps"), params.get("p99_ms")
        return cls(int(params["max_batch"]), float(params["max_delay_ms"]),
                   float(qps) if qps else None, float(bound) if bound else None,
                   params.get("pad_batches") == "true")


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
    buffer of its size (placed once, in warmup), run, and the result fetched to the host.
    ``pad``: every batch runs at the largest size; the rows past n are padding (the whole
    buffer is copied, as a server that sends its one fixed-shape buffer does)."""

    def __init__(self, session, host: dict, pad: bool = False):
        self.session, self.host, self.pad = session, host, pad
        self.placed: dict[int, object] = {}

    @property
    def sizes(self) -> list[int]:
        """The batch sizes the session runs."""
        return [max(self.host)] if self.pad else sorted(self.host)

    def __call__(self, n: int):
        s = self.session
        size = max(self.host) if self.pad else n
        return s.fetch(s.run(s.refill(self.placed[size], self.host[size])))


def warm_up_sizes(runner: BatchRunner) -> dict[int, float]:
    """Place, specialise and run every batch size; the fastest ms of each size's warm runs."""
    service = {}
    session = runner.session
    for size in runner.sizes:
        batch = runner.host[size]
        try:
            runner.placed[size] = session.place(batch)
            session.specialize(runner.placed[size])
            times = [_timed_ms(runner, size) for _ in range(WARMUP_RUNS)]
        except Exception as exc:
            if size == max(runner.host):
                raise  # the case's own batch size failed: a failure, not a limit of the session
            raise Unsupported(f"the session cannot run a batch of {size}, which the batcher "
                              f"may form: {short_reason(exc)}") from exc
        service[size] = min(times)
    return service


def _timed_ms(runner: BatchRunner, size: int) -> float:
    start = time.perf_counter()
    runner(size)
    return (time.perf_counter() - start) * 1e3


def shape_switch(runner: BatchRunner) -> tuple[float | None, str | None]:
    """What a change of batch size costs, in ms beyond a run of the new size again (the median
    over SWITCH_RUNS changes between the largest and smallest size), and a warning where it is
    large; (None, None) where the session runs one size only."""
    sizes = runner.sizes
    if len(sizes) < 2:
        return None, None
    small, large = sizes[0], sizes[-1]
    excess, large_again = [], []
    for i in range(SWITCH_RUNS):
        size = small if i % 2 == 0 else large
        changed = _timed_ms(runner, size)
        again = _timed_ms(runner, size)
        excess.append(changed - again)
        if size == large:
            large_again.append(again)
    switch_ms = max(0.0, float(statistics.median(excess)))
    steady_large = float(statistics.median(large_again))
    if switch_ms < max(SWITCH_WARN_MS, steady_large / 2):
        return switch_ms, None
    return switch_ms, (
        f"a change of batch size costs {switch_ms:.1f} ms more than a run of the same size "
        f"again (measured in setup; a batch of {large} runs in {steady_large:.1f} ms): the "
        "server's batches vary in size, so its requests pay it at every change (ONNX Runtime's "
        "CUDA provider re-plans its convolutions on every new input shape, "
        "microsoft/onnxruntime#23006); --pad-batches runs every batch at --max-batch")


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
    prepared_here = runner.session is None  # the group's setup is charged to one case
    runner._prepare(case)
    session = runner.session
    batches = runner.batch_source(case)
    sizes = (server.max_batch,) if server.pad else range(1, server.max_batch + 1)
    host = {b: batches.batch(b, case.image_size) for b in sizes}
    start = time.perf_counter()
    run_batch = BatchRunner(session, host, pad=server.pad)
    service_ms = warm_up_sizes(run_batch)
    switch_ms, switch_warning = shape_switch(run_batch)
    warmed_s = time.perf_counter() - start
    setup_s = runner.setup_s + warmed_s
    serving_s = 0.0
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
        nonlocal serving_s
        begun = time.perf_counter()
        run = serve(run_batch, schedule, server.max_batch, server.max_delay_ms / 1e3,
                    p99_bound_s=bound_s)
        serving_s += time.perf_counter() - begun
        runs[rate] = run
        summaries.append(summarize_run(run, rules))
        s = summaries[-1]  # progress in the worker's log: a search may take minutes
        print(f"server {case.scenario}: {rate:.1f} QPS -> achieved {s.achieved_qps:.1f}, p99 "
              f"{s.request_ms_p99 or float('nan'):.2f} ms, {s.requests} requests in {s.run_s:.1f} s"
              f"{'' if s.valid else ', invalid: ' + s.invalid_reason}", file=sys.stderr, flush=True)
        return s

    info: dict = {"settings": asdict(settings), "service_ms_by_batch": service_ms,
                  "shape_switch_ms": switch_ms}
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
    # For the run's time split (results/time_split.py): serving is measuring; placing,
    # specialising and warming every batch size is setup (a fixed case's per-shape
    # specialisation is setup too).
    info["spent_s"] = {"setup": (runner.setup_s if prepared_here else 0.0) + warmed_s,
                       "measuring": serving_s}
    runner.probes.noise(ctx)  # closes the contention window; a server run is not re-timed
    ctx.output = run_batch(server.max_batch)
    # The process's median: its requests' (the reported run's, else the last trial's), so that
    # resume and --repeats count this process like any other case's.
    p50 = (summary or summaries[-1]).request_ms_p50
    notes = _loadgen_notes(settings) + ([switch_warning] if switch_warning else [])
    result = Result(case, "ok", setup_s=setup_s, info=info, warnings=notes,
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
