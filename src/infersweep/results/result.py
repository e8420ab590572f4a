"""One Result per case: what happened, the raw samples, and the figures derived from them.

Raw samples are the source of truth; statistics are derived when a row is produced, so a row can
never disagree with its samples. What the probes found is kept in ``measured``, by column name.
``speedup``, ``baseline`` and ``utilization_pct`` need other rows or the machine's peaks and are
filled in by the report (reports/tables.py: rows_with_speedup, add_utilization).
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone

from infersweep.case import Case
from infersweep.measure.stats import summarize
from infersweep.probes import registry
from infersweep.probes.base import Column
from infersweep.results.repeats import process_stats

STATUSES = ("ok", "failed", "crashed", "oom", "timeout", "unsupported", "unavailable")
# Statuses that mean "this case was attempted and went wrong": re-run by --retry-failed.
FAILED_STATUSES = ("failed", "crashed", "oom", "timeout")

# The core row's columns, in order, with how reports show it. The probes' columns are declared
# with the probes (probes/*.py) and placed among these by columns().
_C = Column
COLUMNS: list[Column] = [
    _C("case_id", "case", in_table=False), _C("model", "model", in_table=False),
    _C("weights", "weights", in_table=False), _C("backend", "backend"),
    _C("device", "device"), _C("precision", "precision"), _C("image_size", "size (px)", "d"),
    _C("batch_size", "batch", "d"), _C("data", "data"), _C("scope", "scope", in_table=False),
    _C("options", "options"), _C("scenario", "scenario", in_table=False), _C("status", "status"), _C("reason", "reason", in_table=False),
    _C("setup_s", "setup (s)", ".2f", " s", in_table=False),
    _C("first_iter_ms", "first run (ms)", ".3f", " ms", in_table=False),
    _C("iterations", "iterations", "d", in_table=False),
    # --repeats: worker processes that measured the case, and each one's median.
    _C("repeats", "repeats", "d"),
    _C("process_medians_ms", "process medians (ms)", in_table=False),
    _C("latency_ms_mean", "latency mean (ms)", ".3f", " ms", in_table=False),
    _C("latency_ms_median", "latency median (ms)", ".3f", " ms"),
    _C("latency_ms_trimmed", "latency trimmed mean (ms)", ".3f", " ms", in_table=False),
    _C("latency_ms_std", "std (ms)", ".3f", " ms"),
    _C("latency_ms_min", "min (ms)", ".3f", " ms", in_table=False),
    _C("latency_ms_max", "max (ms)", ".3f", " ms", in_table=False),
    _C("latency_ms_p90", "p90 (ms)", ".3f", " ms", in_table=False),
    _C("latency_ms_p99", "p99 (ms)", ".3f", " ms"),
    _C("latency_ms_ci_low", "CI low (ms)", ".3f", " ms", in_table=False),
    _C("latency_ms_ci_high", "CI high (ms)", ".3f", " ms", in_table=False),
    _C("per_image_ms", "per image (ms)", ".3f", " ms"),
    _C("throughput_ips", "throughput (img/s)", ".1f", " img/s"),
    _C("throughput_pipelined_ips", "pipelined (img/s)", ".1f", " img/s"),
    # Filled by the report: they need the machine's peaks and the other rows.
    _C("utilization_pct", "utilization (%)", ".1f", "%"),
    _C("speedup", "speedup (x)", ".2f", "x"), _C("baseline", "baseline", in_table=False),
    _C("warnings", "warnings", in_table=False),
]


def columns() -> list[Column]:
    """Every results.csv column in order, with its title and format: what reports render.

    The core columns, and each registered probe's columns right after its ``place_after``
    (before ``warnings`` when it names none or a column that is not there). A column that two
    probes fill (peak memory: CPU or GPU) is declared by both and listed once.
    """
    return list(_columns())


@functools.lru_cache(maxsize=1)
def _columns() -> tuple[Column, ...]:
    # Probes are registered once per process, so the merge is done once.
    merged = list(COLUMNS)
    for probe in registry():
        names = [c.name for c in merged]
        new = [c for c in probe.columns if c.name not in names]
        anchor = probe.place_after
        at = names.index(anchor) + 1 if anchor in names else names.index("warnings")
        merged[at:at] = new
    return tuple(merged)


@functools.lru_cache(maxsize=1)
def probe_columns() -> tuple[str, ...]:
    """The columns that come from probes, in order: the keys of ``Result.measured``."""
    core = {c.name for c in COLUMNS}
    return tuple(c.name for c in columns() if c.name not in core)


def __getattr__(name: str):
    # CSV_COLUMNS is computed on first use: the probe registry reads $INFERSWEEP_PLUGINS.
    if name == "CSV_COLUMNS":
        return [c.name for c in columns()]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Result:
    case: Case
    status: str
    reason: str = ""
    setup_s: float | None = None
    first_iter_ms: float | None = None
    warmup_iterations: int | None = None
    samples_ms: list[float] = field(default_factory=list)  # every process's, pooled
    process_medians_ms: list[float] = field(default_factory=list)  # one per process (--repeats)
    pipelined_ips: float | None = None  # GPU: N back-to-back launches, one synchronize
    measured: dict = field(default_factory=dict)  # probe column -> value (probes/*.py)
    quick: bool = False  # measured with --quick
    wall_s: float | None = None  # the case's wall time in the parent, start event to result
    warnings: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    finished_at: str = field(default_factory=now_iso)

    def __getattr__(self, name: str):
        # Only reached for names that are not fields: a probe's column reads like a field
        # (result.peak_memory_mb), None where the probe gave nothing.
        if not name.startswith("_") and name != "measured" and name in probe_columns():
            return self.__dict__.get("measured", {}).get(name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def to_json(self) -> str:
        d = asdict(self)
        d["case"] = self.case.to_dict()
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> Result:
        d = json.loads(text)
        d["case"] = Case.from_dict(d["case"])
        # Rows stored before probes kept their figures as top-level keys (peak_memory_mb,
        # cosine...): every key that is not a field is one of those, named as its column.
        names = {f.name for f in fields(cls)}
        measured = d.setdefault("measured", {})
        for key in [k for k in d if k not in names]:
            value = d.pop(key)
            if value is not None and value != "":
                measured.setdefault(key, value)
        return cls(**d)

    def row(self) -> dict:
        """A flat row with the CSV columns; figures that were not measured are None."""
        row = dict.fromkeys(c.name for c in columns())
        row.update({name: self.measured.get(name) for name in probe_columns()})
        row.update(self.case.to_dict())
        row.update(case_id=self.case.case_id, status=self.status, reason=self.reason,
                   setup_s=self.setup_s, first_iter_ms=self.first_iter_ms,
                   throughput_pipelined_ips=self.pipelined_ips,
                   warnings="; ".join(self.warnings + (
                       ["quick mode: exploratory precision"] if self.quick else [])) or None)
        if self.status == "ok" and self.samples_ms:
            s = summarize(self.samples_ms)
            batch = self.case.batch_size
            row.update(
                iterations=s.iterations, latency_ms_mean=s.mean, latency_ms_median=s.median,
                latency_ms_trimmed=s.trimmed, latency_ms_std=s.std, latency_ms_min=s.min,
                latency_ms_max=s.max, latency_ms_p90=s.p90, latency_ms_p99=s.p99,
                latency_ms_ci_low=s.ci_low, latency_ms_ci_high=s.ci_high,
                per_image_ms=s.median / batch, throughput_ips=batch * 1000.0 / s.median,
                repeats=max(1, len(self.process_medians_ms)),
                process_medians_ms=list(self.process_medians_ms) or [s.median],
            )
            if len(self.process_medians_ms) >= 2:
                # Between processes (results/repeats.py): the median of the process medians,
                # and an interval that includes process-to-process noise.
                p = process_stats(self.process_medians_ms)
                row.update(latency_ms_median=p.median, latency_ms_ci_low=p.ci_low,
                           latency_ms_ci_high=p.ci_high, per_image_ms=p.median / batch,
                           throughput_ips=batch * 1000.0 / p.median)
            for probe in registry():
                row.update(probe.derive(row))
        return row


def _accept_probe_fields(init):
    """Result(case, "ok", gflops_per_image=3.6): a keyword that names a probe column is a
    measured value, as it was a field before probes; any other unknown keyword is an error."""
    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        names = {f.name for f in fields(Result)}
        extra = {k: kwargs.pop(k) for k in [k for k in kwargs if k not in names]}
        unknown = sorted(set(extra) - set(probe_columns()))
        if unknown:
            raise TypeError(f"Result has no field or probe column {', '.join(unknown)}")
        init(self, *args, **kwargs)
        self.measured.update({k: v for k, v in extra.items() if v is not None})
    return __init__


Result.__init__ = _accept_probe_fields(Result.__init__)
