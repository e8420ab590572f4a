"""Wall time of one GPU sweep on 1 GPU and on 2 GPUs (--gpus), in one run on a 2-GPU machine.

    PYTHONPATH=src python3 benchmarks/multi_gpu.py [--sizes 224,256] [--batches 32,64,128,256]

First a quick pass fills the artefact cache (ONNX exports), so neither timed sweep pays for
exports; then the same sweep runs with --gpus 0 and with --gpus 0,1 into fresh run directories.
Prints both wall times, the ratio, and whether the two sweeps' medians agree (the same cases,
measured on either GPU, should match within a few percent).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def sweep(out: Path, gpus: str, args, extra=()) -> float:
    cmd = [sys.executable, "-m", "infersweep", "run", "--devices", "cuda", "--backends",
           "torch,onnxruntime", "--precisions", "fp32,fp16", "--sizes", args.sizes, "--batches",
           args.batches, "--gpus", gpus, "--out", str(out), "--max-time", "3", *extra]
    print("$", " ".join(cmd), flush=True)
    start = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def medians(out: Path) -> dict:
    with open(out / "results.csv") as f:
        return {r["case_id"]: float(r["latency_ms_median"]) for r in csv.DictReader(f)
                if r["status"] == "ok"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="224,256")
    parser.add_argument("--batches", default="32,64,128,256")
    args = parser.parse_args()
    os.environ.setdefault("INFERSWEEP_CACHE", tempfile.mkdtemp(prefix="infersweep-mgpu-cache-"))
    root = Path(tempfile.mkdtemp(prefix="infersweep-mgpu-"))
    sweep(root / "prewarm", "0", argparse.Namespace(sizes=args.sizes, batches="1"), ["--quick"])
    one = sweep(root / "one", "0", args)
    two = sweep(root / "two", "0,1", args)
    a, b = medians(root / "one"), medians(root / "two")
    common = sorted(set(a) & set(b))
    worst = max(abs(b[c] / a[c] - 1) for c in common) if common else float("nan")
    print(f"\n{len(common)} cases ok in both; 1 GPU: {one:.1f} s, 2 GPUs: {two:.1f} s, "
          f"speedup {one / two:.2f}x; largest median difference between the runs {worst:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
