"""What a reader wants before the big table: the machine, the fastest configurations, how each
backend compares with the baseline, and which batch size is enough.

Everything is computed from report rows (report.rows_with_speedup) into data classes, and rendered
by report.md (markdown_lines) and report.html alike, so the two can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from infersweep.reports.rows import baseline_of, trusted

# "Optimal batch": the smallest batch reaching 95% of the best throughput seen. Past that point a
# bigger batch buys little throughput and costs latency and memory.
ENOUGH = 0.95
# Throughput is "still rising" when the largest batch gained more than 5% over the one before:
# a smaller gain is within what run-to-run noise and a slightly unlucky median can produce.
RISING = 0.05
# Speedups within 5% of 1x are reported as "about as fast": claiming a winner there is noise.
SAME = 0.05


@dataclass(frozen=True, order=True)
class Series:
    """One line in a plot: everything identifying a configuration except image and batch size."""
    model: str
    data: str
    scope: str
    backend: str
    options: str
    device: str
    precision: str

    @classmethod
    def of(cls, row: dict) -> Series:
        return cls(**{f.name: row[f.name] or "" for f in fields(cls)})

    @property
    def runtime(self) -> str:
        return f"{self.backend} ({self.options})" if self.options else self.backend

    def label(self, varying: set[str] = frozenset()) -> str:
        """Backend, precision and device always; model, data and scope only where they vary."""
        extra = [getattr(self, f) for f in ("model", "data", "scope") if f in varying]
        return " ".join([self.runtime, self.precision, self.device, *extra])


def varying_fields(rows: list[dict]) -> set[str]:
    return {f.name for f in fields(Series) if len({r[f.name] for r in rows}) > 1}


def measured(rows: list[dict]) -> list[dict]:
    """Rows with a throughput: ok and with samples."""
    return [r for r in rows if r["status"] == "ok" and r["throughput_ips"] is not None]


def ranked(rows: list[dict]) -> list[dict]:
    """Rows that may rank (fastest, optimal batch): measured and trusted (rows.untrusted_reason:
    no disagreement with the reference, no noise flag)."""
    return [r for r in measured(rows) if trusted(r)]


@dataclass
class BatchCurve:
    """Throughput against batch size for one series at one image size, and where it saturates."""
    series: Series
    image_size: int
    batches: list[int]  # ascending, ok cases only
    throughputs: list[float]  # images/s, one per batch
    failed_above: list[tuple[int, str]]  # (batch, status) of larger batches that did not run

    @property
    def best_ips(self) -> float:
        return max(self.throughputs)

    @property
    def optimal_batch(self) -> int:
        return next(b for b, t in zip(self.batches, self.throughputs)
                    if t >= ENOUGH * self.best_ips)

    @property
    def optimal_ips(self) -> float:
        return self.throughputs[self.batches.index(self.optimal_batch)]

    @property
    def rising(self) -> bool | None:
        """Still rising at the largest batch that ran; None with one batch (nothing to compare)."""
        if len(self.batches) < 2:
            return None
        return self.throughputs[-1] > self.throughputs[-2] * (1 + RISING)

    @property
    def verdict(self) -> str:
        if self.rising is None:
            return "one batch size ran: saturation unknown"
        if not self.rising:
            return "saturated"
        if self.failed_above:
            # Advising larger batches would be wrong: the next one up did not run.
            batch, status = self.failed_above[0]
            return f"still rising at batch {self.batches[-1]}; batch {batch} ended {status}"
        return "not saturated: try larger batches"


def batch_curves(rows: list[dict]) -> list[BatchCurve]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((Series.of(r), r["image_size"]), []).append(r)
    curves = []
    for (series, size), group in sorted(groups.items()):
        ok = sorted(ranked(group), key=lambda r: r["batch_size"])
        if not ok:
            continue
        largest = ok[-1]["batch_size"]
        failed = sorted((r["batch_size"], r["status"]) for r in group
                        if r["status"] != "ok" and r["batch_size"] > largest)
        curves.append(BatchCurve(series, size, [r["batch_size"] for r in ok],
                                 [r["throughput_ips"] for r in ok], failed))
    return curves


@dataclass
class Fastest:
    """The highest-throughput row of one device, precision and image size.

    Per image size, because images/s at 224 px and at 512 px measure different amounts of work:
    the image size is chosen for accuracy, and the question is what runs it fastest.
    """
    device: str
    precision: str
    image_size: int
    data: str
    runtime: str
    batch_size: int
    throughput_ips: float
    latency_ms: float
    speedup: float | None
    baseline: str | None


def _runtime(r: dict, several_models: bool) -> str:
    """The row's runtime, named with its model when a sweep has several: findings are per model."""
    runtime = Series.of(r).runtime
    return f"{r['model']}: {runtime}" if several_models else runtime


