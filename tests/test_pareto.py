"""The Pareto front of throughput against p99 latency: known points, ties, duplicates; one front
per device, model and image size from trusted rows only; the report.md table and the plot."""

from infersweep.case import Case
from infersweep.reports.blocks import Heading, Table, to_markdown
from infersweep.reports.pareto import Point, blocks, fronts, pareto_figure, pareto_front
from infersweep.results.result import Result


def _keys(points):
    return [p.key for p in points]


def test_known_points():
    points = [Point(100, 10, "a"), Point(150, 20, "b"), Point(90, 12, "dominated by a"),
              Point(200, 40, "c"), Point(140, 25, "dominated by b"), Point(50, 5, "d")]
    assert _keys(pareto_front(points)) == ["d", "a", "b", "c"]  # lowest p99 first


def test_equal_throughput_lower_p99_wins_and_equal_p99_higher_throughput_wins():
    assert _keys(pareto_front([Point(100, 10, "a"), Point(100, 8, "b")])) == ["b"]
    assert _keys(pareto_front([Point(100, 10, "a"), Point(120, 10, "b")])) == ["b"]


def test_duplicates_are_both_kept_in_a_stable_order():
    points = [Point(100, 10, "y"), Point(100, 10, "x"), Point(50, 20, "dominated")]
    assert _keys(pareto_front(points)) == ["x", "y"]
    assert _keys(pareto_front(points[::-1])) == ["x", "y"]


def test_empty_and_single():
    assert pareto_front([]) == []
    assert _keys(pareto_front([Point(1, 1, "only")])) == ["only"]


def _row(backend, batch, median, p99_extra=0.0, device="cpu", size=64, noise=None, **kw):
    case = Case("resnet18", "random(seed=0)", backend, device, "fp32", size, batch, "synthetic")
    samples = [median] * 98 + [median + p99_extra] * 2  # p99 = median + p99_extra
    measured = {"noise": noise} if noise else {}
    return Result(case, "ok", samples_ms=samples, measured=measured, **kw).row()


def test_fronts_per_device_and_size_from_trusted_rows_only():
    rows = [_row("torch", 1, 10.0), _row("torch", 8, 40.0),  # 100 and 200 img/s
            _row("onnxruntime", 8, 80.0),  # 100 img/s at p99 80 ms: dominated
            _row("onnxruntime", 1, 5.0, noise="starved"),  # best of all, but noisy
            _row("torch", 1, 20.0, size=128),  # another size: its own front
            ]
    found = {f.title: [(r["backend"], r["batch_size"]) for r in f.front] for f in fronts(rows)}
    assert found == {"cpu, resnet18, 64 px": [("torch", 1), ("torch", 8)],
                     "cpu, resnet18, 128 px": [("torch", 1)]}


def test_report_table_lists_the_front():
    rows = [_row("torch", 1, 10.0, p99_extra=2.0), _row("torch", 8, 40.0),
            _row("onnxruntime", 8, 80.0)]
    out = blocks(rows)
    assert Heading("cpu, resnet18, 64 px: 2 of 3 cases on the front") in out
    (table,) = [b for b in out if isinstance(b, Table)]
    assert table.rows == (("torch fp32 bs1", "100.0 img/s", "12.000 ms", "10.000 ms"),
                          ("torch fp32 bs8", "200.0 img/s", "40.000 ms", "40.000 ms"))
    md = to_markdown(out)
    assert "| torch fp32 bs1 | 100.0 img/s | 12.000 ms | 10.000 ms |" in md


def test_plot_joins_the_front_and_shows_every_case():
    rows = [_row("torch", 1, 10.0), _row("torch", 8, 40.0), _row("onnxruntime", 8, 80.0)]
    fig = pareto_figure(rows)
    (ax,) = fig.axes
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [10.0, 40.0] and list(line.get_ydata()) == [100.0, 200.0]
    assert len(ax.collections[0].get_offsets()) == 3  # every trusted case a point
    assert sorted(t.get_text() for t in ax.texts) == ["torch fp32 bs1", "torch fp32 bs8"]
    assert pareto_figure(rows[:1]) is None  # one case: nothing to trade off
