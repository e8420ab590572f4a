"""The batcher in front of the runtime: requests wait in a FIFO queue until a batch is formed.

A batch leaves when the queue holds ``max_batch`` requests, or when its oldest request has waited
``max_delay_s`` (then with whatever is there, up to ``max_batch``). The batcher knows only the
requests that have arrived, never the schedule's future: like Triton's dynamic batcher it cannot
tell that nothing more will come, so a lone request waits its full delay. Requests leave in the
order they came.
"""

from __future__ import annotations

from collections import deque

# A wait computed as deadline - now and added back to now can land a rounding error short of
# the deadline: a nanosecond of slack keeps the loop from waiting zero seconds forever.
SLACK_S = 1e-9


class Batcher:
    def __init__(self, max_batch: int, max_delay_s: float):
        if max_batch < 1 or max_delay_s < 0:
            raise ValueError(f"max_batch {max_batch!r} must be >= 1, max_delay_s "
                             f"{max_delay_s!r} >= 0")
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self._queue: deque[tuple[int, float]] = deque()  # (request, arrival time)

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, request: int, arrival_s: float) -> None:
        self._queue.append((request, arrival_s))

    def deadline(self) -> float | None:
        """When the oldest waiting request has waited the maximum delay; None when empty."""
        return self._queue[0][1] + self.max_delay_s if self._queue else None

    def ready(self, now_s: float) -> bool:
        """Whether a batch leaves now."""
        return len(self._queue) >= self.max_batch or (
            bool(self._queue) and now_s + SLACK_S >= self._queue[0][1] + self.max_delay_s)

    def take(self) -> list[int]:
        """The oldest requests, at most ``max_batch``, in arrival order."""
        n = min(self.max_batch, len(self._queue))
        return [self._queue.popleft()[0] for _ in range(n)]
