"""What to deploy: the best case meeting every constraint, the runners-up, and for the cases left
out the constraint each broke, closest misses first (`infersweep recommend`, and the
"Recommendation" section of report.md and report.html when the sweep file has [constraints]).

Only trusted rows compete: ok, with a latency, not flagged noisy by the contention guard and not
disagreeing with the fp32 reference (rows.untrusted_reason). The others are counted, never
recommended, whatever their numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from infersweep.grid.constraints import OBJECTIVES, ConstraintError, Constraints
from infersweep.probes.contention import HOST_BOUND_BUSY
from infersweep.reports.blocks import Block, Para, Table, to_markdown
from infersweep.reports.rows import DISAGREES, report_rows, untrusted_reason
from infersweep.reports.summary import Series, varying_fields

RUNNERS_UP = 3
MISSES_SHOWN = 10
# The energy probe's columns (issue 18); read from a result's measured values when the probe
# that declares them is not registered in this process.


def top1(row: dict) -> tuple[float | None, str]:
    """Top-1 accuracy where the data had labels, else top-1 agreement with fp32; and which."""
    if row.get("top1_accuracy") is not None:
        return row["top1_accuracy"], "top-1 accuracy"
    return row.get("top1_agreement"), "top-1 agreement"


@dataclass(frozen=True)
class Bound:
    """One numeric constraint: the Constraints field, its flag, and the row value it bounds."""
    key: str
    flag: str
    label: str
    value_of: Callable[[dict], float | None]
    fmt: str  # how its values print
    upper: bool  # True: the row's value must be <= the bound

    def show(self, value: float | None) -> str:
        return "not measured" if value is None else format(value, self.fmt)

    def miss(self, row: dict, bound: float) -> float | None:
        """How far the row is off, relative to the bound (0.25: 25% off); None when it meets
        it, infinity when the figure was not measured."""
        value = self.value_of(row)
        if value is None:
            return math.inf
        off = value - bound if self.upper else bound - value
        return off / abs(bound) if off > 0 and bound else (math.inf if off > 0 else None)


BOUNDS = (
    Bound("p99_ms", "--p99-ms", "p99 latency", lambda r: r.get("latency_ms_p99"), ".3f", True),
    Bound("max_memory_mb", "--max-memory-mb", "peak memory", lambda r: r.get("peak_memory_mb"),
          ".1f", True),
    Bound("min_throughput", "--min-throughput", "throughput", lambda r: r.get("throughput_ips"),
          ".1f", False),
    Bound("min_cosine", "--min-cosine", "cosine vs fp32", lambda r: r.get("cosine"), ".5f",
          False),
    Bound("min_top1", "--min-top1", "top-1", lambda r: top1(r)[0], ".3f", False),
)
UNITS = {"p99_ms": " ms", "max_memory_mb": " MB", "min_throughput": " img/s"}

# objective -> (column, what it is, unit, format)
OBJECTIVE_COLUMNS = {
    "throughput": ("throughput_ips", "throughput", " img/s", ".1f"),
    "p99": ("latency_ms_p99", "p99 latency", " ms", ".3f"),
    "energy": ("energy_j_per_image", "energy per image", " J", ".4g"),
    "max-qps": ("max_qps", "max QPS under the p99 bound", " req/s", ".1f"),
}


def _key_value(row: dict, column: str, larger_first: bool) -> float:
    value = row.get(column)
    if value is None:
        return math.inf
    return -value if larger_first else value


# After the objective, in this order: what a deployment would prefer next.
TIE_BREAKS = (
    ("lower p99 latency", lambda r: _key_value(r, "latency_ms_p99", False)),
    ("higher throughput", lambda r: _key_value(r, "throughput_ips", True)),
    ("lower peak memory", lambda r: _key_value(r, "peak_memory_mb", False)),
    ("smaller batch", lambda r: r["batch_size"]),
    ("backend, options and case id in alphabetical order",
     lambda r: (r["backend"], r["options"] or "", r["precision"], r["case_id"])),
)
TIE_RULE = "ties broken by " + ", then ".join(name for name, _ in TIE_BREAKS)


@dataclass(frozen=True)
class Miss:
    bound: Bound
    value: float | None
    limit: float
    off: float  # relative; infinity when not measured


@dataclass(frozen=True)
class Excluded:
    row: dict
    misses: tuple[Miss, ...]

    @property
    def worst(self) -> float:
        return max(m.off for m in self.misses)


@dataclass
class Recommendation:
    constraints: Constraints
    ranked: list[dict]  # every row meeting the constraints, best first
    excluded: list[Excluded]  # closest misses first
    untrusted: dict[str, int]  # why rows never competed -> how many
    other_devices: int = 0
    top1_sources: dict[str, int] = field(default_factory=dict)
    varying: set[str] = field(default_factory=set)

    @property
    def best(self) -> dict | None:
        return self.ranked[0] if self.ranked else None

    @property
    def runners_up(self) -> list[dict]:
        return self.ranked[1:1 + RUNNERS_UP]

    def excluded_by(self) -> dict[str, int]:
        """flag -> how many competing rows broke it, most first."""
        counts: dict[str, int] = {}
        for e in self.excluded:
            for m in e.misses:
                counts[m.bound.flag] = counts.get(m.bound.flag, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def label(self, row: dict) -> str:
        return config_label(row, self.varying)


def config_label(row: dict, varying: set[str] = frozenset()) -> str:
    """'onnxruntime fp32 cpu, batch 8, 224 px' (model, data, scope where they vary)."""
    return f"{Series.of(row).label(varying)}, batch {row['batch_size']}, {row['image_size']} px"


def _why_untrusted(row: dict) -> str:
    if row["status"] != "ok":
        return f"not ok ({row['status']})"
    if row.get("latency_ms_median") is None:
        return "no timing"
    reason = untrusted_reason(row)
    if reason.startswith(DISAGREES):
        return "outputs disagree with fp32"
    return "noisy measurement" if reason else ""


def _objective_bound(objective: str) -> Bound:
    """A row without a figure for the objective cannot be ranked by it."""
    column, what, _, fmt = OBJECTIVE_COLUMNS[objective]
    return Bound(objective, f"--{OBJECTIVES[objective]} {objective}", what,
                 lambda r: r.get(column), fmt, True)


def sort_key(row: dict, objective: str) -> tuple:
    column = OBJECTIVE_COLUMNS[objective][0]
    return (_key_value(row, column, OBJECTIVES[objective] == "maximize"),
            *(key(row) for _, key in TIE_BREAKS))


def recommend(rows: list[dict], constraints: Constraints) -> Recommendation:
    """Rank the trusted rows that meet every constraint by the objective."""
    rec = Recommendation(constraints, [], [], {}, varying=varying_fields(rows) - {"device"})
    objective = _objective_bound(constraints.objective)
    competing = []
    for row in rows:
        if constraints.device is not None and row["device"] != constraints.device:
            rec.other_devices += 1
            continue
        why = _why_untrusted(row)
        if why:
            rec.untrusted[why] = rec.untrusted.get(why, 0) + 1
            continue
        misses = []
        for bound in BOUNDS:
            limit = getattr(constraints, bound.key)
            if limit is None:
                continue
            if bound.key == "min_top1":
                source = top1(row)[1]
                rec.top1_sources[source] = rec.top1_sources.get(source, 0) + 1
            off = bound.miss(row, limit)
            if off is not None:
                misses.append(Miss(bound, bound.value_of(row), limit, off))
        if objective.value_of(row) is None:
            misses.append(Miss(objective, None, math.nan, math.inf))
        if misses:
            rec.excluded.append(Excluded(row, tuple(misses)))
        else:
            competing.append(row)
    rec.ranked = sorted(competing, key=lambda r: sort_key(r, constraints.objective))
    rec.excluded.sort(key=lambda e: (e.worst, len(e.misses), e.row["case_id"]))
    return rec


def recommend_run(stored_run, constraints: Constraints) -> Recommendation:
    """The recommendation of a stored run (sweep.StoredRun); ConstraintError for a --device
    that no case of the run ran on."""
    devices = sorted({r.case.device for r in stored_run.results})
    if constraints.device is not None and constraints.device not in devices:
        raise ConstraintError(f"--device {constraints.device}: no case of this run ran on it "
                              f"(devices: {', '.join(devices) or 'none'})")
    baseline = stored_run.spec.get("baseline") or "torch"
    # The energy and server columns are probe columns: the report rows carry them.
    return recommend(report_rows(stored_run.results, baseline, stored_run.peaks), constraints)


def text(rec: Recommendation) -> str:
    """What `infersweep recommend` prints: the blocks as Markdown."""
    return "\n".join(to_markdown(blocks(rec))).rstrip()


def report_sections(rows: list[dict], constraints: Constraints | None) -> list[tuple[str, list[Block]]]:
    """(title, blocks) of report.md's and report.html's Recommendation (when the sweep file
    has [constraints]) and Pareto front sections."""
    from infersweep.reports import pareto

    sections = []
    if constraints is not None:
        sections.append(("Recommendation", blocks(recommend(rows, constraints))))
    front = pareto.blocks(rows)
    if front:
        sections.append(("Pareto front", front))
    return sections


# ---- how a recommendation reads (report.md, report.html, the terminal) ----

def _constraint_text(c: Constraints) -> str:
    parts = []
    for bound in BOUNDS:
        limit = getattr(c, bound.key)
        if limit is not None:
            parts.append(f"{bound.label} {'<=' if bound.upper else '>='} "
                         f"{limit:g}{UNITS.get(bound.key, '')} ({bound.flag})")
    if c.device:
        parts.append(f"device {c.device} (--device)")
    return "; ".join(parts) or "none"


def _figures(row: dict) -> str:
    value, source = top1(row)
    parts = [f"{row['throughput_ips']:.1f} img/s",
             f"p99 {_fmt(row.get('latency_ms_p99'), '.3f')} ms",
             f"memory {_fmt(row.get('peak_memory_mb'), '.1f')} MB",
             f"cosine {_fmt(row.get('cosine'), '.5f')}", f"{source} {_fmt(value, '.3f')}"]
    if row.get("energy_j_per_image") is not None:
        parts.append(f"energy {row['energy_j_per_image']:.4g} J/img")
    return ", ".join(parts)


def _fmt(value, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def _tie_note(rec: Recommendation) -> str | None:
    """Which rule decided between the best and the runner-up when the objective ties."""
    if len(rec.ranked) < 2:
        return None
    first, second = rec.ranked[:2]
    objective = rec.constraints.objective
    if sort_key(first, objective)[0] != sort_key(second, objective)[0]:
        return None
    for name, key in TIE_BREAKS:
        if key(first) != key(second):
            return (f"Tie on {OBJECTIVE_COLUMNS[objective][1]} with {rec.label(second)}: "
                    f"decided by {name} ({TIE_RULE}).")
    return None


def _indistinct_note(rec: Recommendation) -> str | None:
    """The runner-up within the best's 95% interval: the measurements cannot separate them."""
    if rec.constraints.objective != "throughput" or len(rec.ranked) < 2:
        return None
    first, second = rec.ranked[:2]
    if None in (first.get("latency_ms_ci_high"), second.get("latency_ms_ci_low")) or \
            _tie_note(rec):
        return None
    first_low = first["batch_size"] * 1000.0 / first["latency_ms_ci_high"]
    second_high = second["batch_size"] * 1000.0 / second["latency_ms_ci_low"]
    if second_high < first_low:
        return None
    repeats = min(first.get("repeats") or 1, second.get("repeats") or 1)
    remedy = (f"{repeats} worker processes each: more repeats or a quieter machine might"
              if repeats >= 2 else "process repeats, --repeats 3, might")
    return (f"The runner-up {rec.label(second)} is within the 95% interval of the best: these "
            f"measurements do not separate the two ({remedy}).")


