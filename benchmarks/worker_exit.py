"""How long a worker takes to exit once told to (its successor waits for it): Python's own exit
against infersweep's (``run/quick_exit.exit_without_teardown``), in fresh processes.

    PYTHONPATH=src python3 benchmarks/worker_exit.py --root DIR [--rounds 3] [--device cpu]
        [--backend torch-compile] [--size 32]

Each process does what a worker of ``--backend`` does before its exit: preload, prepare resnet18
through the backend and specialise one shape (torch-compile: from Inductor's cache under DIR,
warmed by a first process that is not counted), run it once, then wait on stdin. The parent
closes stdin and times until the process has exited. Variants, alternating in order per round:
``python-exit`` returns through ``sys.exit`` (threads, exit handlers, then the teardown of every
module), ``infersweep`` ends through ``exit_without_teardown`` (the same less the teardown).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rounds import alternating  # benchmarks/rounds.py


def child(args) -> None:
    import numpy as np

    from infersweep.artefacts.cache import ArtifactCache
    from infersweep.artefacts.models import ModelSource
    from infersweep.backends import get_backend
    from infersweep.case import Case
    from infersweep.run.quick_exit import exit_without_teardown

    backend = get_backend(args.backend)
    backend.preload()
    case = Case("resnet18", "random(seed=0)", args.backend, args.device, "fp32", args.size, 1,
                "synthetic")
    session = backend.prepare(ModelSource(case.model, case.weights, 0, None, args.size), case,
                              ArtifactCache(args.root / "artefacts"))
    placed = session.place(np.zeros((1, 3, args.size, args.size), np.float32))
    session.specialize(placed)
    session.fetch(session.run(placed))
    print("ready", flush=True)
    sys.stdin.readline()
    if args.child == "infersweep":
        exit_without_teardown(0)
    sys.exit(0)


def one(args, variant: str) -> float:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(args.root / "inductor"),
           "TRITON_CACHE_DIR": str(args.root / "triton")}
    proc = subprocess.Popen([sys.executable, __file__, "--child", variant, "--root",
                             str(args.root), "--device", args.device, "--backend", args.backend,
                             "--size", str(args.size)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit(f"{variant}: the child did not get ready (exit {proc.wait()})")
    time.sleep(0.5)  # as a worker waits for the next request
    start = time.perf_counter()
    proc.stdin.close()
    code = proc.wait()
    took = time.perf_counter() - start
    if code:
        raise SystemExit(f"{variant}: exit code {code}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="torch-compile")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    print(f"{args.backend} worker (resnet18 fp32 {args.size} px, {args.device}): seconds from "
          f"stdin closed to exit; {args.rounds} rounds of fresh processes, order alternating")
    one(args, "infersweep")  # warms the caches
    seen = alternating(["python-exit", "infersweep"], args.rounds,
                       lambda variant: one(args, variant), lambda took: f"{took:.2f} s")
    for variant, took in seen.items():
        print(f"{variant:>12}: median exit {statistics.median(took):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
