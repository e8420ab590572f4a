"""Agreement with the reference: does a faster runtime still compute the same thing?

The reference is the fp32 eager PyTorch model on the CPU, on the very batch the case ran, cached
per (model, weights, image size, data, seed, batch size). Figures: max absolute error of the
logits, the worst per-image cosine similarity, and top-1 agreement (share of images whose argmax
matches). A cosine below the precision's threshold becomes a warning in the report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


def compare(output: np.ndarray, reference: np.ndarray) -> Agreement:
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


def reference_logits(source, batch: np.ndarray, key: dict, cache) -> np.ndarray:
    """fp32 eager CPU logits for this batch, computed once and cached as .npy."""
    import torch

    def build(out_dir):
        with torch.inference_mode():
            logits = source.model()(torch.from_numpy(np.ascontiguousarray(batch))).numpy()
        np.save(out_dir / "logits.npy", logits)

    entry, _ = cache.get_or_build("reference", {**key, "torch": torch.__version__}, build)
    return np.load(entry / "logits.npy")
