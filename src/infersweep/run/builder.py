"""The builder: the coming GPU groups' artefacts (ONNX export, INT8 model), built in order while a
group is measured, in a process of its own that cannot disturb the measurement.

- It sees no GPU (CUDA_VISIBLE_DEVICES is empty): only what a backend can build on the CPU
  (``Backend.build_artefacts``), never an engine or a compilation that needs the device.
- It runs at low priority (``os.nice``) on host cores the measured worker does not use
  (``os.sched_setaffinity``; the worker is pinned to the others). With fewer than MIN_CORES usable
  cores there is no builder: taking a core from the worker would cost more than it saves.
- It runs only while GPU groups are measured (CPU groups run after them, and the builder is closed
  before the first one starts), and builds only for a GPU group.
- It writes through the ArtifactCache, whose entries appear atomically under a file lock: the
  worker that needs an entry the builder is still writing waits for it, and an entry a killed
  builder left half-written is never seen.
- A builder failure never fails a case: the worker builds what is missing itself, as it always
  did. Each result says whether its group's artefacts came from the builder
  (``info["artefacts_prebuilt"]``, ``info["builder"]``).

The parent writes one GroupRequest per line on the builder's stdin; the builder answers on its own
pipe: one ``ready`` line (its pid, cores and niceness), then one ``built`` line per group.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from infersweep.case import Case
from infersweep.run.protocol import GroupRequest, WorkerJob

MIN_CORES = 4  # below this a builder would take a core the measured worker needs
BUILDER_NICE = 10  # added to the parent's niceness: the builder yields the CPU to anything else


@dataclass(frozen=True)
class CoreSplit:
    worker: tuple[int, ...]
    builder: tuple[int, ...]


def split_cores(cores) -> CoreSplit | None:
    """A quarter of the cores (at least one) for the builder, the rest for the worker; None on
    a machine with fewer than MIN_CORES."""
    cores = sorted(cores)
    if len(cores) < MIN_CORES:
        return None
    share = max(1, len(cores) // 4)
    return CoreSplit(tuple(cores[:-share]), tuple(cores[-share:]))


@dataclass(frozen=True)
class BuildReport:
    """What the builder did for one group (named by its first case)."""
    group: str
    artefacts: list[dict] = field(default_factory=list)  # Artefact fields: kind, path, cached
    seconds: float = 0.0
    error: str | None = None

    def info(self) -> dict:
        """For the group's results: the worker found these artefacts in the cache."""
        return {"artefacts_prebuilt": bool(self.artefacts) and self.error is None,
                "builder": {"artefacts": self.artefacts, "seconds": round(self.seconds, 3),
                            **({"error": self.error} if self.error else {})}}


