"""How long cases took, kept across runs in the cache directory, for `plan`'s time estimates.

One JSON line per finished case (append-only, so concurrent runs and kills cannot corrupt
earlier lines; a torn last line is skipped when read).
"""

from __future__ import annotations

import json
from pathlib import Path

from infersweep.artefacts.cache import cache_root
from infersweep.results.result import Result


def _path() -> Path:
    return cache_root() / "history.jsonl"


def record(result: Result) -> None:
    if result.wall_s is None:
        return
    _path().parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"case_id": result.case.case_id, "wall_s": round(result.wall_s, 3),
                       "status": result.status, "quick": result.quick,
                       "finished_at": result.finished_at})
    with open(_path(), "a") as f:
        f.write(line + "\n")


def wall_times(quick: bool = False) -> dict[str, float]:
    """The latest wall time of each case measured in the same mode (quick or full)."""
    times: dict[str, float] = {}
    try:
        with open(_path()) as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if entry.get("quick", False) == quick:
                    times[entry["case_id"]] = entry["wall_s"]
    except OSError:
        pass
    return times
