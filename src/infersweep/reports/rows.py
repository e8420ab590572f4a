"""The rows every report format renders: speedup against the right baseline row, utilisation of
the device's peak, per machine when a sweep ran on several, and the count of rows per status."""

from __future__ import annotations

from dataclasses import dataclass

from infersweep.backends import registry
from infersweep.grid.baseline import Baseline, parse_baseline
from infersweep.results.result import Result

SPEEDUP_KEY = ("model", "weights", "device", "precision", "image_size", "batch_size", "data",
               "scope")


def add_utilization(rows: list[dict], peaks: dict) -> None:
    """utilization_pct = achieved TFLOP/s / the device's peak for the case's precision."""
    for row in rows:
        peak = peaks.get(f"{row['device']}:{row['precision']}")
        if peak and row["achieved_tflops"]:
            row["utilization_pct"] = 100.0 * row["achieved_tflops"] / peak["tflops"]


# pragma: no mutate start (make mutate: how reports mark and explain a utilisation over 100%)
def above_peak(row: dict) -> bool:
    return (row.get("utilization_pct") or 0) > 100


def above_peak_note(rows: list[dict]) -> str | None:
    """Why a utilisation may exceed 100%, naming the devices and precisions where one does; None
    where none does. One text for report.md and report.html, so both explain it alike.

    A utilisation over 100% is not an error to hide: a measured peak is what one library's
    matrix product reaches on this machine, and a runtime's convolution kernels (e.g. ONNX
    Runtime's on AVX-512) can beat it. Say so next to the figure instead of capping it."""
    above = sorted({f"{r['device']} {r['precision']}" for r in rows if above_peak(r)})
    if not above:
        return None
    return (f"utilisation above 100% ({', '.join(above)}): the case ran faster than the "
            "measured peak. That peak is the best matrix product a library reached on this "
            "machine, a lower bound of what the hardware can do, not its limit; compare such "
            "rows with each other, not with 100%.")
# pragma: no mutate end


DISAGREES = "outputs disagree with the fp32 reference"


def untrusted_reason(row: dict) -> str:
    """Why an ok row's figures cannot be trusted, or "": its outputs disagree with the fp32
    reference beyond its precision's threshold (probes/agreement.py), or its measurement was
    disturbed (the ``noise`` column of the contention guard, when there is one). Such a row is
    shown with its figures among the cases that did not run cleanly, and never gets a speedup,
    serves as a baseline, ranks, or is named fastest."""
    reasons = []
    if row.get("disagrees") or any(w.startswith(DISAGREES)
                                   for w in (row.get("warnings") or "").split("; ")):
        reasons.append(DISAGREES)
    if row.get("noise"):
        reasons.append(f"noisy measurement: {row['noise']}")
    return "; ".join(reasons)


def trusted(row: dict) -> bool:
    """An ok row with a latency whose figures can be compared and ranked."""
    return (row["status"] == "ok" and row["latency_ms_median"] is not None
            and not untrusted_reason(row))


def baseline_of(baseline) -> Baseline:
    """The Baseline of a --baseline text (or a Baseline as it is). A stored run may name a
    backend that is not installed here: then it is matched by name only."""
    if isinstance(baseline, Baseline):
        return baseline
    known = dict(registry())
    name = str(baseline).partition("[")[0].strip()
    known.setdefault(name, None)
    return parse_baseline(baseline, known)


def describe_baseline(row: dict) -> str:
    """A baseline row by backend and options: 'torch (channels_last=false)'."""
    options = (row.get("options") or "").replace(",", ", ")
    return f"{row['backend']} ({options})" if options else row["backend"]


