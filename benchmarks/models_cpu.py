"""resnet18 (torchvision) against timm:resnet18 on the CPU, interleaved in fresh processes.

Same architecture, so their medians should agree; a gap would be the model source's doing (a
different graph, a different layout), not the runtime's. Each round runs one single-case sweep
per model, alternating which goes first, each in its own `infersweep run` process (and worker),
so neither model enjoys a warmer cache or a quieter machine. Prints every round's medians and the
median of each model over the rounds.

    PYTHONPATH=src python benchmarks/models_cpu.py [ROUNDS]
"""

from __future__ import annotations

import csv
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

MODELS = ("resnet18", "timm:resnet18")
FLAGS = ["--backends", "torch", "--sizes", "224", "--batches", "1", "--min-time", "1",
         "--max-time", "3"]


def one_run(model: str, out: Path) -> float:
    done = subprocess.run([sys.executable, "-m", "infersweep", "run", "--model", model, *FLAGS,
                           "--out", str(out)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{model}: {done.stderr.strip()}")
    with open(out / "results.csv") as f:
        row = next(csv.DictReader(f))
    return float(row["latency_ms_median"])


def main(rounds: int) -> None:
    medians: dict[str, list[float]] = {m: [] for m in MODELS}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(rounds):
            order = MODELS if i % 2 == 0 else MODELS[::-1]
            for model in order:
                medians[model].append(one_run(model, Path(tmp) / f"r{i}-{model.replace(':', '-')}"))
            print(f"round {i + 1}: " + ", ".join(f"{m} {medians[m][-1]:.2f} ms" for m in MODELS),
                  flush=True)
    print(f"{rounds} interleaved rounds, torch eager, CPU, batch 1, 224 px, fresh process each:")
    for model in MODELS:
        print(f"  {model:14s} median of medians {statistics.median(medians[model]):.2f} ms "
              f"(range {min(medians[model]):.2f} to {max(medians[model]):.2f})")
    a, b = (statistics.median(medians[m]) for m in MODELS)
    print(f"  ratio timm/torchvision {b / a:.3f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
