"""Check infersweep's CPU latencies against a bare, hand-written timing loop.

    .venv/bin/python benchmarks/cpu_reference.py [--out DIR] [--batches 1,8]

Runs `python -m infersweep run ...` (resnet18, torch + onnxruntime, cpu, fp32, 224 px), reads the
medians from results.csv, then times the same cases with the simplest loop that can be trusted,
each in a fresh process (like infersweep's workers, so neither inherits the other's threads,
allocator or caches). ONNX Runtime runs on the very ONNX file infersweep exported, so any
difference is in how the time is taken, not in what is run. PASS if the medians agree within 3%.
Exit code 0 only if every case passes.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOLERANCE = 0.03
WARMUP_S = 3.0  # long enough for lazy init, allocator growth and CPU clocks to settle
TIMED_S = 10.0  # the same as infersweep's default --max-time, so both see similar noise
MIN_ITERS = 30  # and at least this many samples, for a stable median even at large batches
SIZE = 224


def reference(backend: str, batch: int, onnx_path: str) -> dict:
    """The reference loop, run in its own process: build, warm up, time, median. Nothing else."""
    import contextlib

    import numpy as np

    if backend == "torch":
        import torch
        import torchvision

        torch.manual_seed(0)  # infersweep's default seed: same random-init weights
        model = torchvision.models.resnet18().eval()
        x = torch.randn(batch, 3, SIZE, SIZE)

        def step():
            model(x)
        mode = torch.inference_mode()
    else:  # no torch import here: a bare ORT process, no second thread pool around
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal((batch, 3, SIZE, SIZE), dtype=np.float32)

        def step():
            sess.run(None, {"input": x})
        mode = contextlib.nullcontext()

    with mode:
        end = time.perf_counter() + WARMUP_S
        while time.perf_counter() < end:
            step()
        samples = []
        end = time.perf_counter() + TIMED_S
        while time.perf_counter() < end or len(samples) < MIN_ITERS:
            t0 = time.perf_counter_ns()
            step()
            samples.append((time.perf_counter_ns() - t0) / 1e6)
    return {"median_ms": statistics.median(samples), "n": len(samples)}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), platform.processor())
    return f"{cpu}, {len(os.sched_getaffinity(0))} usable cores ({os.cpu_count()} logical)"


def cpu_clock() -> tuple[float, float, float]:
    """(busy CPU-seconds of the whole machine, of us and our waited-for descendants, wall)."""
    f = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(f) - f[3] - f[4]  # everything but idle and iowait (steal included: it is lost too)
    t = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), t.children_user + t.children_system, time.time()


def foreign_load(a, b) -> float:
    """Share of the machine used by someone else between two cpu_clock() readings: on a shared
    2-core box another job easily doubles a latency, and then no comparison means anything."""
    return max(0.0, (b[0] - a[0]) - (b[1] - a[1])) / ((b[2] - a[2]) * (os.cpu_count() or 1))


def run_reference(backend: str, batch: int, onnx_path: str, env: dict) -> dict:
    # A fresh interpreter per case: the reference never shares a process with anything else.
    out = subprocess.run([sys.executable, __file__, "--_ref", backend, str(batch), onnx_path],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, help="infersweep run directory [a temp dir]")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--_ref", nargs=3, help=argparse.SUPPRESS)  # internal: one reference loop
    args = p.parse_args()
    if args._ref:
        backend, batch, onnx_path = args._ref
        print(json.dumps(reference(backend, int(batch), onnx_path)))
        return 0

    work = Path(tempfile.mkdtemp(prefix="cpu_reference-"))
    out = args.out or work / "run"
    # A fresh cache dir holds exactly one export: the one infersweep is about to time.
    env = {**os.environ, "INFERSWEEP_CACHE": str(work / "cache")}
    batches = [int(b) for b in args.batches.split(",")]
    cmd = [sys.executable, "-m", "infersweep", "run", "--model", "resnet18",
           "--backends", "torch,onnxruntime", "--devices", "cpu", "--precisions", "fp32",
           "--sizes", str(SIZE), "--batches", args.batches, "--out", str(out), "--fresh"]
    print(f"machine: {machine()}")
    print(f"command: INFERSWEEP_CACHE={env['INFERSWEEP_CACHE']} {shlex.join(cmd)}", flush=True)

    c0 = cpu_clock()
    subprocess.run(cmd, env=env, check=True)
    c1 = cpu_clock()
    sweep_load = foreign_load(c0, c1)
    print(f"infersweep took {c1[2] - c0[2]:.0f} s; other load {sweep_load:.0%}", flush=True)

    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    sweep = {(r["backend"], int(r["batch_size"])): r for r in rows if r["device"] == "cpu"}
    onnx_files = list((work / "cache" / "onnx").glob("*/model.onnx"))
    if len(onnx_files) != 1:
        sys.exit(f"expected exactly one cached ONNX file, found {onnx_files}")

    # Right after infersweep, in its order (torch then onnxruntime, batches ascending), so both
    # measure each case in a similar machine state.
    ok = True
    lines = []
    for backend in ("torch", "onnxruntime"):
        for batch in batches:
            row = sweep.get((backend, batch))
            c0 = cpu_clock()
            ref = run_reference(backend, batch, str(onnx_files[0]), env)
            load = f"other load {sweep_load:.0%}/{foreign_load(c0, cpu_clock()):.0%}"
            if row is None or row["status"] != "ok":
                lines.append((backend, batch, "—", f"{ref['median_ms']:.2f}", "—", "FAIL",
                              f"infersweep status {row and row['status']}"))
                ok = False
                continue
            ours = float(row["latency_ms_median"])
            diff = (ours - ref["median_ms"]) / ref["median_ms"]
            passed = abs(diff) <= TOLERANCE
            ok &= passed
            lines.append((backend, batch, f"{ours:.2f}", f"{ref['median_ms']:.2f}",
                          f"{diff:+.1%}", "PASS" if passed else "FAIL",
                          f"n={row['iterations']}/{ref['n']}; {load}"
                          + (f"; {row['warnings']}" if row["warnings"] else "")))
            print("  " + "  ".join(map(str, lines[-1])), flush=True)

    header = ("backend", "batch", "infersweep ms", "reference ms", "diff", "result", "notes")
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    print()
    for line in (header, *lines):
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip())
    print(f"\n{'ALL PASS' if ok else 'SOME FAIL'} (tolerance +-{TOLERANCE:.0%}); "
          f"infersweep results in {out}")
    print("notes: n = timed iterations infersweep/reference; other load = CPU used by other "
          "processes during the infersweep run/the reference loop (should be ~0%)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
