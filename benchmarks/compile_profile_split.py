"""Where a torch-compile worker's per-shape setup goes, from a py-spy profile of a whole sweep.

    py-spy record --subprocesses --nonblocking -r 100 -f speedscope -o sweep.json -- \
        python3 -m infersweep run --backends torch-compile ...
    python3 benchmarks/compile_profile_split.py sweep.json [--shapes 12]

``CompiledSession.specialize`` is what a torch-compile case pays before its first timed run (its
``info.compile_s``). Its samples (the torch-compile worker's main thread) are split by what their
stack holds, innermost reason first:
- dynamo tracing: Dynamo translating the forward's bytecode into an FX graph (every shape again,
  cache or not);
- inductor (call_user_compiler): the call into AOTAutograd and Inductor: on a warm cache their
  FX-graph cache hit, loading the compiled module;
- guards: building the guards that say when the compiled code may be reused;
- first run: the compiled graph's first call (torch runs it under a dispatch mode that checks
  custom ops' aliasing, so every op goes through Python once); here the convolutions run cuDNN's
  algorithm search (cudnn_benchmark) and Triton's kernels are loaded;
- other: the rest of specialize (Dynamo's own bookkeeping, the second and third runs).
Timed phases, the group's model build and the worker's preload are shown beside it for scale.

py-spy drops a thread's idle samples (waiting on the GPU or a lock), so the seconds are CPU-busy
time at the sampling rate, not wall time: compare them with the rows' ``compile_s``. With
``--nonblocking`` it also fails to read some stacks of the running process (it prints "Errors: N"
at the end; 15-21% of the samples on the H200 in session 14): the figures are lower bounds.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections import Counter

SPECIALIZE = "CompiledSession.specialize"
PARTS = ("dynamo tracing", "inductor (call_user_compiler)", "guards", "first run", "other")


def classify(names: list[str]) -> str:
    """What one sample of the worker's main thread was doing (its frames' names, root first)."""
    if SPECIALIZE in names:
        if "_compile" in names:
            if any("call_user_compiler" in n for n in names):
                return "inductor (call_user_compiler)"
            if any("CheckFunctionManager" in n or n == "build_guards" for n in names):
                return "guards"
            if "transform_code_object" in names:
                return "dynamo tracing"
            return "other"
        if any(n in ("CompiledFxGraph.__call__",
                     "_AnalyzeCustomOpInputOutputMode.__torch_dispatch__") for n in names):
            return "first run"
        return "other"
    if "GroupRunner._measure" in names:
        return "timed phase (warmup, timed runs)"
    if "preload" in names:
        return "worker preload"
    return "rest of the worker"


class NotAProfile(ValueError):
    """The file is JSON but not a torch-compile sweep's speedscope profile."""


def split(profile: dict) -> tuple[str, Counter]:
    """(the thread's name, seconds per part) of the thread that ran
    specialize most: the torch-compile worker's main thread."""
    try:
        return _split(profile)
    except (KeyError, TypeError, IndexError) as exc:
        raise NotAProfile(f"not py-spy's speedscope format ({exc!r} missing or malformed)")


def _split(profile: dict) -> tuple[str, Counter]:
    frames = [f["name"] for f in profile["shared"]["frames"]]
    best = None
    for thread in profile["profiles"]:
        stacks = [[frames[i] for i in sample] for sample in thread["samples"]]
        hits = sum(SPECIALIZE in names for names in stacks)
        if hits and (best is None or hits > best[0]):
            best = (hits, thread, stacks)
    if best is None:
        raise NotAProfile("no thread ran CompiledSession.specialize: not a torch-compile "
                          "sweep's profile (py-spy record --subprocesses ... -f speedscope)")
    _, thread, stacks = best
    weights = thread.get("weights") or [1] * len(stacks)
    seconds = Counter()
    for names, weight in zip(stacks, weights):
        seconds[classify(names)] += weight
    unit = {"seconds": 1.0, "milliseconds": 1e-3, "microseconds": 1e-6}.get(thread.get("unit"),
                                                                          1.0)
    return thread["name"], Counter({k: v * unit for k, v in seconds.items()})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", help="py-spy's speedscope JSON (.json or .json.gz)")
    parser.add_argument("--shapes", type=int, default=0,
                        help="how many shapes the worker compiled: adds a per-shape column")
    args = parser.parse_args()
    if args.shapes < 0:
        print(f"--shapes: {args.shapes} is negative", file=sys.stderr)
        return 2
    opener = gzip.open if args.profile.endswith(".gz") else open
    try:
        with opener(args.profile, "rt") as f:
            profile = json.load(f)
    except (OSError, ValueError) as exc:
        print(f"{args.profile}: not a readable speedscope profile ({exc})", file=sys.stderr)
        return 2
    try:
        name, seconds = split(profile)
    except NotAProfile as exc:
        print(f"{args.profile}: {exc}", file=sys.stderr)
        return 2
    print(f"# {args.profile}: {name}")
    total = sum(seconds[p] for p in PARTS)
    per = f"  per shape ({args.shapes})" if args.shapes else ""
    print(f"  {'specialize (compile_s), CPU-busy':36s} {total:7.2f} s{per}")
    for part in PARTS:
        extra = f"  {seconds[part] / args.shapes:6.3f} s" if args.shapes else ""
        print(f"    {part:34s} {seconds[part]:7.2f} s{extra}")
    for part in sorted(set(seconds) - set(PARTS)):
        print(f"  {part:36s} {seconds[part]:7.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
