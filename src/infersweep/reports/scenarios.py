"""What the server scenario found, for the reports: the max-QPS table and the fixed-rate runs in
report.md and report.html, a p99-against-achieved-QPS plot per configuration, and the terminal's
line. The figures come from the rows (measure/server.py's summary, stored as columns) and, for
a max-QPS search, from every trial kept in the result's ``info``.
"""

from __future__ import annotations

from html import escape

from infersweep.case import scenario_parts
from infersweep.results.result import Result


def _server(rows: list[dict]) -> list[dict]:
    return [r for r in rows if (r.get("scenario") or "").startswith("server")]


def configuration(row: dict) -> str:
    """The case and its batcher, without the rate: what a curve of rates belongs to."""
    params = scenario_parts(row["scenario"])[1]
    options = f" ({row['options']})" if row.get("options") else ""
    return (f"{row['backend']}{options} {row['device']} {row['precision']} "
            f"{row['image_size']}px max_batch={params.get('max_batch')} "
            f"max_delay={params.get('max_delay_ms')} ms")


def _num(value, fmt: str) -> str:
    return "" if value is None or value == "" else f"{value:{fmt}}"


def _validity(row: dict) -> str:
    if row.get("valid") is None:
        return ""
    return "valid" if row["valid"] else f"invalid: {row.get('invalid_reason') or ''}"


def max_qps_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    searched = [r for r in _server(rows) if "qps=" not in r["scenario"]]
    head = ["configuration", "p99 bound", "max QPS", "p99 at max", "p50 at max", "mean batch",
            "queueing share", "validity", "status"]
    body = [[configuration(r), _num(r.get("p99_bound_ms"), "g") + " ms",
             _num(r.get("max_qps"), ".1f"), _num(r.get("request_ms_p99"), ".2f"),
             _num(r.get("request_ms_p50"), ".2f"), _num(r.get("mean_batch"), ".2f"),
             _num(r.get("queue_share_pct"), ".0f") + "%", _validity(r),
             r["status"] if r["status"] != "ok" else ""] for r in searched]
    return head, body


def fixed_rate_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    fixed = [r for r in _server(rows) if "qps=" in r["scenario"]]
    head = ["configuration", "target QPS", "achieved QPS", "p50 (ms)", "p90 (ms)", "p99 (ms)",
            "p99.9 (ms)", "mean batch", "queueing share", "requests", "validity"]
    body = [[configuration(r), _num(r.get("target_qps"), "g"), _num(r.get("achieved_qps"), ".1f"),
             _num(r.get("request_ms_p50"), ".2f"), _num(r.get("request_ms_p90"), ".2f"),
             _num(r.get("request_ms_p99"), ".2f"), _num(r.get("request_ms_p999"), ".2f"),
             _num(r.get("mean_batch"), ".2f"), _num(r.get("queue_share_pct"), ".0f") + "%",
             _num(r.get("requests"), "d"), _validity(r) or r["status"]] for r in fixed]
    return head, body


INTRO = ("Requests of one image arrive as a seeded Poisson process; a batcher forms batches up "
         "to max_batch or until the oldest request waited max_delay; a request's latency runs "
         "from its scheduled arrival to its result on the host. Validity follows MLPerf "
         "LoadGen's rules (minimum duration and requests, the server kept up, the p99 bound "
         "with early stopping); an invalid run says which rule it broke.")


def markdown_lines(rows: list[dict]) -> list[str]:
    """The Scenarios section of report.md; [] when the sweep has no server case."""
    if not _server(rows):
        return []
    lines = ["", "## Scenarios", "", INTRO]
    for title, (head, body) in (("Max QPS under the p99 bound", max_qps_table(rows)),
                                ("Server runs at a fixed rate", fixed_rate_table(rows))):
        if body:
            lines += ["", f"### {title}", "", "| " + " | ".join(head) + " |",
                      "|" + "|".join("---" for _ in head) + "|"]
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"
                      for row in body]
    return lines


