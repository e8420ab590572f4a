"""results.csv and results.json: the rows as plain data, for spreadsheets and scripts.

results.csv has the declared columns (results.result.columns()) in their order, an empty cell
where a figure was not measured. results.json has every row field plus what a row leaves out:
the raw samples, warmup count, wall time and the worker's info.
"""

from __future__ import annotations

import csv
import io
import json

from infersweep.reports.formats import ReportContext, ReportFormat, atomic_write
from infersweep.results import result as resultmod
from infersweep.results.result import Result


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):  # process_medians_ms: one cell, numbers separated by spaces
        return " ".join(f"{v:.6g}" for v in value)
    return value


def csv_text(rows: list[dict]) -> str:
    names = [c.name for c in resultmod.columns()]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in names})
    return buf.getvalue()


def json_text(rows: list[dict], results: list[Result], env: dict, baseline: str) -> str:
    extra = {r.case.case_id: r for r in results}
    out = []
    for row in rows:
        r = extra[row["case_id"]]
        out.append({**row, "warmup_iterations": r.warmup_iterations,
                    "wall_s": r.wall_s, "quick": r.quick, "info": r.info,
                    "finished_at": r.finished_at, "samples_ms": r.samples_ms})
    return json.dumps({"baseline": baseline, "env": env, "results": out}, indent=1)


def write_csv(ctx: ReportContext) -> None:
    atomic_write(ctx.out_dir / "results.csv", csv_text(ctx.rows))


def write_json(ctx: ReportContext) -> None:
    atomic_write(ctx.out_dir / "results.json",
                 json_text(ctx.rows, ctx.results, ctx.env, ctx.baseline))


REPORT_FORMATS = [ReportFormat("csv", ("results.csv",), write_csv),
                  ReportFormat("json", ("results.json",), write_json)]
