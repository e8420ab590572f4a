"""The Pareto front of throughput (images/s, higher is better) against p99 latency (ms, lower is
better): the cases no other case beats on both. One front per device, model and image size
(images/s at different sizes are different work), from the trusted rows only.

``pareto_front`` is pure; the plot (figures.py draws it with the others) and the report.md table
read it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from infersweep.reports.blocks import Block, Heading, Para, Table
from infersweep.reports.rows import trusted
from infersweep.reports.summary import varying_fields


@dataclass(frozen=True)
class Point:
    throughput: float  # images/s
    p99_ms: float
    key: object = None  # what the point stands for (a row's case id)


def dominates(a: Point, b: Point) -> bool:
    """a is at least as good as b on both axes and better on one."""
    return (a.throughput >= b.throughput and a.p99_ms <= b.p99_ms
            and (a.throughput > b.throughput or a.p99_ms < b.p99_ms))


def pareto_front(points: list[Point]) -> list[Point]:
    """The non-dominated points, lowest p99 first (then highest throughput, then key). Points
    with equal coordinates do not dominate each other: duplicates on the front are all kept."""
    front = [p for p in points if not any(dominates(q, p) for q in points)]
    return sorted(front, key=lambda p: (p.p99_ms, -p.throughput, str(p.key)))


@dataclass(frozen=True)
class Front:
    """One front: its group (device, model, size...), every trusted row, and the front's rows."""
    title: str
    rows: list[dict]
    front: list[dict]


def _group_title(row: dict, varying: set[str]) -> str:
    parts = [row["device"], row["model"], f"{row['image_size']} px"]
    parts += [row[f] for f in ("data", "scope") if f in varying]
    return ", ".join(parts)


def fronts(rows: list[dict]) -> Iterator[Front]:
    """A front per device, model, image size (and data and scope where they vary)."""
    usable = [r for r in rows if trusted(r) and r.get("latency_ms_p99") is not None
              and r.get("throughput_ips") is not None]
    varying = varying_fields(usable)
    groups: dict[tuple, list[dict]] = {}
    for r in usable:
        groups.setdefault((r["device"], r["model"], r["image_size"], r["data"], r["scope"]),
                          []).append(r)
    for key in sorted(groups):
        group = groups[key]
        by_id = {r["case_id"]: r for r in group}
        front = pareto_front([Point(r["throughput_ips"], r["latency_ms_p99"], r["case_id"])
                              for r in group])
        yield Front(_group_title(group[0], varying), group, [by_id[p.key] for p in front])


def point_label(row: dict) -> str:
    """backend, precision, batch and options: what tells the front's points apart."""
    options = f" ({row['options']})" if row.get("options") else ""
    return f"{row['backend']} {row['precision']} bs{row['batch_size']}{options}"


def blocks(rows: list[dict]) -> list[Block]:
    """The frontier of each group as a table: report.md's "Pareto front" section."""
    found = list(fronts(rows))
    if not found:
        return []
    out: list[Block] = [Para("Throughput against p99 latency: the cases no other case beats on "
                             "both (trusted ok cases only), lowest p99 first.")]
    for f in found:
        out.append(Heading(f"{f.title}: {len(f.front)} of {len(f.rows)} cases on the front"))
        out.append(Table(("configuration", "throughput", "p99 latency", "median latency"),
                         tuple((point_label(r), f"{r['throughput_ips']:.1f} img/s",
                                f"{r['latency_ms_p99']:.3f} ms",
                                f"{r['latency_ms_median']:.3f} ms") for r in f.front),
                         (False, True, True, True)))
    return out


def pareto_figure(rows: list[dict]):
    """Every trusted case a grey point, the front joined and labelled; a panel per group with
    at least two cases. None when no group has two."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    found = [f for f in fronts(rows) if len(f.rows) >= 2]
    if not found:
        return None
    ncols = min(len(found), 2)
    nrows = -(-len(found) // ncols)
    fig = Figure(figsize=(6.0 * ncols + 0.5, 4.4 * nrows + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).flat)
    for ax in axes[len(found):]:
        ax.set_visible(False)
    for ax, f in zip(axes, found):
        ax.scatter([r["latency_ms_p99"] for r in f.rows], [r["throughput_ips"] for r in f.rows],
                   color="0.7", s=18, label="case", zorder=2)
        ax.plot([r["latency_ms_p99"] for r in f.front], [r["throughput_ips"] for r in f.front],
                color="C0", marker="o", linewidth=1.5, label="Pareto front", zorder=3)
        for r in f.front:
            ax.annotate(point_label(r), (r["latency_ms_p99"], r["throughput_ips"]),
                        xytext=(5, 4), textcoords="offset points", fontsize="x-small")
        ax.set_xlabel("p99 latency per batch (ms, lower is better)")
        ax.set_ylabel("throughput (images/s, higher is better)")
        ax.set_title(f.title, fontsize="medium")
        ax.grid(True, alpha=0.3)
        ax.margins(x=0.15, y=0.1)  # room for the labels
        ax.legend(fontsize="small", loc="lower right")
    fig.suptitle("Throughput vs p99 latency: Pareto front")
    return fig

