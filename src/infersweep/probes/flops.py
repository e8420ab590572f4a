"""FLOPs per image from torch.utils.flop_counter at the real input shape (FLOPs = 2 x MACs).

Achieved TFLOP/s is derived from it and the median latency whenever a row is produced; the
utilisation against the machine's peak (peaks.py) is the report's business.
"""

from __future__ import annotations

from infersweep.probes.base import (Column, Probe, ProbeContext, Reading,
                                    cached_model_figure)

GFLOPS = Column("gflops_per_image", "GFLOPs/img", ".2f")
ACHIEVED_TFLOPS = Column("achieved_tflops", "TFLOP/s", ".2f", in_table=False)


def gflops_per_image(model, image_size: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, image_size, image_size)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x)
    return counter.get_total_flops() / 1e9


def onnx_graph_gflops(path: str, image_size: int) -> float:
    """FLOPs per image of an ONNX file's Conv, Gemm and MatMul nodes (2 x MACs; the rest is
    noise next to them), from shapes inferred at batch 1. ValueError when a shape stays unknown."""
    import numpy as np
    import onnx

    model = onnx.load(path)
    initializers = {i.name: tuple(i.dims) for i in model.graph.initializer}
    image = [i for i in model.graph.input if i.name not in initializers][0]
    for dim, value in zip(image.type.tensor_type.shape.dim, (1, 3, image_size, image_size)):
        dim.Clear()
        dim.dim_value = value
    del model.graph.value_info[:]  # shapes saved at export time (another batch) are re-inferred
    for output in model.graph.output:
        output.type.tensor_type.ClearField("shape")
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = dict(initializers)
    for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(d.dim_value for d in dims)
    flops = 0
    for node in inferred.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        out, weight = shapes.get(node.output[0]), shapes.get(node.input[1])
        if out is None or weight is None:
            raise ValueError(f"shape of {node.op_type} node {node.name!r} is not known")
        if node.op_type == "Conv":  # weight: (Cout, Cin/groups, kh, kw)
            flops += 2 * int(np.prod(out)) * int(np.prod(weight[1:]))
        else:
            flops += 2 * int(np.prod(out)) * (weight[0] if node.op_type == "MatMul" or not any(
                a.name == "transB" and a.i for a in node.attribute) else weight[1])
    return flops / 1e9


class Flops(Probe):
    """Counted once per group (its cases differ only in batch size), on the torch model."""
    name = "flops"
    columns = (GFLOPS, ACHIEVED_TFLOPS)
    place_after = "baseline_memory_mb"

    def __init__(self):
        self.gflops: float | None = None
        self.reason = ""

    def applies(self, ctx: ProbeContext) -> bool:
        return ctx.backend.needs_model

    def begin(self, ctx: ProbeContext) -> None:
        # Before prepare, and so before the CPU memory probe resets its peak: counting runs the
        # model once on the CPU, which is not the memory the case runs in.
        if self.gflops is None and getattr(ctx.source, "onnx_file", None):
            # No torch model to count on: the graph's own shapes, or empty with the reason.
            try:
                self.gflops = onnx_graph_gflops(ctx.source.onnx_file, ctx.case.image_size)
            except Exception as exc:
                self.reason = f"FLOPs not counted for the ONNX file: {exc}"
        elif self.gflops is None:
            self.gflops = cached_model_figure(
                ctx.cache, "flops", ctx.source, {"image_size": ctx.case.image_size},
                lambda: gflops_per_image(ctx.source.model(), ctx.case.image_size))

    def after(self, ctx: ProbeContext) -> Reading:
        if self.gflops is None:
            return Reading(info={"flops": self.reason})
        return Reading({GFLOPS.name: self.gflops})

    @classmethod
    def derive(cls, row: dict) -> dict:
        gflops, median = row.get(GFLOPS.name), row.get("latency_ms_median")
        if not gflops or not median:
            return {}
        # GFLOP per batch / ms per batch = TFLOP/s
        return {ACHIEVED_TFLOPS.name: gflops * row["batch_size"] / median}


PROBES = [Flops]
