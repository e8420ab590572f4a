"""The probes of one group of cases in a worker: each hook called in registry order, contained.

A probe whose hook raises adds a warning naming the probe and the hook, and is left out for the
rest of the case (for the whole group when ``start_group`` raised): the case keeps its timing and
its status, a probe never costs more than its own figures.
"""

from __future__ import annotations

import sys
import time
import traceback

from infersweep.probes.base import Probe, ProbeContext, Reading


def short_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}".rstrip(": ")


class GroupProbes:
    def __init__(self, probes: list[Probe], ctx: ProbeContext):
        """Calls ``start_group`` with the group's first case in ``ctx.case``."""
        self.group_warnings: list[str] = []  # repeated on every case of the group
        # Seconds each probe's hooks took in the case in flight, summed ("gpu_memory.begin"):
        # a case's harness time that no other figure names (seed_grid.py adds them up).
        self.spent: dict[str, float] = {}
        self.warnings: list[str] = []  # the case in flight's
        self.probes = [p for p in probes
                       if self._call(p, "applies", ctx, self.group_warnings)
                       and self._call(p, "start_group", ctx, self.group_warnings)]
        self.applied: list[Probe] = []  # to the case in flight
        self.active: list[Probe] = []  # those of them that have not failed yet

    def _call(self, probe: Probe, hook: str, ctx: ProbeContext, warnings: list[str]):
        """What the hook returned (True for None); False when it raised."""
        start = time.perf_counter()
        try:
            returned = getattr(probe, hook)(ctx)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            warnings.append(f"probe {probe.name} failed in {hook}: {short_reason(exc)}")
            return False
        finally:
            key = f"{probe.name}.{hook}"
            self.spent[key] = self.spent.get(key, 0.0) + time.perf_counter() - start
        return True if returned is None else returned

    def begin(self, ctx: ProbeContext) -> None:
        self.warnings = list(self.group_warnings)
        self.spent = {}
        self.applied = [p for p in self.probes if self._call(p, "applies", ctx, self.warnings)]
        self.active = list(self.applied)
        self.hook("begin", ctx)

    def hook(self, name: str, ctx: ProbeContext) -> None:
        """``before`` or ``after_warmup`` (or ``begin``) of every probe still active."""
        self.active = [p for p in self.active if self._call(p, name, ctx, self.warnings)]

    def noise(self, ctx: ProbeContext) -> str:
        """Every active probe's reason to distrust the timed phase just over, joined."""
        found = [self._call(probe, "noise", ctx, self.warnings) for probe in self.active]
        return "; ".join(text for text in found if isinstance(text, str) and text)

    def readings(self, ctx: ProbeContext) -> list[Reading]:
        """What ``after`` found, probe by probe; failures are in ``warnings``."""
        found = []
        for probe in self.active:
            reading = self._call(probe, "after", ctx, self.warnings)
            if isinstance(reading, Reading):
                found.append(reading)
            elif reading is not False:
                self.warnings.append(f"probe {probe.name} failed in after: returned "
                                     f"{type(reading).__name__}, not a Reading")
        return found

    def end(self, ctx: ProbeContext) -> None:
        """Every probe that applied to the case, failed or not: a sampler must stop."""
        for probe in self.applied:
            self._call(probe, "end", ctx, self.warnings)

    def hook_seconds(self) -> dict[str, float]:
        """The case's probe hooks that took a millisecond or more, in seconds."""
        return {k: round(v, 4) for k, v in self.spent.items() if v >= 0.001}
