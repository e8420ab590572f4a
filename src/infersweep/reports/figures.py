"""The figures of a run's plots (plots.py saves them): throughput, speedup, latency distributions.

matplotlib's object API with the Agg canvas, never pyplot: no global state, no display needed, and
nothing changes for a caller that uses pyplot itself. A plot that has nothing to show (only failed
cases, a single batch size or image size) is skipped, not drawn empty.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator, ScalarFormatter

from infersweep.reports.pareto import pareto_figure
from infersweep.reports.summary import BatchCurve, Series, batch_curves, measured, varying_fields

PANEL_SIZE = (5.0, 3.6)  # inches per panel
LEGEND_COLUMNS = 2
LEGEND_ROW = 0.22  # inches per row of legend entries at "small" text
# A latency sample is an outlier of its case when it lies more than 3 interquartile ranges
# beyond the quartiles (Tukey's "far out") and more than 5% from the median: differences under
# 5% are ordinary jitter, never worth clipping the axis for.
OUTLIER_IQR = 3.0
MIN_OUTLIER_PCT = 5.0


class _Style:
    """One colour and marker per series, the same in every plot of a run."""

    def __init__(self, rows: list[dict]):
        self.varying = varying_fields(rows)
        series = sorted({Series.of(r) for r in rows})
        colors = [f"C{i}" for i in range(10)]
        self._color = {s: colors[i % 10] for i, s in enumerate(series)}
        precisions = sorted({s.precision for s in series})
        self._marker = {p: "osD^v<>"[i % 7] for i, p in enumerate(precisions)}

    def line(self, s: Series) -> dict:
        return {"color": self._color[s], "marker": self._marker[s.precision],
                "linestyle": "--" if s.device == "cuda" else "-", "label": s.label(self.varying)}


def _panels(n: int, title: str) -> tuple[Figure, list]:
    ncols = min(n, 2)  # wider panels shrink their text when the page scales them down
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(PANEL_SIZE[0] * ncols + 1.0, PANEL_SIZE[1] * nrows + 0.6),
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).flat)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig, axes[:n]


def _log_if_wide(ax, values: list[float], axis: str = "y") -> None:
    """Log scale when values span more than 10x, so the small ones are not a flat line at 0."""
    values = [v for v in values if v and v > 0]
    if values and max(values) / min(values) > 10:
        getattr(ax, f"set_{axis}scale")("log")
        # Plain numbers at 1, 2, 5 x 10^n: easier to read than 4 x 10^0 and 3 x 10^1.
        scale = getattr(ax, f"{axis}axis")
        scale.set_major_locator(LogLocator(subs=(1, 2, 5)))
        scale.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        scale.set_minor_formatter(NullFormatter())


def _batch_axis(ax, batches: list[int]) -> None:
    """Batch sizes are usually powers of two: log2 spacing, ticks at the batches that ran."""
    if len(batches) > 1 and max(batches) / min(batches) >= 4:
        ax.set_xscale("log", base=2)
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(batches)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("batch size (images)")


def _legend(fig, ax_list, extra: list[Line2D] = ()) -> None:
    handles = {}
    for ax in ax_list:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    for h in extra:
        handles.setdefault(h.get_label(), h)
    if not handles:
        return
    # Below the panels, never beside the title: the title is centred over the whole figure, so
    # a legend at the upper right covered its end whenever the figure was narrow (one panel) or
    # the title long (several models). The figure grows by the legend's rows.
    ncols = min(len(handles), LEGEND_COLUMNS)
    fig.set_figheight(fig.get_figheight() + LEGEND_ROW * math.ceil(len(handles) / ncols))
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=ncols,
               fontsize="small")


def _by(rows: list[dict], field: str) -> dict:
    out: dict = {}
    for r in rows:
        out.setdefault(r[field], []).append(r)
    return dict(sorted(out.items()))


def _lines(ax, rows: list[dict], x: str, y: str, style: _Style) -> None:
    for series, group in _by_series(rows).items():
        group.sort(key=lambda r: r[x])
        ax.plot([r[x] for r in group], [r[y] for r in group], **style.line(series))


def _by_series(rows: list[dict]) -> dict[Series, list[dict]]:
    out: dict[Series, list[dict]] = {}
    for r in rows:
        out.setdefault(Series.of(r), []).append(r)
    return dict(sorted(out.items()))


def throughput_vs_batch(rows: list[dict], curves: list[BatchCurve], style: _Style,
                        title: str) -> Figure | None:
    ok = measured(rows)
    if len({r["batch_size"] for r in ok}) < 2:
        return None
    sizes = _by(ok, "image_size")
    fig, axes = _panels(len(sizes), f"Throughput vs batch size: {title}")
    for ax, (size, group) in zip(axes, sizes.items()):
        _lines(ax, group, "batch_size", "throughput_ips", style)
        for c in (c for c in curves if c.image_size == size):
            color = style.line(c.series)["color"]
            # The optimal batch (first to reach 95% of the best) as a large star on its line.
            ax.plot([c.optimal_batch], [c.optimal_ips], marker="*", markersize=16, color=color,
                    markeredgecolor="black", linestyle="none", zorder=5)
            if c.rising:
                note = (f"rising; batch {c.failed_above[0][0]} {c.failed_above[0][1]}"
                        if c.failed_above else "not saturated")
                # Left of and below the last point: to its right is the panel's edge.
                ax.annotate(note, (c.batches[-1], c.throughputs[-1]), xytext=(-10, -4),
                            textcoords="offset points", ha="right", va="top",
                            fontsize="x-small", color=color)
        _batch_axis(ax, sorted({r["batch_size"] for r in group}))
        _log_if_wide(ax, [r["throughput_ips"] for r in group])
        ax.set_ylabel("throughput (images/s)")
        ax.set_title(f"{size} px")
        ax.grid(True, alpha=0.3)
    marker = Line2D([], [], marker="*", markersize=12, color="grey", markeredgecolor="black",
                    linestyle="none", label="optimal batch (95% of best)")
    _legend(fig, axes, [marker])
    return fig


def throughput_vs_size(rows: list[dict], style: _Style, title: str) -> Figure | None:
    ok = measured(rows)
    if len({r["image_size"] for r in ok}) < 2:
        return None
    batches = _by(ok, "batch_size")
    fig, axes = _panels(len(batches), f"Throughput vs image size: {title}")
    for ax, (batch, group) in zip(axes, batches.items()):
        _lines(ax, group, "image_size", "throughput_ips", style)
        ax.set_xticks(sorted({r["image_size"] for r in group}))
        _log_if_wide(ax, [r["throughput_ips"] for r in group])
        ax.set_xlabel("image size (px)")
        ax.set_ylabel("throughput (images/s)")
        ax.set_title(f"batch {batch}")
        ax.grid(True, alpha=0.3)
    _legend(fig, axes)
    return fig


def speedup_vs(rows: list[dict], x: str, baseline: str, style: _Style,
               title: str) -> Figure | None:
    """Speedup over the baseline against batch size (a panel per image size) or image size (a
    panel per batch size). The baseline itself is the dashed line at 1x."""
    panel_field = "image_size" if x == "batch_size" else "batch_size"
    with_speedup = [r for r in measured(rows) if r["speedup"] is not None
                    and r["backend"] != baseline]
    if not with_speedup or len({r[x] for r in with_speedup}) < 2:
        return None
    panels = _by(with_speedup, panel_field)
    fig, axes = _panels(len(panels), f"Speedup over {baseline}: {title}")
    for ax, (value, group) in zip(axes, panels.items()):
        _lines(ax, group, x, "speedup", style)
        ax.axhline(1.0, color="black", linestyle=":", linewidth=1, label=f"{baseline} (1x)")
        xs = sorted({r[x] for r in group})
        if x == "batch_size":
            _batch_axis(ax, xs)
        else:
            ax.set_xticks(xs)
            ax.set_xlabel("image size (px)")
        _log_if_wide(ax, [r["speedup"] for r in group] + [1.0])
        ax.set_ylabel(f"speedup over {baseline} (x)")
        ax.set_title(f"{value} px" if panel_field == "image_size" else f"batch {value}")
        ax.grid(True, alpha=0.3)
    _legend(fig, axes)
    return fig


def bulk_limits(relative: list[np.ndarray]) -> tuple[float, float]:
    """The range of every sample that is not an outlier of its own case (beyond its quartiles by
    more than OUTLIER_IQR interquartile ranges, and more than MIN_OUTLIER_PCT from its median),
    padded by a twentieth on each side."""
    bulk = []
    for s in relative:
        q1, q3 = np.percentile(s, [25, 75])
        reach = OUTLIER_IQR * (q3 - q1)
        low, high = min(q1 - reach, -MIN_OUTLIER_PCT), max(q3 + reach, MIN_OUTLIER_PCT)
        bulk.append(s[(s >= low) & (s <= high)])
    values = np.concatenate(bulk)
    pad = 0.05 * max(values.max() - values.min(), 1.0)
    return float(values.min() - pad), float(values.max() + pad)


def _clip_to_bulk(ax, relative: list[np.ndarray]) -> str:
    """Limit the "% from median" axis to the bulk of the samples when a few lie far outside it:
    one +700% sample would otherwise squash every box into a line at 0. Clipped samples are
    marked by a triangle at the edge on their case's row, and the axis label says how many there
    are and how far they reach. Returns the axis label."""
    label = "difference from the case's median (%)"
    low, high = bulk_limits(relative)
    beyond = [(i, v) for i, s in enumerate(relative, start=1) for v in s
              if v < low or v > high]
    if not beyond:
        return label
    ax.set_xlim(low, high)
    for side, edge, marker in ((1, high, ">"), (-1, low, "<")):
        rows = sorted({i for i, v in beyond if v * side > 0})
        if rows:  # an empty line would still count in the layout, at the figure's corner
                ax.plot([edge] * len(rows), rows, linestyle="none", marker=marker, color="black",
                    markersize=5, clip_on=False)
    extreme = max((v for _, v in beyond), key=abs)
    return (f"{label}\nclipped: {len(beyond)} sample{'s' if len(beyond) > 1 else ''} beyond "
            f"(triangles), up to {extreme:+.0f}%")


def latency_distribution(rows: list[dict], samples: dict[str, list[float]], size: int,
                         style: _Style, title: str) -> Figure | None:
    """Every timed sample of every case at one image size, one box per case. Left: the raw
    latency. Right: each sample relative to its case's median, so that a case with a wide spread
    or a long tail stands out even when medians differ by orders of magnitude. Whiskers at the
    1st and 99th percentiles, dots beyond them."""
    cases = [r for r in measured(rows) if r["image_size"] == size and samples.get(r["case_id"])]
    if not cases:
        return None
    cases.sort(key=lambda r: (Series.of(r), r["batch_size"]))
    data = [np.asarray(samples[r["case_id"]], dtype=float) for r in cases]
    labels = [f"{Series.of(r).label(style.varying)}, batch {r['batch_size']}" for r in cases]
    relative = [100 * (s / np.median(s) - 1) for s in data]
    fig = Figure(figsize=(12, 1.4 + 0.32 * len(cases)), layout="constrained")
    FigureCanvasAgg(fig)
    raw_ax, rel_ax = fig.subplots(1, 2, sharey=True)
    for ax, values in ((raw_ax, data), (rel_ax, relative)):
        boxes = ax.boxplot(values, orientation="horizontal", whis=(1, 99), patch_artist=True,
                           tick_labels=labels, medianprops={"color": "black"},
                           flierprops={"markersize": 3, "alpha": 0.5})
        for patch, r in zip(boxes["boxes"], cases):
            patch.set_facecolor(style.line(Series.of(r))["color"])
            patch.set_alpha(0.7)
        ax.grid(True, axis="x", alpha=0.3)
    raw_ax.invert_yaxis()  # first case on top, in reading order (shared with the right panel)
    _log_if_wide(raw_ax, [v for s in data for v in s], axis="x")
    raw_ax.set_xlabel("latency per batch (ms)")
    rel_ax.axvline(0, color="black", linewidth=0.8)
    rel_ax.set_xlabel(_clip_to_bulk(rel_ax, relative))
    fig.suptitle(f"Latency distribution at {size} px: {title}")
    return fig


def figures(rows: list[dict], samples: dict[str, list[float]],
            baseline: str) -> Iterator[tuple[str, str, Figure]]:
    """(file stem, caption, figure) of every plot that has something to show, one at a time."""
    for name, caption, make in makers(rows, samples, baseline):
        fig = make()
        if fig is not None:
            yield name, caption, fig


def makers(rows: list[dict], samples: dict[str, list[float]],
           baseline: str) -> list[tuple[str, str, Callable[[], Figure | None]]]:
    """(file stem, caption, drawing function) of every plot that may have something to show:
    each can be drawn on its own (reports/plots.py draws them in parallel processes)."""
    style = _Style(rows)
    title = ", ".join(sorted({r["model"] for r in rows}))
    curves = batch_curves(rows)
    found: list[tuple[str, str, Callable[[], Figure | None]]] = [
        ("throughput_vs_batch", "Throughput vs batch size (star: optimal batch)",
         lambda: throughput_vs_batch(rows, curves, style, title)),
        ("throughput_vs_size", "Throughput vs image size",
         lambda: throughput_vs_size(rows, style, title)),
        ("speedup_vs_batch", f"Speedup over {baseline} vs batch size",
         lambda: speedup_vs(rows, "batch_size", baseline, style, title)),
        ("speedup_vs_size", f"Speedup over {baseline} vs image size",
         lambda: speedup_vs(rows, "image_size", baseline, style, title)),
        ("pareto", "Throughput vs p99 latency: Pareto front per device, model and size",
         lambda: pareto_figure(rows)),
    ]
    for size in sorted({r["image_size"] for r in measured(rows)}):
        found.append((f"latency_{size}px", f"Latency distribution at {size} px",
                       lambda size=size: latency_distribution(rows, samples, size, style, title)))
    return found
