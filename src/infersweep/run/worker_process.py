"""One worker process as the parent sees it: its pipe, its events, its end, and what its death
means for the case in flight (crashed, oom, or a plain exit code). The slot that decides when
to start, reuse or replace one is in run/local.py.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from infersweep.case import Case
from infersweep.results.result import Result
from infersweep.run.protocol import Event, GroupRequest, parse_event

STDERR_TAIL_CHARS = 1500


def cgroup_oom_kills() -> int | None:
    """The kernel's OOM-kill count for our cgroup (v2), to tell an OOM kill from another SIGKILL."""
    try:
        cgroup = Path("/proc/self/cgroup").read_text().strip().split("::", 1)[1]
        events = Path("/sys/fs/cgroup") / cgroup.lstrip("/") / "memory.events"
        for line in events.read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return None


def stderr_tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - STDERR_TAIL_CHARS))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return ""


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def tell_start(worker: WorkerProcess, result: Result) -> None:
    """The first result of a worker carries its start: closing the worker before it
    (``close_previous``), its spawn to its first case (``to_first_case``), and the worker's own
    part of that (``imports``, ``runtime``, ``runner``, where the worker told it)."""
    if worker.start_told or worker.first_case_at is None:
        return
    worker.start_told = True
    told = result.info.get("worker_start_s")
    start = {**(told if isinstance(told, dict) else {}),
             "close_previous": round(worker.close_previous_s, 3)}
    if worker.handed_over is not None:  # started ahead: its own start was off the critical path
        start["started_ahead"] = round(worker.handed_over - worker.spawned, 3)
    start["to_first_case"] = round(worker.first_case_at - (worker.handed_over or worker.spawned), 3)
    result.info["worker_start_s"] = start


def death_result(case: Case, returncode: int, oom_before: int | None, log: Path) -> Result:
    tail = stderr_tail(log)
    tail_note = f"; stderr tail: {tail[-600:]}" if tail else ""
    if returncode < 0:
        sig = signal.Signals(-returncode)
        oom_after = cgroup_oom_kills()
        if sig == signal.SIGKILL and oom_before is not None and oom_after is not None \
                and oom_after > oom_before:
            return Result(case, "oom", reason="killed by the kernel's OOM killer "
                                              f"(cgroup oom_kill count rose){tail_note}")
        hint = " (possibly the kernel's OOM killer)" if sig == signal.SIGKILL else ""
        return Result(case, "crashed",
                      reason=f"worker killed by signal {sig.name}{hint}{tail_note}")
    if "MemoryError" in tail:
        return Result(case, "oom", reason=f"worker exited with code {returncode} on MemoryError"
                                          f"{tail_note}")
    return Result(case, "crashed", reason=f"worker exited with code {returncode}{tail_note}")


@dataclass
class WorkerProcess:
    """A running worker: its process, its answer pipe, and the (backend, device) it serves."""
    proc: subprocess.Popen
    read_fd: int
    key: tuple[str, str]
    buffer: bytes = b""
    ended: bool = False
    # Its start, for the first result it sends (``info.worker_start_s``): how long closing the
    # worker before it took, when it was spawned, and whether that was told already.
    close_previous_s: float = 0.0
    spawned: float = field(default_factory=time.monotonic)
    first_case_at: float | None = None
    start_told: bool = False
    # Started ahead of its turn (WorkerSlot.prestart): when it was handed the slot.
    handed_over: float | None = None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, request: GroupRequest) -> bool:
        """False when the worker is gone (its stdin is a broken pipe)."""
        try:
            self.proc.stdin.write((request.to_json() + "\n").encode())
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def events(self, wait_s: float) -> list[Event] | None:
        """The events that arrived within ``wait_s``; None once the worker closed its channel."""
        ready, _, _ = select.select([self.read_fd], [], [], wait_s)
        if not ready:
            return []
        chunk = os.read(self.read_fd, 65536)
        if not chunk:
            return None  # finished or died
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        return [e for e in map(parse_event, lines) if e is not None]

    def let_go(self) -> None:
        """Close its stdin: a healthy worker finishes and exits (``end`` waits for that)."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def end(self, wait_s: float) -> None:
        """Close its stdin (a healthy worker exits), wait up to ``wait_s`` for it, then kill its
        process group: nothing it started survives it."""
        if self.ended:
            return
        self.ended = True
        self.let_go()
        os.close(self.read_fd)
        try:
            self.proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            pass
        kill_group(self.proc)
        self.proc.wait()
