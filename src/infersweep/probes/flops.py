"""FLOPs per image from torch.utils.flop_counter at the real input shape (FLOPs = 2 x MACs).

Achieved TFLOP/s is derived from it and the median latency whenever a row is produced; the
utilisation against the machine's peak (peaks.py) is the report's business.
"""

from __future__ import annotations

from infersweep.probes.base import Column, Probe, ProbeContext, Reading

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


class Flops(Probe):
    """Counted once per group (its cases differ only in batch size), on the torch model."""
    name = "flops"
    columns = (GFLOPS, ACHIEVED_TFLOPS)
    place_after = "baseline_memory_mb"

    def __init__(self):
        self.gflops: float | None = None

    def applies(self, ctx: ProbeContext) -> bool:
        return ctx.backend.needs_model

    def begin(self, ctx: ProbeContext) -> None:
        # Before prepare, and so before the CPU memory probe resets its peak: counting runs the
        # model once on the CPU, which is not the memory the case runs in.
        if self.gflops is None:
            self.gflops = gflops_per_image(ctx.source.model(), ctx.case.image_size)

    def after(self, ctx: ProbeContext) -> Reading:
        return Reading({GFLOPS.name: self.gflops})

    @classmethod
    def derive(cls, row: dict) -> dict:
        gflops, median = row.get(GFLOPS.name), row.get("latency_ms_median")
        if not gflops or not median:
            return {}
        # GFLOP per batch / ms per batch = TFLOP/s
        return {ACHIEVED_TFLOPS.name: gflops * row["batch_size"] / median}


PROBES = [Flops]
