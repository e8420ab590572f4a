"""The worker process: serves group after group of cases, each group sharing a prepared model.

Started by a WorkerSlot (run/local.py) as ``python -m infersweep.run.worker --result-fd N --parent
PID [--cpus 0,1]``; it reads one GroupRequest per line on stdin and answers with CaseStarted /
CaseFinished events and a GroupDone per group on its own pipe (run/protocol.py), until stdin ends.

Between groups the worker lets go of everything the group held (session, model, data, the
allocator caches of torch, torch.compile's compiled code), so that a group's memory figures are
its own: what stays is what any worker has after its first case (interpreter, runtime libraries,
CUDA context and library handles). See ``release_group``.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib
import importlib.util
import os
import signal
import statistics
import sys
import time
import traceback
from dataclasses import asdict, replace

from infersweep.case import Case
from infersweep.measure.timing import (Timing, measure, pipelined_throughput,
                                       pipelined_window_s, time_again)
from infersweep.probes import ProbeContext, registry
from infersweep.probes.group import GroupProbes, short_reason
from infersweep.results.result import Result
from infersweep.run.protocol import CaseFinished, CaseStarted, GroupDone, GroupRequest
from infersweep.run.serve import run_server_case

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL us when the parent dies: no orphan keeps a core busy."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = f"{type(exc).__name__}: {exc}".lower()
    return "outofmemory" in text or "out of memory" in text or "failed to allocate memory" in text


class GroupRunner:
    def __init__(self, request: GroupRequest):
        from infersweep.artefacts.cache import ArtifactCache
        from infersweep.artefacts.models import ModelSource
        from infersweep.backends import get_backend

        first = request.cases[0]
        self.ctx = ProbeContext(
            backend=get_backend(first.backend),
            source=ModelSource(first.model, first.weights, request.seed, request.opset,
                               first.image_size),
            cache=ArtifactCache(request.cache_dir), settings=request.settings,
            seed=request.seed, case=first, group=tuple(request.cases))
        self.session = None
        self.setup_s: float | None = None
        # Probes see the worker after importing the runtime (done already where the worker
        # preloaded it), before the group's model exists.
        self.ctx.backend.preload()
        self.probes = GroupProbes([probe() for probe in registry()], self.ctx)
        self.batches = None  # the group's data source, opened on first use

    def _prepare(self, case: Case) -> None:
        if self.session is None:
            start = time.perf_counter()
            self.session = self.ctx.backend.prepare(self.ctx.source, case, self.ctx.cache)
            self.setup_s = time.perf_counter() - start

    def batch_source(self, case: Case):
        """The group's data source, opened on first use."""
        if self.batches is None:
            from infersweep.artefacts.inputs import BatchSource

            keep = (max(c.batch_size for c in self.ctx.group if c.scope == "compute")
                    if case.device == "cuda" and case.scope == "compute" else 0)
            self.batches = BatchSource(case.data, self.ctx.seed, self.ctx.source.normalisation(),
                                       keep_rows=keep, cache=self.ctx.cache)
        return self.batches

    def run_case(self, case: Case) -> Result:
        if case.scenario.startswith("server"):  # Poisson arrivals and a batcher: run/serve.py
            return run_server_case(self, case)
        ctx = replace(self.ctx, case=case)
        self.probes.begin(ctx)
        try:
            prepared_here = self.session is None  # the group's setup is charged to one case
            self._prepare(case)
            start = time.perf_counter()
            self.batch_source(case)
            host_batch = self.batches.batch(case.batch_size, case.image_size)
            placed = self.session.place(host_batch)
            data_s = time.perf_counter() - start
            start = time.perf_counter()
            self.session.specialize(placed)  # per-shape compilation is setup, not latency
            specialized_s = time.perf_counter() - start
            setup_s = self.setup_s + specialized_s
            ctx.session, ctx.batches, ctx.host_batch, ctx.placed = (
                self.session, self.batches, host_batch, placed)
            self.probes.hook("before", ctx)
            start = time.perf_counter()
            timing, remeasure_info = self._measure(ctx, self._step(case, host_batch, placed))
            ctx.timing = timing  # probes count the timed runs (energy per image)
            # What this process spent on the case, for the run's time split (results/time_split)
            spent = {"setup": (self.setup_s if prepared_here else 0.0) + specialized_s,
                     "measuring": time.perf_counter() - start, "data": data_s}
            start = time.perf_counter()
            # The last timed run's output, fetched now: a later run may overwrite its buffer
            # (IO binding, CUDA graphs). No extra run: at a large CPU batch it costs a second.
            if case.scope == "e2e" and self.batches.images is not None:
                # each timed run decoded the next images: run the reference batch once more
                ctx.output = self.session.fetch(self.session.run(placed))
            elif case.scope == "e2e":  # the step fetched it already
                ctx.output = timing.last_output
            else:
                ctx.output = self.session.fetch(timing.last_output)
            timing.last_output = None
            spent["output"] = time.perf_counter() - start
            result = Result(
                case, "ok", setup_s=setup_s, first_iter_ms=timing.first_iter_ms,
                warmup_iterations=timing.warmup_iterations, samples_ms=timing.samples_ms,
                warnings=timing.warnings,
                info={"warmup_ms": timing.warmup_ms, "settings": asdict(self.ctx.settings),
                      "spent_s": spent, **remeasure_info})
            if timing.discarded_iterations:  # a transient outlasted warmup: dropped, not hidden
                result.info["drift_discarded_runs"] = timing.discarded_iterations
            start = time.perf_counter()
            if case.scope == "compute" and (case.device == "cuda" or self.session.pipelines):
                median = statistics.median(timing.samples_ms)
                result.pipelined_ips = pipelined_throughput(
                    lambda: self.session.launch(placed), lambda: self.session.run(placed),
                    case.batch_size, median, target_s=pipelined_window_s(spent["measuring"]))
            # The extras after the timed loop, apart: harness time the split can name
            spent["pipelined"] = time.perf_counter() - start
            start = time.perf_counter()
            for reading in self.probes.readings(ctx):
                result.measured.update(reading.fields)
                result.warnings += reading.warnings
                result.info.update(reading.info)
            spent["probes"] = time.perf_counter() - start
            result.warnings += self.probes.warnings
            images = self.batches.images
            if images is not None and images.skipped:
                result.warnings.append(f"{len(images.skipped)} unreadable image(s) skipped, "
                                       f"e.g. {images.skipped[0]}")
            result.info.update(self.session.info)
            return result
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            traceback.print_exc(file=sys.stderr)
            self._drop_session()  # a session that raised may be broken: the next case rebuilds it
            status = "oom" if is_out_of_memory(exc) else "failed"
            return Result(case, status, reason=short_reason(exc), setup_s=self.setup_s)
        finally:
            self.probes.end(ctx)

    def _measure(self, ctx: ProbeContext, step) -> tuple[Timing, dict]:
        """Time the case; a timed phase that a probe calls noisy (the contention guard) is timed
        again, up to ``settings.remeasure`` times. The clean one is kept, else the last."""
        settings = self.ctx.settings
        after_warmup = lambda: self.probes.hook("after_warmup", ctx)  # noqa: E731
        timing = measure(step, settings, after_warmup=after_warmup)
        noisy = []
        while (noise := self.probes.noise(ctx)) and len(noisy) < settings.remeasure:
            noisy.append(noise)
            timing = time_again(step, settings, timing, after_warmup=after_warmup)
        return timing, ({"remeasured": len(noisy), "noise_remeasured": noisy} if noisy else {})

    def _step(self, case: Case, host_batch, placed):
        """One timed run of the case's scope."""
        if case.scope == "e2e" and self.batches.images is not None:
            def step():  # decode + preprocess + copy in + model + copy out, all timed
                batch = self.batches.batch(case.batch_size, case.image_size)
                return self.session.fetch(self.session.run(self.session.place(batch)))
        elif case.scope == "e2e":  # host batch in, result on the host: copies are timed
            def step():
                return self.session.fetch(self.session.run(self.session.place(host_batch)))
        else:
            def step():
                return self.session.run(placed)
        return step

    def _drop_session(self) -> None:
        if self.session is not None:
            try:
                self.session.close()
            except Exception:
                pass
        self.session = None


