"""What torch's AOT precompile would save a warm torch-compile shape: a function loaded with
``torch.compiler.load_compiled_function`` against torch.compile's first call on a warm
Inductor cache (Dynamo traces the shape again, builds guards, loads the FX graph).

    PYTHONPATH=src python3 benchmarks/aot_precompile.py --device cpu --size 64 --batches 2,4,8

A fill step compiles each shape (cold) and saves one AOT artefact per shape; then rounds of two
fresh processes, alternating: ``compile`` (torch.compile, dynamic=False, on the warm cache) and
``load`` (the saved artefacts). Each prints every shape's first call, load included, and the
median of ``--calls`` later calls of its last shape. A loaded function checks its guards from
Python on every call (torch 2.14.1: ``AOTCompiledFunction.__call__`` binds the arguments, then
runs the guard manager), where torch.compile checks them in Dynamo's frame hook: the call's host
cost differs, so it is a deployment of its own, which is why infersweep's torch-compile does not
use it by default (README, seed grid). Needs a torch with ``aot_compile`` on a compiled module's
forward and ``torch.compiler.load_compiled_function``.
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
mode, device, size, batches, folder, calls = sys.argv[1:7]
import torch, torchvision
torch.manual_seed(0)
model = torchvision.models.resnet18().eval().to(device)
out = {}
for b in [int(b) for b in batches.split(",")]:
    x = torch.randn(b, 3, int(size), int(size), device=device)
    path = f"{folder}/resnet18_{device}_{size}_{b}.aot"
    start = time.perf_counter()
    with torch.inference_mode():
        if mode == "fill":
            fn = torch.compile(model, dynamic=False, fullgraph=True).forward.aot_compile(
                ((x,), {}))
            fn.save_compiled_function(path)
            y = torch.compile(model, dynamic=False)(x)  # fills Inductor's cache for "compile"
        elif mode == "compile":
            compiled = torch.compile(model, dynamic=False)
            y = compiled(x)
        else:
            with open(path, "rb") as f:
                fn = torch.compiler.load_compiled_function(f)
            y = fn(model, x)
        if device == "cuda":
            torch.cuda.synchronize()
    out[b] = round(time.perf_counter() - start, 3)
if mode != "fill":  # the host cost of a call: the last shape, many times
    run = (lambda: compiled(x)) if mode == "compile" else (lambda: fn(model, x))
    times = []
    with torch.inference_mode():
        for _ in range(int(calls)):
            start = time.perf_counter()
            run()
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    out["call_ms"] = round(1e3 * sorted(times)[len(times) // 2], 4)
print("RESULT " + json.dumps(out))
"""


def run(mode: str, args, folder: str, env: dict) -> dict:
    cmd = [sys.executable, "-c", CHILD, mode, args.device, str(args.size), args.batches, folder,
           str(args.calls)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise SystemExit(f"{mode}: exit {proc.returncode}: {tail[0]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batches", default="2,4,8")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    if args.size < 32 or args.rounds < 1 or args.calls < 1:
        print(f"--size {args.size} / --rounds {args.rounds} / --calls {args.calls}: need a size "
              ">= 32, a round and a call", file=sys.stderr)
        return 2
    folder = tempfile.mkdtemp(prefix="aot_precompile_")
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": os.path.join(folder, "inductor"),
           "TRITON_CACHE_DIR": os.path.join(folder, "triton")}
    import torch

    print(f"# torch {torch.__version__}, {args.device}, resnet18 {args.size} px, "
          f"batches {args.batches}, {args.rounds} rounds of fresh processes, alternating")
    start = time.perf_counter()
    fill = run("fill", args, folder, env)
    print(f"fill (cold compile + AOT save per shape) {time.perf_counter() - start:.1f} s: {fill}")
    for rnd in range(args.rounds):
        for mode in ("compile", "load") if rnd % 2 == 0 else ("load", "compile"):
            times = run(mode, args, folder, env)
            call_ms = times.pop("call_ms")
            print(f"round {rnd + 1} {mode:8s} first call per shape (s): "
                  + ", ".join(f"bs{b} {t}" for b, t in times.items())
                  + f"; then a call {call_ms} ms (median of {args.calls})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