def fastest_configs(rows: list[dict]) -> list[Fastest]:
    best: dict[tuple, dict] = {}
    several = len({r["model"] for r in rows}) > 1
    for r in ranked(rows):
        key = (r["device"], r["precision"], r["image_size"], r["data"], r["model"])
        if key not in best or r["throughput_ips"] > best[key]["throughput_ips"]:
            best[key] = r
    return [Fastest(*key[:4], _runtime(r, several), r["batch_size"], r["throughput_ips"],
                    r["latency_ms_median"], r["speedup"], r["baseline"])
            for key, r in sorted(best.items())]


def device_name(device: str, env: dict) -> str:
    if device == "cpu":
        return "the CPU"
    if device == "cuda":
        names = sorted({g["name"] for g in env.get("gpus") or []})
        return f"the GPU ({', '.join(names)})" if names else "the GPU"
    return device


def _times(x: float) -> str:
    return f"{x:.1f}x" if x < 10 else f"{x:.0f}x"


@dataclass
class SpeedupFinding:
    """One backend against the baseline on one device and precision."""
    runtime: str
    baseline: str
    device: str
    precision: str
    speedup: float  # at the backend's fastest configuration that the baseline also ran
    batch_size: int
    image_size: int
    low: float  # range over every case both ran
    high: float
    cases: int

    def sentence(self, env: dict) -> str:
        where = (f"on {device_name(self.device, env)} at batch {self.batch_size}, "
                 f"{self.image_size} px ({self.precision}")
        if abs(self.speedup - 1) <= SAME:
            head = f"{self.runtime} is about as fast as {self.baseline} ({self.speedup:.2f}x)"
        elif self.speedup > 1:
            head = f"{self.runtime} is {_times(self.speedup)} faster than {self.baseline}"
        else:
            head = (f"{self.runtime} is {_times(1 / self.speedup)} slower than {self.baseline} "
                    f"(speedup {self.speedup:.2f}x)")
        spread = (f"; {self.low:.2f}x to {self.high:.2f}x over the {self.cases} cases both ran"
                  if self.cases > 1 else "")
        return f"{head} {where}{spread})."


def speedup_findings(rows: list[dict], baseline: str, env: dict,
                     baseline_ok: bool | None = None) -> tuple[list[SpeedupFinding], list[str]]:
    """How each backend with a speedup fares against the baseline, and sentences saying where
    none could be found (the baseline failed or was not run): a missing number is said, never
    guessed.

    baseline_ok: whether the baseline has a successful case in the whole run, before ``--only``
    chose the rows; None when the rows are the whole run. Speedups are computed on the whole
    run, so a report filtered to leave the baseline out still has them, and says where they
    come from instead of claiming the baseline never ran.
    """
    groups: dict[tuple, list[dict]] = {}
    several = len({r["model"] for r in rows}) > 1
    baseline = baseline_of(baseline).backend
    for r in ranked(rows):
        if r["backend"] != baseline:
            groups.setdefault((_runtime(r, several), r["device"], r["precision"]), []).append(r)
    found, missing = [], []
    shown = any(r["backend"] == baseline for r in ranked(rows))
    if baseline_ok is None:
        baseline_ok = shown
    if groups and not baseline_ok:
        return [], [f"The baseline {baseline} has no successful case: no speedups computed."]
    if groups and not shown:
        missing.append(f"The baseline {baseline} is filtered out of this report; the speedups "
                       f"compare with its cases in the whole run.")
    for (runtime, device, precision), group in sorted(groups.items()):
        matched = [r for r in group if r["speedup"] is not None]
        if not matched:
            missing.append(f"No {baseline} result matches {runtime} on "
                           f"{device_name(device, env)} in {precision}: no speedup computed.")
            continue
        top = max(matched, key=lambda r: r["throughput_ips"])
        speedups = [r["speedup"] for r in matched]
        found.append(SpeedupFinding(runtime, baseline, device, precision, top["speedup"],
                                    top["batch_size"], top["image_size"], min(speedups),
                                    max(speedups), len(matched)))
    return found, missing


