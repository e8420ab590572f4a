"""`recommend --emit python`: a short runnable script that builds the recommended configuration
with the settings it was measured with, runs one random batch and prints the output's shape; and
as a comment the `infersweep run` command that reproduces the measurement.

Plain torch / onnxruntime / openvino code, what a user would paste into a service. infersweep's
own loader appears only where plain code would not build the measured model: a checkpoint (the
loader strips a wrapper's key prefix and reads the number of classes from it) or a factory.
"""

from __future__ import annotations

import shlex

from infersweep.artefacts.export import DEFAULT_OPSET, ONNX_INPUT, ONNX_OUTPUT
from infersweep.artefacts.model_ref import FACTORY, ONNX, TIMM, parse_model
from infersweep.case import parse_options
from infersweep.measure.timing import MeasureSettings

TORCH_BACKENDS = ("torch", "torch-compile")
ONNX_BACKENDS = ("onnxruntime", "openvino")
TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "amp": "float32"}
OPENVINO_PRECISION = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}
# spec.json's measurement settings -> the run flag that sets them
MEASURE_FLAGS = {"min_time_s": "--min-time", "max_time_s": "--max-time",
                 "min_iterations": "--min-iterations", "target_ci": "--target-ci",
                 "remeasure": "--remeasure"}


class EmitError(ValueError):
    """A configuration --emit python cannot write code for; the CLI exits with 2."""


def _seed(row: dict) -> int | None:
    """The seed of random weights ('random(seed=3)' -> 3); None for a checkpoint."""
    weights = row["weights"] or ""
    if weights.startswith("random(seed=") and weights.endswith(")"):
        return int(weights[len("random(seed="):-1])
    return None


def _torch_model(row: dict) -> list[str]:
    """Lines that leave an fp32 CPU nn.Module in ``model``, as the workers built it."""
    ref = parse_model(row["model"])
    seed = _seed(row)
    if ref.kind == FACTORY or seed is None:
        weights = "None" if seed is not None else repr(row["weights"])
        why = ("checkpoint: strips a wrapper's key prefix, reads the number of classes"
               if seed is None else "your factory, called with the image size if it takes one")
        return ["from infersweep.artefacts.models import build_model",
                "",
                f"# infersweep's own loader, as measured ({why})",
                f"model = build_model({ref.text!r}, {weights}, seed={seed or 0}, "
                f"image_size={row['image_size']})"]
    lines = [f"torch.manual_seed({seed})  # random weights, as measured"]
    if ref.kind == TIMM:
        return ["import timm", "", *lines,
                f"model = timm.create_model({ref.target!r}, pretrained=False)"]
    return ["import torchvision", "", *lines,
            f"model = torchvision.models.get_model({ref.target!r}, weights=None)"]


def _torch(row: dict, options: dict) -> list[str]:
    device, precision = row["device"], row["precision"]
    dtype = TORCH_DTYPES[precision]
    channels_last = options.get("channels_last") == "true"
    lines = ["import torch", *_torch_model(row), "",
             f'model = model.eval().to("{device}", dtype=torch.{dtype})']
    if channels_last:
        lines.append("model = model.to(memory_format=torch.channels_last)")
    if device == "cuda":
        lines.append(f"torch.backends.cudnn.benchmark = "
                     f"{options.get('cudnn_benchmark', 'true') == 'true'}")
    if row["backend"] == "torch-compile":
        mode, cudagraphs = options.get("mode", "default"), options.get("cudagraphs", "auto")
        if cudagraphs == "auto":
            lines.append(f'model = torch.compile(model, mode="{mode}", dynamic=False)')
        else:
            lines += ["from torch._inductor import list_mode_options", "",
                      f'compile_options = dict(list_mode_options("{mode}"), '
                      f'**{{"triton.cudagraphs": {cudagraphs == "true"}}})',
                      "model = torch.compile(model, options=compile_options, dynamic=False)"]
    size = row["image_size"]
    lines.append(f'batch = torch.randn({row["batch_size"]}, 3, {size}, {size}, '
                 f'device="{device}", dtype=torch.{dtype})')
    if channels_last:
        lines.append("batch = batch.contiguous(memory_format=torch.channels_last)")
    if precision == "amp":
        autocast = "float16" if device == "cuda" else "bfloat16"
        lines += ["with torch.inference_mode(), "
                  f'torch.autocast("{device}", dtype=torch.{autocast}):']
    else:
        lines.append("with torch.inference_mode():")
    lines += ["    output = model(batch)", "print(tuple(output.shape))"]
    return lines


