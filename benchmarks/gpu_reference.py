"""Check infersweep's GPU latencies against hand-written reference loops, in one run.

    PYTHONPATH=src python3 benchmarks/gpu_reference.py [--out DIR] [--batch 256]

Cases (resnet18, 224 px, CUDA): torch eager fp16 channels_last; torch-compile max-autotune (CUDA
graphs) channels_last fp16; onnxruntime CUDA fp16 and fp32 with IO binding. infersweep runs them
through its CLI; then each reference loop runs in a fresh process: build, warm up, time each run
with a host clock around a synchronized call, median. The compiled reference shares infersweep's
Inductor cache and the ONNX reference the very file infersweep exported, so only the way time is
taken differs. PASS if the medians agree within 5%. Exit code 0 only if every case passes.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOLERANCE = 0.05
WARMUP_S = 3.0
TIMED_S = 5.0
SIZE = 224

CASES = [  # (label, infersweep backend, precision, reference kind)
    ("torch eager fp16 channels_last", "torch", "fp16", "eager"),
    ("torch-compile max-autotune fp16 channels_last", "torch-compile", "fp16", "compile"),
    ("onnxruntime cuda fp16 io-binding", "onnxruntime", "fp16", "ort"),
    ("onnxruntime cuda fp32 io-binding", "onnxruntime", "fp32", "ort"),
]


def reference(kind: str, precision: str, batch: int, onnx_path: str) -> dict:
    """The reference loop, in its own process. Nothing but the model call is timed."""
    import numpy as np
    import torch

    if kind in ("eager", "compile"):
        import torchvision

        torch.backends.cudnn.benchmark = True  # as infersweep's torch default on CUDA
        torch.manual_seed(0)
        model = torchvision.models.resnet18().eval().cuda().half()
        model = model.to(memory_format=torch.channels_last)
        x = torch.randn(batch, 3, SIZE, SIZE, device="cuda", dtype=torch.half)
        x = x.contiguous(memory_format=torch.channels_last)
        if kind == "compile":
            model = torch.compile(model, mode="max-autotune", dynamic=False)

        def step():
            with torch.inference_mode():
                model(x)
            torch.cuda.synchronize()
    else:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(onnx_path, options, providers=["CUDAExecutionProvider"])
        dtype = np.float16 if precision == "fp16" else np.float32
        x = ort.OrtValue.ortvalue_from_numpy(
            np.random.default_rng(0).standard_normal((batch, 3, SIZE, SIZE)).astype(dtype),
            "cuda", 0)
        y = ort.OrtValue.ortvalue_from_shape_and_type([batch, 1000], dtype, "cuda", 0)
        binding = session.io_binding()
        binding.bind_ortvalue_input("input", x)
        binding.bind_ortvalue_output("logits", y)

        def step():
            session.run_with_iobinding(binding)  # synchronous: returns when the GPU is done

    for _ in range(3):
        step()  # compile / autotune / CUDA graph recording happen here, outside any timing
    end = time.perf_counter() + WARMUP_S
    while time.perf_counter() < end:
        step()
    samples = []
    end = time.perf_counter() + TIMED_S
    while time.perf_counter() < end or len(samples) < 50:
        t = time.perf_counter_ns()
        step()
        samples.append((time.perf_counter_ns() - t) / 1e6)
    return {"median_ms": statistics.median(samples), "n": len(samples)}


def run_infersweep(out: Path, batch: int) -> None:
    common = ["--devices", "cuda", "--sizes", str(SIZE), "--batches", str(batch), "--out",
              str(out), "--max-time", str(TIMED_S), "--timeout", "900"]
    for extra in (["--backends", "torch,torch-compile", "--precisions", "fp16", "--channels-last",
                   "--compile-mode", "max-autotune"],
                  ["--backends", "onnxruntime", "--precisions", "fp16,fp32"]):
        cmd = [sys.executable, "-m", "infersweep", "run", *common, *extra]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)


def onnx_file(cache: Path, precision: str) -> str:
    for key in cache.glob("onnx/*/key.json"):
        k = json.loads(key.read_text())
        if k["precision"] == precision and k["image_size"] == SIZE:
            return str(key.parent / "model.onnx")
    raise FileNotFoundError(f"no {precision} export in {cache}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, precision, batch, path = args.child
        print(json.dumps(reference(kind, precision, int(batch), path)))
        return 0

    os.environ.setdefault("INFERSWEEP_CACHE", tempfile.mkdtemp(prefix="infersweep-bench-cache-"))
    cache = Path(os.environ["INFERSWEEP_CACHE"])
    # The compiled reference reuses infersweep's Inductor cache (same kernels, no second autotune).
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache / "inductor"))
    os.environ.setdefault("TRITON_CACHE_DIR", str(cache / "triton"))
    out = args.out or Path(tempfile.mkdtemp(prefix="infersweep-gpu-bench-")) / "run"
    run_infersweep(out, args.batch)
    with open(out / "results.csv") as f:
        rows = {(r["backend"], r["precision"]): r for r in csv.DictReader(f)
                if r["batch_size"] == str(args.batch) and r["device"] == "cuda"}

    table, ok = [], True
    for label, backend, precision, kind in CASES:
        row = rows[(backend, precision)]
        path = onnx_file(cache, precision) if kind == "ort" else "-"
        child = subprocess.run([sys.executable, __file__, "--child", kind, precision,
                                str(args.batch), path], capture_output=True, text=True)
        if child.returncode != 0:
            print(child.stderr[-2000:])
            ok = False
            continue
        ref = json.loads(child.stdout.strip().splitlines()[-1])
        if row["status"] != "ok":
            table.append((label, row["status"], ref["median_ms"], None, None, None, "FAIL"))
            ok = False
            continue
        ours = float(row["latency_ms_median"])
        diff = ours / ref["median_ms"] - 1
        verdict = "PASS" if abs(diff) <= TOLERANCE else "FAIL"
        ok &= verdict == "PASS"
        table.append((label, f"{ours:.3f}", ref["median_ms"], diff,
                      float(row["throughput_ips"]), float(row["throughput_pipelined_ips"] or 0),
                      verdict))

    print(f"\nresnet18 {SIZE}px batch {args.batch}; run dir {out}")
    print(f"{'case':<48} {'infersweep ms':>13} {'reference ms':>12} {'diff':>7} "
          f"{'img/s':>9} {'pipelined':>9}")
    for label, ours, ref_ms, diff, ips, pipe, verdict in table:
        diff_s = f"{diff:+.1%}" if diff is not None else ""
        print(f"{label:<48} {ours:>13} {ref_ms:>12.3f} {diff_s:>7} {ips or 0:>9.0f} "
              f"{pipe or 0:>9.0f}  {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
