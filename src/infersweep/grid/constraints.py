"""What a deployment must meet, and what to optimise among the cases that meet it: the
``[constraints]`` table of a sweep file and the flags of `infersweep recommend`, validated alike.

Constraints change no measurement, so they are not part of the sweep's identity (its run
directory and case ids); a sweep file that only adds ``[constraints]`` resumes the same run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

# objective -> whether it is maximised (its flag is --maximize) or minimised (--minimize)
# max-qps: a server scenario searched with --find-max-qps (the highest rate whose p99 stayed under
# its bound); rows of other scenarios have no such figure and are left out by that objective.
OBJECTIVES = {"throughput": "maximize", "max-qps": "maximize", "p99": "minimize",
              "energy": "minimize"}


class ConstraintError(ValueError):
    """A constraint that cannot be used; the message names it and what is allowed."""


@dataclass(frozen=True)
class Constraints:
    p99_ms: float | None = None  # p99 latency of one batch at most
    max_memory_mb: float | None = None  # peak memory at most
    min_throughput: float | None = None  # images/s at least
    min_cosine: float | None = None  # worst per-image cosine against fp32 at least
    min_top1: float | None = None  # top-1 accuracy (labelled data) or agreement, a fraction
    device: str | None = None  # only cases on this device
    objective: str = "throughput"

    @classmethod
    def from_dict(cls, d: dict | None) -> Constraints | None:
        """From spec.json (asdict of a Spec); None where the sweep had none."""
        if not d:
            return None
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict:
        return asdict(self)

    def as_raw(self) -> dict:
        """The sweep-file keys of the values set (what parse_constraints reads back)."""
        raw = {k: v for k, v in asdict(self).items() if v is not None and k != "objective"}
        raw[OBJECTIVES[self.objective]] = self.objective
        return raw

    def given(self) -> bool:
        """Whether any bound or device is set (the objective alone constrains nothing)."""
        return any(v is not None for k, v in asdict(self).items() if k != "objective")


# sweep-file key -> (lowest allowed, highest allowed, whether the lowest is allowed itself)
NUMBERS = {"p99_ms": (0, math.inf, False), "max_memory_mb": (0, math.inf, False),
           "min_throughput": (0, math.inf, True), "min_cosine": (-1, 1, True),
           "min_top1": (0, 1, True)}
KEYS = (*NUMBERS, "device", "maximize", "minimize")


def _name(key: str, flags: bool) -> str:
    return f"--{key.replace('_', '-')}" if flags else f"constraints.{key}"


def _number(key: str, value, flags: bool) -> float:
    """A finite number within the key's range; a fraction key also takes '99%'."""
    low, high, low_ok = NUMBERS[key]
    text = value.strip() if isinstance(value, str) else value
    percent = isinstance(text, str) and text.endswith("%") and high == 1
    try:
        if isinstance(text, bool):
            raise ValueError
        number = float(text[:-1]) / 100 if percent else float(text)
    except (TypeError, ValueError):
        raise ConstraintError(f"{_name(key, flags)}: {value!r} is not a number") from None
    if not math.isfinite(number) or number > high or number < low or \
            (number == low and not low_ok):
        if high == 1:
            allowed = f"a fraction from {low:g} to 1 (e.g. 0.99 or 99%)"
        else:
            allowed = f"a number {'>=' if low_ok else '>'} {low:g}"
        raise ConstraintError(f"{_name(key, flags)}: {value!r} must be {allowed}")
    return number


def parse_constraints(raw, flags: bool = False) -> Constraints:
    """Constraints from the sweep file's [constraints] table, or from the flags of `recommend`
    (``flags``: messages name --p99-ms, not constraints.p99_ms). None values are not given."""
    if not isinstance(raw, dict):
        raise ConstraintError(f"constraints: {raw!r} is not a table; e.g. [constraints] "
                              "p99_ms = 20")
    raw = {k: v for k, v in raw.items() if v is not None}
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise ConstraintError(f"unknown constraint(s) {', '.join(unknown)}; allowed: "
                              f"{', '.join(KEYS)}")
    values: dict = {key: _number(key, raw[key], flags) for key in NUMBERS if key in raw}
    if "device" in raw:
        if not isinstance(raw["device"], str) or not raw["device"].strip():
            raise ConstraintError(f"{_name('device', flags)}: {raw['device']!r} is not a device "
                                  "name (cpu, cuda)")
        values["device"] = raw["device"].strip()
    if "maximize" in raw and "minimize" in raw:
        raise ConstraintError("give --maximize or --minimize, not both" if flags else
                              "constraints: give maximize or minimize, not both")
    for way in ("maximize", "minimize"):
        if way in raw:
            allowed = [o for o, w in OBJECTIVES.items() if w == way]
            objective = str(raw[way]).strip().lower()
            if objective not in allowed:
                raise ConstraintError(f"{_name(way, flags)}: unknown objective {raw[way]!r}; "
                                      f"allowed: {', '.join(allowed)}")
            values["objective"] = objective
    return Constraints(**values)


def overlay(spec: dict | None, flags: dict) -> Constraints:
    """The flags of `recommend` (None where not given) laid over the [constraints] of a run's
    spec.json; a flag objective replaces the file's. ConstraintError names a bad flag."""
    stored = Constraints.from_dict((spec or {}).get("constraints"))
    raw = stored.as_raw() if stored else {}
    given = {k: v for k, v in flags.items() if v is not None}
    if "maximize" in given or "minimize" in given:
        raw.pop("maximize", None)
        raw.pop("minimize", None)
    return parse_constraints({**raw, **given}, flags=True)
