"""Validating one value of a sweep: lists, choices, positive integers, numbers.

Every problem is a SpecError with one message naming the key and the value; the CLI turns it
into exit code 2. Shared by spec.py and scenarios.py.
"""

from __future__ import annotations

import math
import re

MAX_BATCH_SIZE = 65536


class SpecError(ValueError):
    """A bad input: the message names the value and what is allowed."""


def items(key: str, value) -> list:
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, list | tuple):
        items = [v.strip() if isinstance(v, str) else v for v in value]
    else:
        raise SpecError(f"{key}: expected a list or a comma-separated string, got {value!r}")
    if not items or any(v == "" for v in items):
        raise SpecError(f"{key}: empty value in {value!r}")
    return items


def choices(key: str, value, allowed) -> tuple[str, ...]:
    found = items(key, value)
    for item in found:
        if item not in allowed:
            raise SpecError(f"unknown {key[:-1] if key.endswith('s') else key} {item!r}; "
                            f"allowed: {', '.join(allowed)}")
    return tuple(dict.fromkeys(found))


def positive_ints(key: str, value, limit: int) -> tuple[int, ...]:
    out = []
    for item in items(key, value):
        number = None
        if isinstance(item, int) and not isinstance(item, bool):
            number = item
        elif isinstance(item, str) and re.fullmatch(r"\+?[0-9]+", item):  # ASCII digits only
            number = int(item)
        if number is None or number <= 0:
            raise SpecError(f"{key}: {item!r} is not a positive integer")
        if number > limit:
            raise SpecError(f"{key}: {number} is absurdly large (at most {limit})")
        out.append(number)
    return tuple(dict.fromkeys(out))


def number(key: str, value, kind=float, minimum: float = 0, inclusive: bool = False):
    try:
        if isinstance(value, bool) or not math.isfinite(float(value)):  # NaN passes every < test
            raise ValueError
        number = kind(value)
        if kind is int and float(value) != number:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise SpecError(f"{key}: {value!r} is not a{'n integer' if kind is int else ' number'}") \
            from None
    if number < minimum or (number == minimum and not inclusive):
        raise SpecError(f"{key}: {value!r} must be {'>=' if inclusive else '>'} {minimum}")
    return number
