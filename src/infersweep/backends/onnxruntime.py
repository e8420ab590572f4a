"""ONNX Runtime: CPU execution provider, and CUDA execution provider with IO binding.

On CUDA the input and output live in device buffers bound once (IO binding), so the timed region
holds no host copies; that is how PyTorch is timed too. (The end-to-end scope times the copies on
purpose.) fp16 comes from a graph exported from the half-precision model and verified to hold
float16 weights and input (see export.verify_precision): an "fp16" row is never an fp32 model.

Knobs (options; each can be a grid axis): ``intra_op_num_threads`` and ``inter_op_num_threads``
(0: ONNX Runtime's default), ``graph_optimization_level`` (disable, basic, extended, all),
``execution_mode`` (sequential, parallel) and, on CUDA, ``cudnn_conv_algo_search``. The session
options ONNX Runtime really applied are read back into the row's info.
"""

from __future__ import annotations

import numpy as np

from infersweep.backends.base import Artefact, Backend, PrecisionError, Session
from infersweep.case import Case
from infersweep.artefacts.export import (DEFAULT_OPSET, onnx_export, onnx_precision_report,
                                         user_onnx)
from infersweep.artefacts.quantize import RECIPE as QUANT_RECIPE
from infersweep.artefacts.quantize import int8_export, int8_weight_share

NUMPY_DTYPES = {"fp32": np.float32, "fp16": np.float16}


GRAPH_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
                "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
EXECUTION_MODES = {"sequential": "ORT_SEQUENTIAL", "parallel": "ORT_PARALLEL"}
# What this backend did before the knobs existed: the defaults, left out of the case's options.
SESSION_DEFAULTS = {"intra_op_num_threads": 0, "inter_op_num_threads": 0,
                    "graph_optimization_level": "all", "execution_mode": "sequential"}


def _session_options(knobs: dict | None = None):
    """SessionOptions from the case's knobs (``Backend.resolved_options``; None: defaults)."""
    import onnxruntime as ort

    knobs = {**SESSION_DEFAULTS, **(knobs or {})}
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                               GRAPH_LEVELS[knobs["graph_optimization_level"]])
    options.execution_mode = getattr(ort.ExecutionMode, EXECUTION_MODES[knobs["execution_mode"]])
    options.intra_op_num_threads = knobs["intra_op_num_threads"]
    options.inter_op_num_threads = knobs["inter_op_num_threads"]
    return options


def applied_session_options(session) -> dict:
    """The session options ONNX Runtime holds for the session, as the row's info records them."""
    applied = session.get_session_options()
    return {"intra_op_num_threads": applied.intra_op_num_threads,
            "inter_op_num_threads": applied.inter_op_num_threads,
            "graph_optimization_level": str(applied.graph_optimization_level).split(".")[-1],
            "execution_mode": str(applied.execution_mode).split(".")[-1]}


class OrtCpuSession(Session):
    def __init__(self, path, info: dict, knobs: dict | None = None):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), _session_options(knobs),
                                            providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name  # a user's file names its own
        self.info = {**info, "onnxruntime": ort.__version__,
                     "providers": self.session.get_providers(),
                     "session_options": applied_session_options(self.session)}

    def place(self, batch: np.ndarray):
        return {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}

    def launch(self, placed):
        return self.session.run(None, placed)[0]  # synchronous on the CPU provider

    def close(self) -> None:
        self.session = None