def rows_with_speedup(results: list[Result], baseline) -> list[dict]:
    """Rows with speedup = baseline median / case median, matched on everything but the backend
    and its options; ``baseline``: a backend, or BACKEND[OPTION=VALUE] (grid/baseline.py).

    A row without a trusted ok baseline row at the same device, precision, size, batch, data and
    scope gets no speedup: never one relative to an arbitrary other row. Where several baseline
    rows fit (e.g. torch with and without channels_last), a baseline row is its own reference
    (it matches on its options) and the other rows' speedup stays empty, the ``baseline`` column
    saying why and naming them: choose one with --baseline.
    """
    chosen = baseline_of(baseline)
    rows = [r.row() for r in results]
    candidates: dict[tuple, list[dict]] = {}
    for r in rows:
        if trusted(r) and chosen.matches(r["backend"], r["options"] or ""):
            candidates.setdefault(tuple(r[k] for k in SPEEDUP_KEY), []).append(r)
    for row in rows:
        if not trusted(row):
            continue
        found = candidates.get(tuple(row[k] for k in SPEEDUP_KEY), [])
        if len(found) > 1:  # a row of the baseline itself is matched on its own options
            found = [r for r in found if r is row] or found
        if len(found) == 1:
            row["speedup"] = found[0]["latency_ms_median"] / row["latency_ms_median"]
            row["baseline"] = describe_baseline(found[0])
        elif found:
            names = ", ".join(sorted(describe_baseline(r) for r in found))
            example = sorted(found, key=describe_baseline)[0]["options"]
            row["baseline"] = (f"ambiguous baseline: {names}; choose one with --baseline, e.g. "
                               f"'{chosen.backend}[{example}]'")
    rows.sort(key=lambda r: (r["model"], r["device"], r["precision"], r["data"], r["image_size"],
                             r["batch_size"], r["backend"] != chosen.backend, r["backend"]))
    return rows


# pragma: no mutate start (make mutate: filtering and counting rows)
def _matching(rows: list[dict], only) -> list[dict]:
    # After the speedups: filtering first would drop the baseline rows.
    return rows if only is None else [r for r in rows if only.matches(r)]


def report_rows(results: list[Result], baseline: str, peaks: dict, only=None) -> list[dict]:
    """The rows of one machine's results: speedups, ``only`` (a Filter), then utilisation."""
    rows = _matching(rows_with_speedup(results, baseline), only)
    add_utilization(rows, peaks)
    return rows


def rows_by_hardware(groups: list, loose: list[Result], baseline: str, only=None) -> list[dict]:
    """Rows of several machines (hardware.Hardware groups), grouped in their order; speedups and
    utilisation within each machine. Results of no machine (not run) go with the first group."""
    rows = []
    for i, group in enumerate(groups):
        group_rows = rows_with_speedup(group.results + (loose if i == 0 else []), baseline)
        add_utilization(group_rows, group.peaks)
        rows += group_rows
    return _matching(rows, only)


def status_counts(rows: list[dict]) -> dict[str, int]:
    """Rows per status, statuses in alphabetical order."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return dict(sorted(counts.items()))


def status_line(rows: list[dict]) -> str:
    """'3 ok, 1 timeout': how the reports and the CLI say what happened."""
    return ", ".join(f"{n} {status}" for status, n in status_counts(rows).items())
# pragma: no mutate end


# pragma: no mutate start (make mutate: how reports list the rows that did not run cleanly)
@dataclass(frozen=True)
class Problem:
    """A row that did not run cleanly, as report.md and report.html list it."""
    row: dict
    status: str  # the row's status; "ok, untrusted" for an ok row whose figures are not trusted
    why: str
    figures: str  # what was measured all the same: median, throughput, agreement


def problems(rows: list[dict]) -> list[Problem]:
    """Failed rows, untrusted rows (with their figures, excluded from speedups and rankings),
    and rows with warnings."""
    out = []
    for r in rows:
        untrusted = untrusted_reason(r) if r["status"] == "ok" else ""
        if r["status"] == "ok" and not untrusted and not r["warnings"]:
            continue
        status = "ok, untrusted" if untrusted else r["status"]
        why = r["reason"] or (f"untrusted, not ranked and without speedup: {untrusted}"
                              if untrusted else "")
        if r["warnings"]:
            why = f"{why}; warning: {r['warnings']}" if why else f"warning: {r['warnings']}"
        out.append(Problem(r, status, why, _figures(r)))
    return out


def _figures(r: dict) -> str:
    parts = []
    if r.get("latency_ms_median") is not None:
        parts.append(f"median {r['latency_ms_median']:.3f} ms")
    if r.get("throughput_ips") is not None:
        parts.append(f"{r['throughput_ips']:.1f} img/s")
    if r.get("cosine") is not None:
        parts.append(f"cosine {r['cosine']:.5f}")
    return ", ".join(parts)
# pragma: no mutate end