def html_section(rows: list[dict]) -> str:
    if not _server(rows):
        return ""
    parts = [f"<section><h2>Scenarios</h2><p>{escape(INTRO)}</p>"]
    for title, (head, body) in (("Max QPS under the p99 bound", max_qps_table(rows)),
                                ("Server runs at a fixed rate", fixed_rate_table(rows))):
        if body:
            parts.append(f"<h3>{title}</h3><table><thead><tr>"
                         + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr></thead><tbody>"
                         + "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row)
                                   + "</tr>" for row in body) + "</tbody></table>")
    return "".join(parts) + "</section>"


def curve_points(rows: list[dict], results: list[Result]) -> dict[str, dict]:
    """configuration -> {"points": [(achieved QPS, p99 ms, passed)], "bound": ms, "max": QPS}:
    every trial of a search, and every fixed-rate run, of each configuration."""
    info = {r.case.case_id: r.info for r in results}
    curves: dict[str, dict] = {}
    for row in _server(rows):
        if row["status"] != "ok":
            continue
        curve = curves.setdefault(configuration(row), {"points": [], "bound": None, "max": None})
        curve["bound"] = row.get("p99_bound_ms") or curve["bound"]
        trials = info.get(row["case_id"], {}).get("trials")
        if trials:
            curve["points"] += [(t["achieved_qps"], t["p99_ms"], t["passed"]) for t in trials
                                if t["p99_ms"] is not None]
            curve["max"] = row.get("max_qps")
        elif row.get("request_ms_p99") is not None:
            curve["points"].append((row["achieved_qps"], row["request_ms_p99"],
                                    bool(row.get("valid"))))
    return {k: v for k, v in curves.items() if v["points"]}


def p99_vs_qps(rows: list[dict], results: list[Result]):
    """The figure: p99 request latency against achieved QPS, a line per configuration; None
    without server runs."""
    curves = curve_points(rows, results)
    if not curves:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for i, (name, curve) in enumerate(sorted(curves.items())):
        points = sorted(curve["points"])
        color = f"C{i % 10}"
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=color,
                label=name)
        failed = [p for p in points if not p[2]]
        ax.scatter([p[0] for p in failed], [p[1] for p in failed], marker="x", color="black",
                   zorder=3)
        if curve["bound"]:
            ax.axhline(curve["bound"], color=color, linestyle=":", linewidth=1)
    ax.set_xlabel("achieved QPS (requests/s)")
    ax.set_ylabel("p99 request latency (ms)")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="upper left")
    fig.suptitle("p99 latency vs achieved QPS (x: over the bound or invalid; dotted: bound)")
    return fig


def figures(rows: list[dict], results: list[Result]):
    """(file stem, caption, figure) of the scenario plots that have something to show."""
    fig = p99_vs_qps(rows, results)
    if fig is not None:
        yield "p99_vs_qps", "p99 request latency vs achieved QPS per server configuration", fig


def terminal_line(result: Result) -> str:
    """The figures of a server case for the terminal's one-line summary."""
    m = result.measured
    if m.get("max_qps") is None and "qps=" not in result.case.scenario:
        return f"no rate met the bound: {m.get('invalid_reason', '')}"
    head = (f"max {m['max_qps']:.1f} QPS under p99 {m.get('p99_bound_ms'):g} ms: "
            if m.get("max_qps") is not None else "")
    valid = "valid" if m.get("valid") else f"invalid ({m.get('invalid_reason')})"
    return (f"{head}achieved {m.get('achieved_qps', 0):.1f} QPS, p50 "
            f"{m.get('request_ms_p50', 0):.3f} ms, p99 {m.get('request_ms_p99', 0):.3f} ms, "
            f"mean batch {m.get('mean_batch', 0):.2f}, {m.get('requests')} requests, {valid}")
