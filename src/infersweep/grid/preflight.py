"""Preflight: the checks that open what a valid Spec points to or ask the machine, before any
case runs: weights files, data folders, the memory estimate, the output directory.

Every problem is a SpecError (exit 2), like a bad value in ``spec``; these checks are kept apart
because they are slow (a checkpoint is loaded, images are decoded) and touch the file system.
"""

from __future__ import annotations

import os
from pathlib import Path

from infersweep.artefacts.inputs import DataError, open_images
from infersweep.artefacts.model_check import inspect_in_subprocess, inspect_model
from infersweep.artefacts.model_ref import FACTORY, ONNX, TORCHVISION
from infersweep.grid.spec import Spec, SpecError

# Activations of a convolutional classifier at its widest layers hold several times the input;
# 16x the input tensor (fp32) bounds resnet-style models with room to spare.
ACTIVATION_FACTOR = 16


def estimate_case_bytes(batch: int, size: int, weights_bytes: int) -> int:
    return batch * 3 * size * size * 4 * ACTIVATION_FACTOR + 2 * weights_bytes


def available_memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_models(spec: Spec) -> tuple[int, int | None]:
    """Build every torch-side model once (a user's factory in a subprocess: its code is never
    imported here) with each checkpoint the sweep names; (largest parameter count, classes of
    the checkpoint's model, None without --weights)."""
    params, classes = 0, None
    weights = [None] if not spec.weights else list(dict.fromkeys(
        spec.weights.replace("{size}", str(s)) for s in spec.sizes))
    for ref in spec.model_refs:
        if ref.kind == ONNX or (ref.kind == TORCHVISION and not spec.weights):
            continue  # the file was read by the spec; a torchvision name always takes RGB
        inspect = inspect_in_subprocess if ref.kind == FACTORY else inspect_model
        for path in weights:
            found = inspect(ref.text, path, spec.seed, min(spec.sizes))
            if "error" in found:
                raise SpecError(f"bad --weights: {found['error']}" if found.get("weights")
                                else found["error"])
            params = max(params, found["params"])
            classes = found["classes"] if path else classes
    return params, classes


def check_inputs(spec: Spec, force: bool = False) -> None:
    """Open everything the spec points to; any problem is a SpecError (exit 2)."""
    params, classes = check_models(spec)
    for data in spec.data:
        if data == "synthetic":
            continue
        try:
            images = open_images(data)
        except DataError as exc:
            raise SpecError(f"bad --data: {exc}") from None
        if classes is not None and images.classes:
            if classes != len(images.classes):
                raise SpecError(
                    f"--weights has {classes} classes but --data {data} has "
                    f"{len(images.classes)} class folders ({', '.join(images.classes[:5])}"
                    f"{', ...' if len(images.classes) > 5 else ''}); wrong checkpoint or folder?")
    if not force:
        _check_memory(spec, params)


def _check_memory(spec: Spec, params: int) -> None:
    """Refuse a case that would swap the machine to death, before anything runs."""
    available = available_memory_bytes()
    if available is None:
        return
    weights = params * 4
    batch, size = max(spec.batches), max(spec.sizes)
    need = estimate_case_bytes(batch, size, weights)
    if need > available:
        raise SpecError(
            f"batch {batch} at {size} px needs about {need / 2**30:.1f} GiB (input x "
            f"{ACTIVATION_FACTOR} for activations, plus weights) but only "
            f"{available / 2**30:.1f} GiB is available; use smaller sizes or batches, or --force")


def prepare_out(out: Path) -> Path:
    """Create the run directory and prove it is writable, or raise SpecError."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise SpecError(f"--out {out} cannot be written: {exc.strerror or exc}") from None
    return out
