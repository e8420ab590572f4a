"""ONNX Runtime on the CPU execution provider, from a cached dynamic-batch ONNX export."""

from __future__ import annotations

import numpy as np

from infersweep.backends.base import Backend
from infersweep.cases import Case
from infersweep.export import ONNX_INPUT, onnx_export

DEFAULT_OPSET = 18


class OrtCpuSession:
    def __init__(self, path, opset: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.info = {
            "onnxruntime": ort.__version__, "providers": self.session.get_providers(),
            "onnx_file": str(path), "opset": opset, "dtype": "float32",
            "intra_op_num_threads": options.intra_op_num_threads or "default (physical cores)",
        }

    def place(self, batch: np.ndarray):
        return {ONNX_INPUT: np.ascontiguousarray(batch, dtype=np.float32)}

    def run(self, placed):
        return self.session.run(None, placed)[0]  # synchronous on the CPU provider

    def fetch(self, output) -> np.ndarray:
        return np.asarray(output)

    def close(self) -> None:
        self.session = None


class OnnxRuntimeCpu(Backend):
    def prepare(self, source, case: Case, cache) -> OrtCpuSession:
        opset = source.opset or DEFAULT_OPSET
        path, _ = onnx_export(source, case.image_size, opset, cache)
        return OrtCpuSession(path, opset)


BACKENDS = [OnnxRuntimeCpu(
    name="onnxruntime", devices=("cpu",), precisions=("fp32",),
    packages=("onnxruntime", "onnx", "onnxscript"), install_hint="pip install onnxruntime onnx onnxscript",
)]
