"""How long a run's parent takes to reach its sweep (``run_sweep``), to start its first worker
and to begin its cases when the command names a torchvision model: the current tree against a
reference commit, in interleaved rounds of fresh processes.

    .venv/bin/python benchmarks/parent_start.py [--ref a8646f9] [--rounds 5] [--cold]

Each round runs, in both trees, ``infersweep run --model resnet18 --backends onnxruntime
--devices cpu --sizes 32 --batches 1`` (one short case) into a new run directory and reads the
store's ``parent_phases`` (seconds from the process's start) and the process's wall time. Each
tree has a cache of its own, warmed by one untimed run, so that only what the parent does at
every start is compared (the reference tree imported torchvision to check the model's name).
With ``--cold`` every run gets an empty cache of its own instead: a first run on a machine, whose
parent dry-runs the model (importing torch) and whose worker exports and computes references.
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


STEPS = ("run_sweep", "first_worker_started", "cases_begin")


def one_run(src: Path, out: Path, cache: Path) -> tuple[dict[str, float], float]:
    """(seconds from the parent's start to each of STEPS, the process's wall time)."""
    env = {**os.environ, "PYTHONPATH": str(src), "INFERSWEEP_CACHE": str(cache)}
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "infersweep", "run", *ARGS, "--out", str(out)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wall = time.monotonic() - start
    with sqlite3.connect(out / "results.sqlite") as db:
        value = db.execute("select value from meta where key='parent_phases'").fetchone()
    phases = json.loads(value[0])
    return {step: phases[step] for step in STEPS}, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="a8646f9")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="an empty cache for every run")
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
            if not args.cold:
                for i, (name, src) in enumerate(trees.items()):
                    one_run(src, root / f"warm-{i}", root / f"cache-{i}")  # untimed: warms it
            found: dict[str, list[tuple[dict[str, float], float]]] = {name: [] for name in trees}
            print(f"{args.rounds} rounds, each tree once per round in a fresh process, order "
                  f"alternating; {'an empty cache per run' if args.cold else 'warm caches'}\n")
            header = "".join(f"{step + ' s':>22}" for step in STEPS)
            print(f"{'round':<6}{'tree':<26}{header}{'wall s':>9}")
            for r in range(args.rounds):
                order = list(trees.items()) if r % 2 == 0 else list(trees.items())[::-1]
                for name, src in order:
                    i = list(trees).index(name)
                    cache = root / (f"cache-{i}-{r}" if args.cold else f"cache-{i}")
                    phases, wall = one_run(src, root / f"run-{i}-{r}", cache)
                    found[name].append((phases, wall))
                    steps = "".join(f"{phases[step]:>22.2f}" for step in STEPS)
                    print(f"{r + 1:<6}{name:<26}{steps}{wall:>9.2f}")
            print("\nmedians over rounds")
            for name, runs in found.items():
                steps = "".join(f"{statistics.median(p[step] for p, _ in runs):>22.2f}"
                                for step in STEPS)
                print(f"{'':<6}{name:<26}{steps}{statistics.median(w for _, w in runs):>9.2f}")
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                            str(ref_tree)], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
