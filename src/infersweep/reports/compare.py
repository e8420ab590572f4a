"""`infersweep compare`: is B faster or slower than A, case by case, and is the difference real?

A and B are two lists of results: two run directories (``compare RUN_A RUN_B``), or two groups
of one run chosen by filters (``compare RUN --a backend=torch --b backend=onnxruntime``).

Matching. Cases are paired on every Case field except the fields that the two group filters set
differently (for two runs without --a/--b: on every field, i.e. the same case_id). When the
backend differs, options are left out of the match too: they are per-backend settings
(channels_last for torch, cudnn_conv_algo_search for onnxruntime) and never equal across backends.
Where several cases of one side share a match key (e.g. torch with and without channels_last
against one onnxruntime case), nothing is paired at that key and it is listed as ambiguous:
narrow --a or --b (e.g. add options=channels_last=false). Unpaired cases are listed per side.

Direction. ratio = median latency of B / median latency of A. Below 1: B takes less time, B is
faster. Above 1: B is slower. (1 / ratio is B's speedup over A.)

Significance. A 95% percentile bootstrap interval of the ratio of medians: each side's raw
samples are resampled with replacement (numpy default_rng, a fixed seed per case, 2000
resamples), the median of each resample taken, the 2.5th and 97.5th percentiles of
median_B* / median_A* form the interval. Verdict "faster" when the whole interval is below 1
and B is faster by more than the margin, "slower" when the whole interval is above 1 and B is
slower by more than the margin, else "no significant difference". The margin (default 2%) is
the floor of run-to-run noise: the bootstrap sees only the noise within each run, while two runs
of the same build on one machine differ by about 0.5-2% (machine state, clocks, memory layout),
which with thousands of samples would otherwise be called significant. Only pairs with status ok on both
sides, at least MIN_SAMPLES samples each and no side the contention guard flagged as disturbed
(its ``noise`` cell) are compared; the others are listed, not judged.

Between processes. Where both sides were measured with --repeats 2 or more, the medians are the
medians of the per-process medians and the interval is a Welch t interval of the ratio from the
process medians (log scale; results/repeats.py): it includes the noise between worker processes,
which the bootstrap of one process's iterations cannot see. Without repeats the report says so,
with the spread this machine has shown before (results/history.py), and the CLI's
--fail-if-slower refuses to judge unless --ignore-process-noise is given.

A significant difference can be tiny with many samples; ``regressions(pairs, 0.05)`` (the
CLI's --fail-if-slower 5%) is the practical gate: pairs whose interval lies wholly above 1.05,
i.e. B is slower by more than 5% with 95% confidence.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields

import numpy as np

from infersweep.case import Case
from infersweep.grid.filters import Filter, select
from infersweep.reports.blocks import md_cell
from infersweep.results import history
from infersweep.results.history import ProcessNoise
from infersweep.results.repeats import ratio_interval

FASTER, SLOWER, NO_DIFFERENCE, NOT_COMPARED = ("faster", "slower", "no significant difference",
                                               "not compared")
RESAMPLES = 2000
SEED = 0
CONFIDENCE = 0.95
MARGIN = 0.02  # differences smaller than this are run-to-run noise, not a verdict
MIN_SAMPLES = 5  # fewer samples per side: listed as not compared
_CHUNK_ELEMENTS = 1 << 22  # index array elements per bootstrap chunk (16 MB of int32)

CASE_FIELDS = tuple(f.name for f in fields(Case))
# The order of the table: as in report.md.
_SORT_FIELDS = ("model", "device", "precision", "data", "scope", "image_size", "batch_size",
                "backend", "options", "weights")
# The match key: every Case field (fields added to Case later are matched on too).
_KEY_FIELDS = _SORT_FIELDS + tuple(f for f in CASE_FIELDS if f not in _SORT_FIELDS)
_FILTER_TO_CASE = {"size": "image_size", "batch": "batch_size"}


class CompareError(ValueError):
    pass


@dataclass(frozen=True)
class Pair:
    """One matched pair. ratio and the interval are None when the pair was not compared."""
    a: Case
    b: Case
    a_status: str
    b_status: str
    a_median_ms: float | None
    b_median_ms: float | None
    a_samples: int
    b_samples: int
    ratio: float | None  # median(B) / median(A): < 1 means B is faster
    ci_low: float | None
    ci_high: float | None
    verdict: str  # FASTER, SLOWER, NO_DIFFERENCE or NOT_COMPARED
    note: str = ""  # why a pair was not compared
    label: str = ""  # the case, without the fields that differ between A and B
    a_repeats: int = 0  # worker processes that measured A's case (--repeats)
    b_repeats: int = 0
    between_processes: bool = False  # the interval comes from the spread between processes
    disturbed: bool = False  # not compared: a side's timing was flagged by the contention guard

    @property
    def single_process(self) -> bool:
        """Compared, but from one process on a side: process-to-process noise unseen."""
        return self.ratio is not None and not self.between_processes

    @property
    def change_pct(self) -> float | None:
        """B's latency change relative to A in percent: +10 = B takes 10% longer."""
        return None if self.ratio is None else (self.ratio - 1) * 100

    def to_dict(self) -> dict:
        return {"label": self.label, "a": {**self.a.to_dict(), "case_id": self.a.case_id},
                "b": {**self.b.to_dict(), "case_id": self.b.case_id},
                "a_status": self.a_status, "b_status": self.b_status,
                "a_median_ms": self.a_median_ms, "b_median_ms": self.b_median_ms,
                "a_samples": self.a_samples, "b_samples": self.b_samples,
                "ratio": self.ratio, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "change_pct": self.change_pct, "verdict": self.verdict, "note": self.note,
                "a_repeats": self.a_repeats, "b_repeats": self.b_repeats,
                "disturbed": self.disturbed,
                "interval_from": ("between processes" if self.between_processes else
                                  "within one process" if self.ratio is not None else None)}


