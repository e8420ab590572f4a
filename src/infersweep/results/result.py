"""One Result per case: what happened, the raw samples, and the figures derived from them.

Raw samples are the source of truth; statistics are derived when a row is produced, so a row can
never disagree with its samples. ``speedup`` and ``baseline`` need other rows and are filled in by
the report (see report.add_speedups).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from infersweep.case import Case
from infersweep.probes.base import Column
from infersweep.measure.stats import summarize

STATUSES = ("ok", "failed", "crashed", "oom", "timeout", "unsupported", "unavailable")
# Statuses that mean "this case was attempted and went wrong": re-run by --retry-failed.
FAILED_STATUSES = ("failed", "crashed", "oom", "timeout")

# Every results.csv column, in order, with how reports show it. Probe columns will come from the
# probes' own declarations (probes/base.py Column); these are the columns of the core row.
_C = Column
COLUMNS: list[Column] = [
    _C("case_id", "case", in_table=False), _C("model", "model", in_table=False),
    _C("weights", "weights", in_table=False), _C("backend", "backend"),
    _C("device", "device"), _C("precision", "precision"), _C("image_size", "size (px)", "d"),
    _C("batch_size", "batch", "d"), _C("data", "data"), _C("scope", "scope", in_table=False),
    _C("options", "options"), _C("status", "status"), _C("reason", "reason", in_table=False),
    _C("setup_s", "setup (s)", ".2f", " s", in_table=False),
    _C("first_iter_ms", "first run (ms)", ".3f", " ms", in_table=False),
    _C("iterations", "iterations", "d", in_table=False),
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
    _C("peak_memory_mb", "memory (MB)", ".1f", " MB"),
    _C("memory_source", "memory source", in_table=False),
    _C("allocator_peak_mb", "allocator peak (MB)", ".1f", " MB", in_table=False),
    _C("baseline_memory_mb", "worker baseline (MB)", ".1f", " MB", in_table=False),
    _C("gflops_per_image", "GFLOPs/img", ".2f"),
    _C("achieved_tflops", "TFLOP/s", ".2f", in_table=False),
    _C("utilization_pct", "utilization (%)", ".1f", "%"),
    _C("speedup", "speedup (x)", ".2f", "x"), _C("baseline", "baseline", in_table=False),
    _C("max_abs_err", "max abs err", ".3g", in_table=False),
    _C("cosine", "cosine vs fp32", ".5f"), _C("top1_agreement", "top-1 agreement", ".3f"),
    _C("top1_accuracy", "top-1 accuracy", ".3f", in_table=False),
    _C("warnings", "warnings", in_table=False),
]
CSV_COLUMNS = [c.name for c in COLUMNS]


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
    samples_ms: list[float] = field(default_factory=list)
    peak_memory_mb: float | None = None
    baseline_memory_mb: float | None = None  # the worker after imports, before the model
    memory_source: str = ""
    gflops_per_image: float | None = None
    pipelined_ips: float | None = None  # GPU: N back-to-back launches, one synchronize
    allocator_peak_mb: float | None = None  # PyTorch's allocator peak after warmup (CUDA)
    max_abs_err: float | None = None  # against the fp32 eager reference on the same batch
    cosine: float | None = None
    top1_agreement: float | None = None
    top1_accuracy: float | None = None  # when the data folder has one subfolder per class
    quick: bool = False  # measured with --quick
    wall_s: float | None = None  # the case's wall time in the parent, start event to result
    warnings: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    finished_at: str = field(default_factory=now_iso)

    def to_json(self) -> str:
        d = asdict(self)
        d["case"] = self.case.to_dict()
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> Result:
        d = json.loads(text)
        d["case"] = Case.from_dict(d["case"])
        return cls(**d)

    def row(self) -> dict:
        """A flat row with the CSV columns; figures that were not measured are None."""
        row = dict.fromkeys(CSV_COLUMNS)
        row.update(self.case.to_dict())
        row.update(case_id=self.case.case_id, status=self.status, reason=self.reason,
                   setup_s=self.setup_s, first_iter_ms=self.first_iter_ms,
                   peak_memory_mb=self.peak_memory_mb, memory_source=self.memory_source or None,
                   gflops_per_image=self.gflops_per_image,
                   throughput_pipelined_ips=self.pipelined_ips,
                   allocator_peak_mb=self.allocator_peak_mb,
                   baseline_memory_mb=self.baseline_memory_mb,
                   max_abs_err=self.max_abs_err, cosine=self.cosine,
                   top1_agreement=self.top1_agreement, top1_accuracy=self.top1_accuracy,
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
            )
            if self.gflops_per_image:
                # GFLOP per batch / ms per batch = TFLOP/s
                row["achieved_tflops"] = self.gflops_per_image * batch / s.median
        return row


def columns() -> list[Column]:
    """Every results.csv column in order, with its title and format: what reports render."""
    return list(COLUMNS)
