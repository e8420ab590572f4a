"""The contention guard: was the timed loop measured on a machine that was busy with something else?

Around every timed phase it reads, from the kernel (Linux /proc):
- the worker's own threads: CPU time and the time they spent runnable but waiting for a CPU
  (/proc/self/task/*/schedstat). Waiting is the direct sign of starvation: a quiet machine
  schedules a runnable thread within microseconds;
- the CPU time every other process used: all CPUs' busy time in /proc/stat minus our own;
- the time the hypervisor gave to other guests (steal, /proc/stat).
On a CUDA case with nvidia-ml-py installed, a thread samples NVML: other processes on the GPU, the
SM clock against its maximum, throttle reasons, temperature, power, and how busy the GPU was.

A GPU that was idle much of the timed loop (``gpu_busy_pct``, NVML's share of time with a kernel
running) was waiting for the host thread that launches its work: such a median follows that
thread's speed, not the GPU's. On the H200 a hand-written loop of such a case (resnet18 eager fp16
bs16, 1.7-3.9 ms) moved up to 2.3x between fresh processes at the same clocks
(benchmarks/process_spread.py), as infersweep's launch-bound cases did. It is not noise that
timing again would cure, so it is a warning (``host-bound``), not a ``noise`` cause: the row
stays, and the warning says that ``--repeats`` measures that spread.

A timed phase measured while starved, contended or throttled gets a ``noise`` cell naming the cause
(empty when clean); the worker times it again (``--remeasure``). The thresholds are calibrated on a
2-core VM (README, "Contention guard"): generous, so that quiet runs are never flagged.
The GPU parts follow the documented pynvml API; they are unit-tested with a fake pynvml only.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from infersweep.probes.base import Column, Probe, ProbeContext, Reading
from infersweep.probes.gpu_memory import _nvml_index

NOISE = Column("noise", "noise")

# Calibrated on the 2-core VM (README): quiet phases showed waits below 5% of our CPU time and
# others below 0.2 cores; two busy loops beside the worker gave waits of 50-100% and 1-1.5 cores.
STARVED_WAIT = 0.25  # our runnable threads waited for a CPU 0.25 s per second timed, or more
CONTENDED_CORES = 0.5  # others used at least half a core...
CONTENDED_SHARE = 0.25  # ...and at least a quarter of the machine's cores
STEAL_SHARE = 0.1  # the hypervisor gave a tenth of the machine's cores to other guests
MIN_WINDOW_S = 0.1  # shorter phases say nothing: /proc/stat counts in 10 ms ticks
# NVML throttle reasons that slow a GPU down for reasons other than the work itself. A software
# power cap is not among them: a GPU at full load runs at its power cap, that is its steady state.
THROTTLE_CAUSES = {0x8: "hw slowdown", 0x20: "sw thermal", 0x40: "hw thermal",
                   0x80: "hw power brake"}
THROTTLE_RECORDED = {0x4: "sw power cap", 0x10: "sync boost", **THROTTLE_CAUSES}
# An SM clock below half its maximum during the loop is not a full-load clock: an H200 running
# fp16 matrix products at its power cap (reason 0x4) was seen at 1350 of 1980 MHz (68%).
LOW_CLOCK = 0.5
# Below this share of the timed loop with a kernel running, a case is host-bound. A GPU-bound loop
# that synchronizes after each batch idles only for the sync and the next launch (a few percent).
HOST_BOUND_BUSY = 80
GPU_BUSY = Column("gpu_busy_pct", "GPU busy (%)", ".0f", "%", in_table=False)


def _clock_ticks_ns() -> float:
    return 1e9 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSnapshot:
    wall_ns: int
    own_cpu_ns: int  # the process, threads that ended included
    own_wait_ns: int  # runnable, waiting for a CPU: summed over our live threads
    threads: int
    busy_ns: float  # all CPUs, all processes (/proc/stat)
    steal_ns: float
    cpus: int


def _proc_stat() -> tuple[float, float, int]:
    """(busy ns, steal ns, number of CPUs) of the whole machine."""
    lines = Path("/proc/stat").read_text().splitlines()
    fields = [int(v) for v in lines[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6]
    steal = fields[7] if len(fields) > 7 else 0
    cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    tick = _clock_ticks_ns()
    return busy * tick, steal * tick, cpus


def _own_threads() -> tuple[int, int]:
    """(ns our live threads waited for a CPU, how many threads)."""
    wait, threads = 0, 0
    for task in Path("/proc/self/task").iterdir():
        try:
            wait += int((task / "schedstat").read_text().split()[1])
            threads += 1
        except (OSError, IndexError, ValueError):  # the thread ended meanwhile
            continue
    return wait, threads


def cpu_snapshot() -> CpuSnapshot:
    wait, threads = _own_threads()
    busy, steal, cpus = _proc_stat()
    return CpuSnapshot(time.perf_counter_ns(), time.process_time_ns(), wait, threads, busy,
                       steal, cpus)


@dataclass
class CpuWindow:
    """What happened on the CPUs between two snapshots."""
    wall_s: float
    own_cores: float  # our CPU time / wall time
    wait_cores: float  # our threads' time runnable but waiting for a CPU / wall time
    others_cores: float
    steal_cores: float
    cpus: int
    threads: int

    @classmethod
    def between(cls, a: CpuSnapshot, b: CpuSnapshot) -> CpuWindow:
        wall = max(b.wall_ns - a.wall_ns, 1)
        own = b.own_cpu_ns - a.own_cpu_ns
        # A thread that ended takes its wait with it; never below zero.
        wait = max(b.own_wait_ns - a.own_wait_ns, 0)
        others = max(b.busy_ns - a.busy_ns - own, 0.0)
        return cls(wall / 1e9, own / wall, wait / wall, others / wall,
                   (b.steal_ns - a.steal_ns) / wall, b.cpus, max(a.threads, b.threads))

    def causes(self) -> list[str]:
        if self.wall_s < MIN_WINDOW_S:
            return []
        found = []
        if self.wait_cores >= STARVED_WAIT:
            found.append(f"starved: our threads waited {self.wait_cores:.2f} s per s for a CPU")
        if self.others_cores >= max(CONTENDED_CORES, CONTENDED_SHARE * self.cpus):
            found.append(f"contended: other processes used {self.others_cores:.1f} of "
                         f"{self.cpus} cores")
        if self.steal_cores >= STEAL_SHARE * self.cpus:
            found.append(f"steal: the hypervisor took {self.steal_cores:.1f} of {self.cpus} cores")
        return found

    def info(self) -> dict:
        return {"wall_s": round(self.wall_s, 3), "own_cores": round(self.own_cores, 2),
                "wait_cores": round(self.wait_cores, 3),
                "others_cores": round(self.others_cores, 2),
                "steal_cores": round(self.steal_cores, 2), "cpus": self.cpus,
                "threads": self.threads}


@dataclass
class GpuWindow:
    """What NVML saw on our GPU during a timed phase."""
    sm_clock_start_mhz: int | None = None
    sm_clock_min_mhz: int | None = None
    sm_clock_max_mhz: int | None = None  # the GPU's maximum, not the highest seen
    mem_clock_start_mhz: int | None = None
    mem_clock_min_mhz: int | None = None
    temperature_max_c: int | None = None
    power_max_w: float | None = None
    throttle_mask: int = 0
    other_pids: set[int] = field(default_factory=set)
    # NVML utilization.gpu readings: % of its last sample period (1/6 s to 1 s, per product)
    # with a kernel running; the first is taken as the phase starts, so it covers warmup
    busy_pct: list[int] = field(default_factory=list)

    @property
    def gpu_busy_pct(self) -> float | None:
        """The median reading taken during the phase (the one at its start where there is no
        other), or None where NVML gives none."""
        during = self.busy_pct[1:] or self.busy_pct
        return float(statistics.median(during)) if during else None

    def host_bound(self) -> str:
        """The warning for a phase whose GPU mostly waited for the host, or ""."""
        busy = self.gpu_busy_pct
        if busy is None or busy >= HOST_BOUND_BUSY:
            return ""
        return (f"host-bound: the GPU was busy {busy:.0f}% of the timed loop, so the median "
                "follows the speed of the host thread that launches its work, which moves "
                "between processes; --repeats N measures that spread")

    def causes(self) -> list[str]:
        found = []
        if self.other_pids:
            pids = ", ".join(str(p) for p in sorted(self.other_pids)[:5])
            found.append(f"shared GPU: other processes on it (pid {pids})")
        slow = [name for bit, name in THROTTLE_CAUSES.items() if self.throttle_mask & bit]
        if slow:
            found.append(f"throttled: {', '.join(slow)} at {self.temperature_max_c} C")
        if (self.sm_clock_min_mhz and self.sm_clock_max_mhz
                and self.sm_clock_min_mhz < LOW_CLOCK * self.sm_clock_max_mhz):
            found.append(f"low clock: SM {self.sm_clock_min_mhz} of {self.sm_clock_max_mhz} MHz")
        return found

    def info(self) -> dict:
        reasons = [name for bit, name in THROTTLE_RECORDED.items() if self.throttle_mask & bit]
        return {"sm_clock_start_mhz": self.sm_clock_start_mhz,
                "sm_clock_min_mhz": self.sm_clock_min_mhz,
                "sm_clock_max_mhz": self.sm_clock_max_mhz,
                "mem_clock_start_mhz": self.mem_clock_start_mhz,
                "mem_clock_min_mhz": self.mem_clock_min_mhz,
                "temperature_max_c": self.temperature_max_c, "power_max_w": self.power_max_w,
                "throttle_reasons": reasons, "other_gpu_pids": sorted(self.other_pids),
                "gpu_busy_pct": self.gpu_busy_pct}


def _throttle_reasons(nvml, handle) -> int:
    # Renamed "clocks event reasons" in newer drivers; the old name stays as an alias there.
    for name in ("nvmlDeviceGetCurrentClocksEventReasons",
                 "nvmlDeviceGetCurrentClocksThrottleReasons"):
        if hasattr(nvml, name):
            return int(getattr(nvml, name)(handle))
    return 0


class GpuStateSampler:
    """Samples one GPU's state on a thread (NVML calls release the GIL) during a timed phase."""

    def __init__(self, nvml, interval_s: float = 0.05):
        self.nvml = nvml
        nvml.nvmlInit()
        self.handle = nvml.nvmlDeviceGetHandleByIndex(_nvml_index())
        self.pid = os.getpid()
        self.interval_s = interval_s
        self.window = GpuWindow()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        nvml, h, w = self.nvml, self.handle, self.window
        sm = nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM)
        mem = nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_MEM)
        if w.sm_clock_start_mhz is None:
            w.sm_clock_start_mhz, w.mem_clock_start_mhz = sm, mem
            w.sm_clock_max_mhz = nvml.nvmlDeviceGetMaxClockInfo(h, nvml.NVML_CLOCK_SM)
        w.sm_clock_min_mhz = min(sm, w.sm_clock_min_mhz or sm)
        w.mem_clock_min_mhz = min(mem, w.mem_clock_min_mhz or mem)
        temp = nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU)
        w.temperature_max_c = max(temp, w.temperature_max_c or temp)
        power = nvml.nvmlDeviceGetPowerUsage(h) / 1000  # mW
        w.power_max_w = max(power, w.power_max_w or power)
        w.throttle_mask |= _throttle_reasons(nvml, h)
        try:
            w.busy_pct.append(int(nvml.nvmlDeviceGetUtilizationRates(h).gpu))
        except nvml.NVMLError:  # not supported on this GPU: the figure stays None
            pass
        pids = {p.pid for p in nvml.nvmlDeviceGetComputeRunningProcesses(h)}
        # In a container NVML may report host pids: ours is then missing, and one process on
        # the GPU is taken to be us.
        w.other_pids |= pids - {self.pid} if self.pid in pids or len(pids) > 1 else set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def start(self) -> None:
        self.window = GpuWindow()
        self._stop.clear()
        self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> GpuWindow:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._sample()
        return self.window


