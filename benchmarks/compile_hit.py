"""What torch-compile's setup costs when Inductor's cache already holds every graph, and why.

    PYTHONPATH=src python3 benchmarks/compile_hit.py --root DIR [--precision fp16] [--size 224]
        [--batches 16,32,64] [--variants default,threads1,precompile] [--device cuda]

A warm rerun of the original grid spent 29.9 s of setup in torch-compile's 24 cases on the H200
(~1.25 s per shape, every one an FX-graph cache hit). This script builds one torch-compile group
through infersweep's own backend (``TorchCompile.prepare`` and ``specialize``, the worker's path)
in fresh processes on one cache per variant: cold (the cache emptied first), then warm twice.
Per batch it prints the seconds ``specialize`` took and the compile phases torch records
(``torch._dynamo.utils.compilation_time_metrics``, the largest ones), and the cache hits.

Variants (each its own cache, so one cannot warm another):
- ``default``: what the worker does today;
- ``threads1``: ``TORCHINDUCTOR_COMPILE_THREADS=1`` (no pool of compile workers is started);
- ``precompile``: ``TORCH_CACHING_PRECOMPILE=1`` (torch's experimental Dynamo cache, which saves
  what Dynamo traced so a warm process may skip tracing).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {
    "default": {},
    "threads1": {"TORCHINDUCTOR_COMPILE_THREADS": "1"},
    "precompile": {"TORCH_CACHING_PRECOMPILE": "1"},
}


def child(args) -> None:
    """One process: build the group's session and specialise it for every batch."""
    started = time.perf_counter()
    import numpy as np
    import torch
    from torch._dynamo.utils import compilation_time_metrics, counters

    from infersweep.artefacts.cache import ArtifactCache
    from infersweep.artefacts.models import ModelSource
    from infersweep.backends import get_backend
    from infersweep.case import Case

    imported = time.perf_counter() - started
    report = {"import_s": round(imported, 2), "batches": {}}
    cache = ArtifactCache(Path(args.cache) / "artefacts")
    first = Case(args.model, "random(seed=0)", "torch-compile", args.device, args.precision,
                 args.size, 1, "synthetic")
    t = time.perf_counter()
    source = ModelSource(first.model, first.weights, 0, None, args.size)
    session = get_backend("torch-compile").prepare(source, first, cache)
    report["prepare_s"] = round(time.perf_counter() - t, 2)
    for batch in [int(b) for b in args.batches.split(",")]:
        before = {k: sum(v) for k, v in compilation_time_metrics.items()}
        hits_before = {k: dict(v) for k, v in counters.items()}
        placed = session.place(np.zeros((batch, 3, args.size, args.size), np.float32))
        t = time.perf_counter()
        session.specialize(placed)
        torch.cuda.synchronize() if args.device == "cuda" else None
        took = time.perf_counter() - t
        phases = {k: sum(v) - before.get(k, 0.0) for k, v in compilation_time_metrics.items()}
        top = dict(sorted(((k, round(v, 3)) for k, v in phases.items() if v >= 0.01),
                          key=lambda kv: -kv[1])[:14])
        hits = {f"{group}.{k}": n - hits_before.get(group, {}).get(k, 0)
                for group in ("inductor", "aot_autograd", "dynamo_cache")
                for k, n in counters.get(group, {}).items()
                if "cache" in k and n - hits_before.get(group, {}).get(k, 0)}
        report["batches"][batch] = {"specialize_s": round(took, 3), "phases": top, "hits": hits}
    report["total_s"] = round(time.perf_counter() - started, 2)
    print("RESULT " + json.dumps(report))


def run_child(args, variant: str, cache: Path) -> dict:
    env = {**os.environ, **VARIANTS[variant], "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor"),
           "TRITON_CACHE_DIR": str(cache / "triton"), "INFERSWEEP_CACHE": str(cache)}
    cmd = [sys.executable, __file__, "--child", "--cache", str(cache), "--model", args.model,
           "--precision", args.precision, "--size", str(args.size), "--batches", args.batches,
           "--device", args.device]
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    wall = time.monotonic() - start
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        print(proc.stdout[-3000:])
        raise SystemExit(f"{variant}: the child exited {proc.returncode}")
    report = json.loads(line[len("RESULT "):])
    report["process_wall_s"] = round(wall, 2)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--precision", default="fp16")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batches", default="16,32,64")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--variants", default="default,threads1,precompile")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    if args.root is None:
        parser.error("--root is required")
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    print(f"torch-compile {args.model} {args.precision} {args.size} px, batches {args.batches}, "
          f"{args.device}; fresh process per line")
    for variant in variants:
        cache = args.root / variant
        shutil.rmtree(cache, ignore_errors=True)
        for phase in ("cold", "warm1", "warm2"):
            r = run_child(args, variant, cache)
            per_batch = "  ".join(f"bs{b} {v['specialize_s']:.2f} s"
                                  for b, v in r["batches"].items())
            print(f"{variant:>10} {phase:>5}: process {r['process_wall_s']:6.2f} s, imports "
                  f"{r['import_s']:.2f} s, prepare {r['prepare_s']:.2f} s, {per_batch}")
            if phase != "cold":
                for b, v in r["batches"].items():
                    phases = ", ".join(f"{k} {s:.2f}" for k, s in v["phases"].items())
                    print(f"{'':>18} bs{b}: hits {v['hits']}\n{'':>22} {phases}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
