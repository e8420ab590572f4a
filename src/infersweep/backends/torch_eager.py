"""PyTorch eager: the baseline every other runtime is compared with."""

from __future__ import annotations

import numpy as np

from infersweep.backends.base import Backend
from infersweep.cases import Case


class TorchSession:
    def __init__(self, model, device: str):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        self.info = {"torch_threads": torch.get_num_threads(), "dtype": "float32"}

    def place(self, batch: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)

    def run(self, placed):
        with self.torch.inference_mode():
            out = self.model(placed)
        self.sync()  # return only when the device has finished
        return out

    def fetch(self, output) -> np.ndarray:
        return output.float().cpu().numpy()

    def close(self) -> None:
        self.model = None


class TorchEager(Backend):
    def prepare(self, source, case: Case, cache) -> TorchSession:
        return TorchSession(source.model(), case.device)


BACKENDS = [TorchEager(
    name="torch", devices=("cpu", "cuda"), precisions=("fp32",),
    packages=("torch", "torchvision"), install_hint="pip install torch torchvision",
)]
