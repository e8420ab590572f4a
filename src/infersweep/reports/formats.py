"""Report formats: a registry name -> ReportFormat, the one atomic writer, and the one manager.

A format is one module that lists ``REPORT_FORMATS = [ReportFormat(...)]``; the built-in modules
are named in BUILTIN, and a plugin module named in ``$INFERSWEEP_PLUGINS`` adds its own the same
way (see plugins.py). Every format gets the same ReportContext: the rows (speedup and utilisation
already filled in, ``--only`` applied), the results behind them, the environment, the peaks.

Every derived file is rebuilt from the store's results (never edited in place) and written
atomically, so a reader sees either the previous or the new version, even mid-sweep.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from infersweep import plugins
from infersweep.grid.constraints import Constraints
from infersweep.reports import hardware, rows as rowsmod
from infersweep.results.result import Result

# One module per built-in format; their order is the order of `report --format`'s names.
BUILTIN = ("infersweep.reports.markdown", "infersweep.reports.csv_json",
           "infersweep.reports.html", "infersweep.reports.plots")


@dataclass
class ReportContext:
    """Everything a format may render; the same object for every format of one write."""
    out_dir: Path
    rows: list[dict]  # one per case shown, with speedup and utilisation
    results: list[Result]  # every stored result (raw samples, info)
    env: dict
    baseline: str
    peaks: dict = field(default_factory=dict)
    title: str = ""
    # The machines of a sweep that ran on several kinds of hardware (hardware.Hardware), in the
    # order the rows are grouped; empty on one machine.
    hardware: list = field(default_factory=list)
    plots: list | None = None  # drawn once per write, by whichever format needs them first
    # Whether the baseline has a successful case in the whole run when ``--only`` chose the rows
    # (the speedups come from the whole run); None when the rows are the whole run.
    baseline_ok: bool | None = None
    # The sweep file's [constraints]: report.md and report.html then carry a Recommendation.
    constraints: Constraints | None = None
    # The run's sessions (store meta "sessions": a results.time_split.TimeSplit each): where
    # the time went. None where the store has none (older runs, a per-machine sub-report).
    sessions: list | None = None


@dataclass(frozen=True)
class ReportFormat:
    name: str  # what `infersweep report --format` accepts
    files: tuple[str, ...]  # what it writes under the run directory ("plots/" for a folder)
    write: Callable[[ReportContext], None]
    # Visuals take seconds, so they are written only at the end of a sweep and on `report`,
    # not after every case.
    visual: bool = False


def atomic_write(path: Path, content: str | bytes | Callable[[Path], None]) -> None:
    """Write to a temporary file in the same folder, then rename it over ``path``: a reader sees
    the old file or the new one, never half of one. ``content`` may be a function that writes
    the temporary path itself (matplotlib's savefig)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if callable(content):
            content(tmp)
        elif isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            tmp.write_text(content, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def registry() -> dict[str, ReportFormat]:
    """name -> format, built-in ones first, then the plugins' (read each time: plugins are named
    by an environment variable)."""
    found = plugins.collect(BUILTIN, "REPORT_FORMATS")
    return {f.name: f for f in found}


def format_names() -> tuple[str, ...]:
    return tuple(registry())


def files_written(names: Iterable[str]) -> list[str]:
    """The files and folders the named formats write, for telling the user."""
    formats = registry()
    return list(dict.fromkeys(path for name in names for path in formats[name].files))


def __getattr__(name: str):
    # FORMATS is computed when asked for, so a plugin module may import this module.
    if name == "FORMATS":
        return format_names()
    raise AttributeError(name)


def write_reports(out_dir: Path, results: list[Result], env: dict, baseline: str,
                  peaks: dict | None = None, *, nodes: dict | None = None, visuals: bool = False,
                  only=None, formats: Iterable[str] | None = None,
                  constraints: Constraints | None = None,
                  sessions: list | None = None) -> list[dict]:
    """Write the chosen formats (all by default) of ``results`` to ``out_dir``; return the rows.

    visuals: also the visual formats (report.html, plots/). only: a Filter of rows, applied after
    the speedups (filtering first would drop the baseline rows). nodes: the store's meta "nodes"
    of a Ray sweep; when its cases ran on different hardware, speedups and utilisation are
    computed within each machine, the rows are grouped by machine, and DIR/hardware/<machine>/
    holds a full report per machine. On one kind of machine the report describes that machine
    (not the driver's) with its peaks. constraints: the sweep's [constraints], for the
    reports' Recommendation section."""
    peaks = peaks or {}
    formats = None if formats is None else tuple(formats)  # read again per machine below
    chosen = [f for f in registry().values()
              if (formats is None or f.name in formats) and (visuals or not f.visual)]
    groups, loose = hardware.group_by_hardware(results, env, peaks, nodes) if nodes \
        else ([], results)
    if len(groups) == 1:
        env, peaks = groups[0].env, groups[0].peaks
    if len(groups) <= 1:
        rows = rowsmod.report_rows(results, baseline, peaks, only)
        context = ReportContext(out_dir, rows, results, env, baseline, peaks, out_dir.name)
    else:
        for group in groups:
            sub = out_dir / group.folder
            sub.mkdir(parents=True, exist_ok=True)
            write_reports(sub, group.results, group.env, baseline, group.peaks,
                          visuals=visuals, only=only, formats=formats, constraints=constraints)
        rows = rowsmod.rows_by_hardware(groups, loose, baseline, only)
        context = ReportContext(out_dir, rows, results, hardware.combined_env(groups, env),
                                baseline, {}, out_dir.name, hardware=groups)
    context.constraints = constraints
    if only is not None:
        base = rowsmod.baseline_of(baseline)
        context.baseline_ok = any(r.status == "ok" and r.samples_ms
                                  and base.matches(r.case.backend, r.case.options)
                                  for r in results)
    context.sessions = sessions
    for report_format in chosen:
        report_format.write(context)
    return rows
