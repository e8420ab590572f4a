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
    energy_module.WORKER_STEP_S.clear()
    yield
    energy_module.WORKER_IDLE_W.clear()


def _ctx(case: Case, runs: int = 0, discarded: int = 0) -> ProbeContext:
    timing = Timing(1.0, 5, 10.0, [1.0] * runs, [], None, discarded)
    return ProbeContext(backend=Backend("torch", ("cpu", "cuda"), {}), source=None, cache=None,
                        settings=None, seed=0, case=case, timing=timing)


class SteppedCounter:
    """An energy counter on a fake clock, as NVML's on the H200: it moves once per ``step_ms``
    to the energy used up to that refresh. Power is idle_w until ``load(watts)``; time is whole
    milliseconds, so refreshes fall exactly on polls."""

    def __init__(self, idle_w: float, step_ms: int = 100, unit: float = 1000.0):
        self.now_ms, self.step_ms, self.unit = 0, step_ms, unit  # unit: counts per joule
        self.segments = [(0, idle_w)]  # (from ms, watts)

    def clock(self) -> float:
        return self.now_ms / 1000

    def sleep(self, seconds: float) -> None:
        self.now_ms += round(seconds * 1000)

    def load(self, watts: float) -> None:
        self.segments.append((self.now_ms, watts))

    def joules_at(self, ms: int) -> float:
        total = 0.0
        for (start, watts), (end, _) in zip(self.segments, self.segments[1:] + [(ms, 0)]):
            total += watts * max(0, min(end, ms) - start) / 1000
        return total

    def read(self) -> int:
        refreshed = self.now_ms // self.step_ms * self.step_ms
        return int(round(self.joules_at(refreshed) * self.unit))


def _timed_loop(probe: Energy, counter: SteppedCounter, watts: float, seconds: float):
    """The timed loop: the GPU draws ``watts`` while the probe's recorder polls (no thread here:
    the fake clock moves only when told)."""
    counter.load(watts)
    for _ in range(round(seconds * 100)):
        counter.sleep(0.01)
        probe.recorder.poll_once()


def _nvml_of(counter: SteppedCounter, indexes: list[int]):
    return SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlDeviceGetHandleByIndex=lambda i: indexes.append(i) or f"gpu{i}",
        nvmlDeviceGetTotalEnergyConsumption=lambda handle: counter.read())


def _probe(counter: SteppedCounter, **kw) -> Energy:
    return Energy(clock=counter.clock, sleep=counter.sleep, threaded=False, **kw)


def _run(probe: Energy, ctx: ProbeContext, between=lambda: None):
    probe.start_group(ctx)
    probe.after_warmup(ctx)
    between()  # the timed loop
    assert probe.noise(ctx) == ""
    return probe.after(ctx)


