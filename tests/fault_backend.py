"""Test-only backends that misbehave on purpose inside a real worker process.

Loaded through INFERSWEEP_BACKEND_MODULES=fault_backend (tests/ on PYTHONPATH). Backend
``fault-<mode>`` behaves (a tiny numpy computation) at every batch size except FAULT_BATCH, where
it does <mode>. So one group holds ok cases before and after the bad one, which proves that only
the case in flight is charged and the rest of the group goes on in a fresh worker.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from infersweep.backends.base import Backend, Session

FAULT_BATCH = 2
# A healthy run sleeps this long; INFERSWEEP_FAULT_SLOWDOWN=1.3 makes a deliberately slower build.
BASE_SLEEP_S = float(os.environ.get("INFERSWEEP_FAULT_SLEEP_MS", "1")) / 1000
SLOWDOWN = float(os.environ.get("INFERSWEEP_FAULT_SLOWDOWN", "1"))
# INFERSWEEP_FAULT_SIZE=16: the fault strikes only at that image size (one group of several).
FAULT_SIZE = int(os.environ.get("INFERSWEEP_FAULT_SIZE", "0"))
ORPHAN_SLEEP = "314159"  # a recognisable argument for the child left running by fault-child


class FaultSession(Session):
    """One session serves the whole group; it misbehaves only when given the faulty batch."""

    def __init__(self, mode: str):
        self.mode = mode
        # where the worker keeps its bytecode (tests/test_bytecode_cache.py)
        self.info = {"mode": mode, "pycache_prefix": sys.pycache_prefix}
        self.child = None

    def place(self, batch):
        return np.ascontiguousarray(batch)

    def launch(self, placed):
        faulty = placed.shape[0] == FAULT_BATCH and FAULT_SIZE in (0, placed.shape[-1])
        mode = self.mode if faulty else "ok"
        if mode == "child" and self.child is None:
            self.child = subprocess.Popen(["sleep", ORPHAN_SLEEP])  # never waited for
        if mode == "oom":
            # Bound the address space, so the allocation fails here instead of swapping the box.
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            with open("/proc/self/statm") as f:
                vm_bytes = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            resource.setrlimit(resource.RLIMIT_AS, (vm_bytes + (512 << 20), hard))
        if mode == "raise":
            raise RuntimeError("fault backend: deliberate failure")
        if mode == "segfault":
            ctypes.string_at(0)
        if mode == "abort":
            os.abort()
        if mode == "exit":
            sys.exit(3)
        if mode == "hang":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            while True:
                time.sleep(1)
        if mode == "oom":
            hog = []
            while True:
                hog.append(bytearray(64 << 20))
        if mode == "close-channel":  # the worker's result pipe, closed under its feet
            os.close(int(sys.argv[sys.argv.index("--result-fd") + 1]))
            self.mode = "ok"
        if mode == "garbage":
            sys.stdout.buffer.write(os.urandom(256) + b"\n{\"event\": \"result\"}\n")
            sys.stderr.buffer.write(os.urandom(256))
        time.sleep(BASE_SLEEP_S * SLOWDOWN)
        return float(placed.sum())



# fault-slow-exit: a worker that served it takes this long to exit (a runtime's teardown)
SLOW_EXIT_S = float(os.environ.get("INFERSWEEP_FAULT_EXIT_S", "2.5"))


def _exit_slowly(marks: str | None) -> None:
    """The slow exit; with INFERSWEEP_FAULT_EXIT_MARK=DIR it leaves DIR/<pid> holding when the
    group was prepared and when the exit ended (time.time()), for tests of what overlaps it."""
    time.sleep(SLOW_EXIT_S)
    if marks:
        (Path(marks) / str(os.getpid())).write_text(json.dumps(
            {"prepared": _PREPARED["at"], "exited": time.time()}))


_PREPARED: dict[str, float] = {}


def _slow_exit_from_now() -> None:
    if "at" not in _PREPARED:
        _PREPARED["at"] = time.time()
        atexit.register(_exit_slowly, os.environ.get("INFERSWEEP_FAULT_EXIT_MARK"))


_EXIT_WORK: list = []


def _work_at_exit(marks: str) -> None:
    """fault-exit-work: what a worker's exit must still do, each leaving DIR/<pid>.<what>: a
    non-daemon thread that ends after the group, an atexit handler."""
    if _EXIT_WORK or not marks:
        return
    base = Path(marks) / str(os.getpid())

    def late_thread():
        time.sleep(0.3)
        Path(f"{base}.thread").write_text("joined")

    threading.Thread(target=late_thread, daemon=False).start()
    atexit.register(lambda: Path(f"{base}.atexit").write_text("ran"))
    _EXIT_WORK.append(base)


class FaultBackend(Backend):
    def prepare(self, source, case, cache):
        mode = self.name.split("-", 1)[1]
        if mode == "slow-exit":  # runs like ok; only the process's exit is slow
            _slow_exit_from_now()
        if mode == "exit-work":  # runs like ok; leaves marks of its exit
            _work_at_exit(os.environ.get("INFERSWEEP_FAULT_EXIT_MARK", ""))
        return FaultSession(mode)

    def build_artefacts(self, source, case, cache):
        """Nothing to build; a builder that served fault-slow-exit exits slowly too (a builder
        that imported torch and exported tears down for seconds)."""
        if self.name == "fault-slow-exit":
            _slow_exit_from_now()
        return []


MODES = ("ok", "raise", "segfault", "abort", "exit", "hang", "oom", "garbage", "child",
         "close-channel", "slow-exit", "exit-work")
BACKENDS = [FaultBackend(name=f"fault-{m}", devices=("cpu",), precisions={"cpu": ("fp32",)},
                         needs_model=False) for m in MODES]
