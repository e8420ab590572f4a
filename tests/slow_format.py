"""A test-only report format that takes its time, so Ctrl-C can arrive while reports are written.

Loaded through INFERSWEEP_PLUGINS=slow_format (tests/ on PYTHONPATH). It is visual, so a sweep
writes it once, at the end, after the built-in formats. It creates DIR/slow-format-started, then
sleeps INFERSWEEP_SLOW_FORMAT_S seconds (default 60) before writing DIR/slow.txt.
"""

from __future__ import annotations

import os
import time

from infersweep.reports.formats import ReportFormat, atomic_write


def _write(context) -> None:
    (context.out_dir / "slow-format-started").write_text("")
    time.sleep(float(os.environ.get("INFERSWEEP_SLOW_FORMAT_S", "60")))
    atomic_write(context.out_dir / "slow.txt", f"{len(context.rows)} rows\n")


REPORT_FORMATS = [ReportFormat("slow", ("slow.txt",), _write, visual=True)]
