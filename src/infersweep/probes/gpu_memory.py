"""GPU memory, read where it lives: NVML (nvidia-ml-py) sees every runtime's allocations.

PyTorch's allocator only knows PyTorch's tensors; ONNX Runtime's arena, cuDNN workspaces and the
CUDA context are invisible to it. NVML's per-process figure is sampled on a thread during the case,
its peak split in two windows as on the CPU (cpu_memory.py): ``setup_peak_memory_mb`` from the
start of the case to the end of warmup (export, compilation, cuDNN's algorithm search in the cold
run) and ``peak_memory_mb`` over the timed loop. ``allocator_peak_mb`` is PyTorch's allocator peak
over the timed loop, for the backends whose memory lives there only (``memory_allocator ==
"torch"``): for ONNX Runtime it would be torch's ~0, not the runtime's memory.
Where NVML cannot attribute memory to our process (containers with their own pid namespace
report no per-process usage), the device's used memory minus what it used
before this worker touched CUDA is reported instead, and memory_source says so.
"""

from __future__ import annotations

import os
import sys
import threading

from infersweep.probes.base import Column, Probe, ProbeContext, Reading
from infersweep.probes.cpu_memory import MEMORY_SOURCE, PEAK_MEMORY, SETUP_PEAK_MEMORY

GPU_EXTRA = "pip install 'infersweep[gpu]'"  # nvidia-ml-py
SOURCE_NVML_PROCESS = ("gpu:nvml process memory (peak sampled during the timed loop; incl. CUDA "
                       "context)")
SOURCE_NVML_DEVICE = ("gpu:nvml device memory used minus before the worker's CUDA context "
                      "(peak sampled during the timed loop; incl. CUDA context)")


def _nvml_index() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return int(visible) if visible.isdigit() else 0


class GpuMemorySampler:
    def __init__(self, interval_s: float = 0.01):
        import pynvml

        self.nvml = pynvml
        pynvml.nvmlInit()
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(_nvml_index())
        self.pid = os.getpid()
        self.interval_s = interval_s
        self.device_before_mb = self.device_used_mb()  # before this worker's CUDA context
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.peak_process_mb: float | None = None
        self.peak_device_mb = 0.0

    def device_used_mb(self) -> float:
        return self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used / 2**20

    def process_used_mb(self) -> float | None:
        try:
            for p in self.nvml.nvmlDeviceGetComputeRunningProcesses(self.handle):
                if p.pid == self.pid and p.usedGpuMemory is not None:
                    return p.usedGpuMemory / 2**20
        except self.nvml.NVMLError:
            return None
        return None

    def footprint_mb(self) -> tuple[float, str]:
        """This worker's GPU memory now, and which method gave it."""
        process = self.process_used_mb()
        if process is not None:
            return process, SOURCE_NVML_PROCESS
        return self.device_used_mb() - self.device_before_mb, SOURCE_NVML_DEVICE

    def _sample(self) -> None:
        process = self.process_used_mb()
        device = self.device_used_mb() - self.device_before_mb
        with self._lock:  # split() must not see a sample half in the old window
            if process is not None:
                self.peak_process_mb = max(self.peak_process_mb or 0.0, process)
            self.peak_device_mb = max(self.peak_device_mb, device)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()  # NVML calls go through ctypes, which releases the GIL

    def start(self) -> None:
        self.peak_process_mb, self.peak_device_mb = None, 0.0
        self._stop.clear()
        self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def peak(self) -> tuple[float, str]:
        """The peak since start() or the last split(), and which method gave it."""
        self._sample()
        if self.peak_process_mb is not None:
            return self.peak_process_mb, SOURCE_NVML_PROCESS
        return self.peak_device_mb, SOURCE_NVML_DEVICE

    def split(self) -> tuple[float, str]:
        """The peak so far; sampling goes on with the peaks reset (a new window opens)."""
        found = self.peak()
        with self._lock:
            self.peak_process_mb, self.peak_device_mb = None, 0.0
        self._sample()
        return found

    def stop(self) -> tuple[float, str]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.peak()