@dataclass
class Comparison:
    """Run B against run A (or group B against group A of one run): the matched pairs, with what
    could not be paired."""
    pairs: list[Pair]
    only_a: list  # Results of A with no partner in B
    only_b: list
    ambiguous: list[tuple[list, list]]  # (A results, B results) sharing one match key
    ignored: tuple[str, ...]  # Case fields left out of the match
    a_name: str = "A"
    b_name: str = "B"
    common: dict = field(default_factory=dict)  # Case fields equal in every pair (for headers)
    resamples: int = RESAMPLES
    seed: int = SEED
    confidence: float = CONFIDENCE
    margin: float = MARGIN
    process_noise: ProcessNoise | None = None  # what this machine has shown before (history)

    def single_process(self) -> list[Pair]:
        return [p for p in self.pairs if p.single_process]

    def disturbed(self) -> list[Pair]:
        return [p for p in self.pairs if p.disturbed]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys((FASTER, SLOWER, NO_DIFFERENCE, NOT_COMPARED), 0)
        for p in self.pairs:
            out[p.verdict] += 1
        return out


CompareResult = Comparison  # its name before the stage-folder layout


def differing_fields(a_filter: Filter | None, b_filter: Filter | None) -> tuple[str, ...]:
    """Case fields the two group filters set differently: left out of the match key.

    A field counts when only one filter has conditions on it, or both do with different
    conditions. status is not a Case field and never counts. When backend differs, options do
    too (they are per-backend)."""
    a = a_filter or Filter()
    b = b_filter or Filter()
    out = set()
    for name in (a.fields | b.fields) - {"status"}:
        if set(a.on(name)) != set(b.on(name)):
            out.add(_FILTER_TO_CASE.get(name, name))
    if "backend" in out:
        out.add("options")
    return tuple(f for f in CASE_FIELDS if f in out)


def compare(results_a: list, results_b: list, *, a_filter: Filter | None = None,
            b_filter: Filter | None = None, only: Filter | None = None, a_name: str = "A",
            b_name: str = "B", resamples: int = RESAMPLES, seed: int = SEED,
            confidence: float = CONFIDENCE, margin: float = MARGIN) -> Comparison:
    """Pair A's results with B's and compare each pair's latency.

    Two runs: compare(results_of_run_a, results_of_run_b, only=...).
    Groups of one run: compare(results, results, a_filter=..., b_filter=..., only=...); the
    filters must set at least one field differently (else every case would meet itself).
    ``only`` narrows both sides; ``a_filter``/``b_filter`` pick each side's group.
    """
    ignored = differing_fields(a_filter, b_filter)
    if results_a is results_b and not ignored:
        raise CompareError("--a and --b select the same cases: give them different values of at "
                           "least one field, e.g. --a backend=torch --b backend=onnxruntime")
    side_a = select(select(results_a, only), a_filter)
    side_b = select(select(results_b, only), b_filter)
    by_key_a, by_key_b = _by_key(side_a, ignored), _by_key(side_b, ignored)

    pairs_found, only_a, only_b, ambiguous = [], [], [], []
    for key in sorted(by_key_a.keys() | by_key_b.keys(), key=_sort_key):
        ra, rb = by_key_a.get(key, []), by_key_b.get(key, [])
        if not rb:
            only_a += ra
        elif not ra:
            only_b += rb
        elif len(ra) > 1 or len(rb) > 1:
            ambiguous.append((ra, rb))
        else:
            pairs_found.append((ra[0], rb[0]))

    kept = [f for f in CASE_FIELDS if f not in ignored]
    common = {f: getattr(pairs_found[0][0].case, f) for f in kept
              if len({getattr(a.case, f) for a, _ in pairs_found}) == 1} if pairs_found else {}
    pairs = [compare_pair(a, b, resamples=resamples, seed=seed, confidence=confidence,
                          margin=margin, label=_label(a.case, [f for f in kept if f not in common] or kept))
             for a, b in pairs_found]
    return Comparison(pairs, only_a, only_b, ambiguous, ignored, a_name, b_name, common,
                      resamples, seed, confidence, margin, history.process_noise())


