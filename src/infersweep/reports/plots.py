"""Plots of a run, written to DIR/plots/ as PNG (for the HTML report) and SVG (for papers).

The drawing is in figures.py; it imports matplotlib, so it is imported only when plots are
drawn: registering the format (and writing results.csv after every case) does not pay for it.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import repeat
from multiprocessing import get_context
from pathlib import Path

from infersweep.reports.formats import ReportContext, ReportFormat, atomic_write
from infersweep.results.result import Result

PNG_DPI = 110


@dataclass
class Plot:
    name: str  # file stem under plots/
    title: str
    png: Path
    svg: Path


def write_plots(out_dir: Path, rows: list[dict], results: list[Result], baseline: str,
                processes: int | None = None) -> list[Plot]:
    """Every plot that has something to show; stale files from an earlier rebuild are removed.

    Rendering is most of a report's time (the original grid's 9 plots as PNG and SVG: 10.8 s
    after the last case on the H200; a 72-case sweep's 11 plots: 14-16 s on the 2-core box), and
    each plot is drawn on its own:
    they are drawn in ``processes`` processes at once (default: one per usable core, at most one
    per plot, from 8 plots on: 7 small plots took as long in two processes as in one on the
    2-core box). The final reports come after the last case, so nothing is measured beside them."""
    from infersweep.reports.figures import makers
    from infersweep.reports.scenarios import figures as scenario_figures

    directory = out_dir / "plots"
    directory.mkdir(exist_ok=True)
    samples = {r.case.case_id: r.samples_ms for r in results}
    names = [(name, caption) for name, caption, _ in makers(rows, samples, baseline)]
    if processes is None:  # a pool's start (each process imports matplotlib) pays from ~8 on
        processes = min(len(names), len(os.sched_getaffinity(0))) if len(names) >= 8 else 1
    drawn = None
    if processes > 1:
        try:
            with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
                drawn = list(pool.map(_draw, repeat(directory), [n for n, _ in names],
                                      repeat(rows), repeat(samples), repeat(baseline)))
        except (OSError, BrokenProcessPool):  # no processes to be had: drawn here instead
            drawn = None
    if drawn is None:
        drawn = [_draw(directory, name, rows, samples, baseline) for name, _ in names]
    plots = [Plot(name, caption, directory / f"{name}.png", directory / f"{name}.svg")
             for (name, caption), done in zip(names, drawn) if done]
    for name, caption, fig in scenario_figures(rows, results):
        _save(directory, name, fig)
        plots.append(Plot(name, caption, directory / f"{name}.png", directory / f"{name}.svg"))
    written = {p.png for p in plots} | {p.svg for p in plots}
    for old in [*directory.glob("*.png"), *directory.glob("*.svg")]:
        if old not in written:
            old.unlink()
    return plots


def _draw(directory: Path, name: str, rows: list[dict], samples: dict[str, list[float]],
          baseline: str) -> bool:
    """Draw and save one plot (in a process of the pool or here); False if it has nothing to
    show."""
    from infersweep.reports.figures import makers

    for stem, _, make in makers(rows, samples, baseline):
        if stem == name:
            fig = make()
            if fig is None:
                return False
            _save(directory, name, fig)
            return True
    return False


def _save(directory: Path, name: str, fig) -> None:
    for fmt in ("png", "svg"):
        # No date in the SVG: the same results give the same file.
        atomic_write(directory / f"{name}.{fmt}", lambda tmp, fmt=fmt: fig.savefig(
            tmp, format=fmt, dpi=PNG_DPI, metadata={"Date": None} if fmt == "svg" else None))


def plots_of(ctx: ReportContext) -> list[Plot]:
    """The plots of this write, drawn by the first format that needs them (plots or html)."""
    if ctx.plots is None:
        ctx.plots = write_plots(ctx.out_dir, ctx.rows, ctx.results, ctx.baseline)
    return ctx.plots


def write(ctx: ReportContext) -> None:
    # Several machines: a line through cases of several machines would mean nothing; each
    # machine's own report has its plots.
    if not ctx.hardware:
        plots_of(ctx)


REPORT_FORMATS = [ReportFormat("plots", ("plots/",), write, visual=True)]
