"""Energy per image over the timed loop, net of the device's idle power.

A CUDA case reads NVML's total-energy counter of its GPU (nvmlDeviceGetTotalEnergyConsumption,
millijoules since the driver loaded; Volta and newer); a CPU case reads RAPL's package counters
(/sys/class/powercap/intel-rapl:N/energy_uj, microjoules, wrapping at max_energy_range_uj), where
they are readable: on many machines they are root-only, and VMs have none.

Once per worker, before any model exists, the counter runs for ``IDLE_S`` with nothing of ours
running: that idle power is subtracted from the timed loop's, so a row's energy is what the work
cost on top of keeping the device on. Both figures are kept (``idle_power_w``, ``avg_power_w``
gross). Power comes from the counter's edges (counter_edges.py): NVML's counter moves every 100 ms
on the H200, so its reads at a window's two ends were off by up to a step (a 0.3 s loop +-33%, a
0.08 s loop "0 W"); a thread polls it through the timed loop, from right after warmup to right
after the loop (``noise``, before the pipelined-throughput runs that follow on CUDA). Energy per
image = (power - idle power) x the loop's seconds / images, images = every timed run of the loop
(kept samples and runs discarded as settling) x batch size. A loop in which the counter moved
fewer than twice, or whose moves span too little time for the poller's resolution (10% of it at
most), gets no figure, and says so. A counter that moved at every idle poll (RAPL, about every
millisecond) is read at the loop's two ends instead, with no thread beside a CPU measurement
(off by at most its step, which must be 10% of the loop at most). RAPL covers the whole package:
other processes' work counts too (the contention guard flags rows measured beside them). Where
nothing can be read, the cells stay empty and ``energy_source`` says why.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from infersweep.probes.base import Column, Probe, ProbeContext, Reading
from infersweep.probes.counter_edges import (FINE_STEP_S, POLL_S, Edge, EdgePower, EdgeRecorder,
                                             power_from_edges, power_from_ends, step_s)
from infersweep.probes.gpu_memory import GPU_EXTRA, _nvml_index

IDLE_S = 0.5
MAX_IDLE_S = 2.0  # polled on past IDLE_S until the counter moved twice (NVML: 100 ms steps)
# Idle power per meter, measured once in this process (a worker), before its first group: a
# worker that serves 24 groups would otherwise sleep 12 s, and an idle read right after the
# previous group would catch the GPU still clocked up and call that idle.
WORKER_IDLE_W: dict[str, float | str] = {}  # watts, or why there is no idle figure
WORKER_STEP_S: dict[str, float | None] = {}  # how often the counter moved while idle
# $INFERSWEEP_POWERCAP: where a container mounts the host's powercap tree (and tests a fake one).
POWERCAP = Path(os.environ.get("INFERSWEEP_POWERCAP", "/sys/class/powercap"))

ENERGY_COLUMNS = (
    Column("energy_j_per_image", "energy (J/img)", ".4g", " J"),
    Column("images_per_joule", "images/J", ".1f"),
    Column("avg_power_w", "power (W)", ".1f", " W"),
    Column("idle_power_w", "idle power (W)", ".1f", " W", in_table=False),
    Column("energy_source", "energy source", in_table=False),
)


class NvmlEnergy:
    """NVML's total-energy counter of one GPU, in joules."""

    def __init__(self, nvml, index: int):
        nvml.nvmlInit()
        self.nvml = nvml
        self.handle = nvml.nvmlDeviceGetHandleByIndex(index)
        self.source = f"nvml:total_energy_consumption gpu{index}"
        self.read()  # a GPU without the counter raises NVMLError_NotSupported here

    def read(self) -> int:
        return int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))  # mJ

    def joules(self, before: int, after: int) -> float:
        return (after - before) / 1000


@dataclass(frozen=True)
class RaplZone:
    path: Path
    max_uj: int  # the counter wraps to 0 after this


class RaplEnergy:
    """The package zones of RAPL (powercap), summed, in joules; one wraparound per zone between
    two reads is undone (at 200 W a 2^32 uJ counter wraps every ~20 s; reads are seconds apart)."""

    def __init__(self, zones: list[RaplZone]):
        self.zones = zones
        self.source = "rapl:" + ",".join(z.path.name for z in zones) + " energy_uj"

    def read(self) -> tuple[int, ...]:
        return tuple(int((z.path / "energy_uj").read_text()) for z in self.zones)

    def joules(self, before: tuple[int, ...], after: tuple[int, ...]) -> float:
        total = 0
        for zone, a, b in zip(self.zones, before, after):
            total += b - a if b >= a else b + zone.max_uj - a
        return total / 1e6


def rapl_energy(root: Path = POWERCAP) -> RaplEnergy | str:
    """The RAPL meter, or why there is none (one line for ``energy_source``)."""
    if not root.exists():
        return f"RAPL not readable: {root} absent"
    # intel-rapl:0 is a package; intel-rapl:0:0 (core, uncore, dram) are parts of it
    packages = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
    if not packages:
        return f"RAPL not readable: no intel-rapl package zone in {root}"
    zones = []
    for path in packages:
        try:
            int((path / "energy_uj").read_text())
            zones.append(RaplZone(path, int((path / "max_energy_range_uj").read_text())))
        except PermissionError:
            return f"RAPL not readable: permission denied on {path / 'energy_uj'} (root only)"
        except (OSError, ValueError) as exc:
            return f"RAPL not readable: {path / 'energy_uj'}: {exc}"
    return RaplEnergy(zones)


def _import_pynvml():
    import pynvml

    return pynvml


