"""report.md: summary, environment, how the numbers were measured, the results table, failures.

The results table is rendered from the column declarations (results.result.columns()), so a
column a probe declares appears here without editing this module. A few cells join several
columns into one a reader scans faster ("backend (options)", the input shape, "median ± std");
they lead the table, the status ends it, every other declared column sits between them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from infersweep.backends.torch_compile import fx_graph_counts
from infersweep.env import describe, has_int8_dot_product
from infersweep.probes.base import Column
from infersweep.reports import knobs, scenarios
from infersweep.reports.blocks import md_cell, to_markdown
from infersweep.reports.formats import ReportContext, ReportFormat, atomic_write
from infersweep.reports.recommend import report_sections
from infersweep.reports.rows import above_peak_note, problems, status_line
from infersweep.reports.summary import build_summary, markdown_lines
from infersweep.results import result as resultmod
from infersweep.results.time_split import TimeSplit, by_backend, total


def _ms(value) -> str:
    if value is None:
        return ""
    return f"{value:.3f} ms" if value < 100 else f"{value:.1f} ms"


@dataclass(frozen=True)
class Cell:
    """One column of the report.md table: its header, alignment and how a row fills it."""
    title: str
    numeric: bool
    render: Callable[[dict], str]
    covers: tuple[str, ...] = ()  # the declared columns it shows


def _time_batch(r: dict) -> str:
    if r["status"] != "ok" or r["latency_ms_median"] is None:  # a server case: see Scenarios
        return ""
    return f"{_ms(r['latency_ms_median'])} ± {r['latency_ms_std']:.3f}"


COMPOSITE = {
    "backend": Cell("backend", False, lambda r: md_cell(
        (f"{r['backend']} ({r['options']})" if r["options"] else r["backend"])
        + (f" {r['scenario']}" if r.get("scenario") else "")),
        ("backend", "options", "scenario")),
    "shape": Cell("shape", False,
                  lambda r: f"({r['batch_size']}, 3, {r['image_size']}, {r['image_size']})",
                  ("image_size", "batch_size")),
    "time (batch)": Cell("time (batch)", True, _time_batch,
                         ("latency_ms_median", "latency_ms_std")),
}
# What the case is, first (composite cells by their title, other columns by name); status last.
LEADING = ("backend", "data", "precision", "device", "shape", "time (batch)")
TRAILING = ("status",)


def column_cell(column: Column) -> Cell:
    """A declared column as a report.md cell: the value carries its unit ("12.5 MB"), so the
    header drops it ("memory", not "memory (MB)")."""
    unit = column.unit.strip()
    title = column.title.removesuffix(f" ({unit})") if unit else column.title

    def render(row: dict) -> str:
        value = row.get(column.name)
        if value is None or value == "":
            return ""
        return f"{value:{column.fmt}}{column.unit}" if column.fmt else md_cell(value)

    return Cell(title, column.fmt is not None, render, (column.name,))


def table_cells(columns: list[Column]) -> list[Cell]:
    """The table's cells from the declarations: leading, declared order, trailing."""
    declared = {c.name: column_cell(c) for c in columns if c.in_table}
    placed = {name for key in LEADING + TRAILING
              for name in (COMPOSITE[key].covers if key in COMPOSITE else (key,))}

    def cell(key: str) -> Cell | None:
        return COMPOSITE.get(key) or declared.get(key)

    middle = [c for name, c in declared.items() if name not in placed]
    return [c for c in map(cell, LEADING) if c] + middle + [c for c in map(cell, TRAILING) if c]


def results_table(rows: list[dict], columns: list[Column]) -> list[str]:
    cells = table_cells(columns)
    lines = ["| " + " | ".join(c.title for c in cells) + " |",
             "|" + "|".join("---:" if c.numeric else "---" for c in cells) + "|"]
    lines += ["| " + " | ".join(c.render(r) for c in cells) + " |" for r in rows]
    return lines


def _above_peak_notes(rows: list[dict]) -> list[str]:
    note = above_peak_note(rows)
    return [f"- {note}"] if note else []