def compare_pair(a, b, *, resamples: int = RESAMPLES, seed: int = SEED,
                 confidence: float = CONFIDENCE, margin: float = MARGIN,
                 label: str = "") -> Pair:
    """Compare two Results (anything with .case, .status, .samples_ms)."""
    xa = np.asarray(a.samples_ms if a.status == "ok" else [], dtype=np.float64)
    xb = np.asarray(b.samples_ms if b.status == "ok" else [], dtype=np.float64)
    med_a = float(np.median(xa)) if xa.size else None
    med_b = float(np.median(xb)) if xb.size else None
    # With --repeats on both sides: the medians of the process medians, and the interval from
    # the spread between processes (results/repeats.py), which includes the noise of the
    # iterations within each process.
    pa, pb = (list(getattr(r, "process_medians_ms", []) or []) if r.status == "ok" else []
              for r in (a, b))
    between = len(pa) >= 2 and len(pb) >= 2
    if between:
        med_a, med_b = float(np.median(pa)), float(np.median(pb))
    common = dict(a=a.case, b=b.case, a_status=a.status, b_status=b.status, a_median_ms=med_a,
                  b_median_ms=med_b, a_samples=int(xa.size), b_samples=int(xb.size),
                  label=label or a.case.label, a_repeats=max(len(pa), int(xa.size > 0)),
                  b_repeats=max(len(pb), int(xb.size > 0)))
    note = _why_not(a, xa, "A") or _why_not(b, xb, "B")
    disturbance = "" if note else _disturbed(a, "A") or _disturbed(b, "B")
    if note or disturbance:
        return Pair(ratio=None, ci_low=None, ci_high=None, verdict=NOT_COMPARED,
                    note=note or disturbance, disturbed=bool(disturbance), **common)
    if between:
        low, high = ratio_interval(pa, pb)
    else:
        rng = np.random.default_rng([seed, int(a.case.case_id, 16), int(b.case.case_id, 16)])
        boot = bootstrap_medians(xb, resamples, rng) / bootstrap_medians(xa, resamples, rng)
        tail = (1 - confidence) / 2 * 100
        low, high = (float(v) for v in np.percentile(boot, [tail, 100 - tail]))
    ratio = med_b / med_a
    verdict = (FASTER if high < 1 and ratio < 1 - margin else
               SLOWER if low > 1 and ratio > 1 + margin else NO_DIFFERENCE)
    return Pair(ratio=ratio, ci_low=low, ci_high=high, verdict=verdict,
                between_processes=between, **common)


