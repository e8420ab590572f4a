"""How far one case's median moves between fresh processes, in a hand-written loop (no infersweep).

    python3 benchmarks/process_spread.py [--rounds 5] [--batch 16] [--size 224] [--precision fp16]

On the H200 the launch-bound cases of the seed grid (resnet18 at 1-3.5 ms per batch, torch eager
and torch.compile) moved up to 1.8x between two processes of infersweep's fast path and of its
old path alike. This script asks whether the machine does that to any loop: each round starts one
fresh process per variant, interleaved (A B A B ...), and each process builds resnet18 (random
weights, fixed seed), warms up, then times each synchronized call for a few seconds.
Variants:
- ``free``: the process may run on every core (what a hand-written script gets);
- ``one-core``: the process is pinned to a single core (``os.sched_setaffinity``) before torch
  starts, so the launching thread cannot migrate between cores (nor can the driver's threads);
- ``main-thread``: only the thread that launches and times is pinned to a single core, after the
  model and input are on the device (the CUDA driver's threads keep every core).
Each process also says on which core it ended, the GPU's SM clock before and after the timed
phase (NVML, when nvidia-ml-py is installed) and its voluntary/involuntary context switches.
Printed: every process's median, then per variant the median of medians and max/min.
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

VARIANTS = ("free", "one-core", "main-thread")


def _sm_clock():
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        return pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)
    except Exception:
        return None


def _ctx_switches() -> dict:
    found = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if "ctxt_switches" in line:
            name, value = line.split(":")
            found[name] = int(value)
    return found


def child(args) -> None:
    """One process: build, warm up, time; one JSON line on stdout."""
    import numpy as np
    import torch
    import torchvision

    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = {"fp16": torch.float16, "fp32": torch.float32}[args.precision]
    if device == "cpu":
        dtype = torch.float32
    torch.backends.cudnn.benchmark = True
    model = torchvision.models.resnet18().eval().to(device, dtype=dtype)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(
        (args.batch, 3, args.size, args.size), dtype=np.float32)).to(device, dtype=dtype)

    def call():
        with torch.inference_mode():
            model(x)
        if device == "cuda":
            torch.cuda.synchronize()

    if args.pin_main is not None:  # pid 0: the calling thread only (Linux)
        os.sched_setaffinity(0, {args.pin_main})
    end = time.perf_counter() + args.warmup
    while time.perf_counter() < end:
        call()
    clock_before = _sm_clock()
    samples = []
    end = time.perf_counter() + args.seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - t0)
    clock_after = _sm_clock()
    core = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[36])
    print(json.dumps({"median_ms": statistics.median(samples) / 1e6, "n": len(samples),
                      "p10_ms": float(np.percentile(samples, 10)) / 1e6,
                      "p90_ms": float(np.percentile(samples, 90)) / 1e6,
                      "cpus": len(os.sched_getaffinity(0)), "last_core": core,
                      "sm_clock_before": clock_before, "sm_clock_after": clock_after,
                      "device": device, **_ctx_switches()}))


def run_one(variant: str, round_no: int, args) -> dict:
    cmd = [sys.executable, __file__, "--child", "--batch", str(args.batch), "--size",
           str(args.size), "--precision", args.precision, "--seconds", str(args.seconds),
           "--warmup", str(args.warmup)]
    cores = sorted(os.sched_getaffinity(0))
    core = cores[round_no % len(cores)]  # a different core each round
    if variant == "main-thread":
        cmd += ["--pin-main", str(core)]
    preexec = (lambda: os.sched_setaffinity(0, {core})) if variant == "one-core" else None
    start = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=preexec, check=True)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row.update(variant=variant, round=round_no, process_s=time.monotonic() - start)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--precision", default="fp16", choices=("fp16", "fp32"))
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--pin-main", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    variants = args.variants.split(",")
    print(f"resnet18 eager {args.precision} {args.size}px bs{args.batch}: {args.rounds} rounds, "
          f"one fresh process per variant per round, interleaved; {args.warmup} s warmup, "
          f"{args.seconds} s timed")
    print(f"{'round':>5} {'variant':<11} {'median ms':>9} {'p10':>7} {'p90':>7} {'n':>6} "
          f"{'core':>4} {'SM MHz before/after':>19} {'ctx vol/invol':>14}")
    rows = []
    for r in range(args.rounds):
        for variant in variants:
            row = run_one(variant, r, args)
            rows.append(row)
            clocks = f"{row['sm_clock_before']}/{row['sm_clock_after']}"
            switches = (f"{row.get('voluntary_ctxt_switches')}/"
                        f"{row.get('nonvoluntary_ctxt_switches')}")
            print(f"{r:>5} {variant:<11} {row['median_ms']:>9.3f} {row['p10_ms']:>7.3f} "
                  f"{row['p90_ms']:>7.3f} {row['n']:>6} {row['last_core']:>4} {clocks:>19} "
                  f"{switches:>14}", flush=True)
    for variant in variants:
        medians = [row["median_ms"] for row in rows if row["variant"] == variant]
        print(f"{variant:<11}: median of medians {statistics.median(medians):.3f} ms, "
              f"min {min(medians):.3f}, max {max(medians):.3f}, max/min "
              f"{max(medians) / min(medians):.3f} over {len(medians)} processes")


if __name__ == "__main__":
    main()
