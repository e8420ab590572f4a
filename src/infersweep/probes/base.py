"""A probe: hooks around one case in the worker that yield named figures and warnings.

Timing is the measurement; everything else a row says about a case (memory, FLOPs, agreement with
the reference, accuracy...) comes from a probe. A probe declares its columns once, here, and they
reach results.csv, results.json, report.md and report.html from that declaration. Adding a probe
is one module and one line in ``probes/__init__.py`` (or a plugin module's ``PROBES``).

The worker calls, for each case a probe ``applies`` to:
    before(ctx)         the case's session is prepared, inputs placed; nothing timed yet
    after_warmup(ctx)   warmup is over, the timed phase starts next (reset peaks here)
    after(ctx)          the timed phase is over; ``ctx.output`` holds the last timed output
and keeps what ``after`` returns. A probe never runs inside the timed region.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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


class Probe:
    name: str = ""
    columns: tuple[Column, ...] = ()

    def applies(self, case) -> bool:
        return True

    def before(self, ctx) -> None:
        pass

    def after_warmup(self, ctx) -> None:
        pass

    def after(self, ctx) -> Reading:
        return Reading()
