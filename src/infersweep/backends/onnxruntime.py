"""ONNX Runtime: CPU execution provider, and CUDA execution provider with IO binding.

On CUDA the input and output live in device buffers bound once (IO binding), so the timed region
holds no host copies; that is how PyTorch is timed too. (The end-to-end scope times the copies on
purpose.) fp16 comes from a graph exported from the half-precision model and verified to hold
float16 weights and input (see export.verify_precision): an "fp16" row is never an fp32 model.
"""

from __future__ import annotations

import numpy as np

from infersweep.backends.base import Artefact, Backend, PrecisionError, Session, options_of
from infersweep.case import Case
from infersweep.artefacts.export import (DEFAULT_OPSET, onnx_export, onnx_precision_report,
                                         user_onnx)
from infersweep.artefacts.quantize import RECIPE as QUANT_RECIPE
from infersweep.artefacts.quantize import int8_export, int8_weight_share

NUMPY_DTYPES = {"fp32": np.float32, "fp16": np.float16}


def _session_options():
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


class OrtCpuSession(Session):
    def __init__(self, path, info: dict):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), _session_options(),
                                            providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name  # a user's file names its own
        self.info = {**info, "onnxruntime": ort.__version__,
                     "providers": self.session.get_providers()}

    def place(self, batch: np.ndarray):
        return {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}

    def launch(self, placed):
        return self.session.run(None, placed)[0]  # synchronous on the CPU provider

    def close(self) -> None:
        self.session = None


class OrtCudaSession(Session):
    """CUDA EP; inputs and outputs preallocated on the device and bound once."""

    def __init__(self, path, info: dict, precision: str, provider_options: dict):
        import onnxruntime as ort

        self.ort = ort
        self.dtype = NUMPY_DTYPES[precision]
        self.session = ort.InferenceSession(
            str(path), _session_options(),
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
        if case.device == "cpu":
            return OrtCpuSession(path, info)
        opts = options_of(case)
        provider_options = {"device_id": "0",
                            "cudnn_conv_algo_search": opts.get("cudnn_conv_algo_search",
                                                               "EXHAUSTIVE")}
        return OrtCudaSession(path, info, case.precision, provider_options)


BACKENDS = [OnnxRuntime(
    name="onnxruntime", devices=("cpu", "cuda"), runs_onnx_files=True,
    precisions={"cpu": ("fp32", "int8"), "cuda": ("fp32", "fp16")},
    packages=("onnxruntime", "onnx", "onnxscript"),
    install_hint="pip install onnxruntime onnx onnxscript (onnxruntime-gpu for CUDA)",
    option_defaults={"cudnn_conv_algo_search": "EXHAUSTIVE"},
    option_choices={"cudnn_conv_algo_search": ("EXHAUSTIVE", "HEURISTIC", "DEFAULT")},
    option_devices={"cudnn_conv_algo_search": ("cuda",)},
)]
