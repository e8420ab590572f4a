"""Derived outputs of a run directory: results.csv, results.json, report.md.

All three are rebuilt from the store's results (never edited in place) and written atomically, so
a reader sees either the previous or the new version, even mid-sweep.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from pathlib import Path

from infersweep.env import describe, has_int8_dot_product
from infersweep.results.result import CSV_COLUMNS, Result
from infersweep.reports.summary import build_summary, markdown_lines

SPEEDUP_KEY = ("model", "weights", "device", "precision", "image_size", "batch_size", "data",
               "scope")


def add_utilization(rows: list[dict], peaks: dict) -> None:
    """utilization_pct = achieved TFLOP/s / the device's peak for the case's precision."""
    for row in rows:
        peak = peaks.get(f"{row['device']}:{row['precision']}")
        if peak and row["achieved_tflops"]:
            row["utilization_pct"] = 100.0 * row["achieved_tflops"] / peak["tflops"]


def rows_with_speedup(results: list[Result], baseline: str) -> list[dict]:
    """Rows with speedup = baseline median / case median, matched on everything but the backend.

    A row without an ok baseline row at the same device, precision, size and batch gets no
    speedup: never one relative to an arbitrary other row.
    """
    rows = [r.row() for r in results]
    base = {tuple(r[k] for k in SPEEDUP_KEY): r["latency_ms_median"] for r in rows
            if r["backend"] == baseline and r["status"] == "ok"}
    for row in rows:
        reference = base.get(tuple(row[k] for k in SPEEDUP_KEY))
        if row["status"] == "ok" and reference:
            row["speedup"] = reference / row["latency_ms_median"]
            row["baseline"] = baseline
    rows.sort(key=lambda r: (r["model"], r["device"], r["precision"], r["data"], r["image_size"],
                             r["batch_size"], r["backend"] != baseline, r["backend"]))
    return rows


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row[k] is None else row[k]) for k in CSV_COLUMNS})
    return buf.getvalue()


def json_text(rows: list[dict], results: list[Result], env: dict, baseline: str) -> str:
    extra = {r.case.case_id: r for r in results}
    out = []
    for row in rows:
        r = extra[row["case_id"]]
        out.append({**row, "warmup_iterations": r.warmup_iterations,
                    "wall_s": r.wall_s, "quick": r.quick, "info": r.info,
                    "finished_at": r.finished_at, "samples_ms": r.samples_ms})
    return json.dumps({"baseline": baseline, "env": env, "results": out}, indent=1)


def _ms(value) -> str:
    if value is None:
        return ""
    return f"{value:.3f} ms" if value < 100 else f"{value:.1f} ms"


def _num(value, fmt: str, suffix: str = "") -> str:
    return "" if value is None else f"{value:{fmt}}{suffix}"


def markdown_text(rows: list[dict], env: dict, baseline: str, title: str,
                  peaks: dict | None = None) -> str:
    counts = Counter(r["status"] for r in rows)
    lines = [f"# infersweep report: {title}", "",
             f"{len(rows)} cases: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), "",
             *markdown_lines(build_summary(rows, env, baseline)),
             "## Environment", "", "| | |", "|---|---|"]
    lines += [f"| {label} | {value} |" for label, value in describe(env)]
    memory_sources = sorted({r["memory_source"] for r in rows if r["memory_source"]})
    lines += ["", "## How these numbers were measured", "",
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
                for key, p in sorted((peaks or {}).items())],
              *_above_peak_notes(rows),
              "- agreement: outputs against fp32 eager PyTorch on the CPU, same batch: max abs "
              "error, worst per-image cosine, top-1 agreement; accuracy where the data folder "
              "has one subfolder per class.",
              *[f"- memory: {src}" for src in memory_sources], "",
              "## Results", "",
              "| backend | data | precision | device | shape | time (batch) | time (per image) "
              "| throughput | pipelined | memory | speedup | GFLOPs/img | util. | cosine "
              "| top-1 agr. | status |",
              "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        shape = f"({r['batch_size']}, 3, {r['image_size']}, {r['image_size']})"
        if r["status"] == "ok":
            time_batch = f"{_ms(r['latency_ms_median'])} ± {r['latency_ms_std']:.3f}"
        else:
            time_batch = ""
        backend = f"{r['backend']} ({r['options']})" if r["options"] else r["backend"]
        lines.append(
            f"| {backend} | {r['data']} | {r['precision']} | {r['device']} | {shape} "
            f"| {time_batch} | {_ms(r['per_image_ms'])} | {_num(r['throughput_ips'], '.1f', ' img/s')} "
            f"| {_num(r['throughput_pipelined_ips'], '.1f', ' img/s')} "
            f"| {_num(r['peak_memory_mb'], '.1f', ' MB')} | {_num(r['speedup'], '.2f', 'x')} "
            f"| {_num(r['gflops_per_image'], '.2f')} | {_num(r['utilization_pct'], '.1f', '%')} "
            f"| {_num(r['cosine'], '.5f')} | {_num(r['top1_agreement'], '.0%')} | {r['status']} |")
    if any(r["precision"] == "int8" and r["device"] == "cpu" for r in rows) \
            and not has_int8_dot_product(env):
        lines += ["", "Note: this CPU has no VNNI/AMX int8 dot-product instructions; INT8 often "
                      "brings no speedup on such CPUs."]
    problems = [r for r in rows if r["status"] != "ok" or r["warnings"]]
    if problems:
        lines += ["", "## Cases that did not run cleanly", "", "| case | status | reason |",
                  "|---|---|---|"]
        for r in problems:
            label = (f"{r['backend']} {r['device']} {r['precision']} {r['image_size']}px "
                     f"bs{r['batch_size']} {r['data']}")
            why = r["reason"] or f"warning: {r['warnings']}"
            why = why.replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {label} | {r['status']} | {why} |")
    return "\n".join(lines) + "\n"


# What `infersweep report --format` can regenerate; html embeds the plots, so it draws them too.
FORMATS = ("md", "csv", "json", "html", "plots")


def _above_peak_notes(rows: list[dict]) -> list[str]:
    """A utilisation over 100% is not an error to hide: a measured peak is what one library's
    matrix product reaches on this machine, and a runtime's convolution kernels (e.g. ONNX
    Runtime's on AVX-512) can beat it. Say so next to the figure instead of capping it."""
    above = sorted({f"{r['device']} {r['precision']}" for r in rows
                    if (r.get("utilization_pct") or 0) > 100})
    if not above:
        return []
    return [f"- utilisation above 100% ({', '.join(above)}): the case ran faster than the "
            "measured peak. That peak is the best matrix product a library reached on this "
            "machine, a lower bound of what the hardware can do, not its limit; compare such "
            "rows with each other, not with 100%."]


def write_reports(out_dir: Path, results: list[Result], env: dict, baseline: str,
                  peaks: dict | None = None, visuals: bool = False,
                  only=None, formats=FORMATS) -> list[dict]:
    """visuals: also DIR/plots/ and report.html. They take seconds, so only when asked: at the
    end of a sweep and on `infersweep report`, not after every case. only: a Filter of rows.
    formats: which of FORMATS to write (all by default)."""
    rows = rows_with_speedup(results, baseline)
    if only is not None:  # after the speedups: filtering first would drop the baseline rows
        rows = [r for r in rows if only.matches(r)]
    add_utilization(rows, peaks or {})
    if "csv" in formats:
        _atomic_write(out_dir / "results.csv", csv_text(rows))
    if "json" in formats:
        _atomic_write(out_dir / "results.json", json_text(rows, results, env, baseline))
    if "md" in formats:
        _atomic_write(out_dir / "report.md", markdown_text(rows, env, baseline, out_dir.name,
                                                           peaks or {}))
    if visuals and {"html", "plots"} & set(formats):
        from infersweep.reports.html import write_visuals  # matplotlib: imported only when used

        write_visuals(out_dir, rows, results, env, baseline, html="html" in formats)
    return rows
