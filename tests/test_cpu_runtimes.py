"""OpenVINO and ONNX Runtime INT8 on the CPU, for real: precision verified, agreement checked."""

import json

import pytest
from conftest import FAST, cli

from infersweep.backends.openvino import cpu_capabilities
from infersweep.artefacts.cache import entries

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runtimes(tmp_path_factory):
    out = tmp_path_factory.mktemp("cpu-runtimes") / "run"
    proc = cli("run", "--backends", "onnxruntime,openvino", "--precisions", "fp32,int8,bf16,fp16",
               "--sizes", "64", "--batches", "1,2", "--data", "samples", "--out", out, *FAST)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    rows = json.loads((out / "results.json").read_text())["results"]
    return {(r["backend"], r["precision"], r["batch_size"]): r for r in rows}, out


def test_int8_is_really_int8_and_still_agrees(runtimes):
    rows, _ = runtimes
    for batch in (1, 2):
        r = rows[("onnxruntime", "int8", batch)]
        assert r["status"] == "ok", r["reason"]
        assert r["info"]["onnx_precision"]["int8_weight_share"] > 0.9
        assert r["cosine"] > 0.95 and "disagree" not in (r["warnings"] or "")


def test_int8_model_is_calibrated_once_and_cached(runtimes):
    assert sum(e["kind"] == "onnx-int8" and e["key"]["data"] == "samples" for e in entries()) == 1


def test_openvino_fp32_compiles_f32_and_agrees(runtimes):
    rows, _ = runtimes
    for batch in (1, 2):
        r = rows[("openvino", "fp32", batch)]
        assert r["status"] == "ok", r["reason"]
        assert r["info"]["inference_precision"] == "f32"
        assert r["cosine"] > 0.9999


def test_openvino_low_precision_follows_the_cpu(runtimes):
    rows, _ = runtimes
    for precision, capability in (("bf16", "BF16"), ("fp16", "FP16")):
        r = rows[("openvino", precision, 1)]
        if capability in cpu_capabilities():
            assert r["status"] == "ok" and r["info"]["inference_precision"] == precision.replace(
                "fp", "f")
        else:
            assert r["status"] == "unsupported" and capability in r["reason"]


def test_precisions_a_runtime_cannot_do_are_unsupported(runtimes):
    rows, _ = runtimes
    assert rows[("openvino", "int8", 1)]["status"] == "unsupported"
    assert rows[("onnxruntime", "bf16", 1)]["status"] == "unsupported"
