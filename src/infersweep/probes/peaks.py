"""Peak arithmetic rates, to turn achieved TFLOP/s into a share of what the hardware can do.

Two sources, and every figure says which it came from:
- a table of common NVIDIA GPUs: dense (no sparsity) tensor-core rates from NVIDIA's datasheets,
  looked up by the exact name NVML reports: an H200 NVL (600 W) is not an H200 SXM (700 W), and a
  name the table does not know gets no table figure (it is measured instead), never a neighbour's;
- a measurement on this machine: the best rate of a large square matrix product in the
  precision (``infersweep peak``), cached per device in the artefact cache. CPUs are always
  measured: their peak depends on clocks, cores and instruction sets that no table knows.

fp32 on a GPU is compared with the TF32 rate: PyTorch's cuDNN convolutions and ONNX Runtime's
CUDA provider use TF32 for fp32 by default. amp is compared with the dtype torch.autocast runs in
(backends/torch_common.py): float16 on CUDA, bfloat16 on the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from infersweep.artefacts.cache import cache_root

# Dense TFLOP/s per datasheet. Where a datasheet gives only "with sparsity" figures (the NVL and
# PCIe Hopper boards, L4), the dense rate is half of them.
HOPPER_SXM = {"fp32": 67.0, "tf32": 494.7, "fp16": 989.5, "bf16": 989.5, "int8": 1979.0}
HOPPER_NVL = {"fp32": 60.0, "tf32": 417.5, "fp16": 835.5, "bf16": 835.5, "int8": 1670.5}
HOPPER_PCIE = {"fp32": 51.2, "tf32": 378.0, "fp16": 756.0, "bf16": 756.0, "int8": 1513.0}
AMPERE_A100 = {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0, "int8": 624.0}
GPU_TABLE = {  # the exact device name NVML reports -> (the board, its rates)
    "NVIDIA H200": ("H200 SXM", HOPPER_SXM),
    "NVIDIA H200 NVL": ("H200 NVL", HOPPER_NVL),
    "NVIDIA H100 80GB HBM3": ("H100 SXM", HOPPER_SXM),
    "NVIDIA H100 NVL": ("H100 NVL", HOPPER_NVL),
    "NVIDIA H100 PCIe": ("H100 PCIe", HOPPER_PCIE),
    "NVIDIA A100-SXM4-80GB": ("A100 SXM", AMPERE_A100),
    "NVIDIA A100-SXM4-40GB": ("A100 SXM", AMPERE_A100),
    "NVIDIA A100 80GB PCIe": ("A100 PCIe", AMPERE_A100),
    "NVIDIA A100-PCIE-40GB": ("A100 PCIe", AMPERE_A100),
    "NVIDIA L4": ("L4", {"fp32": 30.3, "tf32": 60.0, "fp16": 121.0, "bf16": 121.0,
                         "int8": 242.0}),
    "Tesla T4": ("T4", {"fp32": 8.1, "fp16": 65.0, "int8": 130.0}),
}
GPU_UNIT = {"fp32": "tf32", "fp16": "fp16", "amp": "fp16", "bf16": "bf16", "int8": "int8"}
MATMUL_DTYPE = {"fp32": "float32", "fp16": "float16", "amp": "float16", "bf16": "bfloat16"}
AUTOCAST_DTYPE = {"cuda": "float16", "cpu": "bfloat16"}  # what torch_common.py autocasts to


def matmul_dtype(device: str, precision: str) -> str:
    """The dtype a matrix product must run in to stand for this precision on this device."""
    return AUTOCAST_DTYPE[device] if precision == "amp" else MATMUL_DTYPE[precision]


def table_peak(gpu_name: str, precision: str) -> dict | None:
    board, rates = GPU_TABLE.get(gpu_name.strip(), (None, {}))
    unit = GPU_UNIT.get(precision)
    if unit not in rates:
        return None
    return {"tflops": rates[unit], "source": f"table: {board} dense {unit} (NVIDIA datasheet)"}


def measure_matmul_tflops(device: str, precision: str, seconds: float = 2.0) -> float:
    """Best rate of an n x n matrix product over a few seconds (2 n^3 FLOPs per product)."""
    import torch

    dtype = getattr(torch, matmul_dtype(device, precision))
    n = 8192 if device == "cuda" else 2048
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 peak = TF32, as convolutions run
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    best = 0.0
    deadline = time.perf_counter() + seconds
    a @ b
    sync()
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        a @ b
        sync()
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e12)
    return best


def _device_key(device: str, env: dict) -> str:
    if device == "cuda" and env.get("gpus"):
        return f"cuda:{env['gpus'][0]['name']}"
    return f"cpu:{env.get('cpu')}:{env.get('cores_usable')} cores"


def _cache_file() -> Path:
    return cache_root() / "peaks.json"


def cached_measurements() -> dict:
    try:
        return json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}


# pragma: no mutate start (make mutate: a subprocess)
def measure_in_subprocess(device: str, precision: str, timeout: float = 180) -> float | None:
    """Measure in a fresh process: the parent never runs compute (and a crash costs nothing)."""
    proc = subprocess.run([sys.executable, "-m", "infersweep.probes.peaks", device, precision],
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return None
    return float(proc.stdout.strip().splitlines()[-1])


# pragma: no mutate end
def peak_for(device: str, precision: str, env: dict, measure: bool = True,
             remeasure: bool = False) -> dict | None:
    """{"tflops", "source"} for this device and precision, or None where nothing is known."""
    if device == "cuda" and env.get("gpus") and not remeasure:
        found = table_peak(env["gpus"][0]["name"], precision)
        if found:
            return found
    if precision not in MATMUL_DTYPE:
        return None
    dtype = matmul_dtype(device, precision)
    # amp on the CPU once meant float16 here: the dtype in the key keeps such a figure unused
    key = f"{_device_key(device, env)}:{precision}" + (f":{dtype}" if precision == "amp" else "")
    cache = cached_measurements()
    if key in cache and not remeasure:
        return cache[key]
    if not measure:
        return None
    try:
        tflops = measure_in_subprocess(device, precision)
    except subprocess.TimeoutExpired:
        tflops = None
    if not tflops:
        return None
    found = {"tflops": round(tflops, 3),
             "source": f"measured: best {dtype} matrix product on this "
                       f"{'GPU' if device == 'cuda' else 'CPU'} (infersweep peak)"}
    cache[key] = found
    _cache_file().parent.mkdir(parents=True, exist_ok=True)
    tmp = _cache_file().with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(cache, indent=1))
    os.replace(tmp, _cache_file())
    return found


# pragma: no mutate start (make mutate: the subprocess's entry point)
def main() -> None:
    parser = argparse.ArgumentParser(description="measure one matrix-product peak")
    parser.add_argument("device", choices=("cpu", "cuda"))
    parser.add_argument("precision", choices=tuple(MATMUL_DTYPE))
    args = parser.parse_args()
    print(measure_matmul_tflops(args.device, args.precision))


# pragma: no mutate end
if __name__ == "__main__":
    main()
