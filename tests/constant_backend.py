"""A test-only backend whose predictions are known exactly: every image is class 0.

Loaded with INFERSWEEP_PLUGINS=constant_backend. Its logits have ``CLASSES`` entries (set with
INFERSWEEP_CONSTANT_CLASSES, inherited by the workers), the first one the largest, so on a folder
of labelled images its top-1 accuracy is exactly the share of images in the first class.
"""

from __future__ import annotations

import os

import numpy as np

from infersweep.backends.base import Backend, Session


class ConstantSession(Session):
    def __init__(self, classes: int):
        self.classes = classes
        self.info = {"classes": classes}

    def place(self, batch):
        return np.ascontiguousarray(batch)

    def launch(self, placed):
        logits = np.zeros((placed.shape[0], self.classes), dtype=np.float32)
        logits[:, 0] = 1.0
        return logits


class ConstantBackend(Backend):
    def prepare(self, source, case, cache) -> ConstantSession:
        return ConstantSession(int(os.environ.get("INFERSWEEP_CONSTANT_CLASSES", "2")))


BACKENDS = [ConstantBackend(name="constant-class0", devices=("cpu",),
                            precisions={"cpu": ("fp32",)}, needs_model=False)]
