"""Ray executor: each group of cases becomes a Ray task, run on whichever node of a cluster is free.

Inside the task nothing is new: ``LocalExecutor.run_group`` serves the group in the same isolated
worker subprocess, under the same per-case timeout, charging crashes, OOMs and timeouts the same
way. Its start/result events go through a queue (a Ray actor on the driver's node) to the driver,
which calls the sweep's callbacks: each result is stored the moment its case ends, wherever it ran.

What Ray adds, and how it is handled:
- resources: a GPU group asks for one GPU; a CPU group asks for every CPU of one node and is pinned
  to it, so two measurements never share a machine's cores. A node with GPUs gets CPU groups only
  once no GPU group is left, as the local executor runs CPU groups after GPU ones.
- ``max_calls=1``: every task starts in a fresh Ray worker process. ``max_retries=0``: Ray never
  re-runs a task by itself (that would measure finished cases twice).
- a task lost with its process or its node (WorkerCrashedError, NodeDiedError, ...): the case in
  flight (last start without a result) is charged ``crashed`` with Ray's reason, and the group's
  other cases go on in a new task. ``--retries N`` re-schedules crashed cases up to N times.
- each result says where it ran (``info.host``, ``node_id``, ``gpu_name``, ``gpu_index``); each
  node's environment facts and peaks are kept (store meta ``nodes``), and when a sweep ran on
  different hardware the report is grouped by it (reports/formats.py ``write_reports``).

Ray is optional: this module imports it only when an executor is made, so the rest of infersweep
(and the reports of a Ray sweep) works without it.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from infersweep import plugins
from infersweep.case import Case
from infersweep.run.local import WorkerSlot
from infersweep.run.protocol import WorkerJob
from infersweep.results.result import Result

INSTALL_HINT = "pip install 'infersweep[ray]'"
# The driver's loop costs RPCs (raylet, GCS, the mailbox actor), i.e. CPU; on a small machine that
# CPU is taken from the measurement running beside it. So it blocks on the mailbox (an event wakes
# it at once) for up to POLL_S, and asks the cluster for its nodes only when a task has ended or
# NODES_EVERY_S has passed.
POLL_S = 2.0
NODES_EVERY_S = 10.0
# The per-case timeout is enforced inside the task; this grace covers a node that hangs as a whole
# (no event, no death): after timeout + grace the driver cancels the task and charges `timeout`.
WATCHDOG_GRACE_S = 60.0
# A task lost before its first case started blames nobody, up to this many times in a row; then
# the first case of the group is charged, so that a sweep always makes progress.
UNSTARTED_LOSSES = 2
NO_NODE_WAIT_S = 120.0  # CPU groups left and no node with CPUs for this long: give up
LOG_SHIP_CHARS = 1 << 20
LOCAL_OBJECT_STORE_BYTES = 128 << 20  # only small events travel through the object store
FORWARDED_ENV = plugins.ENV_VARS  # plugin modules, to the workers of an existing cluster


class RayUnavailable(RuntimeError):
    """Ray is missing, or the cluster cannot be reached: the CLI prints this and exits with 2."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailable(f"--executor ray needs Ray, which is not installed; install it with: "
                             f"{INSTALL_HINT}") from None
    return ray


# ---------------------------------------------------------------------------------------------
# The task: runs inside a fresh Ray worker process on some node.

