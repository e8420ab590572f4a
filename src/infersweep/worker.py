"""The worker process: serves one group of cases that share a prepared model.

Started by the executor as ``python -m infersweep.worker --result-fd N --parent PID`` with the job
(JSON) on stdin. It reports on its own pipe, never on stdout, because runtimes and user code print
whatever they like there. Messages are JSON lines:
    {"event": "start", "case_id": ...}     before anything of the case runs (prepare included)
    {"event": "result", "result": {...}}   when the case has ended, whatever its status
If the worker dies, the parent knows which case was in flight from the last "start".
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import sys
import time
import traceback

from infersweep import memory
from infersweep.cases import Case
from infersweep.measure import MeasureSettings, measure
from infersweep.results import Result

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


def short_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}".rstrip(": ")


class GroupRunner:
    def __init__(self, job: dict):
        from infersweep.backends import get_backend
        from infersweep.cache import ArtifactCache
        from infersweep.models import ModelSource

        first = Case.from_dict(job["cases"][0])
        self.backend = get_backend(first.backend)
        self.source = ModelSource(first.model, first.weights, job.get("seed", 0), job.get("opset"))
        self.cache = ArtifactCache(job.get("cache_dir"))
        self.settings = MeasureSettings(**job.get("settings", {}))
        self.seed = job.get("seed", 0)
        self.session = None
        self.setup_s: float | None = None
        self.gflops: float | None = None
        self.baseline_mb = memory.rss_mb()

    def _prepare(self, case: Case) -> None:
        if self.session is None:
            start = time.perf_counter()
            self.session = self.backend.prepare(self.source, case, self.cache)
            self.setup_s = time.perf_counter() - start
        if self.gflops is None and self.backend.needs_model:
            from infersweep.flops import gflops_per_image

            self.gflops = gflops_per_image(self.source.model(), case.image_size)

    def run_case(self, case: Case) -> Result:
        from infersweep.data import make_batch

        try:
            self._prepare(case)
            # Reset after prepare: an export's transient peak is not the memory the model runs in.
            can_reset = memory.reset_peak()
            placed = self.session.place(make_batch(case.data, case.batch_size, case.image_size,
                                                   self.seed))
            timing = measure(lambda: self.session.run(placed), self.settings)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            traceback.print_exc(file=sys.stderr)
            self._drop_session()  # a session that raised may be broken: the next case rebuilds it
            status = "oom" if is_out_of_memory(exc) else "failed"
            return Result(case, status, reason=short_reason(exc), setup_s=self.setup_s)
        return Result(
            case, "ok", setup_s=self.setup_s, first_iter_ms=timing.first_iter_ms,
            warmup_iterations=timing.warmup_iterations, samples_ms=timing.samples_ms,
            peak_memory_mb=memory.peak_rss_mb(), baseline_memory_mb=self.baseline_mb,
            memory_source=memory.SOURCE_CPU_PEAK if can_reset else
            memory.SOURCE_CPU_PEAK_UNRESET,
            gflops_per_image=self.gflops, warnings=timing.warnings,
            info=dict(self.session.info),
        )

    def _drop_session(self) -> None:
        if self.session is not None:
            try:
                self.session.close()
            except Exception:
                pass
        self.session = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--result-fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    die_with_parent(args.parent)
    channel = os.fdopen(args.result_fd, "w", buffering=1)
    job = json.loads(sys.stdin.read())

    def send(message: dict) -> None:
        channel.write(json.dumps(message) + "\n")
        channel.flush()

    runner = GroupRunner(job)
    for case_dict in job["cases"]:
        case = Case.from_dict(case_dict)
        send({"event": "start", "case_id": case.case_id})
        result = runner.run_case(case)
        send({"event": "result", "result": json.loads(result.to_json())})
    channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
