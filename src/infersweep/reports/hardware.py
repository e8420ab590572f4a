"""Reports for a sweep whose cases ran on several machines (a Ray cluster), from stored data alone.

Speedups and utilisation are only meaningful within one machine: a case on one node against a
baseline measured on another compares hardware, not runtimes. So results are grouped by the
hardware they ran on (``info.host`` plus the node facts kept in the store's meta ``nodes``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from infersweep.reports.tables import (FORMATS, _atomic_write, add_utilization, csv_text, json_text,
                               markdown_text, rows_with_speedup, write_reports)
from infersweep.results.result import Result

NOT_RUN = ("unsupported", "unavailable")


def hardware_label(env: dict) -> str:
    """What decides the numbers: CPU model and cores, and the GPUs."""
    label = f"{env.get('cpu', '?')} ({env.get('cores_usable', '?')} cores)"
    names: dict[str, int] = {}
    for g in env.get("gpus") or []:
        names[g["name"]] = names.get(g["name"], 0) + 1
    return label + "".join(f" + {n}x {name}" for name, n in sorted(names.items()))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "hardware"


@dataclass
class _Hardware:
    label: str
    env: dict
    peaks: dict
    hosts: set = field(default_factory=set)
    results: list = field(default_factory=list)


def _hardware_groups(results: list[Result], driver_env: dict, driver_peaks: dict,
                     nodes: dict) -> tuple[dict[str, _Hardware], list[Result]]:
    """Results by the hardware they ran on, and the results tied to no hardware (not run, or a
    Ray task lost before it said where it was)."""
    groups: dict[str, _Hardware] = {}
    loose = []
    driver_label = hardware_label(driver_env)
    for r in results:
        host = r.info.get("host")
        if r.status in NOT_RUN or (r.info.get("executor") == "ray" and host not in nodes):
            loose.append(r)
            continue
        if host in nodes:
            env, peaks = nodes[host]["env"], nodes[host].get("peaks", {})
        else:  # measured by the local executor, on the driver's machine
            env, peaks, host = driver_env, driver_peaks, driver_env.get("host")
        label = hardware_label(env)
        if label not in groups:
            # The driver measured its own peaks: valid on a node only if it is the same hardware.
            base = dict(driver_peaks) if label == driver_label else {}
            groups[label] = _Hardware(label, env, base)
        groups[label].peaks.update(peaks)
        groups[label].hosts.add(host)
        groups[label].results.append(r)
    return groups, loose


def _combined_env(groups: list[_Hardware], driver_env: dict) -> dict:
    """One environment describing several machines, for the report's Environment section."""
    env = dict(driver_env)
    env["host"] = ", ".join(sorted(h for g in groups for h in g.hosts if h))
    env["cpu"] = " | ".join(dict.fromkeys(g.env.get("cpu", "?") for g in groups))
    env["cores_usable"] = " | ".join(dict.fromkeys(str(g.env.get("cores_usable")) for g in groups))
    env["memory_gib"] = " | ".join(dict.fromkeys(str(g.env.get("memory_gib")) for g in groups))
    flags = [set(g.env.get("cpu_flags", [])) for g in groups]
    env["cpu_flags"] = [f for f in driver_env.get("cpu_flags", []) if all(f in s for s in flags)]
    env["gpus"] = [{**gpu, "index": f"{host}:{gpu['index']}"} for g in groups
                   for host in sorted(g.hosts)[:1] for gpu in g.env.get("gpus") or []]
    return env


def write_reports_by_hardware(out_dir: Path, results: list[Result], env: dict, baseline: str,
                              peaks: dict | None = None, visuals: bool = False, only=None,
                              formats=FORMATS, *, nodes: dict) -> list[dict]:
    """write_reports, aware of where each case ran. On one kind of machine: the report describes
    that machine (not the driver's) with its peaks. On several: speedups and utilisation are
    computed within each machine (never a case on one against a baseline on another), the table
    is grouped by machine, and DIR/hardware/<machine>/ holds a full report per machine."""
    peaks = peaks or {}
    groups, loose = _hardware_groups(results, env, peaks, nodes)
    if len(groups) <= 1:
        single = next(iter(groups.values()), None)
        return write_reports(out_dir, results, single.env if single else env, baseline,
                             single.peaks if single else peaks, visuals, only, formats)

    ordered = sorted(groups.values(), key=lambda g: g.label)
    rows = []
    for i, group in enumerate(ordered):
        group_rows = rows_with_speedup(group.results + (loose if i == 0 else []), baseline)
        add_utilization(group_rows, group.peaks)
        rows += group_rows
    if only is not None:  # after the speedups, as write_reports does
        rows = [r for r in rows if only.matches(r)]
    combined = _combined_env(ordered, env)
    if "csv" in formats:
        _atomic_write(out_dir / "results.csv", csv_text(rows))
    if "json" in formats:
        _atomic_write(out_dir / "results.json", json_text(rows, results, combined, baseline))
    text = markdown_text(rows, combined, baseline, out_dir.name, {})
    lines = ["", "## Hardware", "",
             f"This sweep ran on {len(ordered)} kinds of machine. The table above is grouped by "
             "machine in this order; each speedup compares cases measured on the same machine, "
             "and utilisation uses that machine's peak. Each machine has its own full report:", "",
             "| hardware | hosts | cases | peaks | report |", "|---|---|---:|---|---|"]
    for group in ordered:
        sub = out_dir / "hardware" / _slug(group.label)
        sub.mkdir(parents=True, exist_ok=True)
        write_reports(sub, group.results, group.env, baseline, group.peaks, visuals, only,
                      formats)
        peak_text = "; ".join(f"{k.replace(':', ' ')} {p['tflops']:g} TFLOP/s"
                              for k, p in sorted(group.peaks.items()))
        link = f"hardware/{sub.name}/report.md"
        lines.append(f"| {group.label} | {', '.join(sorted(h for h in group.hosts if h))} "
                     f"| {len(group.results)} | {peak_text} | [{link}]({link}) |")
    if "md" in formats:
        _atomic_write(out_dir / "report.md", text + "\n".join(lines) + "\n")
    if visuals and "html" in formats:
        # No plots here: a line through cases of several machines would mean nothing. Each
        # machine's report.html has its plots.
        from html import escape

        from infersweep.reports.html import html_text

        links = "".join(f'<li><a href="hardware/{_slug(g.label)}/report.html">{escape(g.label)}'
                        f"</a> ({len(g.results)} cases on "
                        f"{escape(', '.join(sorted(h for h in g.hosts if h)))})</li>"
                        for g in ordered)
        section = (f"<section><h2>Hardware</h2><p>This sweep ran on {len(ordered)} kinds of "
                   "machine; the table is grouped by machine, speedups are within one machine. "
                   f"Plots and summaries per machine:</p><ul>{links}</ul></section>")
        html = html_text(rows, combined, baseline, out_dir.name, []).replace(
            "<script>", section + "<script>", 1)
        _atomic_write(out_dir / "report.html", html)
    return rows