def _import_pynvml():
    import pynvml

    return pynvml


class ContentionGuard(Probe):
    """Flags a timed phase that other processes, the hypervisor or the GPU's state disturbed."""
    name = "contention"
    columns = (NOISE, GPU_BUSY)

    def __init__(self):
        self.gpu: GpuStateSampler | None = None
        self.start: CpuSnapshot | None = None
        self.cpu: CpuWindow | None = None
        self.gpu_window: GpuWindow | None = None

    def start_group(self, ctx: ProbeContext) -> None:
        if ctx.case.device == "cuda":
            try:
                self.gpu = GpuStateSampler(_import_pynvml())
            except Exception:  # no nvidia-ml-py or no driver: the CPU side still works
                self.gpu = None

    def after_warmup(self, ctx: ProbeContext) -> None:
        self.cpu = self.gpu_window = None
        if self.gpu is not None:
            self.gpu.start()
        self.start = cpu_snapshot()  # last: nothing of ours between it and the timed loop

    def _close_window(self) -> None:
        if self.start is not None and self.cpu is None:
            self.cpu = CpuWindow.between(self.start, cpu_snapshot())
            if self.gpu is not None:
                self.gpu_window = self.gpu.stop()

    def causes(self) -> list[str]:
        self._close_window()
        found = self.cpu.causes() if self.cpu is not None else []
        return found + (self.gpu_window.causes() if self.gpu_window is not None else [])

    def noise(self, ctx: ProbeContext) -> str:
        return "; ".join(self.causes())

    def after(self, ctx: ProbeContext) -> Reading:
        reading = Reading({NOISE.name: "; ".join(self.causes())})
        if self.cpu is not None:
            reading.info["contention"] = self.cpu.info()
        if self.gpu_window is not None:
            reading.info["gpu_state"] = self.gpu_window.info()
            reading.fields[GPU_BUSY.name] = self.gpu_window.gpu_busy_pct
            # Only where the loop runs batches back to back on the device: a server run's GPU
            # idles between arrivals by design, and an e2e case times the host's decoding too.
            host_bound = self.gpu_window.host_bound()
            if host_bound and ctx.case.scope == "compute" and not ctx.case.scenario.startswith(
                    "server"):
                reading.warnings.append(host_bound)
        return reading

    def end(self, ctx: ProbeContext) -> None:
        if self.gpu is not None:
            self.gpu.stop()
        self.start = None


PROBES = [ContentionGuard]
