"""What a new input shape costs before its first timed run, on a warm cache: torch eager's first
runs (cuDNN's benchmark mode tries each convolution's algorithms) and torch.compile's first call
(Dynamo traces, Inductor's caches are read, and the convolutions, extern kernels, autotune in cuDNN
the same way). Diagnosis for issue 16: on the H200 a torch-compile shape cost ~1.6 s of setup on
a warm cache and eager's first runs ~0.7 s per case.

    PYTHONPATH=src python3 benchmarks/shape_setup.py --device cuda --precision fp16

Each mode runs in a fresh process, one after another (never two on the GPU at once), on one
Inductor/Triton cache that a first, unreported, compile run fills:
- eager: the first run of each batch (cuDNN benchmark on), then the second;
- eager-nobench: the same with cuDNN's benchmark mode off (what the autotuning costs);
- compile: torch.compile (mode default, dynamic=False) per batch: the first call, with
  torch._dynamo's own split of its compile time, and the second;
- compile-nobench: the same with cuDNN's benchmark mode off: how much of a compiled shape's
  first call is cuDNN's algorithm search (on the H200 in session 14, py-spy saw Dynamo busy
  ~0.4-0.5 s of a warm shape's 1.0-1.9 s in a sweep and the first call's ops another ~0.4-0.5 s,
  both lower bounds: benchmarks/compile_profile_split.py);
- compile-after-eager: in one process, eager runs each shape first, then torch.compile's first
  call: what is left of a compiled shape's setup when cuDNN already knows the convolutions (their
  layout may differ: Inductor may pick channels-last);
- compile-sampled (CUDA): torch.compile's first calls with infersweep's GPU memory sampler
  running, as it does through a case's setup in a sweep (NVML every 10 ms, on a thread). In the
  H200 seed grid of session 13 a warm torch-compile shape took 1.8-2.3 s of setup in the
  worker's first seven groups and 1.1-1.4 s in its last (standalone here: 0.9-1.8 s); a sampler
  whose NVML calls take ~4 ms there is one suspect;
- compile-gil-sampler: the same with a stand-in that runs anywhere: a thread in 4 ms C calls that
  release the GIL (libc usleep), two every 10 ms, as that sampler's NVML reads on the H200.
``--profile`` adds cProfile's top functions of the compile mode's second shape.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, sys, time
mode, device, precision, size, batches, profile = sys.argv[1:7]
batches = [int(b) for b in batches.split(",")]
start = time.perf_counter()
import torch, torchvision
imported = time.perf_counter() - start
torch.manual_seed(0)
torch.backends.cudnn.benchmark = not mode.endswith("-nobench")
dtype = torch.float16 if precision == "fp16" and device == "cuda" else torch.float32
model = torchvision.models.resnet18().eval().to(device=device, dtype=dtype)

def sync():
    if device == "cuda":
        torch.cuda.synchronize()

def timed(fn, x):
    t = time.perf_counter()
    with torch.inference_mode():
        fn(x)
    sync()
    return round(time.perf_counter() - t, 3)

out = {"mode": mode, "import_s": round(imported, 2), "shapes": {}}
compiled = torch.compile(model, dynamic=False) if mode.startswith("compile") else None
sampler = None
if mode == "compile-gil-sampler":
    import ctypes, threading
    libc, halt = ctypes.CDLL(None), threading.Event()
    class StandIn:
        def stop(self):
            halt.set()
            return None
    def stand_in():
        while not halt.wait(0.01):
            for _ in range(2):
                libc.usleep(4000)
    threading.Thread(target=stand_in, daemon=True).start()
    sampler = StandIn()
if mode == "compile-sampled":
    from infersweep.probes.gpu_memory import GpuMemorySampler
    sampler = GpuMemorySampler()
    sampler.start()
for i, b in enumerate(batches):
    x = torch.randn(b, 3, int(size), int(size), device=device, dtype=dtype)
    row = {}
    if mode.startswith("eager") or mode == "compile-after-eager":
        row["eager_first_s"] = timed(model, x)
        row["eager_second_s"] = timed(model, x)
    if compiled is not None:
        before = dict(torch._dynamo.utils.counters["inductor"])
        if profile == "1" and i == 1:
            import cProfile, io, pstats
            prof = cProfile.Profile()
            prof.enable()
            row["compile_first_s"] = timed(compiled, x)
            prof.disable()
            text = io.StringIO()
            pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(40)
            out["profile"] = text.getvalue()
        else:
            row["compile_first_s"] = timed(compiled, x)
        row["compile_second_s"] = timed(compiled, x)
        row["compile_third_s"] = timed(compiled, x)
        after = torch._dynamo.utils.counters["inductor"]
        row["fx_graph_cache_hit"] = after["fxgraph_cache_hit"] - before.get("fxgraph_cache_hit", 0)
    out["shapes"][b] = row
if sampler is not None:
    out["sampler_peak"] = sampler.stop()
if compiled is not None:
    try:
        out["dynamo_compile_times"] = torch._dynamo.utils.compile_times(repr="str",
                                                                         aggregate=True)
    except Exception as exc:
        out["dynamo_compile_times"] = repr(exc)
print("RESULT " + json.dumps(out))
"""

MODES = ("eager", "eager-nobench", "compile", "compile-nobench", "compile-after-eager",
         "compile-sampled", "compile-gil-sampler")


def run(mode: str, args, env: dict, profile: bool = False) -> dict:
    cmd = [sys.executable, "-c", CHILD, mode, args.device, args.precision, str(args.size),
           args.batches, "1" if profile else "0"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{mode}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    result["process_s"] = round(wall, 2)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="fp16", choices=("fp32", "fp16"))
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batches", default="16,32,64")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--modes", default=",".join(MODES), help="a subset, in this order")
    args = parser.parse_args()
    cache = tempfile.mkdtemp(prefix="shape_setup_")
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": os.path.join(cache, "inductor"),
           "TRITON_CACHE_DIR": os.path.join(cache, "triton")}
    fill = run("compile", args, env)
    print(f"# cache filled (cold compile) in {fill['process_s']} s: "
          + ", ".join(f"bs{b} {r['compile_first_s']} s" for b, r in fill["shapes"].items()))
    modes = [m for m in args.modes.split(",")
             if m in MODES and (args.device == "cuda" or m != "compile-sampled")]
    for rnd in range(args.rounds):
        for mode in modes:
            result = run(mode, args, env, profile=args.profile and mode == "compile" and rnd == 0)
            print(f"round {rnd + 1} {mode:20s} process {result['process_s']:6.2f} s, "
                  f"import {result['import_s']:.2f} s")
            for b, row in result["shapes"].items():
                print(f"    bs{b:>4}: " + ", ".join(f"{k} {v}" for k, v in row.items()))
            if "dynamo_compile_times" in result and rnd == 0:
                print("    dynamo compile times:\n" + "\n".join(
                    "      " + ln for ln in str(result["dynamo_compile_times"]).splitlines()))
            if "profile" in result:
                print("    cProfile, second shape's first call (top cumulative):\n" + "\n".join(
                    "      " + ln for ln in result["profile"].splitlines()[:70]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