def _method(rows: list[dict], baseline: str, peaks: dict) -> list[str]:
    memory_sources = sorted({r["memory_source"] for r in rows if r["memory_source"]})
    return [
        "## How these numbers were measured", "",
        "- time (batch): median wall-clock latency of one batch, synchronized, inputs already "
        "where the runtime needs them; after a cold run and a warmup that lasted until the "
        "running median settled. ± is the standard deviation.",
        "- time (per image) = median / batch size; throughput = batch size / median.",
        "- pipelined (GPU only): images/s over N back-to-back runs with one synchronize at "
        "the end, so the launch queue stays full (what a serving system sees).",
        f"- speedup = median of `{baseline}` / median of the row, at the same device, "
        "precision, image size, batch size and data; empty where there is no such "
        f"`{baseline}` row.",
        "- GFLOPs per image from torch.utils.flop_counter at the real input shape "
        "(FLOPs = 2 x multiply-adds); achieved TFLOP/s = FLOPs x batch / median; "
        "utilisation = achieved / peak of the device in the case's precision.",
        *[f"- peak used for {key.replace(':', ' ')}: {p['tflops']:g} TFLOP/s ({p['source']})"
          for key, p in sorted(peaks.items())],
        *_above_peak_notes(rows),
        "- agreement: outputs against fp32 eager PyTorch on the CPU, same batch: max abs "
        "error, worst per-image cosine, top-1 agreement; accuracy where the data folder "
        "has one subfolder per class.",
        *[f"- memory: {src}" for src in memory_sources], ""]


def _problems(rows: list[dict]) -> list[str]:
    found = problems(rows)
    if not found:
        return []
    lines = ["", "## Cases that did not run cleanly", "",
             "Untrusted rows keep their figures here but get no speedup and never rank as "
             "fastest.", "", "| case | status | reason | figures |", "|---|---|---|---|"]
    for p in found:
        r = p.row
        label = (f"{r['backend']} {r['device']} {r['precision']} {r['image_size']}px "
                 f"bs{r['batch_size']} {r['data']}")
        lines.append(f"| {label} | {p.status} | {md_cell(p.why)} | {md_cell(p.figures)} |")
    return lines


def _hardware(groups: list) -> list[str]:
    lines = ["", "## Hardware", "",
             f"This sweep ran on {len(groups)} kinds of machine. The table above is grouped by "
             "machine in this order; each speedup compares cases measured on the same machine, "
             "and utilisation uses that machine's peak. Each machine has its own full report:", "",
             "| hardware | hosts | cases | peaks | report |", "|---|---|---:|---|---|"]
    for group in groups:
        peak_text = "; ".join(f"{k.replace(':', ' ')} {p['tflops']:g} TFLOP/s"
                              for k, p in sorted(group.peaks.items()))
        link = f"{group.folder}/report.md"
        lines.append(f"| {group.label} | {', '.join(sorted(h for h in group.hosts if h))} "
                     f"| {len(group.results)} | {peak_text} | [{link}]({link}) |")
    return lines


def _sections(ctx: ReportContext) -> list[str]:
    """Recommendation and Pareto front; none for several machines (each one's report has
    them: a front across machines would compare different hardware)."""
    if ctx.hardware:
        return []
    return [line for title, blocks in report_sections(ctx.rows, ctx.constraints)
            for line in (f"## {title}", "", *to_markdown(blocks))]


def compile_cache_note(results: list[resultmod.Result]) -> list[str]:
    """torch-compile's part of setup: how many graphs Inductor loaded from its FX-graph cache and
    how many it compiled (info.fx_graph_cache; each case counts its own batch size's shape)."""
    counts = fx_graph_counts((r.info, r.case.batch_size) for r in results)
    if not counts:
        return []
    bypass = f", {counts['bypass']} not cacheable" if counts.get("bypass") else ""
    return [f"- torch-compile graphs: {counts.get('hit', 0)} loaded from Inductor's FX-graph "
            f"cache, {counts.get('miss', 0)} compiled anew{bypass} (a rerun on this cache loads "
            "the ones compiled anew)."]


