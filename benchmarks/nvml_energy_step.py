"""How NVML's energy counter moves, and what a window's power reads as from its two ends against
from its edges (probes/counter_edges.py), side by side under one steady load.

    python3 benchmarks/nvml_energy_step.py [--windows 0.1,0.2,0.3,0.6,1.0] [--repeats 10]

1. Idle, then under a steady load (an 8192^2 fp32 matrix product in a loop on a thread): how
   often the counter changes (the gaps between changes), its steps, and what one read costs.
2. Under the same load, for each window length, ``--repeats`` windows each read both ways: at its
   two ends (what infersweep did before: the energy between the reads over the window) and from
   the edges seen by an EdgeRecorder polling through it. The reference is a 5 s window read from
   its edges. Prints each method's median and range against the reference.
Needs a CUDA GPU, torch and nvidia-ml-py.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time

import pynvml
import torch

from infersweep.probes.counter_edges import EdgeRecorder, power_from_edges


def characterise(read, seconds: float, label: str) -> None:
    """The counter polled every millisecond for ``seconds`` (the energy probe's EdgeRecorder, at
    a finer interval): how often it moved, by how much, and what a read took."""
    recorder = EdgeRecorder(read, interval_s=0.001)
    recorder.poll_for(seconds, min_edges=0)
    gaps = [b.t - a.t for a, b in zip(recorder.edges, recorder.edges[1:])]
    values = [recorder.reference] + [e.value for e in recorder.edges]
    steps = [b - a for a, b in zip(values, values[1:])]
    read_ms = (recorder.resolution_s - recorder.interval_s) * 1e3
    gap_text = (f"gaps median {1e3 * statistics.median(gaps):.1f} ms (min {1e3 * min(gaps):.1f}, "
                f"max {1e3 * max(gaps):.1f})" if gaps else "no two changes")
    print(f"{label}: {len(recorder.edges)} changes in {seconds:.0f} s, {gap_text}, "
          f"steps (mJ) {steps[:6]}, one read {read_ms:.2f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", default="0.1,0.2,0.3,0.6,1.0")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)

    def read() -> int:
        return int(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle))

    def joules(a: int, b: int) -> float:
        return (b - a) / 1000

    characterise(read, 2.0, "idle")
    x = torch.randn(8192, 8192, device="cuda")
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            for _ in range(10):
                x @ x
            torch.cuda.synchronize()

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    time.sleep(2.0)  # clocks and power settle
    characterise(read, 2.0, "busy")

    def window(seconds: float) -> tuple[float, float | None]:
        recorder = EdgeRecorder(read)
        recorder.start()
        start = time.monotonic()
        before = recorder.reference  # read as the window opened
        time.sleep(seconds)
        edges = recorder.stop()
        after, end = read(), time.monotonic()
        at_ends = joules(before, after) / (end - start)
        return at_ends, power_from_edges(edges, joules, end - start).watts

    reference = window(5.0)[1]
    print(f"reference: a 5 s window from its edges, {reference:.1f} W")
    print(f"{'window':>8} {'at ends: median':>16} {'range (% of ref)':>22} "
          f"{'edges: median':>14} {'range (% of ref)':>22} {'no figure':>9}")
    for seconds in (float(w) for w in args.windows.split(",")):
        ends, edged = [], []
        for _ in range(args.repeats):
            a, e = window(seconds)
            ends.append(a)
            if e is not None:
                edged.append(e)

        def pct(values: list[float]) -> str:
            if not values:
                return "-"
            return f"{100 * min(values) / reference:6.1f} .. {100 * max(values) / reference:6.1f}"

        print(f"{seconds:7.2f}s {statistics.median(ends):16.1f} {pct(ends):>22} "
              f"{statistics.median(edged) if edged else float('nan'):14.1f} {pct(edged):>22} "
              f"{args.repeats - len(edged):9d}")
    stop.set()
    worker.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
