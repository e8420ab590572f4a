"""PyTorch eager: the baseline every other runtime is compared with (see torch_common.py for the
precisions and the session)."""

from __future__ import annotations

from infersweep.backends.base import Backend
from infersweep.backends.torch_common import (TORCH_IMPLICIT_OPTIONS, TORCH_OPTION_DEVICES,
                                              TORCH_OPTION_MINIMUM, TORCH_OPTIONS,
                                              TORCH_PRECISIONS, TorchSession)
from infersweep.case import Case


class TorchEager(Backend):
    def prepare(self, source, case: Case, cache) -> TorchSession:
        return TorchSession(source.model(), case)


BACKENDS = [TorchEager(
    name="torch", devices=("cpu", "cuda"), precisions=TORCH_PRECISIONS,
    packages=("torch", "torchvision"), install_hint="pip install torch torchvision",
    option_defaults=dict(TORCH_OPTIONS), option_devices=dict(TORCH_OPTION_DEVICES),
    option_minimum=dict(TORCH_OPTION_MINIMUM), implicit_options=TORCH_IMPLICIT_OPTIONS,
    memory_allocator="torch",
)]
