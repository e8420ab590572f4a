"""Which machine each case of a sweep ran on (a Ray cluster), from stored data alone.

Speedups and utilisation are only meaningful within one machine: a case on one node against a
baseline measured on another compares hardware, not runtimes. So results are grouped by the
hardware they ran on (``info.host`` plus the node facts kept in the store's meta ``nodes``).
The grouping is all this module does; formats.write_reports writes the reports of each group.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from infersweep.results.result import Result

NOT_RUN = ("unsupported", "unavailable")


def hardware_label(env: dict) -> str:
    """What decides the numbers: CPU model and cores, and the GPUs."""
    label = f"{env.get('cpu', '?')} ({env.get('cores_usable', '?')} cores)"
    names: dict[str, int] = {}
    for g in env.get("gpus") or []:
        names[g["name"]] = names.get(g["name"], 0) + 1
    return label + "".join(f" + {n}x {name}" for name, n in sorted(names.items()))


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "hardware"


@dataclass
class Hardware:
    """One kind of machine and the results measured on it."""
    label: str
    env: dict
    peaks: dict
    hosts: set = field(default_factory=set)
    results: list = field(default_factory=list)

    @property
    def folder(self) -> str:
        """Where its own full report goes, relative to the run directory."""
        return f"hardware/{slug(self.label)}"


def group_by_hardware(results: list[Result], driver_env: dict, driver_peaks: dict,
                      nodes: dict) -> tuple[list[Hardware], list[Result]]:
    """Results by the hardware they ran on (ordered by label), and the results tied to no
    hardware (not run, or a Ray task lost before it said where it was)."""
    groups: dict[str, Hardware] = {}
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
            groups[label] = Hardware(label, env, base)
        groups[label].peaks.update(peaks)
        groups[label].hosts.add(host)
        groups[label].results.append(r)
    return sorted(groups.values(), key=lambda g: g.label), loose


def combined_env(groups: list[Hardware], driver_env: dict) -> dict:
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