def _run_group_task(case_dicts: list[dict], job: WorkerJob, mailbox, token: int,
                    omp_threads: str | None) -> None:
    import ray

    from infersweep import env as envmod
    from infersweep.probes.peaks import peak_for

    cases = [Case.from_dict(d) for d in case_dicts]
    facts = envmod.collect()
    node_id = ray.get_runtime_context().get_node_id()
    where = {"executor": "ray", "host": socket.gethostname(), "node_id": node_id}
    gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    if gpu_ids:  # Ray set CUDA_VISIBLE_DEVICES to this GPU; the worker inherits it
        where["gpu_index"] = int(gpu_ids[0]) if gpu_ids[0].isdigit() else gpu_ids[0]
        where["gpu_name"] = next((g["name"] for g in facts["gpus"]
                                  if str(g["index"]) == gpu_ids[0]), "unknown GPU")

    # Ray sets OMP_NUM_THREADS to the task's CPU count; a measurement must use the same threads
    # as with the local executor: the driver's setting, or the runtime's own default.
    if omp_threads is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = omp_threads
    cpu_threads = None
    if gpu_ids:  # parallel GPU workers on one host share its cores, as with --gpus locally
        resources = next((n["Resources"] for n in ray.nodes() if n["NodeID"] == node_id), {})
        if resources.get("GPU", 0) > 1:
            cpu_threads = max(1, int(envmod.usable_cores() // resources["GPU"]))

    # Logs go to the run directory when this node sees it (same machine, shared file system);
    # elsewhere to a local folder, shipped to the driver at the end of the group.
    shared = job.log_dir.is_dir() and os.access(job.log_dir, os.W_OK)
    log_dir = job.log_dir if shared else Path(tempfile.mkdtemp(prefix="infersweep-logs-"))

    peaks = {}
    first = cases[0]
    try:  # the node's own peak (cached per machine); the driver's is no use on another machine
        found = peak_for(first.device, first.precision, facts)
        if found:
            peaks[f"{first.device}:{first.precision}"] = found
    except Exception:
        pass
    mailbox.put(("hello", token, {"where": where, "env": facts, "peaks": peaks,
                                  "logs_shared": shared}))

    def on_start(case: Case) -> None:
        mailbox.put(("start", token, case.case_id))

    def on_result(result: Result) -> None:
        result.info.update(where)
        mailbox.put(("result", token, result.to_json()))

    # One group per task, in a worker of its own: the task's Ray process is fresh anyway
    # (max_calls=1), and groups of one key may land on different nodes. No builder here.
    slot = WorkerSlot(replace(job, log_dir=log_dir, cpu_threads=cpu_threads, gpu=None))
    try:
        slot.run_group(cases, on_start, on_result)
    finally:
        slot.close()
        if not shared:
            for path in log_dir.glob("worker-*.log"):
                text = path.read_text(errors="replace")[-LOG_SHIP_CHARS:]
                mailbox.put(("log", token, path.name, text))


# ---------------------------------------------------------------------------------------------
# The driver.

@dataclass
class _Task:
    token: int
    cases: list[Case]  # not yet reported
    device: str
    node_id: str | None = None  # CPU tasks: the node they are pinned to
    in_flight: Case | None = None
    case_started: float | None = None
    where: dict = field(default_factory=dict)  # host, node id, GPU: from the task's hello
    logs_shared: bool = True
    cancelled: str = ""  # why the driver cancelled it (the watchdog)
    settled: bool = False


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else ""


class RayExecutor:
    """Starts a local Ray instance, or connects to ``address``, once per sweep."""

    def __init__(self, job: WorkerJob, address: str | None = None, retries: int = 0, store=None):
        ray = import_ray()
        self.job = job
        self.ray = ray
        self.retries = retries
        self.store = store
        quiet = {"logging_level": logging.ERROR, "log_to_driver": False,
                 "configure_logging": True}
        try:
            if address:
                env_vars = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
                ray.init(address=address, runtime_env={"env_vars": env_vars} if env_vars else None,
                         **quiet)
            else:
                # No idle Ray workers kept in reserve (by default one per CPU, each polling):
                # with max_calls=1 every task starts a fresh worker anyway, and on this machine
                # their CPU would be taken from the measurements. (Ray reads RAY_<setting>.)
                os.environ.setdefault("RAY_num_workers_soft_limit", "0")
                os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
                ray.init(include_dashboard=False,
                         object_store_memory=LOCAL_OBJECT_STORE_BYTES, **quiet)
        except Exception as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise RayUnavailable(f"cannot start or reach {where}: {_first_line(exc)}") from None
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.affinity = NodeAffinitySchedulingStrategy
        # The mailbox lives on the head node: it must survive the loss of any worker node (the
        # driver's own node is no safe choice: on one machine, a driver may attach to any node).
        self.mailbox = Queue(actor_options={"num_cpus": 0,
                                            "resources": {"node:__internal_head__": 0.001}})
        # max_calls=1: each task in a fresh Ray worker process (set here: .options() refuses it)
        self.remote = ray.remote(max_calls=1, max_retries=0)(_run_group_task)
        self.nodes: dict[str, dict] = dict(store.get_meta("nodes", {})) if store else {}
        self.running: dict = {}  # ObjectRef -> _Task
        self.tasks: dict[int, _Task] = {}
        self.attempts: dict[str, list[str]] = {}  # case id -> reasons of earlier crashed tries
        self.unstarted: dict[str, int] = {}  # case id -> tasks lost before any case started
        self.stopping = False
        self.token = 0
        self.nodes_seen: tuple[float, list] = (-NODES_EVERY_S, [])  # (when, ray.nodes())

    def start_early(self, first: list[Case]) -> None:
        pass  # each task starts its own worker on whichever node Ray picks

    def gpu_count(self) -> int:
        """The cluster's GPUs: a sweep plans CUDA cases when any node has one."""
        return int(self.ray.cluster_resources().get("GPU", 0))

    # -- the loop -------------------------------------------------------------------------------

    def run(self, groups: list[list[Case]], on_start: Callable[[Case], None],
            on_result: Callable[[Result], None]) -> None:
        """Run every group; each case ends in exactly one on_result call (unless stopped)."""
        self.on_start, self.on_result = on_start, on_result
        self.gpu_queue = deque(g for g in groups if g[0].device == "cuda")
        self.cpu_queue = deque(g for g in groups if g[0].device != "cuda")
        no_node_since = None
        try:
            while not self.stopping and (self.gpu_queue or self.cpu_queue or self.running):
                placed = self._submit()
                # Completions are looked at before the mailbox is drained: a task puts its events
                # synchronously, so every event of a task seen finished here is drained below.
                ready = self.ray.wait(list(self.running), num_returns=len(self.running),
                                      timeout=0)[0] if self.running else []
                if ready:
                    self._drain()
                for ref in ready:
                    self._finished(ref)
                self._watchdog()
                if not self.running and self.cpu_queue and not placed:
                    no_node_since = no_node_since or time.monotonic()
                    if time.monotonic() - no_node_since > NO_NODE_WAIT_S:
                        raise RayUnavailable(f"no alive Ray node with CPUs for "
                                             f"{NO_NODE_WAIT_S:g} s; {len(self.cpu_queue)} "
                                             "group(s) left (resume later with the same command)")
                else:
                    no_node_since = None
                self._wait_for_event()
        except self.ray.exceptions.RayError as exc:  # the mailbox or the head node is gone
            self.stop()
            raise RayUnavailable(f"lost the Ray cluster ({type(exc).__name__}: "
                                 f"{_first_line(exc)}); every finished case is stored: run the "
                                 "same command to resume") from None
        except BaseException:  # Ctrl-C or a bug: nothing of ours may keep running on the cluster
            self.stop()
            raise

    def _wait_for_event(self) -> None:
        from ray.util.queue import Empty

        if not self.running:
            time.sleep(POLL_S)
            return
        try:
            self._event(self.mailbox.get(block=True, timeout=POLL_S))
        except Empty:
            pass

    def _drain(self) -> None:
        waiting = self.mailbox.qsize()
        if waiting:
            for item in self.mailbox.get_nowait_batch(waiting):
                self._event(item)

    # -- scheduling -----------------------------------------------------------------------------

    def _submit(self) -> bool:
        """Submit what can run now; True if anything was submitted or is running."""
        while self.gpu_queue:  # Ray holds GPU tasks until a GPU is free: one group per GPU
            self._launch(self.gpu_queue.popleft(), {"num_gpus": 1, "num_cpus": 1})
        if not self.cpu_queue:
            return True
        gpu_work_left = any(t.device == "cuda" for t in self.running.values())
        # A node is taken while one of our CPU tasks there has cases left; a task that has
        # reported all of its cases is ending, so the next group can queue behind it.
        busy = {t.node_id for t in self.running.values() if t.node_id and t.cases}
        placed = bool(self.running)
        for node in self._alive_nodes():
            cpus = node["Resources"].get("CPU", 0)
            if not self.cpu_queue:
                break
            if not node["Alive"] or cpus < 1 or node["NodeID"] in busy:
                continue
            if gpu_work_left and node["Resources"].get("GPU", 0) > 0:
                continue
            self._launch(self.cpu_queue.popleft(), {
                "num_cpus": cpus,  # the whole node: no other measurement shares its cores
                "scheduling_strategy": self.affinity(node["NodeID"], soft=False)},
                node_id=node["NodeID"])
            placed = True
        return placed

    def _alive_nodes(self) -> list[dict]:
        when, nodes = self.nodes_seen
        if time.monotonic() - when >= NODES_EVERY_S:
            self.nodes_seen = (time.monotonic(), self.ray.nodes())
        return self.nodes_seen[1]

    def _launch(self, cases: list[Case], resources: dict, node_id: str | None = None) -> None:
        self.token += 1
        task = _Task(self.token, list(cases), cases[0].device, node_id)
        ref = self.remote.options(retry_exceptions=False, **resources).remote(
            [c.to_dict() for c in cases], self.job, self.mailbox, task.token,
            os.environ.get("OMP_NUM_THREADS"))
        self.running[ref] = task
        self.tasks[task.token] = task

    def _requeue(self, cases: list[Case], first: bool = False) -> None:
        queue = self.gpu_queue if cases[0].device == "cuda" else self.cpu_queue
        queue.appendleft(cases) if first else queue.append(cases)

    # -- events from tasks ----------------------------------------------------------------------

    def _event(self, item: tuple) -> None:
        kind, token, *rest = item
        task = self.tasks.get(token)
        if task is None or task.settled:
            return  # a late message of a task already settled
        if kind == "hello":
            facts = rest[0]
            task.where, task.logs_shared = facts["where"], facts["logs_shared"]
            host = task.where["host"]
            known = self.nodes.get(host, {})
            self.nodes[host] = {"env": facts["env"], "node_id": task.where["node_id"],
                                "peaks": {**known.get("peaks", {}), **facts["peaks"]}}
            if self.store is not None:
                self.store.set_meta("nodes", self.nodes)
        elif kind == "start":
            case = next((c for c in task.cases if c.case_id == rest[0]), None)
            if case is not None:
                task.in_flight, task.case_started = case, time.monotonic()
                self.on_start(case)
        elif kind == "result":
            result = Result.from_json(rest[0])
            if result.case in task.cases:
                task.cases.remove(result.case)
                task.in_flight, task.case_started = None, None
                if not task.logs_shared and result.info.get("log"):
                    result.info["log"] = str(self.job.log_dir / Path(result.info["log"]).name)
                self._settle(result)
        elif kind == "log" and not task.logs_shared:
            name, text = rest
            with open(self.job.log_dir / Path(name).name, "a", errors="replace") as f:
                f.write(text)

    def _settle(self, result: Result) -> None:
        """Hand a result to the sweep, or re-schedule a crashed case while --retries allow."""
        cid = result.case.case_id
        earlier = self.attempts.get(cid, [])
        if result.status == "crashed" and len(earlier) < self.retries and not self.stopping:
            self.attempts[cid] = earlier + [result.reason]
            self._requeue([result.case])
            return
        if earlier:
            result.info["earlier_attempts"] = earlier
            if result.status == "crashed":
                result.reason += f" (crashed {len(earlier) + 1} times; --retries {self.retries})"
            else:
                result.warnings.append(f"ran {len(earlier) + 1} times: {len(earlier)} earlier "
                                       f"attempt(s) crashed ({earlier[-1][:200]})")
        self.on_result(result)

    # -- tasks that ended -----------------------------------------------------------------------

    def _finished(self, ref) -> None:
        task = self.running.pop(ref)
        self.nodes_seen = (-NODES_EVERY_S, [])  # a node may have gone or come: look again
        error = None
        try:
            self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:  # WorkerCrashed, NodeDied, TaskError, ...
            error = exc
        left = list(task.cases)
        task.settled = True
        if self.stopping or not left:
            return
        victim = task.in_flight
        if victim is None:  # lost before its first case started: the node, not a case, failed
            lost = self.unstarted[left[0].case_id] = self.unstarted.get(left[0].case_id, 0) + 1
            if lost > UNSTARTED_LOSSES:
                victim = left[0]
        if victim is not None:
            left.remove(victim)
        if left:
            self._requeue(left, first=True)  # the rest of the group goes on in a new task
        if victim is not None:
            self._settle(self._lost_result(task, victim, error))

    def _lost_result(self, task: _Task, case: Case, error) -> Result:
        host = task.where.get("host", "an unknown node")
        node = task.where.get("node_id", "")
        where = f"{host} (Ray node {node[:12]})" if node else host
        if error is None:
            why = "the Ray task ended without reporting this case"
        else:
            cause = getattr(error, "cause", None)
            text = _first_line(cause) if cause is not None else _first_line(error)
            why = f"{type(cause or error).__name__}: {text}" if text else type(error).__name__
        if task.cancelled:
            result = Result(case, "timeout", reason=task.cancelled)
        else:
            result = Result(case, "crashed",
                            reason=f"the Ray task running this case was lost on {where}: {why}")
        result.info.update(task.where)
        result.info["ray_error"] = type(error).__name__ if error is not None else None
        if task.case_started is not None:
            result.wall_s = time.monotonic() - task.case_started
        return result

    def _watchdog(self) -> None:
        limit = self.job.timeout_s + WATCHDOG_GRACE_S
        for ref, task in self.running.items():
            if task.in_flight is None or task.cancelled or task.case_started is None:
                continue
            if time.monotonic() - task.case_started > limit:
                task.cancelled = (f"no result from {task.where.get('host', 'its node')} within "
                                  f"--timeout {self.job.timeout_s:g} s plus "
                                  f"{WATCHDOG_GRACE_S:g} s; the Ray task was cancelled")
                self.ray.cancel(ref, force=True)

    # -- the end --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ctrl-C: kill our tasks (their worker subprocesses die with them: PR_SET_PDEATHSIG)."""
        self.stopping = True
        for ref in list(self.running):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:
                pass

    def close(self) -> None:
        try:
            self.ray.shutdown()  # a local instance stops; a cluster is only disconnected from
        except Exception:
            pass
