"""Interleaved rounds of fresh processes, the shape of the A/B benchmarks here: medians move 5-30%
between processes on the 2-core box, so each round runs every variant once, in an order that
alternates between rounds, and the verdict is the median over rounds, never one pair."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def alternating(variants: list[str], rounds: int, measure: Callable[[str], T],
                describe: Callable[[T], str]) -> dict[str, list[T]]:
    """Each variant measured once per round (``measure(variant)``), the order reversed every
    other round; prints a line per round; returns every measurement per variant."""
    seen: dict[str, list[T]] = {variant: [] for variant in variants}
    for r in range(rounds):
        for variant in (variants if r % 2 == 0 else variants[::-1]):
            seen[variant].append(measure(variant))
        print(f"  round {r + 1}: " + ", ".join(
            f"{variant} {describe(found[-1])}" for variant, found in seen.items()), flush=True)
    return seen