class Builder:
    """The parent's side of one builder process."""

    def __init__(self, job: WorkerJob, cpus: tuple[int, ...], log: Path,
                 nice: int = BUILDER_NICE):
        self.job = job
        read_fd, write_fd = os.pipe()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": "",
               "OMP_NUM_THREADS": str(len(cpus))}
        with open(log, "ab") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "infersweep.run.builder", "--result-fd", str(write_fd),
                 "--parent", str(os.getpid()), "--cpus", ",".join(map(str, cpus)),
                 "--nice", str(nice)],
                stdin=subprocess.PIPE, stdout=log_file, stderr=log_file, pass_fds=(write_fd,),
                start_new_session=True, env=env)
        os.close(write_fd)
        self.changed = threading.Condition()
        self.ready: dict | None = None  # the builder's pid, cores and niceness, as it saw them
        self.reports: dict[str, BuildReport] = {}
        self.submitted: set[str] = set()
        self.gone = False
        self.reader = threading.Thread(target=self._read, args=(read_fd,), daemon=True)
        self.reader.start()

    def _read(self, read_fd: int) -> None:
        with os.fdopen(read_fd, "rb") as channel:
            for line in channel:
                try:
                    message = json.loads(line)
                except json.JSONDecodeError:
                    continue
                with self.changed:
                    if message.get("event") == "ready":
                        self.ready = message
                    elif message.get("event") == "built":
                        self.reports[message["group"]] = BuildReport(
                            message["group"], message["artefacts"], message["seconds"],
                            message.get("error"))
                    self.changed.notify_all()
        with self.changed:
            self.gone = True
            self.changed.notify_all()

    def submit(self, group: list[Case]) -> None:
        with self.changed:
            if self.gone or group[0].case_id in self.submitted:
                return
            self.submitted.add(group[0].case_id)
        try:
            line = GroupRequest.for_job(group, self.job).to_json() + "\n"
            self.proc.stdin.write(line.encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # a builder that died is noticed by the reader: nothing more is waited for

    def wait_for(self, group: list[Case], timeout_s: float) -> BuildReport | None:
        """The builder's report on the group, once it is done with it; None when the group was
        never submitted or the builder is gone. A builder that takes longer than ``timeout_s``
        is stopped: the worker then builds what is missing itself."""
        key = group[0].case_id
        with self.changed:
            if key not in self.submitted:
                return None
            finished = self.changed.wait_for(lambda: key in self.reports or self.gone, timeout_s)
            if finished:
                return self.reports.get(key)
        self.stop()
        return None

    def wait_ready(self, timeout_s: float) -> dict | None:
        with self.changed:
            self.changed.wait_for(lambda: self.ready is not None or self.gone, timeout_s)
            return self.ready

    def let_go(self) -> None:
        """Tell the builder to exit (stdin closed: after the group in hand), not waiting."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def close(self, wait_s: float = 10) -> None:
        """End the builder: told to exit, then waited for (killed after ``wait_s``)."""
        self.let_go()
        try:
            self.proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            pass
        self.stop()

    def stop(self) -> None:
        """Kill the builder and anything it started, now."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        self.reader.join(timeout=5)


class Prebuilder:
    """The executor's use of a builder: started on first need, only for GPU groups, only where
    the cores can be split (``split`` None: never)."""

    def __init__(self, job: WorkerJob, split: CoreSplit | None):
        self.job = job
        self.split = split
        self.builder: Builder | None = None
        self.lock = threading.Lock()

    def upcoming(self, groups: list[list[Case]]) -> None:
        """The groups workers will take next, in order: the builder works through their
        artefacts in that order (each group once), so that an export is ready even when the
        group before it is short (on the H200 the first ONNX Runtime group waited 11 s for
        an export started one group ahead). Only GPU groups."""
        groups = [g for g in groups if g[0].device == "cuda"]
        if not groups or self.split is None:
            return
        with self.lock:
            if self.builder is None:
                try:
                    self.builder = Builder(self.job, self.split.builder,
                                           self.job.log_dir / "builder.log")
                except OSError as exc:  # no builder then: the workers build, as they always did
                    print(f"infersweep: builder not started ({exc})", file=sys.stderr)
                    self.split = None
                    return
        for group in groups:
            self.builder.submit(group)

    def info_for(self, group: list[Case]) -> dict:
        """Wait until the builder is done with the group; what its results should say."""
        if self.builder is None:
            return {}
        report = self.builder.wait_for(group, self.job.timeout_s)
        return report.info() if report is not None else {}

    def let_go(self) -> None:
        """The run's last GPU group is done: the builder may exit; ``close`` waits for it."""
        with self.lock:
            builder = self.builder
        if builder is not None:
            builder.let_go()

    def close(self) -> None:
        with self.lock:
            builder, self.builder = self.builder, None
        if builder is not None:
            builder.close()

    def stop(self) -> None:
        builder = self.builder
        if builder is not None:
            builder.stop()


# ---------------------------------------------------------------------------------------------
# The builder process.

def build(request: GroupRequest) -> BuildReport:
    """The group's artefacts, built (or found) in the cache; a failure is reported, not raised."""
    from infersweep.artefacts.cache import ArtifactCache
    from infersweep.artefacts.models import ModelSource
    from infersweep.backends import get_backend
    from infersweep.probes.group import short_reason

    first = request.cases[0]
    start = time.perf_counter()
    try:
        source = ModelSource(first.model, first.weights, request.seed, request.opset,
                             first.image_size)
        built = get_backend(first.backend).build_artefacts(source, first,
                                                           ArtifactCache(request.cache_dir))
        return BuildReport(first.case_id, [asdict(a) for a in built],
                           time.perf_counter() - start)
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        return BuildReport(first.case_id, [], time.perf_counter() - start, short_reason(exc))


def main(argv: list[str] | None = None) -> int:
    from infersweep.run.worker import die_with_parent

    parser = argparse.ArgumentParser()
    parser.add_argument("--result-fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--cpus", required=True, help="comma list of cores to run on")
    parser.add_argument("--nice", type=int, default=BUILDER_NICE)
    args = parser.parse_args(argv)
    die_with_parent(args.parent)
    os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    os.nice(args.nice)
    channel = os.fdopen(args.result_fd, "w", buffering=1)
    channel.write(json.dumps({"event": "ready", "pid": os.getpid(), "nice": os.nice(0),
                              "cpus": sorted(os.sched_getaffinity(0))}) + "\n")
    while line := sys.stdin.readline():
        if not line.strip():
            continue
        report = build(GroupRequest.from_json(line))
        channel.write(json.dumps({"event": "built", **asdict(report)}) + "\n")
    channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
