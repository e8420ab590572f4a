"""ONNX export, done once per (model, weights, image size, opset, torch version) and cached."""

from __future__ import annotations

from pathlib import Path

from infersweep.cache import ArtifactCache

ONNX_INPUT = "input"
ONNX_OUTPUT = "logits"


def onnx_export(source, image_size: int, opset: int, cache: ArtifactCache) -> tuple[Path, bool]:
    """Path of an fp32 ONNX file with a dynamic batch dimension, and whether it came from cache."""
    import torch

    key = {"model": source.name, "weights": source.weights_key, "image_size": image_size,
           "precision": "fp32", "opset": opset, "torch": torch.__version__, "exporter": "dynamo"}

    def build(out_dir: Path) -> None:
        model = source.model()
        # Batch 2, not 1: torch.export specialises a dimension of size 1, which would pin it.
        dummy = torch.randn(2, 3, image_size, image_size)
        torch.onnx.export(
            model, (dummy,), str(out_dir / "model.onnx"),
            input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
            opset_version=opset, dynamo=True,
        )

    entry, cached = cache.get_or_build("onnx", key, build)
    return entry / "model.onnx", cached
