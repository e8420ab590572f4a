"""A probe: hooks around one case in the worker that yield named figures and warnings.

Timing is the measurement; everything else a row says about a case (memory, FLOPs, agreement with
the reference, accuracy...) comes from a probe. A probe declares its columns once, here, and they
reach results.csv, results.json, report.md and report.html from that declaration. Adding a probe
is one module and one line in ``probes/__init__.py`` (or a plugin module's ``PROBES``).

``PROBES`` lists Probe subclasses: each worker makes one instance per group of cases, so a probe
may keep state for its group (a sampler, the worker's baseline). For each case a probe ``applies``
to, the worker calls, in the order of the registry:
    start_group(ctx)    once, when the worker has imported the runtime and no model exists yet
                        (nothing touched CUDA); ``ctx.case`` is the group's first case
    begin(ctx)          the case starts: nothing prepared yet (a sampler that must see setup)
    before(ctx)         the session is prepared, inputs placed; nothing timed yet
    after_warmup(ctx)   warmup is over, the timed phase starts next (reset peaks here)
    noise(ctx)          right after each timed phase: why it cannot be trusted ("" when clean);
                        a phase that any probe calls noisy is timed again (``--remeasure``),
                        after_warmup and noise called again around it
    after(ctx)          the timed phase is over; ``ctx.output`` holds the last timed output
    end(ctx)            always, whatever happened to the case (stop a sampler)
and keeps what ``after`` returns (``after`` runs only for a case that was measured). A probe never
runs inside the timed region. A hook that raises costs the case nothing but a warning naming the
probe; that probe is left out for the rest of the case (for the group, if ``start_group`` raised).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from infersweep.artefacts.cache import ArtifactCache
    from infersweep.artefacts.inputs import BatchSource
    from infersweep.artefacts.models import ModelSource
    from infersweep.backends.base import Backend, Session
    from infersweep.case import Case
    from infersweep.measure.timing import MeasureSettings, Timing


@dataclass(frozen=True)
class Column:
    name: str  # the results.csv column and the row key
    title: str  # header in report.md and report.html
    fmt: str | None = None  # number format (".3f"); None: text
    unit: str = ""  # appended to the value in report.md cells (" MB")
    in_table: bool = True  # shown in the report.md / report.html results table


@dataclass
class Reading:
    """What a probe found for one case."""
    fields: dict[str, Any] = field(default_factory=dict)  # column name -> value
    warnings: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # details kept in results.json only


@dataclass
class ProbeContext:
    """What the worker knows about the group and the case in flight, for the probes to read.

    The group's fields are set once; the case's fields are filled in as the case goes, so a hook
    sees None for what does not exist yet (no session in ``begin``, no output before ``after``).
    """
    backend: Backend
    source: ModelSource
    cache: ArtifactCache
    settings: MeasureSettings
    seed: int
    case: Case
    group: tuple[Case, ...] = ()  # the group's cases (batch sizes ascending); () where unknown
    session: Session | None = None
    batches: BatchSource | None = None  # the group's data source
    host_batch: np.ndarray | None = None  # the case's batch as numpy, before placing
    placed: Any = None  # host_batch where the runtime wants it
    output: np.ndarray | None = None  # the last timed run's output, on the host
    timing: Timing | None = None  # the timed phase kept (its runs), from ``after`` on


class Probe:
    name: str = ""
    columns: tuple[Column, ...] = ()
    # Where the columns go in results.csv: right after this column (a core column, or a column of
    # a probe earlier in the registry). None: at the end, before ``warnings``.
    place_after: str | None = None

    def applies(self, ctx: ProbeContext) -> bool:
        return True

    def start_group(self, ctx: ProbeContext) -> None:
        pass

    def begin(self, ctx: ProbeContext) -> None:
        pass

    def before(self, ctx: ProbeContext) -> None:
        pass

    def after_warmup(self, ctx: ProbeContext) -> None:
        pass

    def noise(self, ctx: ProbeContext) -> str:
        return ""

    def after(self, ctx: ProbeContext) -> Reading:
        return Reading()

    def end(self, ctx: ProbeContext) -> None:
        pass

    @classmethod
    def derive(cls, row: dict) -> dict:
        """Columns computed from a finished row (its latency statistics and stored fields) each
        time a row is produced, never stored: they cannot disagree with the samples."""
        return {}


def cached_model_figure(cache, kind: str, source, key: dict, compute: Callable[[], float]) -> float:
    """A figure of a torch model (FLOPs at a size, parameters) computed once per model and weights
    and kept in the artefact cache under ``kind``: computing it builds the torch model, which an
    ONNX Runtime group, whose export is cached, needs for nothing else (on the H200 the first
    ONNX Runtime group spent 2.5 s of its case on that)."""
    from infersweep.artefacts.cache import torch_version

    def build(out_dir: Path) -> None:
        (out_dir / "value.json").write_text(json.dumps(compute()))

    full_key = {"model": source.name, "weights": source.weights_key, **key,
                "torch": torch_version()}
    entry, _ = cache.get_or_build(kind, full_key, build)
    return float(json.loads((entry / "value.json").read_text()))
