"""The worker process: serves one group of cases that share a prepared model.

Started by a WorkerSlot (run/local.py) as ``python -m infersweep.run.worker --result-fd N --parent
PID`` with a GroupRequest on stdin; it answers with CaseStarted / CaseFinished events on its own
pipe (run/protocol.py).
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import os
import signal
import statistics
import sys
import time
import traceback
from dataclasses import asdict

from infersweep.probes import cpu_memory as memory
from infersweep.case import Case
from infersweep.measure.timing import measure, pipelined_throughput
from infersweep.results.result import Result
from infersweep.run.protocol import CaseFinished, CaseStarted, GroupRequest

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
    def __init__(self, request: GroupRequest):
        from infersweep.backends import get_backend
        from infersweep.artefacts.cache import ArtifactCache
        from infersweep.artefacts.models import ModelSource

        first = request.cases[0]
        self.backend = get_backend(first.backend)
        self.source = ModelSource(first.model, first.weights, request.seed, request.opset)
        self.cache = ArtifactCache(request.cache_dir)
        self.settings = request.settings
        self.seed = request.seed
        self.session = None
        self.setup_s: float | None = None
        self.gflops: float | None = None
        # The worker's own baseline: after importing the runtime, before any model exists.
        for package in self.backend.packages:
            importlib.import_module(package)
        self.baseline_mb = memory.rss_mb()
        self.gpu = self._gpu_sampler() if first.device == "cuda" else None
        self.batches = None  # the group's data source, opened on first use

    def _gpu_sampler(self):
        """NVML sampler, created before this process touches CUDA so the context can be seen."""
        try:
            from infersweep.probes.gpu_memory import GpuMemorySampler

            sampler = GpuMemorySampler()
        except Exception as exc:  # nvidia-ml-py missing or no driver: memory from torch only
            print(f"infersweep: NVML unavailable ({exc}); GPU memory from torch only",
                  file=sys.stderr)
            return None
        import torch

        torch.cuda.init()
        torch.empty(1, device="cuda")
        torch.cuda.synchronize()
        self.context_mb, self.context_source = sampler.footprint_mb()
        return sampler

    def _prepare(self, case: Case) -> None:
        if self.gflops is None and self.backend.needs_model:
            from infersweep.probes.flops import gflops_per_image

            self.gflops = gflops_per_image(self.source.model(), case.image_size)
        if self.session is None:
            start = time.perf_counter()
            self.session = self.backend.prepare(self.source, case, self.cache)
            self.setup_s = time.perf_counter() - start

    def run_case(self, case: Case) -> Result:
        if self.gpu is not None:
            self.gpu.start()
        try:
            self._prepare(case)
            if self.batches is None:
                from infersweep.artefacts.inputs import BatchSource

                self.batches = BatchSource(case.data, self.seed)
            host = self.batches.batch(case.batch_size, case.image_size)
            placed = self.session.place(host)
            start = time.perf_counter()
            self.session.specialize(placed)  # per-shape compilation is setup, not latency
            setup_s = self.setup_s + (time.perf_counter() - start)
            # Reset after prepare: an export's transient peak is not the memory the model runs in.
            can_reset = memory.reset_peak()
            if case.scope == "e2e" and self.batches.images is not None:
                def step():  # decode + preprocess + copy in + model + copy out, all timed
                    batch = self.batches.batch(case.batch_size, case.image_size)
                    return self.session.fetch(self.session.run(self.session.place(batch)))
            elif case.scope == "e2e":  # host batch in, result on the host: copies are timed
                def step():
                    return self.session.fetch(self.session.run(self.session.place(host)))
            else:
                def step():
                    return self.session.run(placed)
            timing = measure(step, self.settings, after_warmup=self._reset_allocator_peak)
            # The last timed run's output, fetched now: a later run may overwrite its buffer
            # (IO binding, CUDA graphs). No extra run: at a large CPU batch it costs a second.
            if case.scope == "e2e" and self.batches.images is not None:
                # each timed run decoded the next images: run the reference batch once more
                output = self.session.fetch(self.session.run(placed))
            elif case.scope == "e2e":  # the step fetched it already
                output = timing.last_output
            else:
                output = self.session.fetch(timing.last_output)
            timing.last_output = None
            result = Result(
                case, "ok", setup_s=setup_s, first_iter_ms=timing.first_iter_ms,
                warmup_iterations=timing.warmup_iterations, samples_ms=timing.samples_ms,
                baseline_memory_mb=self.baseline_mb, gflops_per_image=self.gflops,
                warnings=timing.warnings,
                info={"warmup_ms": timing.warmup_ms, "settings": asdict(self.settings)})
            if case.device == "cuda" and case.scope == "compute":
                median = statistics.median(timing.samples_ms)
                result.pipelined_ips = pipelined_throughput(
                    lambda: self.session.launch(placed), lambda: self.session.run(placed),
                    case.batch_size, median)
            self._memory(case, result, can_reset)
            self._check_outputs(case, host, output, result)
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
            if self.gpu is not None:
                self.gpu.stop()

    def _check_outputs(self, case: Case, host, output, result: Result) -> None:
        """Agreement with the fp32 reference, and accuracy when the data has labels."""
        if self.backend.needs_model:
            from infersweep.probes.agreement import compare, reference_logits

            key = {"model": case.model, "weights": self.source.weights_key, "data": case.data,
                   "image_size": case.image_size, "batch_size": case.batch_size,
                   "seed": self.seed}
            agreement = compare(output, reference_logits(self.source, host, key, self.cache))
            result.max_abs_err = agreement.max_abs_err
            result.cosine = agreement.cosine
            result.top1_agreement = agreement.top1_agreement
            result.warnings += agreement.warnings(case.precision)
        images = self.batches.images
        if images is not None and images.skipped:
            result.warnings.append(f"{len(images.skipped)} unreadable image(s) skipped, e.g. "
                                   f"{images.skipped[0]}")
        labels = self.batches.labels(case.batch_size)
        if labels is not None:
            if output.shape[-1] == len(images.classes):
                result.top1_accuracy = float((output.argmax(-1) == labels).mean())
            else:
                result.info["accuracy_skipped"] = (
                    f"model has {output.shape[-1]} classes, data has {len(images.classes)}")

    def _reset_allocator_peak(self) -> None:
        torch = sys.modules.get("torch")
        if torch is not None and self.gpu is not None and torch.cuda.is_initialized():
            torch.cuda.reset_peak_memory_stats()

    def _memory(self, case: Case, result: Result, can_reset: bool) -> None:
        if case.device != "cuda":
            result.peak_memory_mb = memory.peak_rss_mb()
            result.memory_source = (memory.SOURCE_CPU_PEAK if can_reset
                                    else memory.SOURCE_CPU_PEAK_UNRESET)
            return
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized():
            result.allocator_peak_mb = torch.cuda.max_memory_allocated() / 2**20
            result.info["torch_max_memory_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
        if self.gpu is not None:
            result.peak_memory_mb, result.memory_source = self.gpu.stop()
            result.info["cuda_context_mb"] = round(self.context_mb, 1)
        elif result.allocator_peak_mb is not None and self.backend.name.startswith("torch"):
            result.peak_memory_mb = result.info["torch_max_memory_reserved_mb"]
            result.memory_source = "gpu:torch allocator reserved peak (NVML unavailable)"
        else:
            result.warnings.append("GPU memory not measured: nvidia-ml-py (NVML) unavailable")

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
    request = GroupRequest.from_json(sys.stdin.read())

    def send(event: CaseStarted | CaseFinished) -> None:
        channel.write(event.to_line())
        channel.flush()

    runner = GroupRunner(request)
    for case in request.cases:
        send(CaseStarted(case.case_id))
        send(CaseFinished(runner.run_case(case)))
    channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
