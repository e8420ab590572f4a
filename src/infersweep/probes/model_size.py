"""How big the model is: its parameter count, and the size on disk of what the runtime ran.

``params_m`` counts the torch model's parameters, or an ONNX file's weight elements (its
initializers) where the model is an ONNX file. ``artifact_mb`` is the file the runtime really
loaded: the ONNX export or the user's ONNX file, the INT8 file for int8 rows, the TensorRT engine
files; empty where a runtime runs the in-memory torch model (eager, torch.compile).
"""

from __future__ import annotations

from pathlib import Path

from infersweep.probes.base import (Column, Probe, ProbeContext, Reading,
                                    cached_model_figure)

PARAMS = Column("params_m", "Params (M)", ".2f")
ARTIFACT = Column("artifact_mb", "Artifact MB", ".1f", in_table=False)


def onnx_parameter_count(path: str | Path) -> int:
    import numpy as np
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return sum(int(np.prod(i.dims)) if len(i.dims) else 1 for i in graph.initializer)


def artifact_bytes(info: dict) -> tuple[int | None, str]:
    """Bytes on disk of what the session ran, and what that is ("" when nothing was)."""
    engines = info.get("engine_files")
    if engines and info.get("engine_cache"):
        root = Path(info["engine_cache"])
        files = [root / name for name in engines if (root / name).is_file()]
        if files:
            return sum(f.stat().st_size for f in files), "TensorRT engine"
    onnx_file = info.get("onnx_file")
    if onnx_file and Path(onnx_file).is_file():
        path = Path(onnx_file)
        # weights saved beside the graph (external data) count too
        extra = [p for p in path.parent.glob(f"{path.name}.data") if p.is_file()]
        return path.stat().st_size + sum(p.stat().st_size for p in extra), "ONNX file"
    return None, ""


class ModelSize(Probe):
    name = "model_size"
    columns = (PARAMS, ARTIFACT)
    place_after = "gflops_per_image"

    def __init__(self):
        self.params: int | None = None

    def applies(self, ctx: ProbeContext) -> bool:
        return ctx.backend.needs_model

    def after(self, ctx: ProbeContext) -> Reading:
        if self.params is None:
            onnx_file = getattr(ctx.source, "onnx_file", None)
            self.params = int(onnx_parameter_count(onnx_file) if onnx_file else
                              cached_model_figure(ctx.cache, "params", ctx.source, {}, lambda: sum(
                                  p.numel() for p in ctx.source.model().parameters())))
        size, what = artifact_bytes(ctx.session.info if ctx.session else {})
        fields = {PARAMS.name: self.params / 1e6}
        if size is not None:
            fields[ARTIFACT.name] = size / 2**20
        return Reading(fields, info={"artifact": what or "in-memory model (no file)"})


PROBES = [ModelSize]
