"""Which value of a swept runtime knob won, and by how much.

A knob is a backend option the sweep gave several values ("intra_op_num_threads=1|2|4"). Rows
are compared only with rows that differ in that knob alone: same model, weights, data, scope,
device, precision, image size, batch size and every other option (a "configuration"). In each
configuration that measured two values or more, the value with the lowest median latency wins.
Only trusted rows take part (reports.rows.trusted: no noise flag, outputs agree), as everywhere a
row ranks. The finding per (backend, knob): the value that won most often, in how many
configurations, and its median speedup over the value that was most often slowest and over the
backend's default value (where the default was swept).
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass

from infersweep.case import format_options, parse_options
from infersweep.reports.summary import SAME, ranked

# What a configuration is, besides the options other than the knob.
CONFIGURATION = ("model", "weights", "data", "scope", "device", "precision", "image_size",
                 "batch_size")


@dataclass(frozen=True)
class KnobFinding:
    backend: str
    knob: str
    values: tuple[str, ...]  # every value measured, in the order first seen
    winner: str  # the value that won most configurations (first seen among equals)
    wins: int
    configurations: int  # configurations that measured two values or more
    slowest: str  # the value most often slowest
    over_slowest: float | None  # median over configurations of slowest median / winner median
    default: str | None  # the backend's default value, where known
    over_default: float | None  # the same against the default, where it was measured

    def sentence(self) -> str:
        text = (f"{self.backend} {self.knob}: {self.winner} wins in {self.wins} of "
                f"{self.configurations} configuration{'s' if self.configurations != 1 else ''}")
        if self.over_slowest is not None:
            text += f", median {self.over_slowest:.2f}x over {self.slowest}"
            if self.default == self.slowest:
                text += " (the default)"
        if self.over_default is not None and self.default not in (self.winner, self.slowest):
            text += f", {self.over_default:.2f}x over {self.default} (the default)"
        if self.over_slowest is not None and self.over_slowest < 1 + SAME:
            text += f"; within {SAME:.0%}: no clear winner"
        return text


def _value_text(value) -> str:
    return format_options({"k": value}).partition("=")[2]


def _defaults(backend: str) -> dict[str, str]:
    """The backend's option defaults as text; {} for a backend this installation lacks."""
    from infersweep.backends import registry

    found = registry().get(backend)
    if found is None:
        return {}
    return {key: _value_text(value) for key, value in found.option_defaults.items()}


def _full_options(row: dict, defaults: dict[str, str]) -> dict[str, str]:
    """The row's options with the implicit defaults (left out of the string) filled in."""
    return {**defaults, **parse_options(row["options"] or "")}


def knob_findings(rows: list[dict]) -> list[KnobFinding]:
    by_backend: dict[str, list[dict]] = defaultdict(list)
    for row in ranked(rows):
        by_backend[row["backend"]].append(row)
    findings = []
    for backend, backend_rows in by_backend.items():
        defaults = _defaults(backend)
        options = [_full_options(r, defaults) for r in backend_rows]
        knobs = sorted({k for o in options for k in o})
        for knob in knobs:
            values = list(dict.fromkeys(o.get(knob) for o in options if knob in o))
            if len(values) > 1:
                found = _finding(backend, knob, values, backend_rows, options,
                                 defaults.get(knob))
                if found is not None:
                    findings.append(found)
    return findings


def _finding(backend: str, knob: str, values: list[str], rows: list[dict],
             options: list[dict], default: str | None) -> KnobFinding | None:
    configurations: dict[tuple, dict[str, float]] = defaultdict(dict)
    for row, opts in zip(rows, options):
        if knob not in opts:
            continue
        others = tuple(sorted((k, v) for k, v in opts.items() if k != knob))
        key = tuple(row[f] for f in CONFIGURATION) + others
        configurations[key][opts[knob]] = row["latency_ms_median"]
    compared = [medians for medians in configurations.values() if len(medians) > 1]
    if not compared:
        return None
    wins = Counter(min(m, key=m.get) for m in compared)
    losses = Counter(max(m, key=m.get) for m in compared)
    order = {v: i for i, v in enumerate(values)}
    winner = min(wins, key=lambda v: (-wins[v], order[v]))
    slowest = min(losses, key=lambda v: (-losses[v], order[v]))
    if slowest == winner:  # it won some and lost more: compare with the runner-up loser
        rest = [v for v in losses if v != winner] or [v for v in values if v != winner]
        slowest = min(rest, key=lambda v: (-losses[v], order[v]))
    return KnobFinding(backend, knob, tuple(values), winner, wins[winner], len(compared),
                       slowest, _median_ratio(compared, slowest, winner), default,
                       _median_ratio(compared, default, winner) if default in values else None)


def _median_ratio(compared: list[dict[str, float]], slower: str, faster: str) -> float | None:
    """Median over the configurations that measured both of slower's median / faster's."""
    ratios = [m[slower] / m[faster] for m in compared if slower in m and faster in m]
    return statistics.median(ratios) if ratios else None


def markdown_lines(findings: list[KnobFinding]) -> list[str]:
    if not findings:
        return []
    return ["### Knobs", "",
            "Each swept option against its other values, with everything else equal (trusted "
            "rows, median latency):", "", *[f"- {f.sentence()}" for f in findings], ""]