def nvml_energy(load=_import_pynvml) -> NvmlEnergy | str:
    try:
        nvml = load()
    except ImportError:
        return f"NVML not available: nvidia-ml-py is not installed ({GPU_EXTRA})"
    try:
        return NvmlEnergy(nvml, _nvml_index())
    except Exception as exc:  # NVMLError_NotSupported before Volta, no driver...
        return f"NVML energy counter not readable: {type(exc).__name__}: {exc}"


class Energy(Probe):
    name = "energy"
    columns = ENERGY_COLUMNS

    def __init__(self, nvml_loader=_import_pynvml, powercap: Path = POWERCAP,
                 idle_s: float = IDLE_S, clock=time.monotonic, sleep=time.sleep,
                 poll_s: float = POLL_S, threaded: bool = True):
        self.nvml_loader, self.powercap, self.idle_s = nvml_loader, powercap, idle_s
        self.clock, self.sleep, self.poll_s = clock, sleep, poll_s
        self.threaded = threaded  # False: the caller polls (tests, on a fake clock)
        self.meter: NvmlEnergy | RaplEnergy | None = None
        self.recorder: EdgeRecorder | None = None
        self.unavailable = ""  # why there is no meter
        self.idle_w: float | str | None = None
        self.step_s: float | None = None
        self.start: Edge | None = None  # (time, counter) after warmup
        self.stop: Edge | None = None  # after the timed loop

    def start_group(self, ctx: ProbeContext) -> None:
        found = (nvml_energy(self.nvml_loader) if ctx.case.device == "cuda"
                 else rapl_energy(self.powercap))
        if isinstance(found, str):
            self.unavailable = found
            return
        self.meter = found
        self.recorder = EdgeRecorder(found.read, self.clock, self.poll_s)
        if found.source not in WORKER_IDLE_W:
            # Idle: no model yet, nothing of ours on the device (the worker's first group).
            seconds = self.recorder.poll_for(self.idle_s, self.sleep, max_s=MAX_IDLE_S)
            idle = power_from_edges(self.recorder.edges, found.joules, seconds,
                                    self.recorder.resolution_s)
            WORKER_IDLE_W[found.source] = (idle.watts if idle.watts is not None
                                           else f"no idle power: {idle.reason}")
            WORKER_STEP_S[found.source] = step_s(self.recorder.edges)
        self.idle_w = WORKER_IDLE_W[found.source]
        self.step_s = WORKER_STEP_S[found.source]

    @property
    def polled(self) -> bool:
        """Whether the timed loop needs the poller: not for a counter that moves every poll
        (RAPL), so a CPU case is measured with no thread of ours beside it."""
        return self.step_s is None or self.step_s > FINE_STEP_S

    def after_warmup(self, ctx: ProbeContext) -> None:
        self.stop = None
        if self.recorder is not None:
            if self.polled and self.threaded:
                self.recorder.start()
            else:
                self.recorder.reset()
            self.start = Edge(self.clock(), self.recorder.reference)

    def noise(self, ctx: ProbeContext) -> str:
        # Right after the timed loop: close the window before anything else runs.
        if self.recorder is not None and self.start is not None and self.stop is None:
            self.recorder.stop()
            # The poller's edges make a polled window's figure; only a fine counter is read here.
            self.stop = Edge(self.clock(), None if self.polled else self.meter.read())
        return ""

    def _loop_power(self) -> EdgePower:
        if self.polled:
            return power_from_edges(self.recorder.edges, self.meter.joules,
                                    self.stop.t - self.start.t, self.recorder.resolution_s)
        return power_from_ends(self.start, self.stop, self.meter.joules, self.step_s)

    def after(self, ctx: ProbeContext) -> Reading:
        if self.meter is None:
            return Reading({"energy_source": self.unavailable})
        self.noise(ctx)
        timing = ctx.timing
        if timing is None:
            # A server case: requests at the rates of a search, no timed loop of fixed batches.
            # Energy per image of such a window would mix every trial's rate: not given.
            return Reading({"energy_source": f"{self.meter.source}: not measured in a "
                                             f"{ctx.case.scenario or 'scenario'} case (no timed "
                                             "loop of fixed batches)"})
        runs = len(timing.samples_ms) + timing.discarded_iterations
        images = runs * ctx.case.batch_size
        loop_s = self.stop.t - self.start.t
        power = self._loop_power()
        info = {"energy": {"window_s": round(loop_s, 3),
                           "method": "edges" if self.polled else "ends", "edges": power.edges,
                           "edge_span_s": round(power.seconds, 3),
                           "joules": round(power.joules, 3), "images": images, "runs": runs}}
        if power.watts is None:
            why = f"{self.meter.source}: no figure: {power.reason}"
            return Reading({"energy_source": why}, info=info, warnings=[f"energy: {why}"])
        fields = {"avg_power_w": power.watts, "energy_source": self.meter.source}
        reading = Reading(fields, info=info)
        if isinstance(self.idle_w, str):
            fields["energy_source"] = f"{self.meter.source}, {self.idle_w}"
            return reading
        fields["idle_power_w"] = self.idle_w
        fields["energy_source"] = f"{self.meter.source}, idle {self.idle_w:.0f} W subtracted"
        net_j = (power.watts - self.idle_w) * loop_s
        if net_j > 0:
            fields["energy_j_per_image"] = net_j / images
            fields["images_per_joule"] = images / net_j
        else:
            reading.warnings.append(f"energy: the timed loop used no more than idle "
                                    f"({power.watts:.1f} W, idle {self.idle_w:.1f} W): "
                                    "no energy per image")
        return reading

    def end(self, ctx: ProbeContext) -> None:
        if self.recorder is not None:
            self.recorder.stop()
        self.start = self.stop = None


PROBES = [Energy]
