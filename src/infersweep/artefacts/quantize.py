"""INT8 for ONNX Runtime on the CPU: static quantisation, calibrated on the sweep's own data.

Recipe: ``quant_pre_process`` (shape inference and ONNX Runtime's graph optimisations, which fold
BatchNorm into the preceding Conv), then ``quantize_static`` in QDQ format with per-channel int8
weights and uint8 activations, MinMax calibration on batches from the case's data source (real
photographs when the user gives them). The result is cached like any export, keyed by the fp32
model, the data source and the recipe. The saved file is read back to prove it holds int8 weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from infersweep.artefacts.cache import ArtifactCache
from infersweep.artefacts.export import ONNX_INPUT, onnx_export, onnx_input_names

CALIBRATION_BATCHES = 8
CALIBRATION_BATCH_SIZE = 4
RECIPE = "qdq-perchannel-s8w-u8a-minmax"


class _Batches:
    """ONNX Runtime's CalibrationDataReader protocol: get_next() until None."""

    def __init__(self, data: str, seed: int, image_size: int, input_name: str = ONNX_INPUT):
        from infersweep.artefacts.inputs import BatchSource

        self.feeds = []
        for i in range(CALIBRATION_BATCHES):
            # Different seeds for synthetic data; for images, different crops of the cycle.
            source = BatchSource(data, seed + i)
            batch = source.batch(CALIBRATION_BATCH_SIZE * (i + 1), image_size)
            self.feeds.append({input_name: batch[-CALIBRATION_BATCH_SIZE:]})
        self.index = 0

    def get_next(self):
        if self.index >= len(self.feeds):
            return None
        self.index += 1
        return self.feeds[self.index - 1]


def int8_export(source, image_size: int, opset: int, cache: ArtifactCache, data: str,
                seed: int) -> tuple[Path, bool]:
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path, _ = onnx_export(source, image_size, opset, cache)
    # A user's file is keyed by its content (its folder's name says nothing about it).
    fp32_key = source.weights_key if getattr(source, "onnx_file", None) else fp32_path.parent.name
    input_name = onnx_input_names(fp32_path)[0]
    key = {"fp32_export": str(fp32_key), "data": data, "seed": seed,
           "recipe": RECIPE, "calibration": [CALIBRATION_BATCHES, CALIBRATION_BATCH_SIZE],
           "onnxruntime": ort.__version__}

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = _Batches(data, seed, image_size, input_name)

        def get_next(self):
            return self.batches.get_next()

    def build(out_dir: Path) -> None:
        pre = out_dir / "preprocessed.onnx"
        quant_pre_process(str(fp32_path), str(pre))
        quantize_static(str(pre), str(out_dir / "model.onnx"), Reader(),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        pre.unlink()
        share = int8_weight_share(out_dir / "model.onnx")
        if share < 0.9:
            raise RuntimeError(f"quantised model holds only {share:.0%} int8 weights")

    entry, cached = cache.get_or_build("onnx-int8", key, build)
    return entry / "model.onnx", cached


def int8_weight_share(path: Path) -> float:
    """Share of weight elements stored as int8 (the rest are biases, scales, float weights)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    counts = {"int8": 0, "other": 0}
    for init in model.graph.initializer:
        n = int(np.prod(init.dims)) if len(init.dims) else 1
        counts["int8" if init.data_type == onnx.TensorProto.INT8 else "other"] += n
    return counts["int8"] / max(1, sum(counts.values()))
