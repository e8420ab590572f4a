"""Average power from an energy counter that moves in steps.

NVML's total-energy counter on the H200 moves once every 100 ms (98-102 ms between changes, idle
and busy alike: benchmarks/nvml_energy_step.py). Read only at the two ends of a window, it holds up
to one step more or less than the window used: +-100 ms / window, so +-33% for a 0.3 s timed loop,
and a loop shorter than a step can read 0 J (a row said "0.0 W" on the H200). Polled through the
window instead, each change of the counter (an edge) gives its exact value at one of its own
refreshes; the energy between the first and the last edge over the time between them is the
window's average power, off only by when each edge was seen: within the poll interval plus one
read (a read took ~4 ms on the H200, in which NVML holds no Python lock), the recorder's
resolution. RAPL's counters move about every millisecond: every poll is an edge there, and the
same arithmetic holds.

A window gives no figure, with the reason, never a number, where its counter moved fewer than
twice, or where its edges span so little time that the resolution is more than MAX_ERROR of it
(on the H200 a 0.1 s span seen to within 14 ms read 86-100% of a 5 s reference:
benchmarks/nvml_energy_step.py).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

POLL_S = 0.01  # 10 ms: an edge is seen within a poll and a read (~14 ms on the H200)
MAX_ERROR = 0.1  # the resolution may be at most 10% of the edges' span
# A counter that moves this often or more (RAPL: about every millisecond, so every poll sees a
# move) needs no poller: read at a window's two ends it is off by at most one step.
FINE_STEP_S = 2 * POLL_S


@dataclass(frozen=True)
class Edge:
    """A read that differs from the one before: the counter's value and when it was seen."""
    t: float
    value: Any


@dataclass(frozen=True)
class EdgePower:
    """The average power between a window's first and last edge, or why there is none."""
    watts: float | None
    joules: float
    seconds: float  # from the first edge to the last
    edges: int
    reason: str = ""


def power_from_edges(edges: list[Edge], joules: Callable[[Any, Any], float], window_s: float,
                     resolution_s: float = 0.0) -> EdgePower:
    """``joules(before, after)``: the meter's energy between two of its values; ``resolution_s``:
    how late an edge may have been seen (EdgeRecorder.resolution_s)."""
    if len(edges) < 2:
        return EdgePower(None, 0.0, 0.0, len(edges),
                         f"the counter moved {len(edges)} time(s) in the {window_s:.2f} s window "
                         "(it must move twice for a figure: a longer --min-time gives one)")
    first, last = edges[0], edges[-1]
    seconds = last.t - first.t
    used = joules(first.value, last.value)
    if resolution_s > MAX_ERROR * seconds:
        return EdgePower(None, used, seconds, len(edges),
                         f"the counter's moves in the {window_s:.2f} s window span "
                         f"{seconds:.3f} s, seen to within {resolution_s * 1000:.0f} ms: more than "
                         f"{MAX_ERROR:.0%} of it (a longer --min-time gives a figure)")
    return EdgePower(used / seconds, used, seconds, len(edges))


def step_s(edges: list[Edge]) -> float | None:
    """The median time between a counter's moves as seen by a poller: its step, or the poll's
    own spacing where the counter moves faster than that (an upper bound then); None for fewer
    than two edges."""
    gaps = sorted(b.t - a.t for a, b in zip(edges, edges[1:]))
    return gaps[len(gaps) // 2] if gaps else None


def power_from_ends(start: Edge, stop: Edge, joules: Callable[[Any, Any], float],
                    step: float) -> EdgePower:
    """A fine counter read at a window's two ends: off by at most one ``step``."""
    window_s = stop.t - start.t
    if stop.value == start.value:
        return EdgePower(None, 0.0, window_s, 0,
                         f"the counter did not move in the {window_s:.2f} s window")
    used = joules(start.value, stop.value)
    if step > MAX_ERROR * window_s:
        return EdgePower(None, used, window_s, 2,
                         f"the counter's step ({step * 1000:.0f} ms or less, seen while idle) "
                         f"is more than {MAX_ERROR:.0%} of the {window_s:.2f} s window (a longer "
                         "--min-time gives a figure)")
    return EdgePower(used / window_s, used, window_s, 2)


class EdgeRecorder:
    """Polls ``read`` and keeps its edges: synchronously (``poll_for``) or on a thread between
    ``start`` and ``stop``. The first read of a window is its reference, not an edge."""

    def __init__(self, read: Callable[[], Any], clock: Callable[[], float] = time.monotonic,
                 interval_s: float = POLL_S):
        self.read, self.clock, self.interval_s = read, clock, interval_s
        self.edges: list[Edge] = []
        self.reference: Any = None  # the window's first read
        self._last: Any = None
        self._read_s, self._reads = 0.0, 0  # what the reads took, for the resolution
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def reset(self) -> None:
        self.edges = []
        self.reference = self._last = self.read()

    @property
    def resolution_s(self) -> float:
        """How late an edge may be seen: a poll interval and the mean read."""
        return self.interval_s + (self._read_s / self._reads if self._reads else 0.0)

    def poll_once(self) -> None:
        start = time.perf_counter()
        value = self.read()
        self._read_s += time.perf_counter() - start
        self._reads += 1
        if value != self._last:
            self.edges.append(Edge(self.clock(), value))
            self._last = value

    def poll_for(self, seconds: float, sleep: Callable[[float], None] = time.sleep,
                 min_edges: int = 2, max_s: float | None = None) -> float:
        """Poll for ``seconds``, then on until ``min_edges`` edges were seen or ``max_s`` passed;
        returns the seconds polled."""
        self.reset()
        start = self.clock()
        limit = max(seconds, max_s or seconds)
        while True:
            elapsed = self.clock() - start
            if elapsed >= limit or (elapsed >= seconds and len(self.edges) >= min_edges):
                return elapsed
            sleep(self.interval_s)
            self.poll_once()

    def start(self) -> None:
        self.stop()  # a window timed again (remeasured) starts afresh, never beside another
        self.reset()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="energy-edges", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll_once()

    def stop(self) -> list[Edge]:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        return self.edges
