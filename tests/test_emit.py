"""`recommend --emit python`: the emitted script runs for torch, onnxruntime and openvino on the
CPU and prints the output shape of the recommended batch; its settings are the case's (dtype,
channels_last, compile mode, providers, OpenVINO config); the reproduce command is exact."""

import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from typer.testing import CliRunner

from infersweep.case import Case
from infersweep.cli import app
from infersweep.reports.emit import EmitError, python_snippet, reproduce_command
from infersweep.results.result import Result
from infersweep.results.store import Store

FACTORY = """\
import torch.nn as nn

def tiny(image_size):
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 10))
"""
SPEC = {"baseline": "torch", "seed": 0, "opset": 18, "quick": False, "repeats": 1,
        "measure": {"min_time_s": 1.0, "max_time_s": 10.0, "min_iterations": 10,
                    "target_ci": 0.01, "remeasure": 1}}


def _row(model, backend, batch, size=32, precision="fp32", device="cpu", options="",
         weights="random(seed=0)"):
    case = Case(model, weights, backend, device, precision, size, batch, "synthetic",
                options=options)
    return Result(case, "ok", samples_ms=[10.0] * 10).row()


def _run(snippet: str, tmp_path) -> str:
    script = tmp_path / "deploy.py"
    script.write_text(snippet)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_torch_snippet_runs_with_channels_last(tmp_path):
    row = _row("resnet18", "torch", 2, options="channels_last=true")
    snippet = python_snippet(row, {}, SPEC)
    assert "model = model.to(memory_format=torch.channels_last)" in snippet
    assert _run(snippet, tmp_path) == "(2, 1000)"


def test_onnxruntime_snippet_exports_a_factory_model_and_runs(tmp_path):
    (tmp_path / "fac.py").write_text(FACTORY)
    row = _row(f"{tmp_path}/fac.py:tiny", "onnxruntime", 3)
    snippet = python_snippet(row, {}, SPEC)
    assert 'providers=["CPUExecutionProvider"]' in snippet
    assert _run(snippet, tmp_path) == "(3, 10)"
    assert (tmp_path / "model.onnx").is_file()  # the export the script made


def test_openvino_snippet_runs_an_onnx_file_with_the_measured_config(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 7)).eval()
    onnx_file = tmp_path / "net.onnx"
    torch.onnx.export(model, (torch.randn(2, 3, 32, 32),), str(onnx_file),
                      dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), dynamo=True)
    row = _row(str(onnx_file), "openvino", 4, options="performance_hint=THROUGHPUT",
               weights="onnx(net.onnx)")
    info = {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f32"}
    snippet = python_snippet(row, info, SPEC)
    assert ("compiled = core.compile_model(model, \"CPU\", {'PERFORMANCE_HINT': 'THROUGHPUT', "
            "'INFERENCE_PRECISION_HINT': 'f32'})") in snippet
    assert _run(snippet, tmp_path) == "(4, 7)"
    assert snippet.splitlines()[3] == (
        f"#   infersweep run --model {onnx_file} --backends openvino --devices cpu --precisions "
        "fp32 --sizes 32 --batches 4 --data synthetic --option "
        "openvino.performance_hint=THROUGHPUT")


def test_settings_of_cuda_and_compiled_cases_are_written_exactly():
    row = _row("timm:resnet18", "torch-compile", 8, 224, "amp", "cuda",
               "channels_last=false,cudagraphs=auto,cudnn_benchmark=false,mode=max-autotune",
               weights="random(seed=3)")
    snippet = python_snippet(row, {}, SPEC)
    compile(snippet, "deploy.py", "exec")
    for line in ('model = timm.create_model(\'resnet18\', pretrained=False)',
                 "torch.manual_seed(3)  # random weights, as measured",
                 'model = model.eval().to("cuda", dtype=torch.float32)',
                 "torch.backends.cudnn.benchmark = False",
                 'model = torch.compile(model, mode="max-autotune", dynamic=False)',
                 'with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):'):
        assert line in snippet.splitlines(), line
    ort = python_snippet(_row("resnet18", "onnxruntime", 8, 224, "fp16", "cuda",
                              "cudnn_conv_algo_search=HEURISTIC"), {}, SPEC)
    compile(ort, "deploy.py", "exec")
    assert ("session = ort.InferenceSession(MODEL, options, providers=[(\"CUDAExecutionProvider"
            "\", {'device_id': '0', 'cudnn_conv_algo_search': 'HEURISTIC'}), "
            "\"CPUExecutionProvider\"])") in ort
    assert "model = model.eval().half()" in ort and "astype(np.float16)" in ort


def test_reproduce_command_carries_the_case_and_the_runs_settings():
    row = _row("resnet18", "torch", 8, 224, options="channels_last=true,cudnn_benchmark=true")
    spec = {**SPEC, "measure": {**SPEC["measure"], "min_time_s": 2.0}, "repeats": 3}
    defaults = {"torch": {"channels_last": False, "cudnn_benchmark": True}}
    assert reproduce_command(row, spec, defaults) == (
        "infersweep run --model resnet18 --backends torch --devices cpu --precisions fp32 "
        "--sizes 224 --batches 8 --data synthetic --option torch.channels_last=true "
        "--min-time 2 --repeats 3")


def test_a_backend_without_an_emitter_is_refused():
    with pytest.raises(EmitError, match="the recommended case runs on torch-tensorrt"):
        python_snippet(_row("resnet18", "torch-tensorrt", 8, device="cuda"), {}, SPEC)


def test_cli_emit_puts_the_script_on_stdout(tmp_path):
    store = Store(tmp_path / "results.sqlite")
    store.put(Result(Case("resnet18", "random(seed=0)", "torch", "cpu", "fp32", 32, 2,
                          "synthetic", options="channels_last=false"), "ok",
                     samples_ms=[10.0] * 10))
    store.set_meta("spec", SPEC)
    store.close()
    result = CliRunner().invoke(app, ["recommend", str(tmp_path), "--emit", "python"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# resnet18: torch fp32 cpu, batch 2, 32 px")
    assert "Recommended: torch" in result.stderr and "Recommended" not in result.stdout
    compile(result.stdout, "deploy.py", "exec")