def _onnx_file(row: dict, info: dict, opset: int, precision: str) -> list[str]:
    """Lines that leave the path of the ONNX model the runtime ran in MODEL."""
    ref = parse_model(row["model"])
    if ref.kind == ONNX:
        return [f"MODEL = {ref.target!r}  # your ONNX file, run as is"]
    if row["precision"] == "int8":
        return ["# The INT8 model infersweep quantised (static QDQ, per-channel weights, "
                "calibrated on the sweep's data), from its artefact cache:",
                f"MODEL = {info.get('onnx_file', 'model-int8.onnx')!r}"]
    dtype = TORCH_DTYPES[precision]
    half = ".half()" if precision == "fp16" else ""
    return ["import torch", *_torch_model(row), "",
            f"model = model.eval(){half}",
            f'MODEL = "model.onnx"  # exported as infersweep does: dynamic batch, opset {opset}',
            f"torch.onnx.export(model, (torch.randn(2, 3, {row['image_size']}, "
            f"{row['image_size']}, dtype=torch.{dtype}),), MODEL,",
            f'                  input_names=["{ONNX_INPUT}"], output_names=["{ONNX_OUTPUT}"],',
            '                  dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),',
            f"                  opset_version={opset}, dynamo=True)"]


def _random_batch(row: dict, dtype: str) -> str:
    size = row["image_size"]
    return (f"batch = np.random.default_rng(0).random(({row['batch_size']}, 3, {size}, {size}))"
            f".astype(np.{dtype})")


def _ort_option(key: str, value: str) -> str:
    """A SessionOptions line for an option of the case (runtime knobs)."""
    if value.lstrip("-").isdigit():
        return f"options.{key} = {int(value)}"
    if key in ("graph_optimization_level", "execution_mode"):
        enum = "GraphOptimizationLevel" if key.startswith("graph") else "ExecutionMode"
        return f"options.{key} = ort.{enum}.{value}"
    return f"# option {key}={value}: set as in the measured case (see its info in results.json)"


def _onnxruntime(row: dict, info: dict, options: dict) -> list[str]:
    if row["device"] == "cuda":
        provider_options = info.get("provider_options") or {
            "device_id": "0",
            "cudnn_conv_algo_search": options.get("cudnn_conv_algo_search", "EXHAUSTIVE")}
        providers = f'[("CUDAExecutionProvider", {provider_options!r}), "CPUExecutionProvider"]'
    else:
        providers = '["CPUExecutionProvider"]'
    session_options = [_ort_option(k, v) for k, v in sorted(options.items())
                       if k != "cudnn_conv_algo_search"]
    dtype = "float16" if row["precision"] == "fp16" else "float32"
    return ["import numpy as np", "import onnxruntime as ort", "",
            "options = ort.SessionOptions()",
            "options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL",
            *session_options,
            f"session = ort.InferenceSession(MODEL, options, providers={providers})",
            _random_batch(row, dtype),
            "output = session.run(None, {session.get_inputs()[0].name: batch})[0]",
            "print(tuple(output.shape))"]


def _openvino(row: dict, info: dict, options: dict) -> list[str]:
    # The config the worker compiled with: upper-case keys of the row's info are OpenVINO
    # properties (PERFORMANCE_HINT, INFERENCE_PRECISION_HINT...).
    config = {k: v for k, v in info.items() if k.isupper()} or {
        "PERFORMANCE_HINT": options.get("performance_hint", "LATENCY"),
        "INFERENCE_PRECISION_HINT": OPENVINO_PRECISION[row["precision"]]}
    size = row["image_size"]
    return ["import numpy as np", "import openvino as ov", "",
            "core = ov.Core()",
            "model = core.read_model(MODEL)",
            f"model.reshape({{0: [{row['batch_size']}, 3, {size}, {size}]}})  # static shape",
            f'compiled = core.compile_model(model, "CPU", {config!r})',
            "request = compiled.create_infer_request()",
            _random_batch(row, "float32"),
            "request.infer({0: batch})",
            "output = request.get_output_tensor(0).data",
            "print(tuple(output.shape))"]


