"""report.html: one self-contained file (plots as base64 PNG, inline CSS and JS, no network) with
the summary, a sortable and filterable results table, the plots and the failures.

Self-contained because the file gets mailed, attached to tickets and opened on machines without
network access: it must look the same there as here.
"""

from __future__ import annotations

import base64
from html import escape

from infersweep.probes.base import Column
from infersweep.reports.blocks import to_html
from infersweep.reports import scenarios
from infersweep.reports.formats import ReportContext, ReportFormat, atomic_write
from infersweep.reports.knobs import KnobFinding, knob_findings
from infersweep.reports.recommend import report_sections
from infersweep.reports.plots import Plot, plots_of
from infersweep.reports.rows import above_peak, above_peak_note, problems, status_line
from infersweep.reports.summary import ENOUGH, RISING, Series, Summary, build_summary
from infersweep.results import result as resultmod

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
#results th { cursor: pointer; background: #f4f4f4; user-select: none; white-space: nowrap; }
#results th[aria-sort=ascending]::after { content: " \\25B2"; }
#results th[aria-sort=descending]::after { content: " \\25BC"; }
tr.bad td { background: #fff3f0; }
td.above-peak { background: #fff8dc; }
.summary p { margin: .3em 0; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 1em; }
dt { font-weight: 600; } dd { margin: 0; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
div.reason { white-space: pre-wrap; font-family: monospace; font-size: 12px; max-width: 80ch; }
#filter { width: 30em; padding: 3px; }
div.wide { overflow-x: auto; } #results { font-size: 13px; }
"""

# Sorting keeps empty cells last in both directions: "not measured" is never the best or worst.
JS = """
(function () {
  var table = document.getElementById("results");
  var body = table.tBodies[0];
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var filter = document.getElementById("filter");
  var shown = document.getElementById("shown");
  function key(row, col) {
    var cell = row.cells[col];
    return cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent;
  }
  heads.forEach(function (th, col) {
    th.addEventListener("click", function () {
      var ascending = th.getAttribute("aria-sort") !== "ascending";
      heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      var numeric = th.getAttribute("data-type") === "num";
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a, col), y = key(b, col);
        if (x === "" || y === "") { return (x === "") - (y === ""); }
        var order = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
        return ascending ? order : -order;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
  function applyFilter() {
    var terms = filter.value.toLowerCase().split(/\\s+/).filter(Boolean);
    var count = 0;
    Array.prototype.forEach.call(body.rows, function (row) {
      var text = row.textContent.toLowerCase();
      row.hidden = !terms.every(function (t) { return text.indexOf(t) >= 0; });
      if (!row.hidden) { count++; }
    });
    shown.textContent = count + " of " + body.rows.length + " cases shown";
  }
  filter.addEventListener("input", applyFilter);
  applyFilter();
})();
"""


def _fmt(value, fmt: str | None) -> str:
    if value is None or value == "":
        return ""
    return f"{value:{fmt}}" if fmt else str(value)


def _table(headers: list[str], rows: list[list[str]], attrs: str = "") -> str:
    """A table of already escaped cells."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def summary_html(summary: Summary) -> str:
    parts = ['<section class="summary"><h2>Summary</h2><dl>']
    parts += [f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in summary.environment]
    parts.append("</dl>")
    parts += [f"<p>{escape(s)}</p>" for s in summary.sentences]
    if summary.fastest:
        parts.append("<h3>Fastest configuration</h3><p>Per device, precision and image size: "
                     "images/s at different sizes are different work.</p>")
        parts.append(_table(
            ["device", "precision", "size", "data", "backend", "batch", "throughput",
             "latency (batch)", "speedup"],
            [[escape(f.device), escape(f.precision), f"{f.image_size} px", escape(f.data),
              escape(f.runtime), str(f.batch_size), f"{f.throughput_ips:.1f} img/s",
              f"{f.latency_ms:.2f} ms",
              f"{f.speedup:.2f}x vs {escape(f.baseline)}" if f.speedup is not None else ""]
             for f in summary.fastest]))
        parts.append(f"<h3>Optimal batch size</h3><p>The smallest batch reaching {ENOUGH:.0%} of "
                     f"the best throughput seen; &ldquo;not saturated&rdquo; when the largest "
                     f"batch still gained more than {RISING:.0%} over the one before.</p>")
        parts.append(_table(
            ["configuration", "size", "batches", "optimal batch", "best throughput",
             "saturation"],
            [[escape(c.series.label(summary.varying)), f"{c.image_size} px",
              ", ".join(map(str, c.batches)), str(c.optimal_batch), f"{c.best_ips:.1f} img/s",
              escape(c.verdict)] for c in summary.curves]))
    else:
        parts.append(f"<p>{escape(summary.without_fastest)}</p>")
    return "".join(parts) + "</section>"


def knobs_html(findings: list[KnobFinding]) -> str:
    """The swept knobs' winners (reports/knobs.py), as report.md lists them."""
    if not findings:
        return ""
    items = "".join(f"<li>{escape(f.sentence())}</li>" for f in findings)
    return (f"<section><h3>Knobs</h3><p>Each swept option against its other values, with "
            f"everything else equal (trusted rows, median latency):</p><ul>{items}</ul></section>")


def results_html(rows: list[dict], declared: list[Column]) -> str:
    """The sortable table of the declared in-table columns (results.result.columns())."""
    # Columns nobody measured (pipelined on a CPU-only run, options never set) only add width.
    columns = [c for c in declared
               if c.in_table and any(r.get(c.name) not in (None, "") for r in rows)]
    head = "".join(f'<th data-type="{"num" if c.fmt else "text"}">{escape(c.title)}</th>'
                   for c in columns)
    body = []
    for r in rows:
        cells = []
        for column in columns:
            value, fmt = r.get(column.name), column.fmt
            if column.name == "utilization_pct" and above_peak(r):
                # Marked and linked to the note under the table, never shown bare.
                cells.append(f'<td class="num above-peak" data-sort="{float(value)!r}" '
                             f'title="above the measured peak: see the note under the table">'
                             f'{_fmt(value, fmt)}<a href="#above-peak">*</a></td>')
            elif fmt:  # the raw number sorts; the formatted one is shown
                raw = "" if value is None else repr(float(value))
                cells.append(f'<td class="num" data-sort="{raw}">{_fmt(value, fmt)}</td>')
            else:
                cells.append(f"<td>{escape(_fmt(value, None))}</td>")
        bad = ' class="bad"' if r["status"] != "ok" else ""
        body.append(f'<tr{bad} data-case="{escape(r["case_id"])}">{"".join(cells)}</tr>')
    return ('<section><h2>Results</h2><p><label>Filter: <input id="filter" type="search" '
            'placeholder="e.g. onnxruntime fp32 224"></label> <span id="shown"></span> '
            '&middot; click a column header to sort</p>'
            f'<div class="wide"><table id="results"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>{_above_peak_html(rows)}</section>')


def _above_peak_html(rows: list[dict]) -> str:
    note = above_peak_note(rows)
    return f'<p id="above-peak" class="note">* {escape(note)}</p>' if note else ""


def plots_html(plots: list[Plot]) -> str:
    if not plots:
        return "<section><h2>Plots</h2><p>Nothing to plot: no case ran successfully.</p></section>"
    figures = []
    for p in plots:
        data = base64.b64encode(p.png.read_bytes()).decode("ascii")
        figures.append(f'<figure id="plot-{escape(p.name)}"><img alt="{escape(p.title)}" '
                       f'src="data:image/png;base64,{data}"><figcaption>{escape(p.title)} '
                       f'(also plots/{escape(p.svg.name)})</figcaption></figure>')
    return "<section><h2>Plots</h2>" + "".join(figures) + "</section>"


def failures_html(rows: list[dict]) -> str:
    found = problems(rows)
    if not found:
        return "<section><h2>Failures</h2><p>Every case ran cleanly.</p></section>"
    return ("<section><h2>Failures and warnings</h2><p>Untrusted rows keep their figures here "
            "but get no speedup and never rank as fastest.</p>" + _table(
        ["case", "status", "reason", "figures"],
        [[escape(f"{Series.of(p.row).label()} {p.row['image_size']} px batch "
                 f"{p.row['batch_size']} {p.row['data']}"), escape(p.status),
          '<div class="reason">' + escape(p.why) + "</div>", escape(p.figures)]
         for p in found],
        attrs=' id="failures"') + "</section>")


def hardware_html(groups: list) -> str:
    """Where the per-machine reports are, for a sweep that ran on several kinds of machine."""
    links = "".join(f'<li><a href="{escape(g.folder)}/report.html">{escape(g.label)}</a> '
                    f"({len(g.results)} cases on "
                    f"{escape(', '.join(sorted(h for h in g.hosts if h)))})</li>" for g in groups)
    return (f"<section><h2>Hardware</h2><p>This sweep ran on {len(groups)} kinds of "
            "machine; the table is grouped by machine, speedups are within one machine. "
            f"Plots and summaries per machine:</p><ul>{links}</ul></section>")


def sections_html(sections: list) -> str:
    """Recommendation and Pareto front (recommend.report_sections)."""
    return "".join(f'<section id="{escape(title.lower().replace(" ", "-"))}"><h2>'
                   f"{escape(title)}</h2>{to_html(blocks)}</section>" for title, blocks in sections)


def html_text(rows: list[dict], env: dict, baseline: str, title: str, plots: list[Plot],
              hardware: list = (), baseline_ok: bool | None = None,
              sections: list = ()) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>infersweep report: {escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>infersweep report: {escape(title)}</h1>"
            f"<p>{len(rows)} cases: {escape(status_line(rows))}. Speedup is relative to "
            f"<b>{escape(baseline)}</b> at the same device, precision, image size, batch and "
            f"data.</p>"
            + summary_html(build_summary(rows, env, baseline, baseline_ok))
            + knobs_html(knob_findings(rows))
            + sections_html(list(sections))
            + results_html(rows, resultmod.columns()) + scenarios.html_section(rows)
            + plots_html(plots) + failures_html(rows)
            + (hardware_html(hardware) if hardware else "")
            + f"<script>{JS}</script></body></html>\n")


def write(ctx: ReportContext) -> None:
    # Several machines: no plots here, a line through cases of several machines would mean
    # nothing; each machine's own report.html has its plots.
    plots = [] if ctx.hardware else plots_of(ctx)
    sections = [] if ctx.hardware else report_sections(ctx.rows, ctx.constraints)
    atomic_write(ctx.out_dir / "report.html", html_text(
        ctx.rows, ctx.env, ctx.baseline, ctx.title, plots, ctx.hardware, ctx.baseline_ok,
        sections))


# html embeds the plots, so it draws them too.
REPORT_FORMATS = [ReportFormat("html", ("report.html", "plots/"), write, visual=True)]
