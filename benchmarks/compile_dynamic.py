"""torch.compile static-per-shape against batch-dynamic, cold and warm, in one run each.

    PYTHONPATH=src python3 benchmarks/compile_dynamic.py --root DIR [--sizes 224,384]
        [--batches 16,32,64] [--precision fp16] [--device cuda]

Both variants are cases of the same sweep (``--option "torch-compile.dynamic=false|true"``), so they
share the worker, the data and the timing rules; only the compilation differs. The sweep runs twice
on one infersweep cache: cold (the cache emptied first) and warm (a new run directory, the same
cache: Inductor's FX-graph and kernel caches should serve every compile). Prints, per size and batch,
each variant's median and its setup (the group's compile is charged to its first batch; a static
graph compiles again for every batch), and totals: setup and median per variant, cold and warm.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def sweep(root: Path, phase: str, args) -> tuple[float, list[dict]]:
    cache, out = root / "cache", root / phase
    if phase == "cold" and cache.exists():
        shutil.rmtree(cache)
    if out.exists():
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "infersweep", "run", "--backends", "torch-compile",
           "--option", "torch-compile.dynamic=false|true", "--devices", args.device,
           "--precisions", args.precision, "--sizes", args.sizes, "--batches", args.batches,
           "--out", str(out)]
    start = time.monotonic()
    proc = subprocess.run(cmd, env={**os.environ, "INFERSWEEP_CACHE": str(cache)},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.monotonic() - start
    (root / f"{phase}.log").write_text(proc.stdout)
    if proc.returncode not in (0, 1):
        print(proc.stdout[-3000:])
        raise SystemExit(f"{phase}: infersweep exited {proc.returncode}")
    return wall, json.loads((out / "results.json").read_text())["results"]


def dynamic_of(row: dict) -> str:
    return "dynamic" if "dynamic=true" in (row.get("options") or "") else "static"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--sizes", default="224,384")
    parser.add_argument("--batches", default="16,32,64")
    parser.add_argument("--precision", default="fp16")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    for phase in ("cold", "warm"):
        wall, rows = sweep(args.root, phase, args)
        print(f"\n{phase}: {len(rows)} cases in {wall:.1f} s")
        table: dict[tuple, dict[str, dict]] = {}
        for r in rows:
            table.setdefault((r["image_size"], r["batch_size"]), {})[dynamic_of(r)] = r
        print(f"{'size':>4} {'batch':>5} {'static ms':>10} {'dynamic ms':>10} {'dyn/static':>10} "
              f"{'static setup s':>14} {'dynamic setup s':>15}")
        totals = {"static": [0.0, []], "dynamic": [0.0, []]}
        for (size, batch), pair in sorted(table.items()):
            cells = []
            for variant in ("static", "dynamic"):
                r = pair.get(variant, {})
                totals[variant][0] += r.get("setup_s") or 0.0
                if r.get("status") == "ok":
                    totals[variant][1].append(r["latency_ms_median"])
                cells.append(r)
            s, d = cells
            ok = s.get("status") == "ok" and d.get("status") == "ok"
            ratio = f"{d['latency_ms_median'] / s['latency_ms_median']:10.3f}" if ok else " " * 10
            med = [f"{c['latency_ms_median']:10.3f}" if c.get("status") == "ok"
                   else f"{c.get('status', '-'):>10}" for c in cells]
            print(f"{size:>4} {batch:>5} {med[0]} {med[1]} {ratio} "
                  f"{s.get('setup_s') or 0:14.2f} {d.get('setup_s') or 0:15.2f}")
        for variant, (setup, medians) in totals.items():
            print(f"  {variant:>7}: setup {setup:6.1f} s in total; "
                  f"median of medians {statistics.median(medians) if medians else float('nan'):.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
