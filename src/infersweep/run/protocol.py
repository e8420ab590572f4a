"""What the parent and a worker say to each other: a typed request in, typed events out.

The parent writes one ``GroupRequest`` (JSON) on the worker's stdin. The worker answers on a pipe of
its own, never on stdout (runtimes and user code print whatever they like there), one JSON line
per event:
    CaseStarted   before anything of the case runs (prepare included)
    CaseFinished  when the case has ended, whatever its status, with its Result
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


@dataclass(frozen=True)
class GroupRequest:
    """One group of cases sharing a prepared model, and how to measure them (the worker's side)."""
    cases: tuple[Case, ...]
    settings: MeasureSettings
    seed: int = 0
    opset: int | None = None
    cache_dir: str | None = None

    @classmethod
    def for_job(cls, cases: list[Case], job: WorkerJob) -> GroupRequest:
        return cls(tuple(cases), job.settings, job.seed, job.opset, job.cache_dir)

    def to_json(self) -> str:
        return json.dumps({"cases": [c.to_dict() for c in self.cases],
                           "settings": asdict(self.settings), "seed": self.seed,
                           "opset": self.opset, "cache_dir": self.cache_dir})

    @classmethod
    def from_json(cls, text: str) -> GroupRequest:
        d = json.loads(text)
        return cls(tuple(Case.from_dict(c) for c in d["cases"]), MeasureSettings(**d["settings"]),
                   d["seed"], d["opset"], d["cache_dir"])


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


def parse_event(line: bytes | str) -> CaseStarted | CaseFinished | None:
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
    return None
