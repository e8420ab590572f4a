"""The GPU side of the memory windows and the contention guard, against a fake pynvml.

No GPU here: the fake follows the documented pynvml API (nvidia-ml-py) that the probes call.
The real thing runs in tests/test_gpu.py on a machine with a GPU.
"""

import os
import sys
import time
from dataclasses import replace
from types import ModuleType, SimpleNamespace

import pytest

from infersweep.backends.base import Backend
from infersweep.case import Case
from infersweep.probes import ProbeContext
from infersweep.probes.contention import ContentionGuard, GpuStateSampler
from infersweep.probes.gpu_memory import SOURCE_NVML_PROCESS, GpuMemory, GpuMemorySampler

CUDA = Case("resnet18", None, "onnxruntime", "cuda", "fp32", 32, 1, "synthetic")


def fake_pynvml(**state) -> ModuleType:
    """A pynvml whose readings are the module's ``state`` dict, changed by the test."""
    nvml = ModuleType("pynvml")
    nvml.state = {"used_mb": 1000, "process_mb": 500, "pids": [os.getpid()], "sm": 1980,
                  "sm_max": 1980, "mem": 3201, "temp": 40, "power_mw": 300_000, "reasons": 0,
                  "busy": 100, **state}
    nvml.NVMLError = type("NVMLError", (Exception,), {})
    nvml.NVML_CLOCK_SM, nvml.NVML_CLOCK_MEM, nvml.NVML_TEMPERATURE_GPU = 1, 2, 0
    nvml.nvmlInit = lambda: None
    nvml.nvmlDeviceGetHandleByIndex = lambda index: "handle"
    s = nvml.state
    nvml.nvmlDeviceGetMemoryInfo = lambda h: SimpleNamespace(used=s["used_mb"] * 2**20)
    nvml.nvmlDeviceGetComputeRunningProcesses = lambda h: [
        SimpleNamespace(pid=pid, usedGpuMemory=s["process_mb"] * 2**20) for pid in s["pids"]]
    nvml.nvmlDeviceGetClockInfo = lambda h, kind: s["sm"] if kind == 1 else s["mem"]
    nvml.nvmlDeviceGetMaxClockInfo = lambda h, kind: s["sm_max"]
    nvml.nvmlDeviceGetTemperature = lambda h, sensor: s["temp"]
    nvml.nvmlDeviceGetPowerUsage = lambda h: s["power_mw"]
    nvml.nvmlDeviceGetCurrentClocksThrottleReasons = lambda h: s["reasons"]

    def utilization(handle):
        if s["busy"] is None:  # a GPU or driver without the counter
            raise nvml.NVMLError("Not Supported")
        return SimpleNamespace(gpu=s["busy"], memory=10)

    nvml.nvmlDeviceGetUtilizationRates = utilization
    return nvml


def _ctx(case=CUDA) -> ProbeContext:
    return ProbeContext(backend=Backend(case.backend, ("cuda",), {}), source=None, cache=None,
                        settings=None, seed=0, case=case)


def test_gpu_memory_setup_window_apart_from_the_timed_loop(monkeypatch):
    nvml = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    probe = GpuMemory()
    probe.sampler = GpuMemorySampler(interval_s=0.005)
    probe.context_mb = 300
    probe.begin(_ctx())
    nvml.state["process_mb"] = 6000  # export + cuDNN's search workspace
    time.sleep(0.05)
    nvml.state["process_mb"] = 1500  # what the model runs in
    probe.after_warmup(_ctx())
    time.sleep(0.05)
    fields = probe.after(_ctx()).fields
    assert (fields["setup_peak_memory_mb"], fields["peak_memory_mb"]) == (6000, 1500)
    assert fields["memory_source"] == SOURCE_NVML_PROCESS
    assert "allocator_peak_mb" not in fields


def _guard_phase(monkeypatch, during: dict, case=CUDA, **state):
    """The guard around one timed phase during which the fake GPU's state becomes ``during``."""
    nvml = fake_pynvml(**state)
    monkeypatch.setattr("infersweep.probes.contention._import_pynvml", lambda: nvml)
    guard = ContentionGuard()
    guard.start_group(_ctx(case))
    guard.gpu.interval_s = 0.005
    guard.after_warmup(_ctx(case))
    nvml.state.update(during)
    time.sleep(0.05)
    noise = guard.noise(_ctx(case))
    return noise, guard.after(_ctx(case))


