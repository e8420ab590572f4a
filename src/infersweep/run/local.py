"""Running cases on this machine: a WorkerSlot serves one group at a time in a fresh worker process;
the LocalExecutor runs a sweep's groups on one slot, or on one slot per GPU in parallel.

Only one worker runs per slot: two measurements sharing a CPU or a GPU would slow each other down.
The slot owns the failure semantics: a case that is in flight when its worker dies is charged
(crashed / oom / timeout) and the rest of the group goes on in a fresh worker. The worker runs in
its own session (process group), so a timeout kills everything it started.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from infersweep.artefacts.cache import cache_root
from infersweep.case import Case
from infersweep.results.result import Result
from infersweep.run.protocol import (CaseFinished, CaseStarted, GroupRequest, WorkerJob,
                                      parse_event)

STDERR_TAIL_CHARS = 1500


def _cgroup_oom_kills() -> int | None:
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


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - STDERR_TAIL_CHARS))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return ""


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _death_result(case: Case, returncode: int, oom_before: int | None, log: Path) -> Result:
    tail = _tail(log)
    tail_note = f"; stderr tail: {tail[-600:]}" if tail else ""
    if returncode < 0:
        sig = signal.Signals(-returncode)
        oom_after = _cgroup_oom_kills()
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


class WorkerSlot:
    """One worker process at a time, on one GPU (or the CPU): serves a group of cases."""

    def __init__(self, job: WorkerJob):
        self.job = job
        self.active: subprocess.Popen | None = None
        self.stopping = False  # set by stop(): the case in flight is abandoned, not charged

    def _spawn(self, cases: list[Case], log: Path) -> tuple[subprocess.Popen, int]:
        read_fd, write_fd = os.pipe()
        payload = GroupRequest.for_job(cases, self.job).to_json()
        with open(log, "ab") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "infersweep.run.worker", "--result-fd", str(write_fd),
                 "--parent", str(os.getpid())],
                stdin=subprocess.PIPE, stdout=log_file, stderr=log_file, pass_fds=(write_fd,),
                start_new_session=True, env=self._worker_env(),
            )
        os.close(write_fd)
        self.active = proc
        try:
            proc.stdin.write(payload.encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass  # the worker died at once; its exit is handled like any other death
        return proc, read_fd

    def _worker_env(self) -> dict:
        root = Path(self.job.cache_dir) if self.job.cache_dir else cache_root()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # Compiled kernels live in infersweep's cache, so a second run does not compile again.
        env.setdefault("TORCHINDUCTOR_CACHE_DIR", str(root / "inductor"))
        env.setdefault("TRITON_CACHE_DIR", str(root / "triton"))
        if self.job.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(self.job.gpu)
        if self.job.cpu_threads:
            env["OMP_NUM_THREADS"] = str(self.job.cpu_threads)
        return env

    def run_group(self, cases: list[Case], on_start: Callable[[Case], None],
                  on_result: Callable[[Result], None]) -> None:
        """Run every case of the group; each ends in exactly one on_result call."""
        pending = list(cases)
        by_id = {c.case_id: c for c in cases}
        log = self.job.log_dir / f"worker-{cases[0].case_id}.log"
        while pending:
            oom_before = _cgroup_oom_kills()
            proc, read_fd = self._spawn(pending, log)
            in_flight: Case | None = None
            started = time.monotonic()  # a worker stuck before its first case is charged too
            case_started = started
            buffer = b""
            timed_out = False
            try:
                while not self.stopping:
                    remaining = self.job.timeout_s - (time.monotonic() - started)
                    if remaining <= 0:
                        timed_out = True
                        break
                    ready, _, _ = select.select([read_fd], [], [], min(remaining, 1.0))
                    if not ready:
                        continue
                    chunk = os.read(read_fd, 65536)
                    if not chunk:
                        break  # worker closed its channel: finished or died
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        event = parse_event(line)
                        if isinstance(event, CaseStarted) and event.case_id in by_id:
                            in_flight = by_id[event.case_id]
                            started = case_started = time.monotonic()
                            on_start(in_flight)
                        elif isinstance(event, CaseFinished):
                            result = event.result
                            result.wall_s = time.monotonic() - case_started
                            if self.job.gpu is not None:
                                result.info["gpu_index"] = self.job.gpu
                            if result.case in pending:
                                pending.remove(result.case)
                                on_result(result)
                            in_flight = None
                            started = time.monotonic()
            except BaseException:  # Ctrl-C or a bug here: the worker must not outlive us
                _kill_group(proc)
                raise
            finally:
                os.close(read_fd)
                if timed_out:
                    _kill_group(proc)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    _kill_group(proc)
                    proc.wait()
                _kill_group(proc)  # anything the worker left behind in its process group
                self.active = None

            if not pending or self.stopping:
                return
            # The worker ended with cases left: charge the one in flight (or the next one if it
            # died before starting any, so that the loop always makes progress).
            victim = in_flight or pending[0]
            if timed_out:
                result = Result(victim, "timeout",
                                reason=f"no result within --timeout {self.job.timeout_s:g} s; "
                                       "the worker's process group was killed")
            elif proc.returncode == 0:
                result = Result(victim, "crashed", reason="worker exited (code 0) without "
                                                          f"reporting this case; {_tail(log)[-300:]}")
            else:
                result = _death_result(victim, proc.returncode, oom_before, log)
            result.info["log"] = str(log)
            result.wall_s = time.monotonic() - case_started
            pending.remove(victim)
            on_result(result)

    def stop(self) -> None:
        """Kill the worker in flight (Ctrl-C): nothing may keep running after we return."""
        self.stopping = True
        active = self.active
        if active is not None:
            _kill_group(active)
            try:
                active.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def run_in_parallel(groups: list[list[Case]], executors: list[WorkerSlot],
                    on_start: Callable[[Case], None], on_result: Callable[[Result], None]) -> None:
    """One thread per slot (one per GPU); each takes the next group when it is free, so no
    two measurements ever share a GPU. Callbacks come from several threads: they must lock."""
    queue = deque(groups)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def serve(executor: WorkerSlot) -> None:
        try:
            while True:
                with lock:
                    if not queue or executor.stopping or errors:
                        return
                    group = queue.popleft()
                executor.run_group(group, on_start, on_result)
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=serve, args=(e,), daemon=True) for e in executors]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.2)
    except KeyboardInterrupt:
        for e in executors:
            e.stop()
        for t in threads:
            t.join(timeout=15)
        raise
    if errors:
        raise errors[0]


class LocalExecutor:
    """A sweep on this machine. GPU groups first, one slot per GPU in parallel when --gpus names
    several; CPU groups after them, one at a time, so that a CPU measurement never competes with
    a GPU case's host thread."""

    def __init__(self, job: WorkerJob, gpus: tuple[int, ...] = (), usable_cores: int = 1):
        self.job = job
        self.gpus = gpus
        # Parallel GPU workers share the host: each gets its share of the cores, so one worker's
        # CPU work (the fp32 reference, preprocessing) cannot stall another's kernel launches.
        self.gpu_threads = max(1, usable_cores // len(gpus)) if len(gpus) > 1 else None
        self.slots: list[WorkerSlot] = []
        self.stopping = False

    def _slot(self, gpu: int | None) -> WorkerSlot:
        slot = WorkerSlot(replace(self.job, gpu=gpu,
                                  cpu_threads=self.gpu_threads if gpu is not None else None))
        self.slots.append(slot)
        if self.stopping:
            slot.stop()
        return slot

    def run(self, groups: list[list[Case]], on_start: Callable[[Case], None],
            on_result: Callable[[Result], None]) -> None:
        gpu_groups = [g for g in groups if g[0].device == "cuda"]
        cpu_groups = [g for g in groups if g[0].device != "cuda"]
        if gpu_groups and len(self.gpus) > 1:
            run_in_parallel(gpu_groups, [self._slot(g) for g in self.gpus], on_start, on_result)
        elif gpu_groups:
            slot = self._slot(self.gpus[0] if self.gpus else None)
            for group in gpu_groups:
                slot.run_group(group, on_start, on_result)
        if cpu_groups:
            slot = self._slot(None)
            for group in cpu_groups:
                slot.run_group(group, on_start, on_result)

    def stop(self) -> None:
        self.stopping = True
        for slot in self.slots:
            slot.stop()

    def gpu_count(self) -> int | None:
        return None  # this machine's GPUs, as the spec saw them

    def close(self) -> None:
        pass
