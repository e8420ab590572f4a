"""Peaks and utilisation: table lookups and the utilisation column. The measured CPU peak against
a matrix product timed in the same test: test_keys_and_peaks.py."""

import os

from conftest import cli

import pytest

from infersweep.probes import peaks
from infersweep.probes.peaks import matmul_dtype, peak_for, table_peak
from infersweep.reports.rows import add_utilization


def test_gpu_table_maps_precision_to_the_unit_that_runs_it():
    assert table_peak("NVIDIA H200", "fp32")["tflops"] == 494.7  # TF32 convolutions
    assert table_peak("NVIDIA H200", "amp")["tflops"] == 989.5  # autocast runs fp16
    assert table_peak("NVIDIA H100 PCIe", "fp16")["tflops"] == 756.0  # not the SXM figure
    assert "datasheet" in table_peak("NVIDIA A100-SXM4-80GB", "bf16")["source"]
    assert table_peak("NVIDIA GeForce GTX 1080", "fp16") is None


@pytest.mark.parametrize("name, fp16, board", [
    ("NVIDIA H200", 989.5, "H200 SXM"),
    ("NVIDIA H200 NVL", 835.5, "H200 NVL"),  # 600 W board: half of the datasheet's 1,671 sparse
    ("NVIDIA H100 NVL", 835.5, "H100 NVL"),
    ("NVIDIA H100 80GB HBM3", 989.5, "H100 SXM"),
    ("NVIDIA A100 80GB PCIe", 312.0, "A100 PCIe"),
])
def test_gpu_names_are_matched_exactly(name, fp16, board):
    found = table_peak(name, "fp16")
    assert (found["tflops"], found["source"]) == (fp16, f"table: {board} dense fp16 "
                                                         "(NVIDIA datasheet)")


@pytest.mark.parametrize("name", ["NVIDIA H200 NVL-X", "NVIDIA H2000", "NVIDIA H100"])
def test_an_unknown_variant_gets_no_neighbours_figure(name):
    assert table_peak(name, "fp16") is None  # measured instead


def test_amp_peak_is_the_dtype_autocast_runs_in(monkeypatch):
    assert (matmul_dtype("cpu", "amp"), matmul_dtype("cuda", "amp")) == ("bfloat16", "float16")
    asked = []
    monkeypatch.setattr(peaks, "measure_in_subprocess",
                        lambda device, precision: asked.append((device, precision)) or 0.5)
    monkeypatch.setattr(peaks, "cached_measurements", lambda: {
        "cpu:test-cpu:2 cores:amp": {"tflops": 9.0, "source": "an old float16 measurement"}})
    monkeypatch.setattr(peaks, "_cache_file", lambda: peaks.Path(os.environ["INFERSWEEP_CACHE"])
                        / "peaks-test.json")
    found = peak_for("cpu", "amp", {"cpu": "test-cpu", "cores_usable": 2})
    assert asked == [("cpu", "amp")]  # the old float16 figure was not used
    assert found == {"tflops": 0.5, "source": "measured: best bfloat16 matrix product on this "
                                              "CPU (infersweep peak)"}


def test_utilization_uses_the_peak_of_the_rows_device_and_precision():
    rows = [{"device": "cpu", "precision": "fp32", "achieved_tflops": 0.05, "utilization_pct": None},
            {"device": "cpu", "precision": "bf16", "achieved_tflops": 0.05, "utilization_pct": None},
            {"device": "cuda", "precision": "fp16", "achieved_tflops": None, "utilization_pct": None}]
    add_utilization(rows, {"cpu:fp32": {"tflops": 0.2, "source": "measured"}})
    assert rows[0]["utilization_pct"] == 25.0
    assert rows[1]["utilization_pct"] is None  # no bf16 peak known: no figure, not a guess
    assert rows[2]["utilization_pct"] is None


def test_peak_command_and_bad_device():
    ok = cli("peak", "--devices", "cpu", "--precisions", "fp32")
    assert ok.returncode == 0 and "measured" in ok.stdout
    bad = cli("peak", "--devices", "tpu")
    assert bad.returncode == 2 and "unknown device 'tpu'" in bad.stderr
