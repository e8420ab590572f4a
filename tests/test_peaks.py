"""Peaks and utilisation: table lookups and the utilisation column. The measured CPU peak against
a matrix product timed in the same test: test_keys_and_peaks.py."""

from conftest import cli

from infersweep.probes.peaks import table_peak
from infersweep.reports.rows import add_utilization


def test_gpu_table_maps_precision_to_the_unit_that_runs_it():
    assert table_peak("NVIDIA H200", "fp32")["tflops"] == 494.7  # TF32 convolutions
    assert table_peak("NVIDIA H200", "amp")["tflops"] == 989.5  # autocast runs fp16
    assert table_peak("NVIDIA H100 PCIe", "fp16")["tflops"] == 756.0  # not the SXM figure
    assert "datasheet" in table_peak("NVIDIA A100-SXM4-80GB", "bf16")["source"]
    assert table_peak("NVIDIA GeForce GTX 1080", "fp16") is None


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