def time_section(sessions: list[dict] | None, results: list[resultmod.Result] = ()) -> list[str]:
    """"Where the time went": the run's wall time (every session of it summed) split into
    measuring, setup and harness (results/time_split.py)."""
    lines = ["## Where the time went", ""]
    try:
        split = total(TimeSplit.from_dict(s) for s in sessions or [])
        split and split.line()  # a record with a non-number in it fails here, not half-way
    except (TypeError, ValueError, AttributeError):
        split = None
    if split is None:
        return lines + ["Not recorded: this run directory was written by a version of "
                        "infersweep that did not record its wall time.", ""]
    sessions_note = f", summed over its {split.sessions} sessions (each `run` of this directory)" \
        if split.sessions > 1 else ""
    workers = f" x {split.workers} workers side by side" if split.workers > 1 else ""
    lines += [f"Wall time from the start of the sweep to its last case{workers}{sessions_note}; "
              "the final reports are not in it.", "",
              "| | seconds | share |", "|---|---:|---:|",
              *[f"| {name} | {s:.1f} | {split.percent(s):.0f}% |" for name, s in split.parts()],
              f"| wall | {split.wall_s:.1f} | |", "",
              "- measuring: cold run, warmup and timed runs of every case, re-measures included.",
              "- setup: export, compilation, engine builds, session creation and per-shape "
              "specialisation.",
              "- harness: the rest: worker start and imports, probes (memory, FLOPs, the fp32 "
              "reference) and pipelined throughput (GPU), storing and reports after each case, "
              "gaps between cases, failed cases.", *compile_cache_note(results), "",
              *backend_table(results)]
    return lines


def backend_table(results: list[resultmod.Result]) -> list[str]:
    """Each (backend, device)'s cases: their wall, measuring (and the cold first runs in it:
    cuDNN's or ONNX Runtime's autotuning of a new shape), setup; what to drop or cache first."""
    parts = by_backend(results)
    if not parts:
        return []
    return ["By backend: the cases' own wall time (the gaps between cases are harness), its "
            "measuring, of which the cold first run of each case, and setup.", "",
            "| backend | device | cases | wall s | measuring s | of which first runs s | "
            "setup s | setup per case s |", "|---|---|---:|---:|---:|---:|---:|---:|",
            *[f"| {p.backend} | {p.device} | {p.cases} | {p.wall_s:.1f} | {p.measuring_s:.1f} | "
              f"{p.first_runs_s:.1f} | {p.setup_s:.1f} | {p.setup_s / p.cases:.2f} |"
              for p in parts], ""]


def markdown_text(ctx: ReportContext) -> str:
    rows, env = ctx.rows, ctx.env
    lines = [f"# infersweep report: {ctx.title}", "",
             f"{len(rows)} cases: {status_line(rows)}", "",
             *markdown_lines(build_summary(rows, env, ctx.baseline, ctx.baseline_ok)),
             *knobs.markdown_lines(knobs.knob_findings(rows)),
             *_sections(ctx),
             "## Environment", "", "| | |", "|---|---|",
             *[f"| {label} | {value} |" for label, value in describe(env)], "",
             *_method(rows, ctx.baseline, ctx.peaks),
             "## Results", "", *results_table(rows, resultmod.columns())]
    if any(r["precision"] == "int8" and r["device"] == "cpu" for r in rows) \
            and not has_int8_dot_product(env):
        lines += ["", "Note: this CPU has no VNNI/AMX int8 dot-product instructions; INT8 often "
                      "brings no speedup on such CPUs."]
    lines += scenarios.markdown_lines(rows)
    lines += _problems(rows)
    if ctx.sessions is not None:  # None: a per-machine sub-report, or a run from before
        lines += ["", *time_section(ctx.sessions, ctx.results)]
    if ctx.hardware:
        lines += _hardware(ctx.hardware)
    return "\n".join(lines) + "\n"


def write(ctx: ReportContext) -> None:
    atomic_write(ctx.out_dir / "report.md", markdown_text(ctx))


REPORT_FORMATS = [ReportFormat("md", ("report.md",), write)]
