"""Memory windows: setup (prepare .. end of warmup) apart from the steady state (timed loop)."""

import sys
from types import SimpleNamespace

from infersweep.backends.base import Backend
from infersweep.case import Case
from infersweep.probes import ProbeContext
from infersweep.probes import cpu_memory
from infersweep.probes.cpu_memory import SOURCE_CPU_PEAK, CpuMemory
from infersweep.probes.gpu_memory import GpuMemory
from resident import resident_block

CPU = Case("resnet18", None, "torch", "cpu", "fp32", 32, 1, "synthetic")
CUDA = Case("resnet18", None, "onnxruntime", "cuda", "fp32", 32, 1, "synthetic")


def _ctx(case=CPU, allocator="torch") -> ProbeContext:
    backend = Backend(case.backend, ("cpu", "cuda"), {}, memory_allocator=allocator)
    return ProbeContext(backend=backend, source=None, cache=None, settings=None, seed=0,
                        case=case)


def _touch(mb: int):
    return resident_block(mb)  # fresh pages: malloc could reuse pages the process holds


def test_cpu_setup_peak_is_apart_from_the_timed_loop_peak():
    probe = CpuMemory()
    probe.start_group(_ctx())
    probe.begin(_ctx())
    export = _touch(300)  # a transient of preparation (an export), freed before timing
    export.close()
    probe.before(_ctx())
    probe.after_warmup(_ctx())
    at_reset = cpu_memory.rss_mb()  # the window opens here (the test process's RSS moves)
    steady = _touch(50)  # what the timed loop holds
    fields = probe.after(_ctx()).fields
    steady.close()
    assert fields["memory_source"] == SOURCE_CPU_PEAK
    assert fields["setup_peak_memory_mb"] > fields["peak_memory_mb"] + 200
    assert fields["peak_memory_mb"] > at_reset + 40


def test_cpu_setup_peak_is_the_first_window_when_the_timed_phase_is_repeated():
    probe = CpuMemory()
    probe.start_group(_ctx())
    probe.begin(_ctx())
    first = _touch(200)
    first.close()
    probe.after_warmup(_ctx())
    probe.after_warmup(_ctx())  # a re-measured timed phase opens its window again
    fields = probe.after(_ctx()).fields
    assert fields["setup_peak_memory_mb"] > fields["peak_memory_mb"] + 150


class _FakeCuda:
    def __init__(self):
        self.resets = 0

    def is_initialized(self):
        return True

    def max_memory_allocated(self):
        return (300 if not self.resets else 100) * 2**20

    def max_memory_reserved(self):
        return (900 if not self.resets else 128) * 2**20

    def reset_peak_memory_stats(self):
        self.resets += 1


def test_allocator_figures_only_for_torch_family_backends(monkeypatch):
    cuda = _FakeCuda()
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))
    ort = GpuMemory()  # no NVML sampler
    ort.begin(_ctx(CUDA, allocator=""))
    ort.after_warmup(_ctx(CUDA, allocator=""))
    reading = ort.after(_ctx(CUDA, allocator=""))
    assert "allocator_peak_mb" not in reading.fields  # torch's allocator is not ORT's memory
    assert "torch_max_memory_reserved_mb" not in reading.info
    assert cuda.resets == 0

    torch_case = Case("resnet18", None, "torch", "cuda", "fp32", 32, 1, "synthetic")
    eager = GpuMemory()
    eager.begin(_ctx(torch_case))
    eager.after_warmup(_ctx(torch_case))
    fields = eager.after(_ctx(torch_case)).fields
    # setup's 900 MB reserved peak (before the reset) apart from the timed loop's 128 MB
    assert (fields["allocator_peak_mb"], fields["peak_memory_mb"],
            fields["setup_peak_memory_mb"]) == (100, 128, 900)
