"""Running cases on this machine: a WorkerSlot serves group after group in a long-lived worker
process; the LocalExecutor runs a sweep's groups on one slot, or on one slot per GPU in parallel.

Only one worker runs per slot: two measurements sharing a CPU or a GPU would slow each other down.
A worker lives while it is healthy and the groups keep its (backend, device): it saves an
interpreter, the runtime's import, a CUDA context and NVML per group. The slot owns the failure
semantics: a case that is in flight when its worker dies is charged (crashed / oom / timeout) and
the rest of the group, and the groups after it, go on in a fresh worker; a worker whose case ran
out of memory is replaced too. The worker runs in its own session (process group), so a timeout
kills everything it started, and it dies with the parent (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from infersweep import USER_COMPILE_CACHES
from infersweep.artefacts.cache import cache_root
from infersweep.case import Case
from infersweep.results.result import Result
from infersweep.run.builder import Prebuilder, split_cores
from infersweep.run.protocol import CaseFinished, CaseStarted, GroupDone, GroupRequest, WorkerJob
from infersweep.run.worker_process import (WorkerProcess, cgroup_oom_kills, death_result,
                                           kill_group, stderr_tail, tell_start)

# How a group's request to a worker ended.
DONE = "done"  # GroupDone: the worker is healthy and waits for the next group
CLOSED = "closed"  # the worker closed its channel: it exited or died
TIMEOUT = "timeout"  # no event within --timeout
RETIRE = "retire"  # a case ran out of memory: the worker is replaced, nobody else is charged
STOPPED = "stopped"  # stop() (Ctrl-C)


# How many groups before a worker's last one its successor is started ahead (WorkerSlot.prestart)
PRESTART_GROUPS = 2


@dataclass
class GroupEnd:
    how: str
    in_flight: Case | None
    case_started: float


class WorkerSlot:
    """One worker process at a time, on one GPU (or the CPU), serving group after group.

    The worker lives while it is healthy and the groups keep its (backend, device); it is
    replaced after a crash, a timeout or an OOM, and closed when a group of another key comes
    (or after every group with ``job.worker_per_group``). ``close()`` ends the last one."""

    def __init__(self, job: WorkerJob):
        self.job = job
        self.worker: WorkerProcess | None = None
        self.ahead: WorkerProcess | None = None  # the next key's worker, started ahead
        self.stopping = False  # set by stop(): the case in flight is abandoned, not charged

    def _spawn(self, key: tuple[str, str], log: Path,
               cpus: tuple[int, ...] | None = None) -> WorkerProcess:
        read_fd, write_fd = os.pipe()
        spawned = time.monotonic()
        args = [sys.executable, "-m", "infersweep.run.worker", "--result-fd", str(write_fd),
                "--parent", str(os.getpid()), "--spawned-at", repr(spawned), "--backend", key[0],
                "--device", key[1]]
        if cpus or self.job.cpus:
            args += ["--cpus", ",".join(map(str, cpus or self.job.cpus))]
        with open(log, "ab") as log_file:
            proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=log_file, stderr=log_file,
                                    pass_fds=(write_fd,), start_new_session=True,
                                    env=self._worker_env())
        os.close(write_fd)
        return WorkerProcess(proc, read_fd, key, spawned=spawned)

    def _worker_env(self) -> dict:
        root = Path(self.job.cache_dir) if self.job.cache_dir else cache_root()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # Compiled kernels live in infersweep's cache, so a second run does not compile again;
        # or where the user pointed them before infersweep started. Not what os.environ says
        # now: a parent that imported torchvision holds torch's default there, and its workers'
        # FX graphs went under /tmp (a warm run whose parent no longer imported it missed all).
        for name, folder in (("TORCHINDUCTOR_CACHE_DIR", "inductor"),
                             ("TRITON_CACHE_DIR", "triton")):
            env[name] = USER_COMPILE_CACHES.get(name, str(root / folder))
        if self.job.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(self.job.gpu)
        threads = self.job.cpu_threads or (len(self.job.cpus) if self.job.cpus else None)
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        return env

    def prestart(self, key: tuple[str, str], cpus: tuple[int, ...], log: Path) -> None:
        """Start the worker of the next (backend, device) now, on ``cpus`` (the builder's), so
        that its interpreter and its runtime's import (torch: 6 s on the H200) run while the
        current worker measures. It touches no GPU before its first group (``preload`` only
        imports), moves to the measuring cores with that group (``GroupRequest.cpus``) and gets
        it only once the worker before it is gone, as any successor."""
        if self.stopping or (self.ahead is not None and self.ahead.key == key) or (
                self.worker is not None and self.worker.key == key and self.worker.alive()):
            return
        if self.ahead is not None:  # started for a key that did not come
            self.ahead.end(0)
        self.ahead = self._spawn(key, log, cpus)

    def _take_ahead(self, key: tuple[str, str], now: float) -> WorkerProcess | None:
        """The worker started ahead for ``key``, handed the slot at ``now``, if there is one and
        it is alive (one for another key stays ahead)."""
        ahead = self.ahead
        if ahead is None or ahead.key != key:
            return None
        self.ahead = None
        if not ahead.alive():
            ahead.end(0)
            return None
        ahead.handed_over = now
        return ahead

    def _worker_for(self, key: tuple[str, str], log: Path) -> WorkerProcess:
        """The live worker of this key, or a fresh one (a worker of another key is closed)."""
        old = self.worker
        if old is not None and (old.key != key or not old.alive()):
            # The old worker exits (its runtime's teardown: a CUDA context, a compile pool) while
            # its successor starts (interpreter, imports) or, started ahead, waits; the successor
            # gets its first group only once the old one is gone, so nothing is measured beside
            # either. Not killed: torch.compile may write a graph's FX-graph cache entry well
            # after the case (once its background kernel compilation is done), at the latest as
            # the process exits; on the H200 a cold run's killed worker never wrote its entry,
            # and the warm run compiled that shape again (10.6 s instead of 1.4-3 s).
            self.worker = None
            closing = time.monotonic()
            old.let_go()
            try:
                self.worker = self._take_ahead(key, closing) or self._spawn(key, log)
            finally:
                old.end(10)
            self.worker.close_previous_s = time.monotonic() - closing
        if self.worker is None:
            self.worker = self._take_ahead(key, time.monotonic()) or self._spawn(key, log)
        return self.worker

    def ready(self, key: tuple[str, str], log: Path) -> None:
        """Make the worker of ``key`` the slot's own now (the one before it closed, one started
        ahead for ``key`` handed over), so that starting the next key's worker ahead cannot
        replace it while it waits: a run of one-group backends (a cold run's scouting) had
        every worker started ahead killed and spawned again."""
        self._worker_for(key, log)

    def run_group(self, cases: list[Case], on_start: Callable[[Case], None],
                  on_result: Callable[[Result], None]) -> None:
        """Run every case of the group; each ends in exactly one on_result call."""
        pending = list(cases)
        log = self.job.log_dir / f"worker-{cases[0].case_id}.log"
        key = _key(cases)
        while pending and not self.stopping:
            worker = self._worker_for(key, log)
            oom_before = cgroup_oom_kills()
            request = GroupRequest.for_job(pending, self.job, log)
            try:
                end = self._serve(worker, request, pending, on_start, on_result)
            except BaseException:  # Ctrl-C or a bug here: the worker must not outlive us
                self._discard(0)
                raise
            if end.how == DONE and not pending:
                if self.job.worker_per_group:
                    self.close()
                return
            # Gone, stuck, or to be replaced: the rest of the group goes on in a fresh worker.
            self._discard(10 if end.how == CLOSED else 0)  # a dead worker's exit code is read
            if not pending or self.stopping or end.how == RETIRE:
                continue
            # Charge the case in flight (or the next one if the worker died before starting
            # any, so that the loop always makes progress).
            victim = end.in_flight or pending[0]
            returncode = worker.proc.returncode
            if end.how == TIMEOUT:
                result = Result(victim, "timeout",
                                reason=f"no result within --timeout {self.job.timeout_s:g} s; "
                                       "the worker's process group was killed")
            elif end.how == DONE or returncode == 0:
                result = Result(victim, "crashed",
                                reason="worker exited (code 0) without reporting this case; "
                                       f"{stderr_tail(log)[-300:]}")
            else:
                result = death_result(victim, returncode, oom_before, log)
            result.info["log"] = str(log)
            result.wall_s = time.monotonic() - end.case_started
            pending.remove(victim)
            on_result(result)

    def _serve(self, worker: WorkerProcess, request: GroupRequest, pending: list[Case],
               on_start: Callable[[Case], None], on_result: Callable[[Result], None]) -> GroupEnd:
        """Send one group and follow its events until the group is done or the worker is not
        fit to go on; ``pending`` loses each case as its result is handed on."""
        by_id = {c.case_id: c for c in request.cases}
        in_flight: Case | None = None
        # The clock restarts at every event: a worker stuck before its first case (or after
        # its last one) is charged too, and the timeout is per case.
        started = case_started = time.monotonic()
        if not worker.send(request):
            return GroupEnd(CLOSED, None, case_started)
        while not self.stopping:
            remaining = self.job.timeout_s - (time.monotonic() - started)
            if remaining <= 0:
                return GroupEnd(TIMEOUT, in_flight, case_started)
            events = worker.events(min(remaining, 1.0))
            if events is None:
                return GroupEnd(CLOSED, in_flight, case_started)
            for event in events:
                if isinstance(event, CaseStarted) and event.case_id in by_id:
                    in_flight = by_id[event.case_id]
                    started = case_started = time.monotonic()
                    if worker.first_case_at is None:
                        worker.first_case_at = case_started
                    on_start(in_flight)
                elif isinstance(event, CaseFinished):
                    result = event.result
                    result.wall_s = time.monotonic() - case_started
                    # When it started (epoch seconds): the gaps between cases, a run's harness
                    # time that no case's wall holds, are read from these (seed_grid.py).
                    result.info["started_at"] = round(time.time() - result.wall_s, 3)
                    tell_start(worker, result)
                    if self.job.gpu is not None:
                        result.info["gpu_index"] = self.job.gpu
                    if result.case in pending:
                        pending.remove(result.case)
                        on_result(result)
                    in_flight = None
                    started = time.monotonic()
                    if result.status == "oom":
                        # An allocator that ran out may stay fragmented (or, for the CPU, keep
                        # a lowered limit): the next case must not inherit it.
                        return GroupEnd(RETIRE, None, case_started)
                elif isinstance(event, GroupDone):
                    return GroupEnd(DONE, None, case_started)
        return GroupEnd(STOPPED, in_flight, case_started)

    def _discard(self, wait_s: float) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.end(wait_s)

    def let_go(self) -> None:
        """Tell the worker kept for the next group, and one started ahead, to exit (stdin
        closed), without waiting for them: ``close`` waits."""
        for worker in (self.worker, self.ahead):
            if worker is not None:
                worker.let_go()

    def close(self) -> None:
        """End the worker kept for the next group, and one started ahead: they exit when their
        stdin closes (an orderly exit: see _worker_for)."""
        self._discard(10)
        ahead, self.ahead = self.ahead, None
        if ahead is not None:
            ahead.end(10)

    def stop(self) -> None:
        """Kill the worker in flight (Ctrl-C), and one started ahead: nothing may keep running
        after we return."""
        self.stopping = True
        for worker in (self.worker, self.ahead):
            if worker is None:
                continue
            kill_group(worker.proc)
            try:
                worker.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


Serve = Callable[[WorkerSlot, list[Case], "list[list[Case]]"], None]


def _key(group: list[Case]) -> tuple[str, str]:
    """The worker a group needs: one per (backend, device)."""
    return group[0].backend, group[0].device


def run_in_parallel(groups: list[list[Case]], executors: list[WorkerSlot],
                    on_start: Callable[[Case], None], on_result: Callable[[Result], None],
                    serve: Serve | None = None) -> None:
    """One thread per slot (one per GPU); each takes the next group when it is free, so no
    two measurements ever share a GPU. Callbacks come from several threads: they must lock.
    ``serve(slot, group, upcoming)`` runs a group knowing the ones after it (for the builder);
    by default ``slot.run_group``."""
    queue = deque(groups)
    lock = threading.Lock()
    errors: list[BaseException] = []
    if serve is None:
        def serve(slot, group, _upcoming):
            slot.run_group(group, on_start, on_result)

    def take(executor: WorkerSlot) -> None:
        try:
            while True:
                with lock:
                    if not queue or executor.stopping or errors:
                        return
                    group = queue.popleft()
                    upcoming = list(queue)
                serve(executor, group, upcoming)
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=take, args=(e,), daemon=True) for e in executors]
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
    a GPU case's host thread. While a GPU group is measured, a builder prepares the next GPU
    group's artefacts on cores of its own (run/builder.py); it is closed before any CPU group."""

    def __init__(self, job: WorkerJob, gpus: tuple[int, ...] = (), usable_cores: int = 1,
                 cores: tuple[int, ...] | None = None):
        self.job = job
        self.gpus = gpus
        cores = tuple(sorted(os.sched_getaffinity(0))) if cores is None else cores
        # No builder with --worker-per-group: that path is the old isolation, kept to compare.
        self.split = None if job.worker_per_group else split_cores(cores[:usable_cores])
        worker_cores = len(self.split.worker) if self.split else usable_cores
        # Parallel GPU workers share the host: each gets its share of the cores, so one worker's
        # CPU work (the fp32 reference, preprocessing) cannot stall another's kernel launches.
        self.gpu_threads = max(1, worker_cores // len(gpus)) if len(gpus) > 1 else None
        self.slots: list[WorkerSlot] = []
        self.exiting: list[WorkerSlot] = []  # let go by a finished run, waited for by the next
        self.prebuilder: Prebuilder | None = None
        self.stopping = False
        # start_early's slot (for the GPU phase or not), its worker started ahead
        self.early: tuple[bool, WorkerSlot] | None = None

    def _slot(self, gpu: int | None, gpu_phase: bool) -> WorkerSlot:
        job = replace(self.job, gpu=gpu, cpu_threads=self.gpu_threads if gpu is not None else None)
        if self.split is not None and gpu_phase:  # the builder may have the other cores
            job = replace(job, cpus=self.split.worker)
        slot = WorkerSlot(job)
        self.slots.append(slot)
        if self.stopping:
            slot.stop()
        return slot

    def start_early(self, first: list[Case]) -> None:
        """The first group's worker starts now, on the cores it will measure on (nothing else
        runs yet), and waits for its group as any worker started ahead. Not for parallel GPUs:
        each of their slots starts its own."""
        gpu_phase = first[0].device == "cuda"
        if self.early is not None or (gpu_phase and len(self.gpus) > 1):
            return
        slot = self._slot(self.gpus[0] if gpu_phase and self.gpus else None, gpu_phase)
        slot.prestart(_key(first), slot.job.cpus or (),
                      self.job.log_dir / f"worker-{first[0].case_id}.log")
        self.early = (gpu_phase, slot)

    def _first_slot(self, gpu: int | None, gpu_phase: bool) -> WorkerSlot:
        """The slot start_early made for this phase, or a new one."""
        early, self.early = self.early, None
        if early is not None and early[0] == gpu_phase:
            return early[1]
        if early is not None:  # made for the other phase: its worker is not needed
            early[1].close()
        return self._slot(gpu, gpu_phase)

    def _serve(self, slot: WorkerSlot, group: list[Case], upcoming: list[list[Case]],
               on_start: Callable[[Case], None], on_result: Callable[[Result], None]) -> None:
        """Run a GPU group once the builder is done with it, the builder working on the ones
        after it."""
        waiting = time.monotonic()
        info = self.prebuilder.info_for(group)
        if info:  # the GPU idles while the builder finishes this group's artefacts
            info["builder_wait_s"] = round(time.monotonic() - waiting, 3)
        self.prebuilder.upcoming(upcoming)

        def with_info(result: Result) -> None:
            result.info.update(info)
            on_result(result)

        slot.run_group(group, on_start, with_info)

    def run(self, groups: list[list[Case]], on_start: Callable[[Case], None],
            on_result: Callable[[Result], None]) -> None:
        self._wait_for_exits()  # a --repeats round's: nothing is measured beside their exit
        gpu_groups = [g for g in groups if g[0].device == "cuda"]
        cpu_groups = [g for g in groups if g[0].device != "cuda"]
        self.prebuilder = Prebuilder(self.job, self.split)
        try:
            if gpu_groups:
                self._run_gpu(gpu_groups, on_start, on_result)
            if cpu_groups:
                self.prebuilder.close()  # gone before a CPU measurement starts
                slot = self._first_slot(None, gpu_phase=False)
                for group in cpu_groups:
                    slot.run_group(group, on_start, on_result)
        except BaseException:  # Ctrl-C or a bug: kill, do not wait for anything to finish
            self.stop()
            raise
        finally:
            # Workers end with the run: a --repeats round starts in fresh processes. They are
            # told to exit now and waited for by the next round or close(): the parent writes
            # its final reports while a runtime tears down (the last worker's exit was 5.7 s of
            # a warm run on the H200), and nothing is measured meanwhile.
            # The builder too (no CPU group followed: else it is gone already).
            self.prebuilder.let_go()
            for slot in self.slots:
                slot.let_go()
            self.exiting += self.slots
            self.slots = []

    def _wait_for_exits(self) -> None:
        """Wait for the workers and the builder a finished run let go (the slot start_early
        made is kept)."""
        if self.prebuilder is not None:
            self.prebuilder.close()
        exiting, self.exiting = self.exiting, []
        for slot in exiting:
            slot.close()

    def _run_gpu(self, groups: list[list[Case]], on_start, on_result) -> None:
        def serve(slot, group, upcoming):
            self._serve(slot, group, upcoming, on_start, on_result)

        if len(self.gpus) > 1:
            slots = [self._slot(g, gpu_phase=True) for g in self.gpus]
            run_in_parallel(groups, slots, on_start, on_result, serve)
            return
        slot = self._first_slot(self.gpus[0] if self.gpus else None, gpu_phase=True)
        for i, group in enumerate(groups):
            after = next((g for g in groups[i + 1:i + 1 + PRESTART_GROUPS]
                          if _key(g) != _key(group)), None)
            if after is not None and self.split is not None:
                slot.ready(_key(group), self.job.log_dir / f"worker-{group[0].case_id}.log")
                # The worker has at most PRESTART_GROUPS groups left: its successor starts now,
                # on the builder's cores, instead of after it (6-8 s per switch on the H200;
                # started one group ahead, its import of torch, 7.5-9.9 s there, outlasted a
                # short last group).
                slot.prestart(_key(after), self.split.builder,
                              self.job.log_dir / f"worker-{after[0].case_id}.log")
            serve(slot, group, groups[i + 1:])

    def stop(self) -> None:
        self.stopping = True
        if self.prebuilder is not None:
            self.prebuilder.stop()
        for slot in self.slots + self.exiting:
            slot.stop()

    def gpu_count(self) -> int | None:
        return None  # this machine's GPUs, as the spec saw them

    def close(self) -> None:
        self._wait_for_exits()
        for slot in self.slots:
            slot.close()
