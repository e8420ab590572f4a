"""The same sweep with the local executor and with --executor ray, in one run: wall time of each,
Ray's overhead per case, and whether both measured the same medians.

    .venv/bin/python benchmarks/ray_vs_local.py                  # 16-case CPU sweep
    PYTHONPATH=src python3 benchmarks/ray_vs_local.py --gpu      # a GPU sweep, 1 vs all GPUs

CPU (default): resnet18, torch + onnxruntime, fp32, 64 and 96 px, batch 1, 2, 4, 8 = 16 cases.
GPU (--gpu): torch + onnxruntime on cuda, fp32 + fp16, 224 px, batch 64 and 256 = 8 cases, run
locally with --gpus 0 and --gpus 0,..,N-1, and on Ray with one GPU visible and with all of them.

A quick pass first fills the artefact cache (ONNX exports), so no timed sweep pays for exports.
Each sweep writes to a fresh run directory; wall time is the whole `infersweep run` command,
including Ray's start-up for the Ray sweeps (that is what a user waits for), which is also shown
on its own. Overhead per case = (Ray wall - local wall) / cases.
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


def sweep(out: Path, args: list[str], env: dict | None = None) -> float:
    cmd = [sys.executable, "-m", "infersweep", "run", *args, "--out", str(out)]
    print("$", " ".join(cmd), flush=True)
    start = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.monotonic() - start


def rows(out: Path) -> dict[str, dict]:
    with open(out / "results.csv") as f:
        return {r["case_id"]: r for r in csv.DictReader(f)}


def ray_startup_s(env: dict | None = None) -> float:
    """How long `ray.init()` + `ray.shutdown()` of a local instance take here, on their own."""
    code = ("import time, logging, ray; t = time.monotonic(); "
            "ray.init(include_dashboard=False, logging_level=logging.ERROR, "
            "object_store_memory=128 << 20); ray.shutdown(); print(time.monotonic() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=env)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="a GPU sweep: 1 GPU vs all GPUs")
    parser.add_argument("--max-time", default="3", help="seconds per case at most [3]")
    args = parser.parse_args()
    os.environ.setdefault("INFERSWEEP_CACHE", tempfile.mkdtemp(prefix="infersweep-ray-cache-"))
    root = Path(tempfile.mkdtemp(prefix="infersweep-ray-bench-"))
    if args.gpu:
        import torch

        n = torch.cuda.device_count()
        grid = ["--devices", "cuda", "--backends", "torch,onnxruntime", "--precisions",
                "fp32,fp16", "--sizes", "224", "--batches", "64,256"]
    else:
        n = 0
        grid = ["--devices", "cpu", "--backends", "torch,onnxruntime", "--precisions", "fp32",
                "--sizes", "64,96", "--batches", "1,2,4,8"]
    timing = ["--max-time", args.max_time]
    sweep(root / "prewarm", [*grid, "--quick", "--batches", "1"]
          + (["--gpus", "0"] if args.gpu else []))

    runs: dict[str, float] = {}
    one_gpu = {**os.environ, "CUDA_VISIBLE_DEVICES": "0"}  # Ray then sees one GPU
    if args.gpu:
        all_gpus = ",".join(str(i) for i in range(n))
        dirs = {"local, 1 GPU": "local1", f"local, {n} GPUs": "localN",
                "ray, 1 GPU": "ray1", f"ray, {n} GPUs": "rayN"}
        runs["local, 1 GPU"] = sweep(root / "local1", [*grid, *timing, "--gpus", "0"])
        if n > 1:
            runs[f"local, {n} GPUs"] = sweep(root / "localN",
                                             [*grid, *timing, "--gpus", all_gpus])
        runs["ray, 1 GPU"] = sweep(root / "ray1", [*grid, *timing, "--executor", "ray"], one_gpu)
        if n > 1:
            runs[f"ray, {n} GPUs"] = sweep(root / "rayN", [*grid, *timing, "--executor", "ray"])
        dirs = {name: d for name, d in dirs.items() if name in runs}
    else:
        runs["local"] = sweep(root / "local", [*grid, *timing])
        runs["ray"] = sweep(root / "ray", [*grid, *timing, "--executor", "ray"])
        dirs = {"local": "local", "ray": "ray"}
    startup = ray_startup_s()

    results = {name: rows(root / d) for name, d in dirs.items()}
    first = next(iter(results.values()))
    cases = len(first)
    print(f"\n{cases} cases per sweep; local Ray instance start + stop alone: {startup:.1f} s")
    print(f"{'sweep':<16} {'wall s':>8} {'ok':>4}  {'largest median diff vs the first':>34}")
    for name, result in results.items():
        ok = [c for c, r in result.items() if r["status"] == "ok"]
        diffs = [abs(float(result[c]["latency_ms_median"]) / float(first[c]["latency_ms_median"])
                     - 1) for c in ok if first.get(c, {}).get("status") == "ok"]
        print(f"{name:<16} {runs[name]:>8.1f} {len(ok):>4}  {max(diffs, default=0):>33.1%}")
    names = list(results)
    print(f"\nmedian latency per case, ms ({' | '.join(names)}):")
    for cid, r in sorted(first.items(), key=lambda kv: tuple(kv[1][k] for k in
                         ("backend", "precision", "image_size", "batch_size"))):
        cells = [results[name].get(cid, {}).get("latency_ms_median") or "-" for name in names]
        print(f"  {r['backend']:<12} {r['precision']:<5} {r['image_size']:>4}px "
              f"bs{r['batch_size']:<4} " + " | ".join(f"{float(c):8.3f}" if c != "-" else c
                                                     for c in cells))
    if args.gpu and n > 1:
        local = [runs[k] for k in runs if k.startswith("local")]
        ray = [runs[k] for k in runs if k.startswith("ray")]
        print(f"\nlocal: 1 GPU / {n} GPUs = {local[0] / local[1]:.2f}x; "
              f"ray: 1 GPU / {n} GPUs = {ray[0] / ray[1]:.2f}x (target >= 1.8x on 2 GPUs); "
              f"ray overhead per case ({n} GPUs): {(ray[1] - local[1]) / cases:+.2f} s")
    else:
        local, ray = (runs[k] for k in runs)  # one GPU, or the CPU: local, then ray
        print(f"\nRay overhead: {ray - local:+.1f} s in all, {(ray - local) / cases:+.2f} s per "
              f"case (of which Ray start-up {startup:.1f} s)")
    print(f"run directories under {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