def serve_group(request: GroupRequest, send, pinned: bool = False,
                start: dict | None = None, released: dict | None = None) -> None:
    """Every case of the group, in order; the group's session, model and data are gone when this
    returns (nothing outside holds the runner). ``start``: the process's own start (its first
    group only), told with the first case's result. ``released``: the steps of letting go of the
    group before (``release_memory``), told with this group's first result."""
    print(f"infersweep worker {os.getpid()}: group of {len(request.cases)} case(s) from "
          f"{request.cases[0].case_id}", file=sys.stderr, flush=True)
    received = time.monotonic()
    runner = GroupRunner(request)
    # A group's own start, harness time between its groups: the runner (probes' group start,
    # the runtime's modules) and the release of the group before, on the first result.
    group_start: dict = {"runner": round(time.monotonic() - received, 3)}
    if released is not None:
        group_start["release_previous"] = round(sum(released.values()), 3)
        group_start["release_steps"] = released
    if start is not None:
        start = {**start, "runner": group_start["runner"]}
    try:
        for case in request.cases:
            send(CaseStarted(case.case_id))
            result = runner.run_case(case)
            result.info["worker_pid"] = os.getpid()  # which worker served it (one of many groups)
            result.info["probe_s"] = runner.probes.hook_seconds()  # its end hooks ran too
            if start is not None:
                # how many objects (the imports', frozen in main) collections after groups skip
                result.info["worker_gc_frozen"] = gc.get_freeze_count()
                result.info["worker_start_s"] = start
                start = None
            if group_start is not None:
                result.info["group_start_s"] = group_start
                group_start = None
            if pinned:  # a builder had the other cores
                result.info["worker_cpus"] = sorted(os.sched_getaffinity(0))
            send(CaseFinished(result))
    finally:
        runner._drop_session()


