"""How long a run's parent takes to reach its sweep (``run_sweep``, where the first worker is
spawned right after the plan) when the command names a torchvision model: the current tree
against a reference commit, in interleaved rounds of fresh processes.

    .venv/bin/python benchmarks/parent_start.py [--ref a8646f9] [--rounds 5]

Each round runs, in both trees, ``infersweep run --model resnet18 --backends onnxruntime
--devices cpu --sizes 32 --batches 1`` (one short case) into a new run directory and reads the
store's ``parent_phases`` (seconds from the process's start) and the process's wall time. Each
tree has a cache of its own, warmed by one untimed run, so that only what the parent does at
every start is compared (the reference tree imported torchvision to check the model's name).
The order alternates between rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARGS = ["--model", "resnet18", "--backends", "onnxruntime", "--devices", "cpu", "--sizes", "32",
        "--batches", "1", "--min-time", "0.05", "--max-time", "0.1"]


def one_run(src: Path, out: Path, cache: Path) -> tuple[float, float]:
    """(seconds from the parent's start to run_sweep, the process's wall time)."""
    env = {**os.environ, "PYTHONPATH": str(src), "INFERSWEEP_CACHE": str(cache)}
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "infersweep", "run", *ARGS, "--out", str(out)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wall = time.monotonic() - start
    with sqlite3.connect(out / "results.sqlite") as db:
        value = db.execute("select value from meta where key='parent_phases'").fetchone()
    return json.loads(value[0])["run_sweep"], wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="a8646f9")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="parent-start-") as tmp:
        root = Path(tmp)
        ref_tree = root / "ref"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(ref_tree),
                        args.ref], check=True, capture_output=True)
        try:
            trees = {f"current ({head})": REPO / "src", f"reference ({args.ref})": ref_tree / "src"}
            for i, (name, src) in enumerate(trees.items()):
                one_run(src, root / f"warm-{i}", root / f"cache-{i}")  # untimed: warms the cache
            found: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
            print(f"{args.rounds} rounds, each tree once per round in a fresh process, order "
                  "alternating\n")
            print(f"{'round':<6}{'tree':<26}{'to run_sweep s':>15}{'wall s':>9}")
            for r in range(args.rounds):
                order = list(trees.items()) if r % 2 == 0 else list(trees.items())[::-1]
                for name, src in order:
                    i = list(trees).index(name)
                    to_sweep, wall = one_run(src, root / f"run-{i}-{r}", root / f"cache-{i}")
                    found[name].append((to_sweep, wall))
                    print(f"{r + 1:<6}{name:<26}{to_sweep:>15.2f}{wall:>9.2f}")
            print("\nmedians over rounds")
            for name, runs in found.items():
                print(f"{'':<6}{name:<26}{statistics.median(t for t, _ in runs):>15.2f}"
                      f"{statistics.median(w for _, w in runs):>9.2f}")
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                            str(ref_tree)], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