def _process_noise_note(rec: Recommendation) -> str | None:
    """Choosing between two configurations is a verdict about them: without process repeats it
    rests on one worker process each, and medians move between processes (DESIGN: 5-30% on a
    shared machine), which no interval of one process shows."""
    if len(rec.ranked) < 2:
        return None
    first, second = rec.ranked[:2]
    single = [r for r in (first, second) if (r.get("repeats") or 1) < 2]
    if not single:
        return None
    column = OBJECTIVE_COLUMNS[rec.constraints.objective][0]
    a, b = first.get(column), second.get(column)
    gap = f" (they differ by {100 * abs(a - b) / max(abs(a), abs(b)):.0f}% on the objective)" \
        if a and b else ""
    bound = [f"{rec.label(r)} was host-bound (the GPU busy {r['gpu_busy_pct']:.0f}% of its "
             "timed loop): its median follows the host thread that launches the work, which "
             "moves between processes" for r in single
             if r.get("gpu_busy_pct") is not None and r["gpu_busy_pct"] < HOST_BOUND_BUSY]
    return (f"The best and the runner-up{gap} were measured in one worker process "
            f"{'each' if len(single) == 2 else 'for ' + rec.label(single[0])}: "
            "process-to-process noise is not accounted for; re-run with --repeats 3 before "
            "acting on a small difference." + "".join(f" {b}." for b in bound))


