"""What the torch-family backends share: dtypes and precisions, and a session that holds a torch
module on a device at a precision (torch eager uses it as is; torch.compile and Torch-TensorRT
change only how the module is called).

Precisions, each labelled for what it is:
  fp32  model and input float32 (on CUDA, convolutions may use TF32: recorded in the row's info);
  fp16  model and input converted to float16 (pure half, what people deploy);
  bf16  model and input converted to bfloat16;
  amp   float32 model under torch.autocast (float16 on CUDA, bfloat16 on the CPU): what many
        training scripts and the original benchmark did.
"""

from __future__ import annotations

import copy

import numpy as np

from infersweep.backends.base import PrecisionError, Session, options_of
from infersweep.case import Case

TORCH_PRECISIONS = {"cpu": ("fp32", "bf16", "amp"), "cuda": ("fp32", "fp16", "bf16", "amp")}

# Options every torch-family backend has; cudnn_benchmark only means something on CUDA, threads
# (torch.set_num_threads; 0: torch's default, one per core) only on the CPU. threads is implicit:
# left out of the case's options at 0, so the ids of sweeps from before it existed stay.
TORCH_OPTIONS = {"channels_last": False, "cudnn_benchmark": True, "threads": 0}
TORCH_OPTION_DEVICES = {"cudnn_benchmark": ("cuda",), "threads": ("cpu",)}
TORCH_OPTION_MINIMUM = {"threads": 0}
TORCH_IMPLICIT_OPTIONS = ("threads",)

TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "amp": "float32"}


def tf32_state() -> dict:
    import torch

    return {"matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32}


class TorchSession(Session):
    """A torch module on a device at a precision; subclasses only change how it is called."""

    def __init__(self, model, case: Case):
        import torch

        self.torch = torch
        self.device = torch.device(case.device)
        self.precision = case.precision
        threads = int(options_of(case).get("threads", "0"))
        if threads and self.device.type == "cpu":
            # Per process: a worker serves one group, so the setting is this case's alone.
            torch.set_num_threads(threads)
        self.channels_last = options_of(case).get("channels_last") == "true"
        self.dtype = getattr(torch, TORCH_DTYPES[case.precision])
        # Module.to converts in place: work on a copy so the source model stays fp32 on the CPU
        # for FLOP counting and exports.
        model = copy.deepcopy(model).to(self.device, dtype=self.dtype)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.is_cuda = self.device.type == "cuda"
        self.autocast_dtype = (torch.float16 if self.is_cuda else torch.bfloat16) \
            if case.precision == "amp" else None
        params = {p.dtype for p in model.parameters()}
        if params != {self.dtype}:
            raise PrecisionError(f"asked for {case.precision} but parameters are {params}")
        self.info = {"torch_threads": torch.get_num_threads(),
                     "param_dtype": str(self.dtype).replace("torch.", ""),
                     "channels_last": self.channels_last}
        if case.precision == "amp":
            self.info["autocast_dtype"] = str(self.autocast_dtype).replace("torch.", "")
        if self.is_cuda:
            # Equal footing: cuDNN autotuning is torch's documented best practice for fixed
            # shapes, as ONNX Runtime gets its exhaustive cuDNN search (option: cudnn_benchmark).
            torch.backends.cudnn.benchmark = options_of(case).get("cudnn_benchmark",
                                                                  "true") == "true"
            self.info.update(tf32_state())
            self.info["cudnn_benchmark"] = torch.backends.cudnn.benchmark

    def place(self, batch: np.ndarray):
        x = self.torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, dtype=self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=self.torch.channels_last)
        if self.is_cuda:
            self.torch.cuda.synchronize()
        return x

    def refill(self, placed, batch: np.ndarray):
        # copy_ converts dtype and memory format on the way, into the tensor run before
        placed.copy_(self.torch.from_numpy(np.ascontiguousarray(batch)))
        if self.is_cuda:
            self.torch.cuda.synchronize()
        return placed

    def forward(self, x):
        return self.model(x)

    def launch(self, placed):
        with self.torch.inference_mode():
            if self.autocast_dtype is not None:
                with self.torch.autocast(self.device.type, dtype=self.autocast_dtype):
                    return self.forward(placed)
            return self.forward(placed)

    def synchronize(self) -> None:
        if self.is_cuda:
            self.torch.cuda.synchronize()

    def fetch(self, output) -> np.ndarray:
        self.info["output_dtype"] = str(output.dtype).replace("torch.", "")
        return output.float().cpu().numpy()

    def close(self) -> None:
        self.model = None