def bootstrap_medians(samples, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Medians of ``resamples`` resamples (with replacement, each of len(samples)) of samples.

    Index arrays of shape (resamples, n), drawn in chunks to bound memory. The samples are
    sorted first, so the median of a resample is read off the middle order statistic(s) of its
    indices: the same number as np.median(samples[idx]), without gathering and partitioning
    floats."""
    s = np.sort(np.asarray(samples, dtype=np.float64))
    n = s.size
    out = np.empty(resamples)
    k = n // 2
    chunk = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n), dtype=np.int32 if n < 2**31 else np.int64)
        if n % 2:
            out[start:stop] = s[np.partition(idx, k, axis=1)[:, k]]
        else:
            mid = np.partition(idx, (k - 1, k), axis=1)
            out[start:stop] = (s[mid[:, k - 1]] + s[mid[:, k]]) / 2
    return out


def regressions(pairs, threshold: float) -> list[Pair]:
    """Pairs where B is slower than A by more than ``threshold`` (0.05 = 5%) with confidence:
    the interval's lower bound exceeds 1 + threshold. Point estimates above the threshold whose
    interval reaches below it do not count (noise must not fail a CI gate)."""
    if threshold < 0:
        raise CompareError(f"threshold must be >= 0, not {threshold}")
    return [p for p in _pairs(pairs) if p.ci_low is not None and p.ci_low > 1 + threshold]


def newly_failing(pairs) -> list[Pair]:
    """Pairs that were ok in A and are not ok in B (crashed, oom, timeout, ...)."""
    return [p for p in _pairs(pairs) if p.a_status == "ok" and p.b_status != "ok"]


def parse_fraction(text: str) -> float:
    """'5%' -> 0.05, '0.05' -> 0.05, '0' -> 0. A bare number of 1 or more is refused as
    ambiguous (write 5% or 0.05)."""
    raw = str(text).strip()
    percent = raw.endswith("%")
    number = raw[:-1].strip() if percent else raw
    try:
        value = float(number)
    except ValueError:
        raise CompareError(f"{text!r} is not a fraction: write a percentage like 5% or a "
                           "fraction like 0.05") from None
    if not math.isfinite(value) or value < 0:
        raise CompareError(f"{text!r}: the threshold must be a number >= 0, like 5% or 0.05")
    if percent:
        return value / 100
    if value >= 1:
        raise CompareError(f"{text!r} is ambiguous: write {value:g}% or {value / 100:g} for "
                           f"{value:g} percent")
    return value


# pragma: no mutate start (make mutate: report text, not the verdicts)
def to_markdown(result: Comparison) -> str:
    ignored = ", ".join(result.ignored)
    a_desc, b_desc = result.a_name, result.b_name
    pct = f"{result.confidence:.0%}"
    lines = ["# infersweep compare", "",
             f"- A: {a_desc}", f"- B: {b_desc}",
             f"- ratio = B median / A median latency: below 1 means B is faster, above 1 slower. "
             f"{pct} interval: bootstrap of the ratio of medians ({result.resamples} resamples, "
             f"seed {result.seed}); a verdict of faster or slower needs the whole interval on "
             f"one side of 1 and a change beyond the {result.margin:.0%} margin of run-to-run "
             "noise.",
             "- matched on every case field" + (f" except {ignored}" if ignored else ""),
             *_process_lines(result)]
    if result.common:
        lines.append("- the same in every pair: " + ", ".join(
            f"{k} {v}" for k, v in result.common.items() if v != ""))
    counts = result.counts()
    lines += ["", f"{len(result.pairs)} pairs: " + ", ".join(
        f"{n} {v}" for v, n in counts.items() if n) if result.pairs else "no pairs", ""]
    if result.pairs:
        diff = [f for f in result.ignored if f != "options"] or []
        extra = "".join(f" {f} A | {f} B |" for f in diff)
        lines += ["| case |" + extra + " A median | B median | B/A (" + pct + " CI) | change "
                  "| verdict |",
                  "|---|" + "---|---|" * len(diff) + "---:|---:|---:|---:|---|"]
        for p in result.pairs:
            cells = "".join(f" {md_cell(getattr(p.a, f))} | {md_cell(getattr(p.b, f))} |"
                            for f in diff)
            if p.ratio is None:
                ratio, change, verdict = "", "", f"{p.verdict}: {md_cell(p.note)}"
            else:
                ratio = f"{p.ratio:.3f} ({p.ci_low:.3f}–{p.ci_high:.3f})"
                change = f"{p.change_pct:+.1f}%"
                verdict = f"**{p.verdict}**" if p.verdict in (FASTER, SLOWER) else p.verdict
            lines.append(f"| {md_cell(p.label)} |{cells} {_ms(p.a_median_ms)} "
                         f"| {_ms(p.b_median_ms)} | {ratio} | {change} | {verdict} |")
    for title, side in (("Only in A", result.only_a), ("Only in B", result.only_b)):
        if side:
            lines += ["", f"## {title} ({len(side)})", ""]
            lines += [f"- {md_cell(r.case.label)} ({r.case.model}, {r.status})" for r in side]
    if result.ambiguous:
        lines += ["", f"## Not paired: several cases share one match key ({len(result.ambiguous)})",
                  "", "Narrow --a or --b (for example with options=...) so that each key holds "
                      "one case per side.", ""]
        for ra, rb in result.ambiguous:
            lines.append("- A: " + "; ".join(md_cell(r.case.label) for r in ra)
                         + " / B: " + "; ".join(md_cell(r.case.label) for r in rb))
    return "\n".join(lines) + "\n"


def to_json(result: Comparison) -> str:
    def side(results):
        return [{**r.case.to_dict(), "case_id": r.case.case_id, "status": r.status}
                for r in results]

    return json.dumps({
        "a": result.a_name, "b": result.b_name,
        "ratio": "median latency of B / median latency of A; below 1: B is faster",
        "method": {"interval": "percentile bootstrap of the ratio of medians",
                   "confidence": result.confidence, "resamples": result.resamples,
                   "seed": result.seed, "min_samples": MIN_SAMPLES, "margin": result.margin},
        "between_processes": "with --repeats 2+ on both sides: Welch t interval of the ratio "
                             "of per-process medians (log scale); else the bootstrap above, "
                             "which does not see process-to-process noise",
        "single_process_pairs": len(result.single_process()),
        "process_noise": None if result.process_noise is None else {
            "cases": result.process_noise.cases,
            "median_spread": result.process_noise.median_spread,
            "max_spread": result.process_noise.max_spread},
        "ignored_fields": list(result.ignored),
        "common": result.common,
        "counts": result.counts(),
        "pairs": [p.to_dict() for p in result.pairs],
        "only_a": side(result.only_a), "only_b": side(result.only_b),
        "ambiguous": [{"a": side(ra), "b": side(rb)} for ra, rb in result.ambiguous],
    }, indent=1)


def _process_lines(result: Comparison) -> list[str]:
    """What the intervals account for: between-process noise, or plainly not."""
    single = result.single_process()
    compared = [p for p in result.pairs if p.ratio is not None]
    lines = []
    if len(single) < len(compared):
        lines.append(f"- {len(compared) - len(single)} pair(s) measured with --repeats on both "
                     "sides: their medians are medians of per-process medians and their "
                     "interval is a Welch t interval between processes (log scale).")
    if single:
        noise = result.process_noise
        seen = (f"On this machine per-process medians of one case have moved by "
                f"{noise.median_spread:.1%} (median over {noise.cases} case(s) run with --repeats; "
                f"at most {noise.max_spread:.1%}) from one worker process to the next."
                if noise else
                "This machine has no record of that noise yet (no sweep here ran with --repeats 2 "
                "or more).")
        lines.append(f"- **process-to-process noise is not accounted for** in {len(single)} of "
                     f"{len(compared)} compared pair(s): a side was measured in one worker "
                     "process, and the interval sees only the noise within that process. "
                     f"{seen} Run both sweeps with --repeats 3 for verdicts that include it.")
    return lines
# pragma: no mutate end


def _pairs(pairs) -> Iterable[Pair]:
    """The pairs of a Comparison, or a list of pairs as it is."""
    return pairs.pairs if isinstance(pairs, Comparison) else pairs


def _why_not(result, samples: np.ndarray, side: str) -> str:
    if result.status != "ok":
        reason = f" ({result.reason[:120]})" if getattr(result, "reason", "") else ""
        return f"{side} {result.status}{reason}"
    if samples.size < MIN_SAMPLES:
        return f"{side} has {samples.size} samples (< {MIN_SAMPLES})"
    return ""


def _disturbed(result, side: str) -> str:
    """Why an ok side's timing is no basis for a verdict, or "": the contention guard's cell
    (probes/contention.py) says it was timed while starved, contended or throttled, even after
    --remeasure. Reports never rank such a row either."""
    noise = (getattr(result, "measured", None) or {}).get("noise")
    return f"{side} measured while disturbed ({noise})" if noise else ""


def _by_key(results: list, ignored: tuple[str, ...]) -> dict[tuple, list]:
    out: dict[tuple, list] = {}
    for r in results:
        key = tuple((f, getattr(r.case, f)) for f in _KEY_FIELDS if f not in ignored)
        out.setdefault(key, []).append(r)
    return out


def _sort_key(key: tuple) -> tuple:
    return tuple((0, v, "") if isinstance(v, int) else (1, 0, str(v)) for _, v in key)


# pragma: no mutate start (make mutate: table labels and cells)
def _label(case: Case, names: list[str]) -> str:
    parts = []
    for name in _KEY_FIELDS:
        if name not in names:
            continue
        value = getattr(case, name)
        if name == "image_size":
            parts.append(f"{value}px")
        elif name == "batch_size":
            parts.append(f"bs{value}")
        elif name == "weights" and value.startswith("random("):
            continue
        elif value != "" and not (name == "scope" and value == "compute" and len(names) > 1):
            parts.append(str(value))
    return " ".join(parts) or case.label


def _ms(value) -> str:
    if value is None:
        return ""
    return f"{value:.3f} ms" if value < 100 else f"{value:.1f} ms"
# pragma: no mutate end
