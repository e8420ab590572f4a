"""What a torch-compile worker's first shape costs after its preload, with and without the cache keys.

    PYTHONPATH=src python3 benchmarks/compile_preload.py --root DIR [--rounds 3] [--device cpu]
        [--size 32] [--precision fp32]

A torch-compile worker started ahead runs ``TorchCompile.preload`` while another worker
measures; its first group's first shape then compiles (from Inductor's cache, warm). Each round
starts two fresh processes, in alternating order, on one warm cache under DIR: ``imports`` does
what the preload did before (``torch.compile(torch.nn.Identity())``: Dynamo's backend and
Inductor imported), ``preload`` calls ``TorchCompile.preload`` (that, and the keys of Inductor's
caches). Each builds resnet18 through the backend, specialises batch 1 then batch 2 and prints
the seconds of each; the first shape is on the sweep's critical path, the preload is not. A
first process fills the cache and is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rounds import alternating  # benchmarks/rounds.py


def child(variant: str, device: str, size: int, precision: str, cache: Path) -> None:
    import numpy as np
    import torch

    from infersweep.artefacts.cache import ArtifactCache
    from infersweep.artefacts.models import ModelSource
    from infersweep.backends import get_backend
    from infersweep.case import Case

    backend = get_backend("torch-compile")
    start = time.perf_counter()
    if variant == "imports":
        torch.compile(torch.nn.Identity())
    else:
        backend.preload()
    preload_s = time.perf_counter() - start
    case = Case("resnet18", "random(seed=0)", "torch-compile", device, precision, size, 1,
                "synthetic")
    session = backend.prepare(ModelSource(case.model, case.weights, 0, None, size), case,
                              ArtifactCache(cache / "artefacts"))
    shapes = []
    for batch in (1, 2):
        placed = session.place(np.zeros((batch, 3, size, size), np.float32))
        start = time.perf_counter()
        session.specialize(placed)
        if device == "cuda":
            torch.cuda.synchronize()
        shapes.append(time.perf_counter() - start)
    print("RESULT " + json.dumps({"preload_s": preload_s, "first_s": shapes[0],
                                  "second_s": shapes[1]}))


def run(args, variant: str) -> dict:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(args.root / "inductor"),
           "TRITON_CACHE_DIR": str(args.root / "triton")}
    done = subprocess.run([sys.executable, __file__, "--child", variant, "--root", str(args.root),
                           "--device", args.device, "--size", str(args.size), "--precision",
                           args.precision], env=env, capture_output=True, text=True, timeout=900)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if done.returncode or line is None:
        raise SystemExit(f"{variant}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return json.loads(line[len("RESULT "):])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.device, args.size, args.precision, args.root)
        return 0
    print(f"torch-compile resnet18 {args.precision} {args.size} px on {args.device}, batches 1 "
          f"then 2; {args.rounds} rounds of fresh processes, order alternating")
    run(args, "preload")  # fills the cache
    seen = alternating(["imports", "preload"], args.rounds, lambda variant: run(args, variant),
                       lambda x: f"preload {x['preload_s']:.2f} s, first shape "
                                 f"{x['first_s']:.2f} s, second {x['second_s']:.2f} s")
    for variant, runs in seen.items():
        print(f"{variant:>8}: median preload "
              f"{statistics.median(x['preload_s'] for x in runs):.2f} s (off the critical path), "
              f"first shape {statistics.median(x['first_s'] for x in runs):.2f} s, second "
              f"{statistics.median(x['second_s'] for x in runs):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