def _miss_text(m: Miss) -> tuple[str, str, str, str]:
    unit = UNITS.get(m.bound.key, "")
    if m.value is None:
        return m.bound.flag, "not measured", "", "n/a"
    sign = "+" if m.bound.upper else "-"
    off = "n/a" if math.isinf(m.off) else f"{sign}{100 * m.off:.1f}%"
    return (m.bound.flag, f"{m.bound.show(m.value)}{unit}", f"{m.limit:g}{unit}", off)


def blocks(rec: Recommendation) -> list[Block]:
    """The recommendation as paragraphs and tables."""
    c = rec.constraints
    objective = f"{OBJECTIVES[c.objective]} {OBJECTIVE_COLUMNS[c.objective][1]}"
    out: list[Block] = [Para(f"Constraints: {_constraint_text(c)}. Objective: {objective}.")]
    if rec.best is not None:
        model = "" if "model" in rec.varying else f" ({rec.best['model']})"
        out.append(Para(f"Recommended: {rec.label(rec.best)}{model}: {_figures(rec.best)}."))
        out += [Para(n) for n in (_tie_note(rec), _indistinct_note(rec),
                                  _process_noise_note(rec)) if n]
        if rec.runners_up:
            out.append(Table(("#", "runner-up", "figures"),
                             tuple((str(i), rec.label(r), _figures(r))
                                   for i, r in enumerate(rec.runners_up, start=2)),
                             (True, False, False)))
        out.append(Para(f"{len(rec.ranked)} case(s) meet every constraint; {TIE_RULE}."))
    else:
        most = rec.excluded_by()
        if most:
            flag, n = next(iter(most.items()))
            out.append(Para(f"No case meets every constraint. {flag} excluded most: {n} of "
                            f"{len(rec.excluded)} case(s)."))
        else:
            out.append(Para("No case meets every constraint: no trusted case to choose from."))
    out += _notes(rec)
    if rec.excluded:
        shown = rec.excluded[:MISSES_SHOWN]
        out.append(Para("Left out, closest misses first (how far off, relative to the bound):"))
        out.append(Table(("case", "broke", "value", "bound", "off by"),
                         tuple((rec.label(e.row), *_miss_text(m)) for e in shown
                               for m in sorted(e.misses, key=lambda m: m.off)),
                         (False, False, True, True, True)))
        if len(rec.excluded) > len(shown):
            out.append(Para(f"... and {len(rec.excluded) - len(shown)} more."))
    return out


def _notes(rec: Recommendation) -> list[Block]:
    notes = []
    if rec.untrusted:
        counts = ", ".join(f"{n} {why}" for why, n in sorted(rec.untrusted.items()))
        notes.append(Para(f"Never recommended: {counts}."))
    if rec.other_devices:
        notes.append(Para(f"{rec.other_devices} case(s) on other devices not considered "
                          f"(--device {rec.constraints.device})."))
    if rec.top1_sources:
        used = ", ".join(f"{what} for {n} case(s)" for what, n in sorted(rec.top1_sources.items()))
        notes.append(Para(f"--min-top1 checked against {used} (accuracy where the data folder "
                          "has labels, else agreement with fp32 on the same inputs)."))
    return notes
