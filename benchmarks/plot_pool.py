"""The final plots of the original grid: drawn in this process against drawn in a pool, on this
machine's cores, in interleaved rounds of fresh processes.

    .venv/bin/python benchmarks/plot_pool.py [--rounds 5] [--pool 0]

Why: after a sweep's last case its parent draws the plots (reports/plots.py): on the H200 a warm
run of the original grid spent 3.7 s from its last case to its exit, and on this 2-core box the
grid's 9 plots take ~11 s drawn one after another. write_plots draws them in a pool of processes
from 8 plots on (a rule measured on this box, where the pool's processes compete for two cores);
this script shows what the pool buys on the machine it runs on.

The results are the original grid's 72 CUDA cases (torch, torch-compile, onnxruntime x fp32, fp16
x 224, 256, 384, 512 px x batches 16, 32, 64) with seeded synthetic latencies: the plots have the
grid's shape, not its numbers. Each timing is one fresh process, from before infersweep's plot
module is imported (the sweep's parent imports matplotlib only for the final plots) to
write_plots' return; the two ways alternate which goes first from round to round. ``--pool 0``:
one process per plot, at most one per usable core.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID = {"backends": ("torch", "torch-compile", "onnxruntime"), "precisions": ("fp32", "fp16"),
        "sizes": (224, 256, 384, 512), "batches": (16, 32, 64)}
# Rough per-image cost of each backend relative to eager fp32; only the shape of the plots
# depends on it.
SPEED = {("torch", "fp32"): 1.0, ("torch", "fp16"): 0.55, ("torch-compile", "fp32"): 0.8,
         ("torch-compile", "fp16"): 0.45, ("onnxruntime", "fp32"): 0.85,
         ("onnxruntime", "fp16"): 0.5}


def grid_results() -> list:
    from infersweep.case import Case
    from infersweep.results.result import Result

    results = []
    for backend in GRID["backends"]:
        for precision in GRID["precisions"]:
            for size in GRID["sizes"]:
                for batch in GRID["batches"]:
                    median = 0.02 * batch * (size / 224) ** 2 * SPEED[(backend, precision)]
                    rng = random.Random(f"{backend}{precision}{size}{batch}")
                    samples = [median * (1 + abs(rng.gauss(0, 0.02))) for _ in range(200)]
                    case = Case("resnet18", "random(seed=0)", backend, "cuda", precision, size,
                                batch, "synthetic")
                    results.append(Result(case, "ok", samples_ms=samples))
    return results


def child(processes: int, out: Path) -> None:
    """One timing: prints the seconds write_plots took, its imports included, and the plots."""
    started = time.perf_counter()
    from infersweep.reports.plots import write_plots
    from infersweep.reports.rows import rows_with_speedup

    results = grid_results()
    rows = rows_with_speedup(results, "torch")
    plots = write_plots(out, rows, results, "torch", processes=processes or None)
    print(f"{time.perf_counter() - started:.3f} {len(plots)}")


def timed(processes: int, out: Path) -> tuple[float, int]:
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, __file__, "--child", str(processes), "--out",
                           str(out)], capture_output=True, text=True, check=True)
    seconds, plots = done.stdout.split()
    return float(seconds), int(plots)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pool", type=int, default=0,
                        help="pool processes (0: one per plot, at most one per usable core)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.out)
        return 0
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        plots = timed(1, Path(tmp) / "probe")[1]  # also warms the page cache and bytecode
        pool = args.pool or min(plots, cores)
        ways = {"here (1 process)": 1, f"pool ({pool} processes)": pool}
        print(f"{plots} plots of the original grid's 72 cases, {cores} usable cores; "
              f"write_plots' default here: {'pool' if plots >= 8 else 'this process'}")
        times: dict[str, list[float]] = {w: [] for w in ways}
        for i in range(args.rounds):
            order = list(ways) if i % 2 == 0 else list(reversed(ways))
            for way in order:
                times[way].append(timed(ways[way], Path(tmp) / f"{i}-{ways[way]}")[0])
            print(f"round {i + 1}: " + ", ".join(f"{w} {times[w][-1]:.2f} s" for w in order),
                  flush=True)
    for way, seconds in times.items():
        print(f"{way:>22}: median {statistics.median(seconds):.2f} s "
              f"(min {min(seconds):.2f}, max {max(seconds):.2f}) over {len(seconds)} processes")
    here, pooled = (statistics.median(s) for s in times.values())
    print(f"pool / here: {pooled / here:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
