"""ONNX export, done once per (model, weights, image size, precision, opset, torch version), cached.

fp16 graphs are exported from the half-precision model, so weights, activations and the input are
float16 by construction; ``onnx_precision_report`` reads the saved file back and says what it
really holds (the original benchmark's "fp16" model was fp32 because a converter's return value
was dropped; we check the file, not our intent).
"""

from __future__ import annotations

from pathlib import Path

from infersweep.artefacts.cache import ArtifactCache, torch_version

DEFAULT_OPSET = 18  # the ONNX opset exports use unless the sweep names another
ONNX_INPUT = "input"
ONNX_OUTPUT = "logits"
EXPORT_DTYPES = {"fp32": "float32", "fp16": "float16"}


def onnx_export(source, image_size: int, opset: int, cache: ArtifactCache,
                precision: str = "fp32") -> tuple[Path, bool]:
    """Path of an ONNX file with a dynamic batch dimension, and whether it came from cache.
    A --model that is an ONNX file is that file, run as is (never re-exported)."""
    if getattr(source, "onnx_file", None):
        return user_onnx(source.onnx_file, precision), True
    if precision not in EXPORT_DTYPES:
        raise ValueError(f"no ONNX export for precision {precision}")
    key = {"model": source.name, "weights": source.weights_key, "image_size": image_size,
           "precision": precision, "opset": opset, "torch": torch_version(),
           "exporter": "dynamo"}

    def build(out_dir: Path) -> None:
        # pragma: no mutate block (make mutate: a real export)
        import copy

        import torch

        dtype = getattr(torch, EXPORT_DTYPES[precision])
        model = copy.deepcopy(source.model()).to(dtype)
        # Batch 2, not 1: torch.export specialises a dimension of size 1, which would pin it.
        dummy = torch.randn(2, 3, image_size, image_size, dtype=dtype)
        torch.onnx.export(
            model, (dummy,), str(out_dir / "model.onnx"),
            input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
            opset_version=opset, dynamo=True,
        )
        report = onnx_precision_report(out_dir / "model.onnx")
        if precision == "fp16" and not report["is_fp16"]:
            raise RuntimeError(f"fp16 export is not float16: {report}")

    entry, cached = cache.get_or_build("onnx", key, build)
    return entry / "model.onnx", cached


# pragma: no mutate start (make mutate: reads a user's ONNX file; tested through the CLI)
def user_onnx(path: str, precision: str) -> Path:
    """The user's ONNX file for a precision it holds: fp32 from a float32 file, fp16 only from a
    float16 one (the file is run as is; no converter rewrites it behind the row's label)."""
    held = onnx_precision_report(Path(path))["input_dtype"]
    wanted = EXPORT_DTYPES.get(precision)
    if held != wanted:
        raise ValueError(f"{Path(path).name} holds a {held} graph, not {wanted or precision}")
    return Path(path)


def onnx_input_names(path: Path) -> tuple[str, str]:
    """The graph's first input and output names: an exported file uses ONNX_INPUT/ONNX_OUTPUT,
    a user's file whatever it was saved with."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in initializers]
    return inputs[0], graph.output[0].name
# pragma: no mutate end


def onnx_precision_report(path: Path) -> dict:
    """What the saved graph really holds: input dtype and the share of float16 weight elements."""
    # pragma: no mutate block (make mutate: reads a real export)
    import onnx
    import numpy as np

    model = onnx.load(str(path), load_external_data=False)
    names = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16",
             onnx.TensorProto.BFLOAT16: "bfloat16", onnx.TensorProto.DOUBLE: "float64"}
    input_type = model.graph.input[0].type.tensor_type.elem_type
    elements: dict[str, int] = {}
    for init in model.graph.initializer:
        if init.data_type in names:
            n = int(np.prod(init.dims)) if len(init.dims) else 1
            elements[names[init.data_type]] = elements.get(names[init.data_type], 0) + n
    total = sum(elements.values()) or 1
    fp16_share = elements.get("float16", 0) / total
    return {"input_dtype": names.get(input_type, str(input_type)),
            "weight_elements": elements, "fp16_weight_share": round(fp16_share, 4),
            "is_fp16": input_type == onnx.TensorProto.FLOAT16 and fp16_share >= 0.99}
