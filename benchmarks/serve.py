"""The server scenario: max QPS under a p99 bound per runtime, and the harness's own overhead.

    .venv/bin/python benchmarks/serve.py [--p99-ms 20] [--max-batch 1,8] [--duration 2]
        [--backends torch,onnxruntime] [--devices cpu] [--precisions fp32] [--sizes 64]
        [--pad-batches]

The defaults are the CPU case (resnet18 at 64 px, torch and onnxruntime); on a GPU, e.g.
``--devices cuda --precisions fp16 --sizes 224 --backends torch,torch-compile,onnxruntime``.

1. Harness overhead: the serving loop (measure/server.py: precomputed Poisson schedule, batcher,
   real clock and sleep) with a no-op model, at rates up to far beyond any CPU model: the rate
   it sustains (achieved against scheduled QPS) and the latency it adds to each request (with a
   no-op model a request's whole latency is the harness's: its wait for the batcher's deadline
   when max_delay > 0, the loop's reaction time when 0).
2. The sweep: `infersweep run --scenarios server --find-max-qps` in a temporary run directory,
   then its report's Scenarios section.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from infersweep.measure.arrivals import poisson_schedule  # noqa: E402
from infersweep.measure.server import ServerRules, serve, summarize_run  # noqa: E402


def harness_overhead(rates: list[float], duration_s: float) -> None:
    print("## Harness overhead (no-op model)\n")
    print("| max_batch | max_delay | target QPS | scheduled QPS | achieved QPS | mean batch "
          "| added latency p50 | p99 | valid |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for max_batch, delay_ms in ((1, 0.0), (8, 0.0), (8, 2.0)):
        for rate in rates:
            schedule = poisson_schedule(rate, 0, 100, duration_s)
            run = serve(lambda n: None, schedule, max_batch, delay_ms / 1e3)
            s = summarize_run(run, ServerRules(min_duration_s=duration_s, min_requests=100))
            print(f"| {max_batch} | {delay_ms:g} ms | {rate:g} | {s.scheduled_qps:.0f} "
                  f"| {s.achieved_qps:.0f} | {s.mean_batch:.2f} "
                  f"| {np.percentile(run.latency_ms, 50) * 1e3:.0f} us "
                  f"| {s.request_ms_p99 * 1e3:.0f} us | {'yes' if s.valid else s.invalid_reason} |")
    print()


def sweep(args) -> None:
    print(f"## resnet18 {args.sizes} px on {args.devices}, {args.precisions}: max QPS under p99 "
          f"{args.p99_ms:g} ms\n")
    out = args.out or Path(tempfile.mkdtemp(prefix="serve-")) / "run"
    command = [sys.executable, "-m", "infersweep", "run", "--backends", args.backends,
               "--devices", args.devices, "--precisions", args.precisions,
               "--sizes", args.sizes, "--scenarios", "server", "--find-max-qps",
               "--p99-ms", str(args.p99_ms), "--max-batch", args.max_batch,
               "--max-delay-ms", args.max_delay_ms, "--server-min-duration", str(args.duration),
               "--server-min-requests", "100", "--qps-resolution", "0.05", "--out", str(out),
               *(["--pad-batches"] if args.pad_batches else [])]
    print("    " + " ".join(command[1:]) + "\n")
    start = time.perf_counter()
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.run(command, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": path})
    print(f"(exit {proc.returncode}, {time.perf_counter() - start:.0f} s)\n")
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:])
        return
    report = (out / "report.md").read_text()
    section = report.split("## Scenarios", 1)[1].split("\n## ", 1)[0]
    print("### Scenarios (from report.md)" + section)
    print(f"\nrun directory: {out}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--p99-ms", type=float, default=100.0)
    parser.add_argument("--max-batch", default="1,8")
    parser.add_argument("--max-delay-ms", default="2")
    parser.add_argument("--duration", type=float, default=2.0,
                        help="seconds of arrivals per trial (LoadGen's minimum is 10)")
    parser.add_argument("--backends", default="torch,onnxruntime")
    parser.add_argument("--devices", default="cpu")
    parser.add_argument("--precisions", default="fp32")
    parser.add_argument("--sizes", default="64")
    parser.add_argument("--pad-batches", action="store_true",
                        help="run every batch at --max-batch (one input shape)")
    parser.add_argument("--out", type=Path, help="run directory (default: a temporary one)")
    parser.add_argument("--overhead-rates", default="1000,10000,50000")
    parser.add_argument("--skip-sweep", action="store_true")
    args = parser.parse_args()
    harness_overhead([float(r) for r in args.overhead_rates.split(",")], args.duration)
    if not args.skip_sweep:
        sweep(args)


if __name__ == "__main__":
    main()
