"""What a worker's imports cost with and without infersweep's bytecode cache, in fresh processes.

    PYTHONPATH=src python3 benchmarks/bytecode_start.py --cache DIR [--rounds 4]
        [--imports torch,torchvision] [--cuda]

Each round starts two fresh interpreters, in alternating order: ``as-is`` has the environment
this script was started with (where PYTHONDONTWRITEBYTECODE is set and the packages ship no
``__pycache__``, every import compiles from source), ``infersweep`` the environment a sweep
gives its workers (``run/bytecode_cache.child_env``: bytecode kept under DIR/pycache). Each
child imports the modules, optionally makes a CUDA context, and reports its seconds. DIR's
pycache is emptied first: the first ``infersweep`` child fills it (a cold run's first worker)
and is shown apart; the medians are over the rounds after it.
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

from rounds import alternating  # benchmarks/rounds.py

CHILD = """
import json, sys, time
t = time.perf_counter()
for name in sys.argv[1].split(","):
    __import__(name)
imported = time.perf_counter() - t
if sys.argv[2] == "1":
    import torch
    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
print(json.dumps({"imports_s": imported, "to_ready_s": time.perf_counter() - t,
                  "prefix": sys.pycache_prefix}))
"""


def child(env: dict, imports: str, cuda: bool) -> dict:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, imports, "1" if cuda else "0"], env=env,
                          capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise SystemExit(f"child failed: {done.stderr[-2000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["process_s"] = time.perf_counter() - start
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--imports", default="torch,torchvision")
    parser.add_argument("--cuda", action="store_true")
    args = parser.parse_args()
    from infersweep.run.bytecode_cache import bytecode_prefix, child_env

    shutil.rmtree(args.cache / "pycache", ignore_errors=True)
    variants = {"as-is": dict(os.environ), "infersweep": child_env(dict(os.environ), args.cache)}
    print(f"python {sys.version.split()[0]}, PYTHONDONTWRITEBYTECODE="
          f"{os.environ.get('PYTHONDONTWRITEBYTECODE', '(unset)')}, infersweep's prefix: "
          f"{bytecode_prefix(args.cache) or 'none needed'}; imports {args.imports}"
          f"{' + CUDA context' if args.cuda else ''}; {args.rounds} rounds, order alternating")
    first = child(variants["infersweep"], args.imports, args.cuda)
    print(f"  infersweep, first (fills the cache): imports {first['imports_s']:.2f} s, "
          f"process {first['process_s']:.2f} s")
    seen = alternating(list(variants), args.rounds,
                       lambda name: child(variants[name], args.imports, args.cuda),
                       lambda x: f"imports {x['imports_s']:.2f} s / process {x['process_s']:.2f} s")
    med = {name: {k: statistics.median(x[k] for x in runs)
                  for k in ("imports_s", "to_ready_s", "process_s")}
           for name, runs in seen.items()}
    for name, m in med.items():
        print(f"{name:>10}: median imports {m['imports_s']:.2f} s, to ready {m['to_ready_s']:.2f} s,"
              f" process {m['process_s']:.2f} s")
    gain = med["as-is"]["process_s"] - med["infersweep"]["process_s"]
    print(f"infersweep's worker env saves {gain:.2f} s per process start (median of {args.rounds})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
