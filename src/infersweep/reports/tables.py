"""Old home of the report writer, kept so that callers of the previous layout keep working.

New code imports from formats.py (write_reports, FORMATS), rows.py and csv_json.py.
"""

from __future__ import annotations

from infersweep.reports import formats
from infersweep.reports.csv_json import csv_text, json_text
from infersweep.reports.formats import write_reports
from infersweep.reports.rows import SPEEDUP_KEY, add_utilization, rows_with_speedup

__all__ = ["FORMATS", "SPEEDUP_KEY", "add_utilization", "csv_text", "json_text",
           "rows_with_speedup", "write_reports"]


def __getattr__(name: str):
    if name == "FORMATS":  # from the registry when asked: plugins may add formats
        return formats.format_names()
    raise AttributeError(name)