def environment_lines(env: dict) -> list[tuple[str, str]]:
    """The few facts that decide the numbers, shorter than the full Environment table."""
    cpu = f"{env.get('cpu', '?')} ({env.get('cores_usable', '?')} usable cores)"
    lines = [("CPU", cpu)]
    gpus = env.get("gpus") or []
    if gpus:
        lines += [(f"GPU {g['index']}", f"{g['name']}, {g['memory_gib']} GiB, driver {g['driver']}")
                  for g in gpus]
    else:
        lines.append(("GPU", "none visible"))
    packages = env.get("packages") or {}
    lines.append(("Libraries", ", ".join(f"{k} {v}" for k, v in packages.items()) or "unknown"))
    lines.append(("Python", f"{env.get('python', '?')} on {env.get('os', '?')}"))
    return lines


@dataclass
class Summary:
    environment: list[tuple[str, str]]
    sentences: list[str]
    fastest: list[Fastest]
    curves: list[BatchCurve]
    varying: set[str]
    baseline: str
    # Said in place of the tables where no case has a fixed-batch figure to rank.
    without_fastest: str = "No case ran successfully."


def build_summary(rows: list[dict], env: dict, baseline: str,
                  baseline_ok: bool | None = None) -> Summary:
    found, missing = speedup_findings(rows, baseline, env, baseline_ok)
    return Summary(environment_lines(env), [c.sentence(env) for c in found] + missing,
                   fastest_configs(rows), batch_curves(rows), varying_fields(rows), baseline,
                   _without_fastest(rows))


def _without_fastest(rows: list[dict]) -> str:
    """A sweep of server cases only ran fine but has no latency of a fixed batch to rank."""
    served = sum(1 for r in rows if r.get("status") == "ok"
                 and str(r.get("scenario") or "").startswith("server"))
    if served:
        return (f"No fixed-batch figure to rank: the {served} server case(s) that ran are under "
                "Scenarios.")
    return "No case ran successfully."


def markdown_lines(summary: Summary) -> list[str]:
    lines = ["## Summary", ""]
    lines += [f"- {label}: {value}" for label, value in summary.environment]
    lines += [""] + [f"{s}\n" for s in summary.sentences]
    if not summary.fastest:
        return lines + [summary.without_fastest, ""]
    show_data = "data" in summary.varying
    lines += ["### Fastest configuration", "",
              "Per device, precision and image size: images/s at different sizes are different "
              "work.", "",
              "| device | precision | size" + (" | data" if show_data else "")
              + " | backend | batch | throughput | latency (batch) | speedup |",
              "|---|---|---:" + ("|---" if show_data else "") + "|---|---:|---:|---:|---:|"]
    for f in summary.fastest:
        speedup = f"{f.speedup:.2f}x vs {f.baseline}" if f.speedup is not None else ""
        lines.append(f"| {f.device} | {f.precision} | {f.image_size} px"
                     + (f" | {f.data}" if show_data else "")
                     + f" | {f.runtime} | {f.batch_size} | {f.throughput_ips:.1f} img/s "
                       f"| {f.latency_ms:.2f} ms | {speedup} |")
    lines += ["", "### Optimal batch size", "",
              f"The smallest batch reaching {ENOUGH:.0%} of the best throughput seen; "
              f"\"not saturated\" when the largest batch still gained more than {RISING:.0%} "
              "over the one before.", "",
              "| configuration | size | batches | optimal batch | best throughput | saturation |",
              "|---|---:|---|---:|---:|---|"]
    for c in summary.curves:
        lines.append(f"| {c.series.label(summary.varying)} | {c.image_size} px "
                     f"| {', '.join(map(str, c.batches))} | {c.optimal_batch} "
                     f"| {c.best_ips:.1f} img/s | {c.verdict} |")
    return lines + [""]
