"""Plots with real matplotlib into real files: which are drawn, and which are skipped for lack of
data (only failures, one batch size, one image size)."""

import dataclasses
import random

import numpy as np

from infersweep.case import Case
from infersweep.reports.plots import write_plots
from infersweep.reports.formats import write_reports
from infersweep.reports.rows import rows_with_speedup
from infersweep.results.result import Result

ENV = {"host": "h", "cpu": "c", "cores_usable": 2, "cores_logical": 2, "memory_gib": 1.0,
       "os": "linux", "python": "3", "packages": {}, "gpus": []}


def _case(backend, size, batch, precision="fp32", device="cpu"):
    return Case("resnet18", "random(seed=0)", backend, device, precision, size, batch, "synthetic")


def _ok(backend, size, batch, median, precision="fp32", device="cpu"):
    rng = random.Random(f"{backend}{size}{batch}")  # a string seed: the same every run
    samples = [median * (1 + abs(rng.gauss(0, 0.02))) for _ in range(30)]
    return Result(_case(backend, size, batch, precision, device), "ok", samples_ms=samples)


def _sweep(sizes=(224, 384), batches=(1, 8, 32)):
    results = []
    for backend, factor in (("torch", 1.0), ("onnxruntime", 0.6)):
        for size in sizes:
            for batch in batches:
                results.append(_ok(backend, size, batch, factor * (4 + 2 * batch) * size / 224))
    results.append(_ok("torch", 224, 8, 9.0, precision="fp16", device="cuda"))
    results.append(Result(_case("onnxruntime", 224, 64), "oom", reason="MemoryError"))
    return results


def _plots(tmp_path, results):
    rows = rows_with_speedup(results, "torch")
    return {p.name: p for p in write_plots(tmp_path, rows, results, "torch")}


def test_full_sweep_draws_every_plot_as_png_and_svg(tmp_path):
    plots = _plots(tmp_path, _sweep())
    assert set(plots) == {"throughput_vs_batch", "throughput_vs_size", "speedup_vs_batch",
                          "speedup_vs_size", "latency_224px", "latency_384px", "pareto"}
    for p in plots.values():
        assert p.png.parent == tmp_path / "plots"
        assert p.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.png.stat().st_size > 5000
        svg = p.svg.read_text()
        assert svg.lstrip().startswith("<?xml") and "</svg>" in svg
    assert not list((tmp_path / "plots").glob(".*"))  # no temporary files left


def test_plot_text_names_axes_units_and_series(tmp_path):
    svg = _plots(tmp_path, _sweep())["throughput_vs_batch"].svg.read_text()
    # matplotlib draws text as glyph paths, each string preceded by a comment holding it.
    for needle in ("throughput (images/s)", "batch size (images)", "onnxruntime fp32 cpu",
                   "torch fp16 cuda", "optimal batch (95% of best)", "224 px", "384 px"):
        assert f"<!-- {needle} -->" in svg, needle


def test_only_failed_cases_draw_nothing(tmp_path):
    results = [Result(_case("torch", 224, 8), "crashed", reason="SIGSEGV"),
               Result(_case("onnxruntime", 224, 8), "unavailable", reason="not installed")]
    assert _plots(tmp_path, results) == {}
    assert list((tmp_path / "plots").iterdir()) == []


def test_one_batch_size_skips_the_batch_plots(tmp_path):
    plots = _plots(tmp_path, _sweep(batches=(8,)))
    assert set(plots) == {"throughput_vs_size", "speedup_vs_size", "latency_224px",
                          "latency_384px", "pareto"}


def test_one_image_size_skips_the_size_plots(tmp_path):
    plots = _plots(tmp_path, _sweep(sizes=(224,)))
    assert set(plots) == {"throughput_vs_batch", "speedup_vs_batch", "latency_224px", "pareto"}


def test_no_baseline_skips_speedup_plots_and_stale_plots_are_removed(tmp_path):
    _plots(tmp_path, _sweep())
    only_ort = [r for r in _sweep(sizes=(224,)) if r.case.backend == "onnxruntime"]
    plots = _plots(tmp_path, only_ort)
    assert set(plots) == {"throughput_vs_batch", "latency_224px", "pareto"}
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "latency_224px.png", "latency_224px.svg", "pareto.png", "pareto.svg",
        "throughput_vs_batch.png", "throughput_vs_batch.svg"]


def test_write_reports_with_visuals(tmp_path):
    write_reports(tmp_path, _sweep(), ENV, "torch", visuals=True)
    assert (tmp_path / "plots" / "throughput_vs_batch.svg").stat().st_size > 0
    assert (tmp_path / "report.html").stat().st_size > 0


def _figures(results):
    from infersweep.reports.figures import figures

    samples = {r.case.case_id: r.samples_ms for r in results}
    return {name: fig for name, _caption, fig in
            figures(rows_with_speedup(results, "torch"), samples, "torch")}


def test_the_legend_never_covers_the_title_or_a_panel():
    # One image size (one narrow panel) and two models (a long title): the legend used to sit at
    # the upper right, over the end of the title.
    results = _sweep(sizes=(224,))
    results += [Result(dataclasses.replace(r.case, model="mobilenet_v3_large"), r.status,
                       samples_ms=r.samples_ms) for r in results if r.status == "ok"]
    checked = 0
    for name, fig in _figures(results).items():
        if not fig.legends:
            continue
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        (legend,) = fig.legends
        box = legend.get_window_extent(renderer)
        assert not box.overlaps(fig._suptitle.get_window_extent(renderer)), name
        for ax in fig.axes:
            if ax.get_visible():
                assert not box.overlaps(ax.get_window_extent(renderer)), name
        assert fig.bbox.contains(box.x0, box.y0) and fig.bbox.contains(box.x1, box.y1), name
        checked += 1
    assert checked == 2  # throughput_vs_batch and speedup_vs_batch


def test_one_far_outlier_does_not_squash_the_spread_from_the_median():
    results = _sweep(sizes=(224,))
    clean = _figures(results)["latency_224px"].axes[1]
    assert clean.get_xlabel() == "difference from the case's median (%)"
    assert clean.get_xlim()[1] < 10  # jitter of ~2%: nothing clipped

    outlier_case = next(r for r in results if r.status == "ok")
    outlier_case.samples_ms[3] *= 8
    relative = 100 * (outlier_case.samples_ms[3] / np.median(outlier_case.samples_ms) - 1)
    panel = _figures(results)["latency_224px"].axes[1]
    low, high = panel.get_xlim()
    # The axis is set by the bulk (every other sample within 5% of its median), not by +700%.
    assert -10 < low < 0 < high < 10, (low, high)
    assert panel.get_xlabel() == ("difference from the case's median (%)\n"
                                  f"clipped: 1 sample beyond (triangles), up to {relative:+.0f}%")


def test_plots_drawn_in_parallel_processes_are_the_ones_drawn_here(tmp_path):
    """The pool draws each plot in a process of its own: the same plots, the same pixels, in
    the order the report lists them."""
    results = _sweep()
    rows = rows_with_speedup(results, "torch")
    here = write_plots(_dir(tmp_path, "here"), rows, results, "torch", processes=1)
    pooled = write_plots(_dir(tmp_path, "pool"), rows, results, "torch", processes=2)
    assert [(p.name, p.title) for p in pooled] == [(p.name, p.title) for p in here]
    for a, b in zip(here, pooled):
        assert a.png.read_bytes() == b.png.read_bytes(), a.name


def _dir(tmp_path, name):
    (tmp_path / name).mkdir()
    return tmp_path / name
