"""CPU memory of the worker process, read from the kernel (Linux /proc).

Two windows, read from VmHWM (the high-water mark, reset by writing 5 to /proc/self/clear_refs):
- setup: from the start of the case to the end of warmup (export, compilation, session creation,
  the cold run and warmup): ``setup_peak_memory_mb``, read just before the reset that opens
  the next window;
- steady state: the timed loop: ``peak_memory_mb``, the memory the model runs in.
An export's transient peak is not the memory the model runs in, and a row must not mix the two.
Never an RSS difference in the parent: the parent never runs a model, and RSS differences miss
the peak and count unrelated frees.
"""

from __future__ import annotations

from pathlib import Path

from infersweep.probes.base import Column, Probe, ProbeContext, Reading

SOURCE_CPU_PEAK = ("cpu:VmHWM (worker peak RSS during the timed loop; incl. runtime libraries "
                   "and the model)")
SOURCE_CPU_PEAK_UNRESET = "cpu:VmHWM (worker peak RSS since start; the kernel refused a reset)"


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float | None:
    kb = _status_kb("VmHWM")
    return kb / 1024 if kb is not None else None


def rss_mb() -> float | None:
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else None


# The columns every memory probe fills: this one on the CPU, gpu_memory.py on CUDA.
PEAK_MEMORY = Column("peak_memory_mb", "memory (MB)", ".1f", " MB")
MEMORY_SOURCE = Column("memory_source", "memory source", in_table=False)
SETUP_PEAK_MEMORY = Column("setup_peak_memory_mb", "setup memory (MB)", ".1f", " MB",
                           in_table=False)
BASELINE_MEMORY = Column("baseline_memory_mb", "worker baseline (MB)", ".1f", " MB",
                         in_table=False)


class CpuMemory(Probe):
    """The worker's baseline RSS (every case) and, on a CPU case, its peak RSS in setup and in
    the timed loop."""
    name = "cpu_memory"
    columns = (PEAK_MEMORY, MEMORY_SOURCE, SETUP_PEAK_MEMORY, BASELINE_MEMORY)
    place_after = "throughput_pipelined_ips"

    def __init__(self):
        self.baseline_mb: float | None = None
        self.was_reset = False
        self.setup_peak_mb: float | None = None

    def start_group(self, ctx: ProbeContext) -> None:
        # After importing the runtime, before any model exists: what the worker costs by itself.
        self.baseline_mb = rss_mb()

    def begin(self, ctx: ProbeContext) -> None:
        # The setup window opens: an earlier case's timed loop is not this case's setup.
        self.setup_peak_mb = None
        self.was_reset = reset_peak()

    def after_warmup(self, ctx: ProbeContext) -> None:
        # Called again before a re-measured timed phase: the setup peak is the first one.
        if self.setup_peak_mb is None:
            self.setup_peak_mb = peak_rss_mb() if self.was_reset else None
        self.was_reset = reset_peak()

    def after(self, ctx: ProbeContext) -> Reading:
        fields = {BASELINE_MEMORY.name: self.baseline_mb}
        if ctx.case.device != "cuda":
            fields[PEAK_MEMORY.name] = peak_rss_mb()
            fields[MEMORY_SOURCE.name] = (SOURCE_CPU_PEAK if self.was_reset
                                          else SOURCE_CPU_PEAK_UNRESET)
            fields[SETUP_PEAK_MEMORY.name] = self.setup_peak_mb
        return Reading(fields)


PROBES = [CpuMemory]
