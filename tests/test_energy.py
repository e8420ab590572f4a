"""The energy probe: J per image over the timed loop, net of idle power, from NVML's energy
counter on a GPU and RAPL on the CPU; known counter readings in, exact figures out."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import FAST, cli
from infersweep.backends.base import Backend
from infersweep.case import Case
from infersweep.measure.timing import Timing
from infersweep.probes import ProbeContext, registry
from infersweep.probes import energy as energy_module
from infersweep.probes.energy import Energy, rapl_energy

CPU = Case("resnet18", "random(seed=0)", "torch", "cpu", "fp32", 32, 3, "synthetic")
CUDA = Case("resnet18", "random(seed=0)", "torch", "cuda", "fp16", 32, 4, "synthetic")


@pytest.fixture(autouse=True)
def _fresh_worker():
    """Each test is a new worker: no idle power measured yet."""
    energy_module.WORKER_IDLE_W.clear()
    yield
    energy_module.WORKER_IDLE_W.clear()


def _ctx(case: Case, runs: int = 0, discarded: int = 0) -> ProbeContext:
    timing = Timing(1.0, 5, 10.0, [1.0] * runs, [], None, discarded)
    return ProbeContext(backend=Backend("torch", ("cpu", "cuda"), {}), source=None, cache=None,
                        settings=None, seed=0, case=case, timing=timing)


class FakeClock:
    def __init__(self, times):
        self.times = list(times)

    def __call__(self):
        return self.times.pop(0)


def _run(probe: Energy, ctx: ProbeContext, between=lambda: None):
    probe.start_group(ctx)
    probe.after_warmup(ctx)
    between()  # the timed loop
    assert probe.noise(ctx) == ""
    return probe.after(ctx)


def _fake_nvml(readings_mj: list[int], indexes: list[int]):
    return SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlDeviceGetHandleByIndex=lambda i: indexes.append(i) or f"gpu{i}",
        nvmlDeviceGetTotalEnergyConsumption=lambda handle: readings_mj.pop(0))


def test_nvml_energy_per_image_net_of_idle(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    # check read; idle 40 J in 0.5 s = 80 W; timed loop 800 J in 2 s = 400 W gross
    readings = [1_000_000, 1_000_000, 1_040_000, 2_000_000, 2_800_000]
    indexes: list[int] = []
    probe = Energy(nvml_loader=lambda: _fake_nvml(readings, indexes),
                   clock=FakeClock([0.0, 0.5, 10.0, 12.0]), sleep=lambda s: None)
    reading = _run(probe, _ctx(CUDA, runs=30, discarded=2))  # 32 runs x batch 4 = 128 images
    # net 800 - 80 x 2 = 640 J for 128 images
    assert reading.fields == {"energy_j_per_image": 5.0, "images_per_joule": 0.2,
                              "avg_power_w": 400.0, "idle_power_w": 80.0,
                              "energy_source": "nvml:total_energy_consumption gpu3, "
                                               "idle 80 W subtracted"}
    assert reading.info["energy"] == {"window_s": 2.0, "joules": 800.0, "images": 128,
                                      "runs": 32}
    assert indexes == [3] and readings == []


def test_a_worker_measures_idle_once_before_its_first_group():
    # each group's meter: a check read; group 1: idle 40 J in 0.5 s = 80 W, loop 800 J in 2 s;
    # group 2: no idle read, loop 600 J in 2 s
    readings = [0, 0, 40_000, 1_000_000, 1_800_000, 1_900_000, 2_000_000, 2_600_000]
    slept: list[float] = []
    nvml = _fake_nvml(readings, [])
    clock = FakeClock([0.0, 0.5, 10.0, 12.0, 20.0, 22.0])
    first = _run(Energy(nvml_loader=lambda: nvml, clock=clock, sleep=slept.append),
                 _ctx(CUDA, runs=32))
    second = _run(Energy(nvml_loader=lambda: nvml, clock=clock, sleep=slept.append),
                  _ctx(CUDA, runs=32))
    assert slept == [0.5]
    assert first.fields["idle_power_w"] == second.fields["idle_power_w"] == 80.0
    assert second.fields["energy_j_per_image"] == pytest.approx((600 - 80 * 2) / 128)
    assert readings == []


def test_a_server_case_has_no_timed_loop_and_no_energy_per_image():
    """Found on the H200: the server scenario hands probes no Timing; the probe said so with an
    AttributeError in every server row."""
    readings = [0, 0, 40_000, 1_000_000, 1_800_000]
    server = replace(CUDA, scenario="server(max_batch=8,max_delay_ms=1,qps=300)")
    ctx = replace(_ctx(server), timing=None)
    reading = _run(Energy(nvml_loader=lambda: _fake_nvml(readings, []),
                          clock=FakeClock([0.0, 0.5, 10.0, 12.0]), sleep=lambda s: None), ctx)
    assert reading.fields == {"energy_source": "nvml:total_energy_consumption gpu0: not measured "
                                               "in a server(max_batch=8,max_delay_ms=1,qps=300) "
                                               "case (no timed loop of fixed batches)"}
    assert reading.warnings == []


def test_a_loop_that_used_no_more_than_idle_has_no_energy_per_image():
    readings = [0, 0, 50_000, 100_000, 150_000]  # 100 W idle, 100 W in the loop
    probe = Energy(nvml_loader=lambda: _fake_nvml(readings, []),
                   clock=FakeClock([0.0, 0.5, 1.0, 1.5]), sleep=lambda s: None)
    reading = _run(probe, _ctx(CUDA, runs=10))
    assert "energy_j_per_image" not in reading.fields
    assert reading.fields["avg_power_w"] == 100.0
    assert reading.warnings == ["energy: the timed loop used no more than idle (50.00 J in "
                                "0.50 s, idle 100.0 W): no energy per image"]


class NVMLError_NotSupported(Exception):  # noqa: N801 (pynvml's naming)
    pass


def test_a_gpu_without_the_counter_and_a_missing_pynvml_say_why():
    def unsupported(handle):
        raise NVMLError_NotSupported("Not Supported")

    nvml = SimpleNamespace(nvmlInit=lambda: None, nvmlDeviceGetHandleByIndex=lambda i: i,
                           nvmlDeviceGetTotalEnergyConsumption=unsupported)
    reading = _run(Energy(nvml_loader=lambda: nvml), _ctx(CUDA, runs=10))
    assert reading.fields == {"energy_source": "NVML energy counter not readable: "
                                               "NVMLError_NotSupported: Not Supported"}

    def missing():
        raise ImportError("No module named 'pynvml'")

    reading = _run(Energy(nvml_loader=missing), _ctx(CUDA, runs=10))
    assert reading.fields == {"energy_source": "NVML not available: nvidia-ml-py is not "
                                               "installed (pip install 'infersweep[gpu]')"}


def _zone(root: Path, name: str, uj: int, max_uj: int = 1_000_000_000) -> Path:
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "energy_uj").write_text(f"{uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return path


def test_rapl_sums_the_packages_and_undoes_a_wraparound(tmp_path):
    _zone(tmp_path, "intel-rapl:0", 100_000_000)
    _zone(tmp_path, "intel-rapl:1", 0)
    _zone(tmp_path, "intel-rapl:0:0", 7)  # a part of package 0 (core): never added again

    def idle(seconds):  # 5 J per package in 0.5 s: 20 W idle
        _zone(tmp_path, "intel-rapl:0", 105_000_000)
        _zone(tmp_path, "intel-rapl:1", 5_000_000)

    def timed_loop():
        # package 0 wraps at 1000 J: 990 J -> 40 J is 50 J; package 1 50 J; 100 J in 2 s
        _zone(tmp_path, "intel-rapl:0", 40_000_000)
        _zone(tmp_path, "intel-rapl:1", 60_000_000)
        _zone(tmp_path, "intel-rapl:0:0", 999_999)

    probe = Energy(powercap=tmp_path, clock=FakeClock([0.0, 0.5, 10.0, 12.0]), sleep=idle)
    ctx = _ctx(CPU, runs=10)  # 10 runs x batch 3 = 30 images
    probe.start_group(ctx)
    _zone(tmp_path, "intel-rapl:0", 990_000_000)
    _zone(tmp_path, "intel-rapl:1", 10_000_000)
    probe.after_warmup(ctx)
    timed_loop()
    probe.noise(ctx)
    reading = probe.after(ctx)
    # net 100 - 20 x 2 = 60 J for 30 images
    assert reading.fields == {"energy_j_per_image": 2.0, "images_per_joule": 0.5,
                              "avg_power_w": 50.0, "idle_power_w": 20.0,
                              "energy_source": "rapl:intel-rapl:0,intel-rapl:1 energy_uj, "
                                               "idle 20 W subtracted"}


def test_rapl_not_readable_says_why(tmp_path):
    assert rapl_energy(tmp_path / "none") == f"RAPL not readable: {tmp_path / 'none'} absent"
    assert rapl_energy(tmp_path) == f"RAPL not readable: no intel-rapl package zone in {tmp_path}"
    (tmp_path / "intel-rapl:0").mkdir()
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("garbage")
    assert rapl_energy(tmp_path) == (
        f"RAPL not readable: {tmp_path / 'intel-rapl:0' / 'energy_uj'}: invalid literal for "
        "int() with base 10: 'garbage'")


@pytest.mark.skipif(Path("/sys/class/powercap").exists(), reason="this machine has powercap")
def test_this_machine_without_powercap_leaves_the_cells_empty_with_the_reason():
    reading = _run(Energy(), _ctx(CPU, runs=10))
    assert reading.fields == {"energy_source": "RAPL not readable: /sys/class/powercap absent"}


def test_the_probe_is_registered_and_sees_the_workers_timed_runs(tmp_path):
    """A real sweep: the worker hands the probe its timed runs (a fake, still RAPL tree: no
    energy above idle, but the runs it counted are the row's iterations plus discarded runs)."""
    assert Energy in registry()
    _zone(tmp_path / "powercap", "intel-rapl:0", 5)
    out = tmp_path / "run"
    done = cli("run", "--backends", "fault-ok", "--sizes", "8", "--batches", "2,3", "--out", out,
               *FAST, env={**os.environ, "INFERSWEEP_POWERCAP": str(tmp_path / "powercap")})
    assert done.returncode == 0, done.stderr
    rows = json.loads((out / "results.json").read_text())["results"]
    assert sorted(row["batch_size"] for row in rows) == [2, 3]
    for row in rows:
        assert row["energy_source"] == "rapl:intel-rapl:0 energy_uj, idle 0 W subtracted"
        energy = row["info"]["energy"]
        assert energy["runs"] == row["iterations"] + row["info"].get("drift_discarded_runs", 0)
        assert (energy["images"], energy["joules"]) == (row["batch_size"] * energy["runs"], 0)


def _onnxruntime_has_cuda() -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def _cuda_sweep(tmp_path, backends: str, *extra) -> list[dict]:
    # A load that keeps the GPU busy: at 64 px and batch 8 an H200 drew no more than its idle
    # power (119.6 W against 124.3 W idle), which the probe rightly reports as no energy figure.
    # At 224 px and batch 64 it draws 450-680 W (README, Energy).
    out = tmp_path / "run"
    done = cli("run", "--devices", "cuda", "--backends", backends, "--precisions", "fp32",
               "--sizes", "224", "--batches", "64", *extra, "--out", out, *FAST, timeout=900)
    assert done.returncode == 0, done.stderr
    rows = json.loads((out / "results.json").read_text())["results"]
    for row in rows:
        assert row["status"] == "ok", row["reason"]
        assert row["energy_source"].startswith("nvml:total_energy_consumption gpu")
        assert row["idle_power_w"] > 0 and row["avg_power_w"] > row["idle_power_w"]
        assert row["energy_j_per_image"] * row["images_per_joule"] == pytest.approx(1.0)
    return rows


@pytest.mark.gpu
def test_real_nvml_energy_on_a_cuda_sweep(tmp_path):
    """On a GPU machine: torch on CUDA gets energy per image from NVML, net of a measured idle
    power."""
    assert len(_cuda_sweep(tmp_path, "torch")) == 1


@pytest.mark.gpu
@pytest.mark.skipif(not _onnxruntime_has_cuda(), reason="onnxruntime-gpu not installed")
def test_onnxruntime_cuda_energy_and_the_cudnn_search_knob(tmp_path):
    """ONNX Runtime on CUDA gets NVML energy too, and its cuDNN search knob reaches the provider."""
    rows = _cuda_sweep(tmp_path, "onnxruntime", "--option",
                       "onnxruntime.cudnn_conv_algo_search=HEURISTIC|EXHAUSTIVE")
    searches = {row["info"]["provider_options"]["cudnn_conv_algo_search"] for row in rows}
    assert searches == {"HEURISTIC", "EXHAUSTIVE"}
