"""infersweep against a timm-style benchmark loop on the same GPU case, in interleaved rounds.

    PYTHONPATH=src python3 benchmarks/timm_peer.py [--rounds 3] [--batch 256]

The case: resnet18, 224 px, fp16, channels_last, CUDA. Each round runs, each in a fresh process,
(1) infersweep's torch backend (cuDNN autotuning on, its default on CUDA) and (2) a loop written
after timm's benchmark.py as its documentation describes it: timm.create_model, eval, the model
and a random input converted to half and channels_last, cudnn.benchmark on, a few warmup steps,
then steps timed with a host clock around a synchronized forward; it reports the mean step time.
The peer's median is printed too, so the statistic is not what differs. Every process records the
GPU's SM clock and throttle reasons before and after (NVML), so a gap between rounds can be read
against the state the GPU was in. PASS when the medians over rounds agree within 2%.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOLERANCE = 0.02
SIZE = 224
WARMUP_STEPS = 10  # timm's benchmark.py defaults: 10 warmup and 40 timed steps
BENCH_STEPS = 40


def gpu_state() -> dict:
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        return {"sm_mhz": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
                "throttle": int(pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(h)),
                "temp_c": pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)}
    except Exception as exc:  # no NVML: say so rather than guess
        return {"error": str(exc)}


def timm_loop(batch: int) -> dict:
    import timm
    import torch

    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False).eval().cuda().half()
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, SIZE, SIZE, device="cuda", dtype=torch.half)
    x = x.contiguous(memory_format=torch.channels_last)
    before = gpu_state()
    times = []
    with torch.no_grad():
        for step in range(WARMUP_STEPS + BENCH_STEPS):
            torch.cuda.synchronize()
            start = time.perf_counter()
            model(x)
            torch.cuda.synchronize()
            if step >= WARMUP_STEPS:
                times.append((time.perf_counter() - start) * 1000)
    return {"mean_ms": statistics.fmean(times), "median_ms": statistics.median(times),
            "gpu_before": before, "gpu_after": gpu_state()}


def infersweep_case(out: Path, batch: int) -> dict:
    before = gpu_state()
    cmd = [sys.executable, "-m", "infersweep", "run", "--backends", "torch", "--devices", "cuda",
           "--precisions", "fp16", "--channels-last", "--sizes", str(SIZE), "--batches",
           str(batch), "--max-time", "5", "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    row = json.loads((out / "results.json").read_text())["results"][0]
    return {"median_ms": row["latency_ms_median"], "mean_ms": row["latency_ms_mean"],
            "noise": row.get("noise"), "cudnn_benchmark": row["info"].get("cudnn_benchmark"),
            "gpu_state": row["info"].get("gpu_state"), "gpu_before": before,
            "gpu_after": gpu_state()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(timm_loop(args.batch)))
        return 0
    ours, peer = [], []
    with tempfile.TemporaryDirectory(prefix="infersweep-timm-peer-") as tmp:
        for r in range(args.rounds):
            first = r % 2 == 0  # alternate who goes first: neither always gets the cooler GPU
            for who in (("infersweep", "timm") if first else ("timm", "infersweep")):
                if who == "infersweep":
                    ours.append(infersweep_case(Path(tmp) / f"run{r}", args.batch))
                else:
                    done = subprocess.run([sys.executable, __file__, "--child", "--batch",
                                           str(args.batch)], check=True, capture_output=True,
                                          text=True)
                    peer.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1}: infersweep median {ours[-1]['median_ms']:.3f} ms "
                  f"(noise: {ours[-1]['noise'] or 'none'}, cudnn.benchmark "
                  f"{ours[-1]['cudnn_benchmark']}); timm-style mean {peer[-1]['mean_ms']:.3f} ms, "
                  f"median {peer[-1]['median_ms']:.3f} ms; GPU before/after infersweep "
                  f"{ours[-1]['gpu_before']} / {ours[-1]['gpu_after']}, timm "
                  f"{peer[-1]['gpu_before']} / {peer[-1]['gpu_after']}", flush=True)
    a = statistics.median(o["median_ms"] for o in ours)
    b = statistics.median(p["mean_ms"] for p in peer)
    b_median = statistics.median(p["median_ms"] for p in peer)
    diff = a / b - 1
    verdict = "PASS" if abs(diff) <= TOLERANCE else "FAIL"
    print(f"resnet18 {SIZE}px fp16 channels_last bs{args.batch}, {args.rounds} interleaved rounds, "
          f"fresh process each: infersweep {a:.3f} ms vs timm-style {b:.3f} ms (mean; its median "
          f"{b_median:.3f} ms): {diff:+.1%} {verdict} (tolerance {TOLERANCE:.0%})")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
