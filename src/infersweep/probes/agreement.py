"""Agreement with the reference: does a faster runtime still compute the same thing?

The reference is the fp32 eager PyTorch model on the CPU, on the very batch the case ran. It is
computed once per (model, weights, image size, data, seed) and shared by every backend and batch:
a data source's batches are prefixes of one another (artefacts/inputs.py: seeded noise drawn in
order, images taken in a fixed cycle), so the reference is computed at the largest batch of the
case's group (every group of a grid has the same batches) and each case reads its first rows.
Sliced, a row may differ from the same image run at a smaller batch by float rounding (~1e-6:
the CPU kernels block differently per batch), far below every precision's threshold. Figures:
max absolute error of the logits, the worst per-image cosine similarity, and top-1 agreement
(share of images whose argmax matches). A cosine below the precision's threshold becomes a warning in the report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infersweep.artefacts.cache import torch_version
from infersweep.probes.base import Column, Probe, ProbeContext, Reading

# Worst per-image cosine similarity that still counts as "computes the same function".
# fp32 on GPUs runs convolutions in TF32 by default (~1e-3 relative error): still above 0.9999.
MIN_COSINE = {"fp32": 0.9999, "fp16": 0.99, "amp": 0.99, "bf16": 0.98, "int8": 0.95}


@dataclass(frozen=True)
class Agreement:
    max_abs_err: float
    cosine: float  # the worst image's cosine similarity to the reference logits
    top1_agreement: float

    def warnings(self, precision: str) -> list[str]:
        threshold = MIN_COSINE.get(precision, 0.95)
        if not np.isfinite(self.cosine) or self.cosine < threshold:
            return [f"outputs disagree with the fp32 reference: cosine {self.cosine:.5f} < "
                    f"{threshold} for {precision} (max abs err {self.max_abs_err:.3g}, top-1 "
                    f"agreement {self.top1_agreement:.1%})"]
        return []


def measure_agreement(output: np.ndarray, reference: np.ndarray) -> Agreement:
    out = np.asarray(output, dtype=np.float64).reshape(len(reference), -1)
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    if out.shape != ref.shape:
        raise ValueError(f"output shape {out.shape} differs from the reference {ref.shape}")
    dots = (out * ref).sum(axis=1)
    norms = np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1)
    cosine = np.where(norms > 0, dots / np.where(norms > 0, norms, 1), 0.0)
    return Agreement(max_abs_err=float(np.max(np.abs(out - ref))),
                     cosine=float(np.min(cosine)) if np.all(np.isfinite(out)) else float("nan"),
                     top1_agreement=float(np.mean(out.argmax(1) == ref.argmax(1))))


# pragma: no mutate start (make mutate: runs the fp32 model)
def reference_logits(source, host_batch, key: dict, cache) -> np.ndarray:
    """fp32 eager CPU logits for this batch, computed once and cached as .npy. ``host_batch``:
    the batch, or a function that makes it (only called when the entry is not cached yet)."""
    def build(out_dir):
        import torch

        nonlocal host_batch
        if callable(host_batch):
            host_batch = host_batch()
        with torch.inference_mode():
            logits = source.model()(torch.from_numpy(np.ascontiguousarray(host_batch))).numpy()
        np.save(out_dir / "logits.npy", logits)

    entry, _ = cache.get_or_build("reference", {**key, "torch": torch_version()}, build)
    return np.load(entry / "logits.npy")


# pragma: no mutate end
MAX_ABS_ERR = Column("max_abs_err", "max abs err", ".3g", in_table=False)
COSINE = Column("cosine", "cosine vs fp32", ".5f")
TOP1_AGREEMENT = Column("top1_agreement", "top-1 agreement", ".3f")
# True where the outputs disagree beyond the precision's threshold (the warning's condition):
# what reports read to keep such a row out of speedups and rankings (reports/rows.py).
DISAGREES = Column("disagrees", "disagrees with fp32", in_table=False)


class NotAPrefix(ValueError):
    """The data source's larger batch does not begin with the case's batch."""


def shared_batch(ctx: ProbeContext):
    """(rows, batch) of the reference the case reads: the largest batch of its group (``batch``
    makes it, only when the reference is not cached yet), or the case's own batch."""
    case = ctx.case
    rows = max([c.batch_size for c in ctx.group] + [case.batch_size])
    if rows == case.batch_size or ctx.batches is None:
        return case.batch_size, ctx.host_batch

    def larger():
        batch = ctx.batches.batch(rows, case.image_size)
        if not np.array_equal(batch[:case.batch_size], ctx.host_batch):
            raise NotAPrefix(f"the {rows}-image batch of {case.data} does not begin with the "
                             f"{case.batch_size}-image batch the case ran")
        return batch

    return rows, larger


class ReferenceAgreement(Probe):
    """The case's last timed output against the fp32 reference on the same host batch."""
    name = "agreement"
    columns = (MAX_ABS_ERR, COSINE, TOP1_AGREEMENT, DISAGREES)
    place_after = "baseline"

    def applies(self, ctx: ProbeContext) -> bool:
        return ctx.backend.needs_model

    def after(self, ctx: ProbeContext) -> Reading:
        case = ctx.case
        key = {"model": case.model, "weights": ctx.source.weights_key, "data": case.data,
               "image_size": case.image_size, "batch_size": case.batch_size, "seed": ctx.seed}
        rows, batch = shared_batch(ctx)
        try:
            reference = reference_logits(ctx.source, batch, {**key, "batch_size": rows},
                                         ctx.cache)[:case.batch_size]
        except NotAPrefix:  # a data source whose batches are not prefixes: its own reference
            reference = reference_logits(ctx.source, ctx.host_batch, key, ctx.cache)
        agreement = measure_agreement(ctx.output, reference)
        warnings = agreement.warnings(case.precision)
        return Reading({MAX_ABS_ERR.name: agreement.max_abs_err, COSINE.name: agreement.cosine,
                        TOP1_AGREEMENT.name: agreement.top1_agreement,
                        DISAGREES.name: bool(warnings)},
                       warnings=warnings)


PROBES = [ReferenceAgreement]
