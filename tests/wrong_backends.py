"""A test-only backend that computes the wrong thing quietly: agreement must catch it.

``torch-perturbed`` is the eager torch backend with the classifier's weights perturbed.
"""

from __future__ import annotations

from infersweep.backends.torch_common import TorchSession
from infersweep.backends.torch_eager import TorchEager


class PerturbedSession(TorchSession):
    def __init__(self, model, case):
        super().__init__(model, case)
        with self.torch.no_grad():
            fc = self.model.fc.weight
            fc.add_(self.torch.randn_like(fc) * fc.abs().mean() * 3)


class Perturbed(TorchEager):
    def prepare(self, source, case, cache):
        return PerturbedSession(source.model(), case)


BACKENDS = [Perturbed(name="torch-perturbed", devices=("cpu",), precisions={"cpu": ("fp32",)},
                      packages=("torch",))]
