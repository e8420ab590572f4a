"""A few hundred tiny cases: does the parent stay flat (memory, file descriptors, processes)?

    .venv/bin/python benchmarks/long_sweep.py [--sizes 30] [--batches 10]

Runs `infersweep run` over sizes x batches cases of the test-only `fault-ok` backend (a tiny numpy
computation in a real worker process, loaded from tests/fault_backend.py), samples the parent's
RSS and open file descriptors from /proc every 0.2 s, and after the sweep checks that no worker
is left. Prints the figures; exit code 0 only if RSS grew by less than 50 MB from the first to the
last quarter of the sweep, the fd count did not grow, and no process was left behind.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, default=30)
    parser.add_argument("--batches", type=int, default=10)
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="infersweep-long-")) / "run"
    env = {**os.environ, "INFERSWEEP_BACKEND_MODULES": "fault_backend",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT / "src")])}
    env.setdefault("INFERSWEEP_CACHE", tempfile.mkdtemp(prefix="infersweep-long-cache-"))
    cmd = [sys.executable, "-m", "infersweep", "run", "--backends", "fault-ok",
           "--sizes", ",".join(str(8 + i) for i in range(args.sizes)),
           "--batches", ",".join(str(1 + i) for i in range(args.batches)),
           "--min-time", "0.02", "--max-time", "0.05", "--min-iterations", "5",
           "--out", str(out)]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    samples = []
    while proc.poll() is None:
        rss, fds = rss_mb(proc.pid), fd_count(proc.pid)
        if rss is not None and fds is not None:
            samples.append((time.monotonic() - start, rss, fds))
        time.sleep(0.2)
    wall = time.monotonic() - start
    ps = subprocess.run(["pgrep", "-af", "infersweep.run.worker"], capture_output=True, text=True)
    leftovers = "; ".join(line for line in ps.stdout.splitlines()
                          if f"--parent {proc.pid}" in line)
    quarter = max(1, len(samples) // 4)
    first = statistics.median(s[1] for s in samples[:quarter])
    last = statistics.median(s[1] for s in samples[-quarter:])
    fds_first = statistics.median(s[2] for s in samples[:quarter])
    fds_last = max(s[2] for s in samples[-quarter:])
    cases = args.sizes * args.batches
    print(f"$ {' '.join(cmd)}")
    print(f"{cases} cases in {wall:.1f} s ({wall / cases * 1000:.0f} ms per case, "
          f"{args.sizes} worker processes); exit code {proc.returncode}")
    print(f"parent RSS: first quarter median {first:.1f} MB, last quarter median {last:.1f} MB, "
          f"max {max(s[1] for s in samples):.1f} MB")
    print(f"parent open fds: first quarter median {fds_first:.0f}, last quarter max {fds_last}")
    print(f"processes left behind: {leftovers or 'none'}")
    ok = proc.returncode == 0 and last - first < 50 and fds_last <= fds_first + 2 and not leftovers
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