def reproduce_command(row: dict, spec: dict, defaults: dict[str, dict] | None = None) -> str:
    """The `infersweep run` command that measures this case again with the run's settings
    (spec: the run's spec.json). defaults: backend -> option defaults; options equal to them
    are left out (they change no case)."""
    args = ["infersweep", "run", "--model", row["model"], "--backends", row["backend"],
            "--devices", row["device"], "--precisions", row["precision"],
            "--sizes", str(row["image_size"]), "--batches", str(row["batch_size"]),
            "--data", row["data"]]
    if row.get("scope", "compute") != "compute":
        args += ["--scope", row["scope"]]
    if _seed(row) is None and not (row["weights"] or "").startswith("onnx("):
        args += ["--weights", row["weights"]]  # an ONNX file's label is its digest: no flag
    elif (_seed(row) or 0) != 0:
        args += ["--seed", str(_seed(row))]
    if spec.get("opset") not in (None, DEFAULT_OPSET):
        args += ["--opset", str(spec["opset"])]
    backend_defaults = (defaults or {}).get(row["backend"], {})
    for key, value in sorted(parse_options(row.get("options") or "").items()):
        default = backend_defaults.get(key)
        if default is None or str(default).lower() != value.lower():
            args += ["--option", f"{row['backend']}.{key}={value}"]
    if spec.get("quick"):
        args.append("--quick")
    else:
        measured, plain = spec.get("measure") or {}, MeasureSettings()
        for key, flag in MEASURE_FLAGS.items():
            if key in measured and measured[key] != getattr(plain, key):
                args += [flag, f"{measured[key]:g}"]
    if (spec.get("repeats") or 1) > 1:
        args += ["--repeats", str(spec["repeats"])]
    return shlex.join(args)


def python_snippet(row: dict, info: dict, spec: dict,
                   defaults: dict[str, dict] | None = None) -> str:
    """The script for the row's configuration; info: the result's info (what the worker
    built), spec: the run's spec.json."""
    backend = row["backend"]
    if backend not in TORCH_BACKENDS + ONNX_BACKENDS:
        raise EmitError(f"--emit python writes code for {', '.join(TORCH_BACKENDS + ONNX_BACKENDS)}"
                        f"; the recommended case runs on {backend}")
    options = parse_options(row.get("options") or "")
    opset = info.get("opset") or spec.get("opset") or DEFAULT_OPSET
    header = [f"# {row['model']}: {backend} {row['precision']} {row['device']}, batch "
              f"{row['batch_size']}, {row['image_size']} px"
              + (f" ({row['options']})" if row.get("options") else ""),
              f"# measured: {row['throughput_ips']:.1f} img/s, median "
              f"{row['latency_ms_median']:.3f} ms, p99 {row['latency_ms_p99']:.3f} ms per batch",
              "# Reproduce the measurement:",
              f"#   {reproduce_command(row, spec, defaults)}", ""]
    if backend in TORCH_BACKENDS:
        body = _torch(row, options)
    else:
        precision = "fp16" if row["precision"] == "fp16" and backend == "onnxruntime" else "fp32"
        model = _onnx_file(row, info, opset, precision)
        runtime = _onnxruntime(row, info, options) if backend == "onnxruntime" \
            else _openvino(row, info, options)
        body = [*model, "", *runtime]
    return "\n".join(header + _imports_first(body)) + "\n"


def _imports_first(lines: list[str]) -> list[str]:
    """Imports gathered at the top, each once, in the order they first appear."""
    imports = list(dict.fromkeys(line for line in lines if line.startswith(("import ", "from "))))
    rest: list[str] = []
    for line in lines:
        if line not in imports and (line or (rest and rest[-1])):  # no doubled blank lines
            rest.append(line)
    return imports + [""] + rest


def snippet_for(row: dict, stored_run) -> str:
    """python_snippet of a row of a stored run (sweep.StoredRun): its result's info, the run's
    spec, the installed backends' option defaults."""
    from infersweep.backends import registry

    info = next(r.info for r in stored_run.results if r.case.case_id == row["case_id"])
    defaults = {name: b.option_defaults for name, b in registry().items()}
    return python_snippet(row, info, stored_run.spec, defaults)