def _compiled_anything() -> bool:
    """Whether torch.compile compiled a frame in this process. torch._dynamo is imported by
    torch itself in an eager or ONNX Runtime worker too, and a first reset there imports
    Inductor: 2.4-2.9 s of nothing on the H200, per worker."""
    utils = sys.modules.get("torch._dynamo.utils")
    try:
        return utils is None or utils.counters["frames"]["total"] > 0
    except (AttributeError, KeyError, TypeError):  # another torch's bookkeeping: reset anyway
        return True


def release_memory() -> dict[str, float]:
    """After a group: give back the caches that would carry its memory into the next group's
    figures (its session and model are already unreachable). Returns the seconds of each step
    (the first release of a worker took 2.5-3.4 s on the H200, later ones ~0.2 s)."""
    took: dict[str, float] = {}
    clock = time.monotonic()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.monotonic()
        took[step] = round(now - clock, 3)
        clock = now

    dynamo = sys.modules.get("torch._dynamo")
    if dynamo is not None and _compiled_anything():
        dynamo.reset()  # compiled code and guards of the old shapes (Inductor's disk cache stays)
        lap("dynamo_reset")
    gc.collect()
    lap("gc")
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()  # the caching allocator's blocks go back to the driver
        torch.cuda.reset_peak_memory_stats()
        lap("empty_cache")
    try:  # freed heap goes back to the kernel, so the next group's RSS is not the last one's
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass
    lap("malloc_trim")
    return took


def preload(backend: str, device: str = "") -> None:
    """Import what ``backend``'s first group would (``Backend.preload``; torch: 3 s on the 2-core
    box, 6-7 s on the H200) before the first request comes, and torch for a CUDA worker: the GPU
    memory probe measures the CUDA context through it (an ONNX Runtime worker's first runner took
    3.9-4.5 s on the H200, that import and a CUDA context; how it splits was not measured). A
    failure is left to the group's runner, which charges it to a case."""
    try:
        from infersweep.backends import get_backend

        get_backend(backend).preload()
        if device == "cuda" and importlib.util.find_spec("torch") is not None:
            from infersweep.env import gpus

            if gpus():  # the probe uses torch only where NVML sees a GPU (probes/gpu_memory.py)
                importlib.import_module("torch")
    except Exception:
        pass


def pin(cpus: tuple[int, ...] | None) -> bool:
    """Move every thread of this process to ``cpus`` (threads started later inherit it): a worker
    started ahead of its turn imported its runtime on the builder's cores. True if it moved."""
    if not cpus or set(cpus) == os.sched_getaffinity(0):
        return False
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), set(cpus))
        except (ProcessLookupError, OSError):
            pass  # a thread that ended meanwhile
    return True


def redirect_output(log: str | None) -> None:
    """This group's stdout and stderr (native libraries' too) go to the group's log."""
    if not log:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--result-fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--cpus", default="", help="comma list of cores to run on")
    parser.add_argument("--backend", default="",
                        help="the backend it will serve: its runtime is imported before the first "
                             "request, while the worker before it may still be exiting")
    parser.add_argument("--device", default="", help="the device it will serve")
    parser.add_argument("--spawned-at", type=float, default=None,
                        help="the parent's time.monotonic() when it started this process")
    args = parser.parse_args(argv)
    # A new worker's gap before its first case was 12-13 s on the H200: what it spent from its
    # spawn to here (interpreter and this module's imports; CLOCK_MONOTONIC is system-wide), on
    # its runtime's import and on its first group's runner is told with its first result
    # (``worker_start_s``).
    start = ({"imports": round(time.monotonic() - args.spawned_at, 3)}
             if args.spawned_at is not None else None)
    die_with_parent(args.parent)
    if args.cpus:  # before any runtime starts its threads: they inherit it
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    if args.backend:
        loaded = time.monotonic()
        preload(args.backend, args.device)
        if start is not None:
            start["runtime"] = round(time.monotonic() - loaded, 3)
    # What the imports made lives as long as the process: out of the collector's sight, so that
    # the full collection after every group (release_memory) scans only what groups made since
    # (after importing torch: 0.16 s per collection on the 2-core box, ~0 after the freeze).
    gc.freeze()
    channel = os.fdopen(args.result_fd, "w", buffering=1)

    def send(event: CaseStarted | CaseFinished | GroupDone) -> None:
        channel.write(event.to_line())
        channel.flush()

    released = None
    while line := sys.stdin.readline():  # one request per line, until the parent closes stdin
        if not line.strip():
            continue
        request = GroupRequest.from_json(line)
        redirect_output(request.log)
        pin(request.cpus)
        serve_group(request, send, pinned=bool(args.cpus or request.cpus), start=start,
                    released=released)
        start = None
        released = release_memory()
        send(GroupDone(request.cases[0].case_id))
    channel.close()
    return 0


if __name__ == "__main__":
    from infersweep.run.quick_exit import exit_without_teardown

    exit_without_teardown(main())
