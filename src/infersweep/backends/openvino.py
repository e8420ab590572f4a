"""OpenVINO on the CPU, from the cached ONNX export.

The model is read from the same ONNX file ONNX Runtime runs, reshaped to each case's static batch
and compiled for that shape in ``specialize`` (setup, not latency), with the performance hint as
an option (LATENCY by default, THROUGHPUT). fp16 and bf16 go through the inference precision hint
and only where the CPU reports the capability; after compiling, the precision the plugin really
chose is read back, and a mismatch fails the case instead of mislabelling it. Compiled blobs are
cached under infersweep's cache (OpenVINO's CACHE_DIR).

Knobs: ``performance_hint`` (LATENCY, THROUGHPUT; any case), ``streams`` (NUM_STREAMS; 0: the
hint decides), ``threads`` (INFERENCE_NUM_THREADS; 0: OpenVINO decides) and ``requests``, the
number of infer requests: with 1 (default) each run is a synchronous ``infer``; with N, launches
go round robin to N requests started asynchronously, so back-to-back launches overlap on the
device's streams (the pipelined throughput shows it; a timed run still waits for its result).
What the plugin compiled with (streams, threads, optimal requests) is read back into info.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from infersweep.backends.base import Artefact, Backend, PrecisionError, Session
from infersweep.case import Case
from infersweep.artefacts.export import DEFAULT_OPSET, onnx_export

HINT_PRECISION = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}
CAPABILITY = {"fp32": "FP32", "fp16": "FP16", "bf16": "BF16"}


@lru_cache(maxsize=1)
def cpu_capabilities() -> tuple[str, ...]:
    import openvino as ov

    return tuple(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


class OpenVinoSession(Session):
    def __init__(self, path, case: Case, info: dict, cache_dir, knobs: dict | None = None):
        import openvino as ov

        self.core = ov.Core()
        self.core.set_property({"CACHE_DIR": str(cache_dir)})  # compiled blobs, reused next run
        self.model = self.core.read_model(str(path))
        knobs = knobs or {}
        self.config = {"PERFORMANCE_HINT": knobs.get("performance_hint", "LATENCY"),
                       "INFERENCE_PRECISION_HINT": HINT_PRECISION[case.precision]}
        if knobs.get("streams"):
            self.config["NUM_STREAMS"] = str(knobs["streams"])
        if knobs.get("threads"):
            self.config["INFERENCE_NUM_THREADS"] = str(knobs["threads"])
        self.n_requests = knobs.get("requests", 1)
        self.pipelines = self.n_requests > 1  # launch returns before the result is complete
        self.precision = case.precision
        self.compiled: dict[tuple, list] = {}  # shape -> its infer requests
        self.requests: list = []  # those of the shape in use
        self.next_request = 0
        self.info = {**info, "openvino": ov.__version__, **self.config,
                     "infer_requests": self.n_requests}

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
            self.info["applied"] = {name: str(compiled.get_property(name))
                                    for name in ("NUM_STREAMS", "INFERENCE_NUM_THREADS")}
            self.compiled[shape] = [compiled.create_infer_request()
                                    for _ in range(self.n_requests)]
        self.requests = self.compiled[shape]

    def launch(self, placed):
        if not self.requests:
            self.specialize(placed)
        if self.n_requests == 1:
            request = self.requests[0]
            request.infer({0: placed})  # synchronous
            return request.get_output_tensor(0).data
        request = self.requests[self.next_request]
        self.next_request = (self.next_request + 1) % self.n_requests
        request.wait()  # its previous run must be over before its input is replaced
        request.start_async({0: placed})
        return request

    def synchronize(self) -> None:
        if self.n_requests > 1:
            for request in self.requests:
                request.wait()

    def fetch(self, output) -> np.ndarray:
        if hasattr(output, "get_output_tensor"):  # an asynchronous run's request
            output.wait()
            output = output.get_output_tensor(0).data
        return np.array(output, dtype=np.float32)

    def close(self) -> None:
        self.compiled.clear()
        self.requests = []


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
                               cache.root / "openvino", self.resolved_options(case))


BACKENDS = [OpenVino(
    name="openvino", devices=("cpu",), precisions={"cpu": ("fp32", "fp16", "bf16")},
    packages=("openvino",), runs_onnx_files=True, install_hint="pip install 'infersweep[openvino]'",
    option_defaults={"performance_hint": "LATENCY", "streams": 0, "threads": 0, "requests": 1},
    option_choices={"performance_hint": ("LATENCY", "THROUGHPUT")},
    option_minimum={"streams": 0, "threads": 0, "requests": 1},
    implicit_options=("streams", "threads", "requests"),
)]
