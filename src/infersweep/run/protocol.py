"""What the parent and a worker say to each other: a typed request in, typed events out.

The parent writes one ``GroupRequest`` (a JSON line) on the worker's stdin per group, keeping stdin
open; the worker serves them one after the other and exits when stdin ends. It answers on a pipe
of its own, never on stdout (runtimes and user code print whatever they like there), one JSON
line per event:
    CaseStarted   before anything of the case runs (prepare included)
    CaseFinished  when the case has ended, whatever its status, with its Result
    GroupDone     after the group's last case, once the worker has let go of the group's session
If the worker dies, the parent knows which case was in flight from the last CaseStarted.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from infersweep.case import Case
from infersweep.measure.timing import MeasureSettings
from infersweep.results.result import Result


@dataclass(frozen=True)
class WorkerJob:
    """How every worker of a sweep runs: measurement settings and limits (the parent's side)."""
    settings: MeasureSettings = field(default_factory=MeasureSettings)
    seed: int = 0
    opset: int | None = None
    cache_dir: str | None = None  # None: the user's infersweep cache
    timeout_s: float = 600.0  # per case, preparation included
    log_dir: Path = Path("logs")
    gpu: int | None = None  # physical GPU index for CUDA_VISIBLE_DEVICES; None = leave as is
    cpu_threads: int | None = None  # cap on the worker's CPU threads (parallel GPU workers)
    cpus: tuple[int, ...] | None = None  # cores the worker is pinned to (a builder has the rest)
    # A fresh worker for every group (the isolation of old): no worker serves two groups.
    worker_per_group: bool = False


@dataclass(frozen=True)
class GroupRequest:
    """One group of cases sharing a prepared model, and how to measure them (the worker's side)."""
    cases: tuple[Case, ...]
    settings: MeasureSettings
    seed: int = 0
    opset: int | None = None
    cache_dir: str | None = None
    log: str | None = None  # the group's log: the worker sends its stdout and stderr there
    # The cores to measure on: a worker started ahead of its turn imported its runtime on the
    # builder's cores and moves to these before the group (run/local.py, WorkerSlot.prestart).
    cpus: tuple[int, ...] | None = None

    @classmethod
    def for_job(cls, cases: list[Case], job: WorkerJob, log: Path | None = None) -> GroupRequest:
        return cls(tuple(cases), job.settings, job.seed, job.opset, job.cache_dir,
                   str(log) if log else None, job.cpus)

    def to_json(self) -> str:
        """One line: requests are separated by newlines on the worker's stdin."""
        return json.dumps({"cases": [c.to_dict() for c in self.cases],
                           "settings": asdict(self.settings), "seed": self.seed,
                           "opset": self.opset, "cache_dir": self.cache_dir, "log": self.log,
                           "cpus": list(self.cpus) if self.cpus else None})

    @classmethod
    def from_json(cls, text: str) -> GroupRequest:
        d = json.loads(text)
        cpus = d.get("cpus")
        return cls(tuple(Case.from_dict(c) for c in d["cases"]), MeasureSettings(**d["settings"]),
                   d["seed"], d["opset"], d["cache_dir"], d.get("log"),
                   tuple(int(c) for c in cpus) if cpus else None)


@dataclass(frozen=True)
class CaseStarted:
    case_id: str

    def to_line(self) -> str:
        return json.dumps({"event": "start", "case_id": self.case_id}) + "\n"


@dataclass(frozen=True)
class CaseFinished:
    result: Result

    def to_line(self) -> str:
        return json.dumps({"event": "result", "result": json.loads(self.result.to_json())}) + "\n"


@dataclass(frozen=True)
class GroupDone:
    """The worker served the group (its first case's id) and is ready for the next one."""
    group: str

    def to_line(self) -> str:
        return json.dumps({"event": "group_done", "group": self.group}) + "\n"


Event = CaseStarted | CaseFinished | GroupDone


def parse_event(line: bytes | str) -> Event | None:
    """One line from a worker; None for a line that is not an event (a torn or foreign line)."""
    try:
        message = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(message, dict):
        return None
    if message.get("event") == "start" and isinstance(message.get("case_id"), str):
        return CaseStarted(message["case_id"])
    if message.get("event") == "result" and isinstance(message.get("result"), dict):
        return CaseFinished(Result.from_json(json.dumps(message["result"])))
    if message.get("event") == "group_done" and isinstance(message.get("group"), str):
        return GroupDone(message["group"])
    return None
