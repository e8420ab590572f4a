"""Registry of probes. Adding a probe = one module with ``PROBES`` + one line in BUILTIN.

Plugin modules named in $INFERSWEEP_PLUGINS add theirs (see plugins.py). The order is the order
the worker calls the hooks in, and the order of the columns where two probes place theirs at the
same spot. The memory probes come first, so they read their peaks before any other probe's
``after`` (the fp32 reference of the agreement probe) can add to them; energy and the contention
guard next, so their windows close before those run (the guard's snapshot is the last thing
before the timed loop).
"""

from __future__ import annotations

from functools import lru_cache

from infersweep import plugins
from infersweep.probes.base import Column, Probe, ProbeContext, Reading

BUILTIN = (
    "infersweep.probes.cpu_memory",
    "infersweep.probes.gpu_memory",
    "infersweep.probes.energy",
    "infersweep.probes.contention",
    "infersweep.probes.flops",
    "infersweep.probes.model_size",
    "infersweep.probes.agreement",
    "infersweep.probes.accuracy",
    "infersweep.probes.scenario",  # columns only: the server runner fills them
)

__all__ = ["BUILTIN", "Column", "Probe", "ProbeContext", "Reading", "registry"]


@lru_cache(maxsize=1)
def registry() -> tuple[type[Probe], ...]:
    """Every probe class, built-in first, in hook order; names are unique."""
    found = tuple(plugins.collect(BUILTIN, "PROBES"))
    names = [p.name for p in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"two probes are named {', '.join(duplicates)}")
    return found
