"""The order a sweep's groups run in, and how many worker processes that order starts.

A long-lived worker serves one (backend, device) and is closed when a group of another comes
(run/local.py), so the order decides how many interpreters, runtime imports and CUDA contexts a
sweep pays for; the time budget (grid/budget.py) counts them from the same order.
"""

from __future__ import annotations

from infersweep.case import Case


def order_groups(groups: list[list[Case]], proven: set[tuple]) -> list[list[Case]]:
    """Fail fast, then keep each worker busy.

    First the scouts: the cheapest group of each backend/device/precision this run has not yet
    seen work, so that a broken backend fails in the first minutes, not after an hour of cases
    known to work. Then the rest, each (backend, device) in a row, cheapest group first: a
    long-lived worker serves one (backend, device) and a group of another closes it
    (run/local.py), so interleaved backends start a worker (interpreter, imports, CUDA context)
    at every switch: 11 workers for 21 groups of the original grid on the H200. Keys come in
    the order of their cheapest group, and the last scout's key goes on first. Slow drift of
    the machine then falls on one backend's cases more than another's: the GPU-state and
    contention probes flag it, and ``--repeats`` rounds interleave fresh processes."""
    def cost(group: list[Case]) -> int:
        return min(c.image_size ** 2 * c.batch_size for c in group)

    def worker(group: list[Case]) -> tuple[str, str]:
        return group[0].backend, group[0].device

    by_cost = sorted(groups, key=cost)
    rank: dict[tuple[str, str], int] = {}
    for group in by_cost:
        rank.setdefault(worker(group), len(rank))
    scouts: list[list[Case]] = []
    combos: set[tuple] = set()
    for group in by_cost:
        combo = (*worker(group), group[0].precision)
        if combo not in proven and combo not in combos:
            combos.add(combo)
            scouts.append(group)
    scouts.sort(key=lambda g: rank[worker(g)])  # stable: cheapest first within a key
    scouted = {id(g) for g in scouts}
    rest = [g for g in by_cost if id(g) not in scouted]
    last = worker(scouts[-1]) if scouts else None
    rest.sort(key=lambda g: (worker(g) != last, rank[worker(g)]))
    return scouts + rest


def worker_starts(order: list[list[Case]]) -> list[tuple[str, str]]:
    """The (backend, device) of each worker process the order starts, in order: one at every
    change of (backend, device) between consecutive groups."""
    starts: list[tuple[str, str]] = []
    for group in order:
        key = (group[0].backend, group[0].device)
        if not starts or starts[-1] != key:
            starts.append(key)
    return starts