ALLOCATOR_PEAK = Column("allocator_peak_mb", "allocator peak (MB)", ".1f", " MB", in_table=False)


def _initialized_torch():
    """torch, where this worker imported it and touched CUDA through it; else None."""
    torch = sys.modules.get("torch")
    return torch if torch is not None and torch.cuda.is_initialized() else None


class GpuMemory(Probe):
    """Peak GPU memory of a CUDA case: NVML, or the torch allocator where NVML is missing."""
    name = "gpu_memory"
    columns = (PEAK_MEMORY, MEMORY_SOURCE, SETUP_PEAK_MEMORY, ALLOCATOR_PEAK)
    place_after = MEMORY_SOURCE.name

    def __init__(self):
        self.sampler: GpuMemorySampler | None = None
        self.context_mb: float | None = None
        self.setup_peak_mb: float | None = None

    def applies(self, ctx: ProbeContext) -> bool:
        return ctx.case.device == "cuda"

    def start_group(self, ctx: ProbeContext) -> None:
        # The sampler is created before this process touches CUDA, so the context can be seen.
        try:
            sampler = GpuMemorySampler()
        except Exception as exc:  # nvidia-ml-py missing or no driver: memory from torch only
            print(f"infersweep: NVML unavailable ({exc}); GPU memory from torch only "
                  f"(install with: {GPU_EXTRA})",
                  file=sys.stderr)
            return
        import torch

        torch.cuda.init()
        torch.empty(1, device="cuda")
        torch.cuda.synchronize()
        self.context_mb, _ = sampler.footprint_mb()
        self.sampler = sampler

    def begin(self, ctx: ProbeContext) -> None:
        self.setup_peak_mb = None
        if self.sampler is not None:  # from before prepare: setup's allocations count
            self.sampler.start()

    def _torch_allocator(self, ctx: ProbeContext):
        """torch, where this backend's GPU memory lives in its allocator; else None."""
        return _initialized_torch() if ctx.backend.memory_allocator == "torch" else None

    def after_warmup(self, ctx: ProbeContext) -> None:
        # Called again before a re-measured timed phase: the setup peak is the first one.
        torch = self._torch_allocator(ctx)
        if self.sampler is not None:
            setup_mb, _ = self.sampler.split()
        else:
            setup_mb = torch.cuda.max_memory_reserved() / 2**20 if torch is not None else None
        if self.setup_peak_mb is None:
            self.setup_peak_mb = setup_mb
        if torch is not None:
            torch.cuda.reset_peak_memory_stats()

    def after(self, ctx: ProbeContext) -> Reading:
        reading = Reading()
        torch = self._torch_allocator(ctx)
        if torch is not None:
            reading.fields[ALLOCATOR_PEAK.name] = torch.cuda.max_memory_allocated() / 2**20
            reading.info["torch_max_memory_reserved_mb"] = (torch.cuda.max_memory_reserved()
                                                            / 2**20)
        if self.sampler is not None:
            peak, source = self.sampler.stop()
            reading.fields.update({PEAK_MEMORY.name: peak, MEMORY_SOURCE.name: source,
                                   SETUP_PEAK_MEMORY.name: self.setup_peak_mb})
            reading.info["cuda_context_mb"] = round(self.context_mb, 1)
        elif torch is not None:
            # Without NVML the allocator's reserved peak is the best figure: it covers what
            # this runtime holds, though neither the CUDA context nor cuDNN's workspaces.
            reading.fields.update({
                PEAK_MEMORY.name: reading.info["torch_max_memory_reserved_mb"],
                SETUP_PEAK_MEMORY.name: self.setup_peak_mb,
                MEMORY_SOURCE.name: "gpu:torch allocator reserved peak (NVML unavailable; "
                                    f"install with: {GPU_EXTRA})"})
        else:
            reading.warnings.append("GPU memory not measured: nvidia-ml-py (NVML) unavailable; "
                                    f"install with: {GPU_EXTRA}")
        return reading

    def end(self, ctx: ProbeContext) -> None:
        if self.sampler is not None:
            self.sampler.stop()


PROBES = [GpuMemory]
