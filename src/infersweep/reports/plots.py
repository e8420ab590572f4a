"""Plots of a run, written to DIR/plots/ as PNG (for the HTML report) and SVG (for papers).

The drawing is in figures.py; it imports matplotlib, so it is imported only when plots are
drawn: registering the format (and writing results.csv after every case) does not pay for it.
"""

from __future__ import annotations

from dataclasses import dataclass
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


def write_plots(out_dir: Path, rows: list[dict], results: list[Result],
                baseline: str) -> list[Plot]:
    """Every plot that has something to show; stale files from an earlier rebuild are removed."""
    from infersweep.reports.figures import figures

    directory = out_dir / "plots"
    directory.mkdir(exist_ok=True)
    samples = {r.case.case_id: r.samples_ms for r in results}
    plots = []
    from infersweep.reports.scenarios import figures as scenario_figures

    for name, caption, fig in [*figures(rows, samples, baseline),
                               *scenario_figures(rows, results)]:
        paths = {}
        for fmt in ("png", "svg"):
            paths[fmt] = directory / f"{name}.{fmt}"
            # No date in the SVG: the same results give the same file.
            atomic_write(paths[fmt], lambda tmp, fmt=fmt: fig.savefig(
                tmp, format=fmt, dpi=PNG_DPI, metadata={"Date": None} if fmt == "svg" else None))
        plots.append(Plot(name, caption, paths["png"], paths["svg"]))
    written = {p.png for p in plots} | {p.svg for p in plots}
    for old in [*directory.glob("*.png"), *directory.glob("*.svg")]:
        if old not in written:
            old.unlink()
    return plots


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