class OrtCudaSession(Session):
    """CUDA EP; inputs and outputs preallocated on the device and bound once."""

    def __init__(self, path, info: dict, precision: str, provider_options: dict,
                 knobs: dict | None = None):
        import onnxruntime as ort

        self.ort = ort
        self.dtype = NUMPY_DTYPES[precision]
        self.session = ort.InferenceSession(
            str(path), _session_options(knobs),
            providers=[("CUDAExecutionProvider", provider_options), "CPUExecutionProvider"])
        providers = self.session.get_providers()
        if providers[0] != "CUDAExecutionProvider":
            # ONNX Runtime falls back to the CPU silently; a "cuda" row must never be CPU work.
            raise RuntimeError(f"CUDAExecutionProvider did not load (providers: {providers}); "
                               "is onnxruntime-gpu installed with a matching CUDA?")
        # launch() runs without ORT's end-of-run stream synchronisation, so back-to-back launches
        # keep the GPU queue full; run() keeps the default synchronous behaviour, and since every
        # run of the session uses one stream, a synchronous run also waits for earlier launches.
        self.async_options = ort.RunOptions()
        self.async_options.add_run_config_entry("disable_synchronize_execution_providers", "1")
        self.info = {**info, "onnxruntime": ort.__version__, "providers": providers,
                     "provider_options": self.session.get_provider_options().get(
                         "CUDAExecutionProvider", provider_options),
                     "session_options": applied_session_options(self.session),
                     "io_binding": True}

    def place(self, batch: np.ndarray):
        device_id = 0
        x = self.ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(batch, dtype=self.dtype),
                                                  "cuda", device_id)
        classes = self.session.get_outputs()[0].shape[1]
        y = self.ort.OrtValue.ortvalue_from_shape_and_type([batch.shape[0], classes], self.dtype,
                                                           "cuda", device_id)
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(self.session.get_inputs()[0].name, x)
        binding.bind_ortvalue_output(self.session.get_outputs()[0].name, y)
        return binding, x, y  # keep x and y alive as long as the binding

    def refill(self, placed, batch: np.ndarray):
        # New OrtValues per batch would cudaMalloc and cudaFree (a device-wide sync) each time
        placed[1].update_inplace(np.ascontiguousarray(batch, dtype=self.dtype))
        return placed

    def launch(self, placed):
        binding, _, y = placed
        self.session.run_with_iobinding(binding, self.async_options)
        return y

    def run(self, placed):
        binding, _, y = placed
        self.session.run_with_iobinding(binding)  # returns when the device work is complete
        return y

    def fetch(self, output) -> np.ndarray:
        return output.numpy().astype(np.float32)

    def close(self) -> None:
        self.session = None


class OnnxRuntime(Backend):
    def supports_model(self, case: Case) -> str | None:
        """A user's ONNX file runs as is: fp16 only from a float16 file (INT8 is derived)."""
        reason = super().supports_model(case)
        if reason:
            return reason
        if case.model.lower().endswith(".onnx") and case.precision in ("fp32", "fp16"):
            try:
                user_onnx(case.model, case.precision)
            except ValueError as exc:
                return f"{exc}; {self.name} runs the file as is"
        return None

    def available(self, device: str) -> str | None:
        missing = super().available(device)
        if missing or device != "cuda":
            return missing
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return ("this onnxruntime has no CUDAExecutionProvider; install with: "
                    "pip uninstall onnxruntime && pip install onnxruntime-gpu")
        return None

    def build_artefacts(self, source, case: Case, cache) -> list[Artefact]:
        """The export (or INT8 model) ``prepare`` reads, by the same calls and keys."""
        opset = source.opset or DEFAULT_OPSET
        if case.precision == "int8":
            path, cached = int8_export(source, case.image_size, opset, cache, case.data,
                                       source.seed)
            return [Artefact("onnx-int8", str(path), cached)]
        path, cached = onnx_export(source, case.image_size, opset, cache, case.precision)
        return [Artefact("onnx", str(path), cached)]

    def prepare(self, source, case: Case, cache) -> Session:
        opset = source.opset or DEFAULT_OPSET
        if case.precision == "int8":
            path, _ = int8_export(source, case.image_size, opset, cache, case.data, source.seed)
            report = {"int8_weight_share": round(int8_weight_share(path), 4),
                      "recipe": QUANT_RECIPE}
        else:
            path, _ = onnx_export(source, case.image_size, opset, cache, case.precision)
            report = onnx_precision_report(path)
        if case.precision == "fp16" and not report["is_fp16"]:
            raise PrecisionError(f"fp16 requested but {path} is not float16: {report}")
        info = {"onnx_file": str(path), "opset": opset, "onnx_precision": report}
        knobs = self.resolved_options(case)
        if case.device == "cpu":
            return OrtCpuSession(path, info, knobs)
        provider_options = {"device_id": "0",
                            "cudnn_conv_algo_search": knobs["cudnn_conv_algo_search"]}
        return OrtCudaSession(path, info, case.precision, provider_options, knobs)


BACKENDS = [OnnxRuntime(
    name="onnxruntime", devices=("cpu", "cuda"), runs_onnx_files=True,
    precisions={"cpu": ("fp32", "int8"), "cuda": ("fp32", "fp16")},
    packages=("onnxruntime", "onnx", "onnxscript"),
    install_hint="pip install onnxruntime onnx onnxscript (onnxruntime-gpu for CUDA)",
    option_defaults={"cudnn_conv_algo_search": "EXHAUSTIVE", **SESSION_DEFAULTS},
    option_choices={"cudnn_conv_algo_search": ("EXHAUSTIVE", "HEURISTIC", "DEFAULT"),
                    "graph_optimization_level": tuple(GRAPH_LEVELS),
                    "execution_mode": tuple(EXECUTION_MODES)},
    option_devices={"cudnn_conv_algo_search": ("cuda",)},
    option_minimum={"intra_op_num_threads": 0, "inter_op_num_threads": 0},
    implicit_options=tuple(SESSION_DEFAULTS),
)]
