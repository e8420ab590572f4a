"""CPU memory of the worker process, read from the kernel (Linux /proc).

The case's peak resident set is VmHWM after the high-water mark was reset at the start of the case
(writing 5 to /proc/self/clear_refs). Never an RSS difference in the parent: the parent never runs
a model, and RSS differences miss the peak and count unrelated frees.
"""

from __future__ import annotations

from pathlib import Path

SOURCE_CPU_PEAK = "cpu:VmHWM (worker peak RSS while running the case; incl. runtime libraries)"
SOURCE_CPU_PEAK_UNRESET = "cpu:VmHWM (worker peak RSS since start; the kernel refused a reset)"


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float | None:
    kb = _status_kb("VmHWM")
    return kb / 1024 if kb is not None else None


def rss_mb() -> float | None:
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else None
