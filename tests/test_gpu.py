"""GPU path on a real CUDA device (skipped without one): precision really applied, memory from
NVML for every runtime, IO binding, pipelined throughput, end-to-end scope."""

import json

import pytest
from conftest import cli

pytestmark = pytest.mark.gpu

QUICK = ["--min-time", "0.2", "--max-time", "1", "--min-iterations", "10", "--sizes", "64",
         "--batches", "8,32"]


def _rows(out):
    return {(r["backend"], r["precision"], r["scope"], r["batch_size"]): r
            for r in json.loads((out / "results.json").read_text())["results"]}


@pytest.fixture(scope="module")
def gpu_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "run"
    runs = [
        ["--backends", "torch", "--precisions", "fp32,fp16,bf16,amp"],
        ["--backends", "onnxruntime", "--precisions", "fp32,fp16"],
        ["--backends", "onnxruntime", "--precisions", "fp32", "--scope", "e2e"],
        ["--backends", "torch-compile", "--precisions", "fp16", "--channels-last"],
    ]
    for args in runs:
        proc = cli("run", "--devices", "cuda", *args, *QUICK, "--out", out, timeout=900)
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return _rows(out)


def test_all_gpu_cases_ok(gpu_sweep):
    bad = {k: (r["status"], r["reason"]) for k, r in gpu_sweep.items() if r["status"] != "ok"}
    assert not bad


@pytest.mark.parametrize("precision,param,output", [
    ("fp32", "float32", "float32"), ("fp16", "float16", "float16"),
    ("bf16", "bfloat16", "bfloat16"), ("amp", "float32", "float16")])
def test_torch_precision_really_applied(gpu_sweep, precision, param, output):
    info = gpu_sweep[("torch", precision, "compute", 32)]["info"]
    assert info["param_dtype"] == param and info["output_dtype"] == output


def test_onnx_fp16_is_verified_fp16(gpu_sweep):
    fp16 = gpu_sweep[("onnxruntime", "fp16", "compute", 32)]["info"]
    fp32 = gpu_sweep[("onnxruntime", "fp32", "compute", 32)]["info"]
    assert fp16["onnx_precision"]["is_fp16"] and fp16["onnx_precision"]["input_dtype"] == "float16"
    assert not fp32["onnx_precision"]["is_fp16"]
    assert fp16["providers"][0] == "CUDAExecutionProvider" and fp16["io_binding"]


def test_memory_from_nvml_for_every_gpu_backend(gpu_sweep):
    for key, row in gpu_sweep.items():
        assert row["memory_source"].startswith("gpu:nvml"), key
        assert row["peak_memory_mb"] > 100, key  # at least the CUDA context
    torch_row = gpu_sweep[("torch", "fp16", "compute", 32)]
    assert 0 < torch_row["allocator_peak_mb"] < torch_row["peak_memory_mb"]


def test_pipelined_throughput_recorded(gpu_sweep):
    for key, row in gpu_sweep.items():
        if row["scope"] == "compute":
            assert row["throughput_pipelined_ips"] > 0, key


def test_e2e_scope_counts_copies(gpu_sweep):
    compute = gpu_sweep[("onnxruntime", "fp32", "compute", 32)]["latency_ms_median"]
    e2e = gpu_sweep[("onnxruntime", "fp32", "e2e", 32)]["latency_ms_median"]
    assert e2e > compute


def test_compile_time_is_setup_not_latency(gpu_sweep):
    row = gpu_sweep[("torch-compile", "fp16", "compute", 32)]
    # compilation happened, and was charged to setup: far longer than a timed run
    assert row["setup_s"] * 1000 > 100 * row["latency_ms_median"]
    assert row["first_iter_ms"] < 1000 * row["setup_s"] / 2


def test_two_gpus_in_parallel(tmp_path):
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    out = tmp_path / "run"
    proc = cli("run", "--devices", "cuda", "--backends", "torch,onnxruntime", "--precisions",
               "fp16", "--gpus", "0,1", *QUICK, "--out", out, timeout=900)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    rows = json.loads((out / "results.json").read_text())["results"]
    assert rows and all(r["status"] == "ok" for r in rows)
    assert {r["info"]["gpu_index"] for r in rows} == {0, 1}


def test_ray_executor_on_gpus(tmp_path):
    """--executor ray on a CUDA machine: each GPU group gets a GPU from Ray, every case is ok,
    and each row says on which host and GPU it ran."""
    pytest.importorskip("ray")
    import socket

    import torch

    out = tmp_path / "run"
    proc = cli("run", "--devices", "cuda", "--backends", "torch", "--precisions", "fp32,fp16",
               "--executor", "ray", *QUICK, "--out", out, timeout=900)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    rows = [r for r in json.loads((out / "results.json").read_text())["results"]
            if r["device"] == "cuda"]
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows), rows
    names = {torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())}
    for r in rows:
        assert r["info"]["executor"] == "ray" and r["info"]["host"] == socket.gethostname()
        assert r["info"]["gpu_name"] in names
        assert r["info"]["gpu_index"] in range(torch.cuda.device_count())
        assert r["memory_source"].startswith("gpu:nvml")
