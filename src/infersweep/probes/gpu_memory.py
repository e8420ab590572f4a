"""GPU memory, read where it lives: NVML (nvidia-ml-py) sees every runtime's allocations.

PyTorch's allocator only knows PyTorch's tensors; ONNX Runtime's arena, cuDNN workspaces and the
CUDA context are invisible to it. NVML's per-process figure is sampled on a thread during the case
and its peak reported. Where NVML cannot attribute memory to our process (containers with their
own pid namespace report no per-process usage), the device's used memory minus what it used
before this worker touched CUDA is reported instead, and memory_source says so.
"""

from __future__ import annotations

import os
import threading

SOURCE_NVML_PROCESS = "gpu:nvml process memory (peak sampled during the case; incl. CUDA context)"
SOURCE_NVML_DEVICE = ("gpu:nvml device memory used minus before the worker's CUDA context "
                      "(peak sampled during the case; incl. CUDA context)")


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
        if process is not None:
            self.peak_process_mb = max(self.peak_process_mb or 0.0, process)
        self.peak_device_mb = max(self.peak_device_mb, self.device_used_mb() - self.device_before_mb)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()  # NVML calls go through ctypes, which releases the GIL

    def start(self) -> None:
        self.peak_process_mb, self.peak_device_mb = None, 0.0
        self._stop.clear()
        self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> tuple[float, str]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        if self.peak_process_mb is not None:
            return self.peak_process_mb, SOURCE_NVML_PROCESS
        return self.peak_device_mb, SOURCE_NVML_DEVICE