def test_nvml_energy_per_image_net_of_idle(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    counter, indexes = SteppedCounter(idle_w=80), []
    probe = _probe(counter, nvml_loader=lambda: _nvml_of(counter, indexes))
    # 2 s at 400 W; 32 runs x batch 4 = 128 images; net (400 - 80) x 2 = 640 J
    reading = _run(probe, _ctx(CUDA, runs=30, discarded=2),
                   lambda: _timed_loop(probe, counter, 400, 2.0))
    assert reading.fields == {"energy_j_per_image": pytest.approx(5.0),
                              "images_per_joule": pytest.approx(0.2),
                              "avg_power_w": pytest.approx(400.0),
                              "idle_power_w": pytest.approx(80.0),
                              "energy_source": "nvml:total_energy_consumption gpu3, "
                                               "idle 80 W subtracted"}
    # edges at 0.1, 0.2 ... 2.0 s into the loop: 20 of them, 1.9 s apart
    assert reading.info["energy"] == {"window_s": 2.0, "method": "edges", "edges": 20,
                                      "edge_span_s": 1.9, "joules": 760.0, "images": 128,
                                      "runs": 32}
    assert set(indexes) == {3}


def test_a_loop_read_only_at_its_ends_would_be_off_by_a_step_and_is_not():
    """The H200's counter moves every 100 ms. A 1000 W loop of 0.35 s that starts 10 ms before
    a refresh (at 100 W idle) and ends 40 ms after one, read at its ends, gets the refreshes
    before each end: 90 ms of idle and 310 ms of the loop, 319 J / 0.35 s = 911 W. From its
    edges it is 1000 W."""
    counter = SteppedCounter(idle_w=100)
    probe = _probe(counter, nvml_loader=lambda: _nvml_of(counter, []))
    probe.start_group(_ctx(CUDA))
    counter.sleep(0.09 - counter.clock() % 0.1)  # 10 ms before a refresh
    probe.after_warmup(_ctx(CUDA))
    before = counter.read()
    _timed_loop(probe, counter, 1000, 0.35)
    probe.noise(_ctx(CUDA))
    at_ends_w = (counter.read() - before) / 1000 / 0.35
    assert at_ends_w == pytest.approx(319 / 0.35)
    reading = probe.after(_ctx(CUDA, runs=10))
    assert reading.fields["avg_power_w"] == pytest.approx(1000.0)


def test_a_loop_shorter_than_the_counter_s_step_has_no_figure_and_says_why():
    """Found on the H200: a 0.08 s loop of ONNX Runtime read the same counter twice, and the row
    said 0.0 W."""
    counter = SteppedCounter(idle_w=120)
    probe = _probe(counter, nvml_loader=lambda: _nvml_of(counter, []))
    probe.start_group(_ctx(CUDA))
    counter.sleep(0.01 - counter.clock() % 0.1)  # just after a refresh
    probe.after_warmup(_ctx(CUDA))
    _timed_loop(probe, counter, 500, 0.08)
    probe.noise(_ctx(CUDA))
    reading = probe.after(_ctx(CUDA, runs=20))
    why = ("nvml:total_energy_consumption gpu0: no figure: the counter moved 0 time(s) in the "
           "0.08 s window (it must move twice for a figure: a longer --min-time gives one)")
    assert reading.fields == {"energy_source": why}
    assert reading.warnings == [f"energy: {why}"]
    assert reading.info["energy"]["runs"] == 20


def test_a_worker_measures_idle_once_before_its_first_group():
    counter = SteppedCounter(idle_w=80)
    nvml = _nvml_of(counter, [])
    slept: list[float] = []

    def sleep(seconds):
        slept.append(seconds)
        counter.sleep(seconds)

    first = Energy(nvml_loader=lambda: nvml, clock=counter.clock, sleep=sleep, threaded=False)
    first_reading = _run(first, _ctx(CUDA, runs=32),
                         lambda: _timed_loop(first, counter, 800 / 2, 2.0))
    idle_slept = sum(slept)
    counter.load(80)
    counter.sleep(1.0)
    second = Energy(nvml_loader=lambda: nvml, clock=counter.clock, sleep=sleep, threaded=False)
    second_reading = _run(second, _ctx(CUDA, runs=32),
                          lambda: _timed_loop(second, counter, 300, 2.0))
    assert idle_slept == pytest.approx(0.5) and sum(slept) == pytest.approx(idle_slept)
    assert first_reading.fields["idle_power_w"] == second_reading.fields["idle_power_w"]
    assert second_reading.fields["energy_j_per_image"] == pytest.approx((300 - 80) * 2 / 128)


def test_idle_is_polled_on_until_the_counter_moved_twice():
    counter = SteppedCounter(idle_w=80, step_ms=400)  # a slower counter than the H200's
    probe = _probe(counter, nvml_loader=lambda: _nvml_of(counter, []))
    probe.start_group(_ctx(CUDA))
    assert counter.clock() == pytest.approx(0.8)  # edges at 0.4 and 0.8 s
    assert probe.idle_w == pytest.approx(80.0)


def test_a_server_case_has_no_timed_loop_and_no_energy_per_image():
    """Found on the H200: the server scenario hands probes no Timing; the probe said so with an
    AttributeError in every server row."""
    counter = SteppedCounter(idle_w=80)
    server = replace(CUDA, scenario="server(max_batch=8,max_delay_ms=1,qps=300)")
    ctx = replace(_ctx(server), timing=None)
    probe = _probe(counter, nvml_loader=lambda: _nvml_of(counter, []))
    reading = _run(probe, ctx, lambda: _timed_loop(probe, counter, 400, 1.0))
    assert reading.fields == {"energy_source": "nvml:total_energy_consumption gpu0: not measured "
                                               "in a server(max_batch=8,max_delay_ms=1,qps=300) "
                                               "case (no timed loop of fixed batches)"}
    assert reading.warnings == []


def test_a_loop_that_used_no_more_than_idle_has_no_energy_per_image():
    counter = SteppedCounter(idle_w=100)
    probe = _probe(counter, nvml_loader=lambda: _nvml_of(counter, []))
    reading = _run(probe, _ctx(CUDA, runs=10), lambda: _timed_loop(probe, counter, 100, 1.0))
    assert "energy_j_per_image" not in reading.fields
    assert reading.fields["avg_power_w"] == pytest.approx(100.0)
    assert reading.warnings == ["energy: the timed loop used no more than idle (100.0 W, idle "
                                "100.0 W): no energy per image"]


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


class RaplFiles(SteppedCounter):
    """A powercap tree on the fake clock: two packages draw half the power each; package 0
    starts at ``offset0_j`` of its 1000 J range; a part of package 0 (core) moves too."""

    def __init__(self, root: Path, idle_w: float, offset0_j: float):
        super().__init__(idle_w, step_ms=1, unit=1e6)  # RAPL: microjoules, ~1 ms refreshes
        self.root, self.offset0_j = root, offset0_j
        self.write()

    def write(self) -> None:
        half_uj = self.read() // 2
        _zone(self.root, "intel-rapl:0", (round(self.offset0_j * 1e6) + half_uj) % 1_000_000_000)
        _zone(self.root, "intel-rapl:1", half_uj)
        _zone(self.root, "intel-rapl:0:0", self.now_ms * 7)  # a part: never added again

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self.write()


def test_rapl_sums_the_packages_and_undoes_a_wraparound(tmp_path):
    # idle 20 W; the loop 50 W for 2 s, package 0 wrapping past 1000 J (990 J -> 15 J)
    files = RaplFiles(tmp_path, idle_w=20, offset0_j=985)
    probe = Energy(powercap=tmp_path, clock=files.clock, sleep=files.sleep, threaded=False)
    ctx = _ctx(CPU, runs=10)  # 10 runs x batch 3 = 30 images
    reading = _run(probe, ctx, lambda: _timed_loop(probe, files, 50, 2.0))
    # net (50 - 20) x 2 = 60 J for 30 images
    assert reading.fields == {"energy_j_per_image": pytest.approx(2.0),
                              "images_per_joule": pytest.approx(0.5),
                              "avg_power_w": pytest.approx(50.0),
                              "idle_power_w": pytest.approx(20.0),
                              "energy_source": "rapl:intel-rapl:0,intel-rapl:1 energy_uj, "
                                               "idle 20 W subtracted"}
    assert int((tmp_path / "intel-rapl:0" / "energy_uj").read_text()) < 100_000_000  # wrapped
    # RAPL moved at every idle poll: read at the loop's ends, with no poller beside the loop
    assert (probe.polled, reading.info["energy"]["method"]) == (False, "ends")


def test_a_fine_counter_on_a_loop_too_short_for_its_step_has_no_figure(tmp_path):
    files = RaplFiles(tmp_path, idle_w=20, offset0_j=0)
    probe = Energy(powercap=tmp_path, clock=files.clock, sleep=files.sleep, threaded=False)
    reading = _run(probe, _ctx(CPU, runs=10), lambda: _timed_loop(probe, files, 50, 0.05))
    assert reading.fields == {"energy_source": "rapl:intel-rapl:0,intel-rapl:1 energy_uj: no "
                                               "figure: the counter's step (10 ms or less, seen "
                                               "while idle) is more than 10% of the 0.05 s "
                                               "window (a longer --min-time gives a figure)"}


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
    """A real sweep: the worker hands the probe its timed runs (a fake RAPL tree that never
    moves: no figure, and the reason, but the runs it counted are the row's iterations plus
    discarded runs)."""
    assert Energy in registry()
    _zone(tmp_path / "powercap", "intel-rapl:0", 5)
    out = tmp_path / "run"
    done = cli("run", "--backends", "fault-ok", "--sizes", "8", "--batches", "2,3", "--out", out,
               *FAST, env={**os.environ, "INFERSWEEP_POWERCAP": str(tmp_path / "powercap")})
    assert done.returncode == 0, done.stderr
    rows = json.loads((out / "results.json").read_text())["results"]
    assert sorted(row["batch_size"] for row in rows) == [2, 3]
    for row in rows:
        assert row["energy_source"].startswith("rapl:intel-rapl:0 energy_uj: no figure: the "
                                               "counter moved 0 time(s)")
        assert row["avg_power_w"] is None
        energy = row["info"]["energy"]
        assert energy["runs"] == row["iterations"] + row["info"].get("drift_discarded_runs", 0)
        assert (energy["images"], energy["edges"]) == (row["batch_size"] * energy["runs"], 0)


def _onnxruntime_has_cuda() -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def _cuda_sweep(tmp_path, backends: str, *extra) -> list[dict]:
    # A load that keeps the GPU busy: at 64 px and batch 8 an H200 drew no more than its idle
    # power (119.6 W against 124.3 W idle), which the probe rightly reports as no energy figure.
    # At 224 px and batch 64 it draws 450-680 W (README, Energy). The loop must span a few of
    # the counter's 100 ms steps for a figure: at least 0.3 s, not the tests' usual 0.05 s.
    out = tmp_path / "run"
    done = cli("run", "--devices", "cuda", "--backends", backends, "--precisions", "fp32",
               "--sizes", "224", "--batches", "64", *extra, "--out", out, "--min-time", "0.3",
               "--max-time", "0.6", "--min-iterations", "5", timeout=900)
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
