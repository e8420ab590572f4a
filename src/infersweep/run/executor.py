"""One interface for every way of running a sweep's cases, and the choice between them.

An Executor takes the sweep's groups (cases sharing one prepared model) and runs each case in an
isolated worker under the case timeout. Every case ends in exactly one ``on_result`` call (unless
the executor is stopped), whatever happens to its worker; the sweep stores each result the moment
it arrives. Adding an executor is one module with a class like these and one branch below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from infersweep.case import Case
from infersweep.results.result import Result
from infersweep.run.protocol import WorkerJob

KNOWN_EXECUTORS = ("local", "ray")


class Executor(Protocol):
    def run(self, groups: list[list[Case]], on_start: Callable[[Case], None],
            on_result: Callable[[Result], None]) -> None:
        """Run every group; callbacks may come from several threads (the caller locks)."""

    def start_early(self, first: list[Case]) -> None:
        """Start what the first group will need (its worker) before ``run``, while the sweep
        still describes the machine and writes its first reports; it may do nothing."""

    def stop(self) -> None:
        """Ctrl-C: kill what is in flight; nothing may keep running after this returns."""

    def gpu_count(self) -> int | None:
        """GPUs the cases can run on; None: this machine's (the spec decided)."""

    def close(self) -> None:
        """Release what the executor holds (a Ray connection); after run, stop or an error."""


def make_executor(kind: str, job: WorkerJob, *, gpus: tuple[int, ...] = (),
                  usable_cores: int = 1, ray_address: str | None = None, retries: int = 0,
                  store=None) -> Executor:
    """``store``: where the Ray executor keeps what it learns of the cluster's machines."""
    if kind == "ray":
        from infersweep.run.ray import RayExecutor  # Ray is optional: imported only when asked

        return RayExecutor(job, ray_address, retries, store)
    if kind == "local":
        from infersweep.run.local import LocalExecutor

        return LocalExecutor(job, gpus, usable_cores)
    raise ValueError(f"unknown executor {kind!r}; allowed: {', '.join(KNOWN_EXECUTORS)}")
