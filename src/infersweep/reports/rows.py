"""The rows every report format renders: speedup against the right baseline row, utilisation of
the device's peak, per machine when a sweep ran on several, and the count of rows per status."""

from __future__ import annotations

from infersweep.results.result import Result

SPEEDUP_KEY = ("model", "weights", "device", "precision", "image_size", "batch_size", "data",
               "scope")


def add_utilization(rows: list[dict], peaks: dict) -> None:
    """utilization_pct = achieved TFLOP/s / the device's peak for the case's precision."""
    for row in rows:
        peak = peaks.get(f"{row['device']}:{row['precision']}")
        if peak and row["achieved_tflops"]:
            row["utilization_pct"] = 100.0 * row["achieved_tflops"] / peak["tflops"]


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


def rows_with_speedup(results: list[Result], baseline: str) -> list[dict]:
    """Rows with speedup = baseline median / case median, matched on everything but the backend.

    A row without an ok baseline row at the same device, precision, size, batch, data and scope
    gets no speedup: never one relative to an arbitrary other row. Where the baseline ran with
    several option sets (torch with and without channels_last), each baseline row is its own
    reference and other backends get none.
    """
    rows = [r.row() for r in results]
    base: dict[tuple, dict[str, float]] = {}  # key -> the baseline's options -> its median
    for r in rows:
        if r["backend"] == baseline and r["status"] == "ok":
            base.setdefault(tuple(r[k] for k in SPEEDUP_KEY), {})[r["options"]] = \
                r["latency_ms_median"]
    for row in rows:
        by_options = base.get(tuple(row[k] for k in SPEEDUP_KEY), {})
        # A baseline row is its own reference; another backend's options are its own, so it is
        # matched only where the baseline ran with one option set (else: which one is undefined).
        if row["backend"] == baseline:
            reference = by_options.get(row["options"])
        else:
            reference = next(iter(by_options.values())) if len(by_options) == 1 else None
        if row["status"] == "ok" and reference:
            row["speedup"] = reference / row["latency_ms_median"]
            row["baseline"] = baseline
    rows.sort(key=lambda r: (r["model"], r["device"], r["precision"], r["data"], r["image_size"],
                             r["batch_size"], r["backend"] != baseline, r["backend"]))
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