def gpu_causes(noise: str) -> list[str]:
    # the CPU side reads this busy machine for real: only the GPU causes are the fake's
    return [c for c in noise.split("; ") if c.split(":")[0] in
            ("shared GPU", "throttled", "low clock")]


def test_a_quiet_gpu_at_its_power_cap_is_clean_and_its_state_recorded(monkeypatch):
    # 0x4: software power cap, the steady state of a GPU at full load: recorded, not a cause
    noise, reading = _guard_phase(monkeypatch, {"sm": 1755, "temp": 62, "reasons": 0x4})
    assert gpu_causes(noise) == []
    state = reading.info["gpu_state"]
    assert (state["sm_clock_start_mhz"], state["sm_clock_min_mhz"], state["sm_clock_max_mhz"],
            state["temperature_max_c"], state["throttle_reasons"]) == (
        1980, 1755, 1980, 62, ["sw power cap"])
    assert state["power_max_w"] == 300.0


def test_other_process_on_the_gpu_thermal_throttle_and_low_clock_are_named(monkeypatch):
    noise, _ = _guard_phase(monkeypatch, {"pids": [os.getpid(), 4242], "reasons": 0x40 | 0x4,
                                          "sm": 900, "temp": 91})
    assert gpu_causes(noise) == ["shared GPU: other processes on it (pid 4242)",
                                 "throttled: hw thermal at 91 C",
                                 "low clock: SM 900 of 1980 MHz"]


@pytest.mark.parametrize("pids, shared", [([1], False), ([1, 2], True)])
def test_in_a_container_one_unknown_pid_on_the_gpu_is_taken_to_be_us(monkeypatch, pids, shared):
    # NVML may report host pids: ours is then not in the list
    noise, _ = _guard_phase(monkeypatch, {"pids": pids})
    assert bool(gpu_causes(noise)) is shared


def test_the_gpu_sampler_records_the_worst_of_the_phase_not_its_end(monkeypatch):
    nvml = fake_pynvml()
    sampler = GpuStateSampler(nvml, interval_s=0.005)
    sampler.start()
    nvml.state.update(sm=1000, temp=85)
    time.sleep(0.05)
    nvml.state.update(sm=1980, temp=50)
    time.sleep(0.05)
    window = sampler.stop()
    assert (window.sm_clock_min_mhz, window.temperature_max_c) == (1000, 85)


HOST_BOUND = "host-bound: the GPU was busy"


@pytest.mark.parametrize("busy, warned", [(35, True), (79, True), (80, False), (97, False)])
def test_a_timed_loop_whose_gpu_mostly_waited_for_the_host_is_warned_of(monkeypatch, busy,
                                                                        warned):
    """A launch-bound case's median follows the host thread (2.3x between processes on the
    H200): a warning that names how busy the GPU was, not a noise cause (timing again in the
    same process would not cure it, and the row stays trusted)."""
    noise, reading = _guard_phase(monkeypatch, {"busy": busy}, busy=100)
    assert reading.fields["gpu_busy_pct"] == busy
    assert reading.info["gpu_state"]["gpu_busy_pct"] == busy
    found = [w for w in reading.warnings if w.startswith(HOST_BOUND)]
    assert found == ([f"{HOST_BOUND} {busy}% of the timed loop, so the median follows the speed "
                      "of the host thread that launches its work, which moves between "
                      "processes; --repeats N measures that spread"] if warned else [])
    assert "host-bound" not in noise


SERVER = "server(max_batch=8,max_delay_ms=2,qps=50)"


@pytest.mark.parametrize("case", [replace(CUDA, scope="e2e"), replace(CUDA, scenario=SERVER)])
def test_a_server_run_or_an_e2e_case_records_gpu_busy_without_the_host_bound_warning(
        monkeypatch, case):
    """A server run's GPU idles between arrivals by design, and an e2e case times the host's
    decoding and preprocessing: a low busy share there is what is measured, not a warning."""
    _, reading = _guard_phase(monkeypatch, {"busy": 30}, case=case, busy=30)
    assert reading.fields["gpu_busy_pct"] == 30
    assert not [w for w in reading.warnings if w.startswith(HOST_BOUND)]


def test_a_gpu_without_the_utilization_counter_gives_no_busy_figure_and_no_warning(monkeypatch):
    _, reading = _guard_phase(monkeypatch, {"busy": None}, busy=None)
    assert reading.fields["gpu_busy_pct"] is None
    assert not [w for w in reading.warnings if w.startswith(HOST_BOUND)]
    assert reading.info["gpu_state"]["sm_clock_min_mhz"] == 1980  # the rest still sampled
