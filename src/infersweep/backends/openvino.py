"""OpenVINO on the CPU, from the cached ONNX export.

The model is read from the same ONNX file ONNX Runtime runs, reshaped to each case's static batch
and compiled for that shape in ``specialize`` (setup, not latency), with the performance hint as
an option (LATENCY by default, THROUGHPUT). fp16 and bf16 go through the inference precision hint
and only where the CPU reports the capability; after compiling, the precision the plugin really
chose is read back, and a mismatch fails the case instead of mislabelling it. Compiled blobs are
cached under infersweep's cache (OpenVINO's CACHE_DIR).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from infersweep.backends.base import Artefact, Backend, PrecisionError, Session, options_of
from infersweep.case import Case
from infersweep.artefacts.export import DEFAULT_OPSET, onnx_export

HINT_PRECISION = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}
CAPABILITY = {"fp32": "FP32", "fp16": "FP16", "bf16": "BF16"}


@lru_cache(maxsize=1)
def cpu_capabilities() -> tuple[str, ...]:
    import openvino as ov

    return tuple(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


class OpenVinoSession(Session):
    def __init__(self, path, case: Case, info: dict, cache_dir):
        import openvino as ov

        self.core = ov.Core()
        self.core.set_property({"CACHE_DIR": str(cache_dir)})  # compiled blobs, reused next run
        self.model = self.core.read_model(str(path))
        self.config = {"PERFORMANCE_HINT": options_of(case).get("performance_hint", "LATENCY"),
                       "INFERENCE_PRECISION_HINT": HINT_PRECISION[case.precision]}
        self.precision = case.precision
        self.compiled: dict[tuple, object] = {}
        self.request = None
        self.info = {**info, "openvino": ov.__version__, **self.config}

    def place(self, batch: np.ndarray):
        return np.ascontiguousarray(batch, dtype=np.float32)

    def specialize(self, placed) -> None:
        shape = tuple(placed.shape)
        if shape not in self.compiled:
            model = self.model.clone()
            model.reshape({0: list(shape)})  # a static shape compiles to faster kernels
            compiled = self.core.compile_model(model, "CPU", self.config)
            hint = compiled.get_property("INFERENCE_PRECISION_HINT")
            applied = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
            if applied != HINT_PRECISION[self.precision]:
                raise PrecisionError(f"asked OpenVINO for {self.precision} "
                                     f"({HINT_PRECISION[self.precision]}) but it compiled {applied}")
            self.info["inference_precision"] = applied
            self.info["optimal_requests"] = compiled.get_property(
                "OPTIMAL_NUMBER_OF_INFER_REQUESTS")
            self.compiled[shape] = compiled.create_infer_request()
        self.request = self.compiled[shape]

    def launch(self, placed):
        if self.request is None:
            self.specialize(placed)
        self.request.infer({0: placed})  # synchronous
        return self.request.get_output_tensor(0).data

    def fetch(self, output) -> np.ndarray:
        return np.array(output, dtype=np.float32)

    def close(self) -> None:
        self.compiled.clear()
        self.request = None


class OpenVino(Backend):
    def supports(self, case: Case) -> str | None:
        reason = super().supports(case)
        if reason or self.available(case.device):
            return reason
        if CAPABILITY[case.precision] not in cpu_capabilities():
            return (f"this CPU has no {CAPABILITY[case.precision]} capability in OpenVINO "
                    f"(it reports {', '.join(cpu_capabilities())})")
        return None

    def build_artefacts(self, source, case: Case, cache) -> list[Artefact]:
        """The fp32 export ``prepare`` reads (compiling needs the case's shape: not here)."""
        path, cached = onnx_export(source, case.image_size, source.opset or DEFAULT_OPSET, cache)
        return [Artefact("onnx", str(path), cached)]

    def prepare(self, source, case: Case, cache) -> OpenVinoSession:
        opset = source.opset or DEFAULT_OPSET
        path, _ = onnx_export(source, case.image_size, opset, cache)
        return OpenVinoSession(path, case, {"onnx_file": str(path), "opset": opset},
                               cache.root / "openvino")


BACKENDS = [OpenVino(
    name="openvino", devices=("cpu",), precisions={"cpu": ("fp32", "fp16", "bf16")},
    packages=("openvino",), runs_onnx_files=True, install_hint="pip install 'infersweep[openvino]'",
    option_defaults={"performance_hint": "LATENCY"},
    option_choices={"performance_hint": ("LATENCY", "THROUGHPUT")},
)]
