"""Build a torch-side --model entry once and say what it is, or why it cannot be used.

The preflight runs this in a subprocess for a user's factory (``python -m
infersweep.artefacts.model_check ENTRY WEIGHTS SEED SIZE``, one JSON line out), so that the user's
code is first imported outside the parent; torchvision and timm models are checked in-process.
"""

from __future__ import annotations

import json
import subprocess
import sys

from infersweep.artefacts.model_ref import ModelError
from infersweep.artefacts.models import WeightsError, build_model

IMAGE_CHANNELS = 3


def first_conv_channels(model) -> int | None:
    """Input channels of the model's first convolution (None: it has none)."""
    import torch.nn as nn

    for module in model.modules():
        if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            return module.in_channels
    return None


def inspect_model(entry: str, weights: str | None, seed: int, size: int) -> dict:
    """{"params": N, "classes": N} of the built model, or {"error": one line}."""
    try:
        model = build_model(entry, weights, seed, size)
    except (ModelError, WeightsError) as exc:
        return {"error": str(exc), "weights": isinstance(exc, WeightsError)}
    channels = first_conv_channels(model)
    if channels not in (None, IMAGE_CHANNELS):
        return {"error": f"--model {entry!r}: its first convolution takes {channels} input "
                         f"channels; image classification feeds {IMAGE_CHANNELS} (RGB)"}
    import torch.nn as nn

    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return {"params": sum(p.numel() for p in model.parameters()),
            "classes": linears[-1].out_features if linears else -1}


def inspect_in_subprocess(entry: str, weights: str | None, seed: int, size: int,
                          timeout_s: float = 300) -> dict:
    args = [sys.executable, "-m", "infersweep.artefacts.model_check", entry, weights or "",
            str(seed), str(size)]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"--model {entry!r}: the factory did not return within {timeout_s:g} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = " ".join(done.stderr.strip().splitlines()[-1:])[:200]
        return {"error": f"--model {entry!r}: building it crashed the checking process "
                         f"(exit {done.returncode}{': ' + tail if tail else ''})"}
    return json.loads(lines[-1])


def main(argv: list[str]) -> int:
    entry, weights, seed, size = argv
    print(json.dumps(inspect_model(entry, weights or None, int(seed), int(size))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
