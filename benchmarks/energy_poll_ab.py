"""Does the energy probe's poller move a GPU median? A timed loop with the EdgeRecorder thread
polling NVML's energy counter (every 10 ms, as in a sweep) against the same loop without it.

    python3 benchmarks/energy_poll_ab.py [--batches 16,64] [--windows 20] [--window-s 0.3]

Medians of host-bound loops move up to 2.3x between processes on the H200 (process_spread.py),
so the comparison is inside one process per case: resnet18 eager fp16 (torch, cuDNN benchmark
mode), ``--windows`` timed windows alternating with and without the poller (ABAB...), each
window's median per-run latency kept; the report gives the median of each side's window medians
and their ratio. A small batch is host-bound (the launching thread sets the pace: where a poller
would show), a large one GPU-bound. Needs a CUDA GPU, torch, torchvision and nvidia-ml-py.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import pynvml
import torch
import torchvision

from infersweep.probes.counter_edges import EdgeRecorder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="16,64")
    parser.add_argument("--windows", type=int, default=20)
    parser.add_argument("--window-s", type=float, default=0.3)
    args = parser.parse_args()
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    model = torchvision.models.resnet18().eval().cuda().half()
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, resnet18 eager fp16, "
          f"{args.windows} windows of {args.window_s} s per case, alternating")
    for batch in (int(b) for b in args.batches.split(",")):
        x = torch.randn(batch, 3, 224, 224, device="cuda", dtype=torch.float16)
        with torch.inference_mode():
            for _ in range(50):  # warm: cuDNN's search, clocks
                model(x)
            torch.cuda.synchronize()
            medians: dict[bool, list[float]] = {False: [], True: []}
            for w in range(args.windows):
                polled = w % 2 == 1
                recorder = EdgeRecorder(
                    lambda: int(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)))
                if polled:
                    recorder.start()
                samples, end = [], time.perf_counter() + args.window_s
                while time.perf_counter() < end:
                    t = time.perf_counter_ns()
                    model(x)
                    torch.cuda.synchronize()
                    samples.append((time.perf_counter_ns() - t) / 1e6)
                edges = recorder.stop()
                medians[polled].append(statistics.median(samples))
                if polled and not edges:
                    print(f"  window {w}: the poller saw no edge")
        plain, polled = (statistics.median(medians[k]) for k in (False, True))
        print(f"bs{batch:>4}: without poller {plain:.4f} ms (windows "
              f"{min(medians[False]):.4f}-{max(medians[False]):.4f}), with {polled:.4f} ms "
              f"({min(medians[True]):.4f}-{max(medians[True]):.4f}); with/without "
              f"{polled / plain:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
