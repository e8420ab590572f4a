"""The speedup baseline: a backend, optionally narrowed by its options.

``torch`` means every torch row; ``torch[channels_last=true]`` only the torch rows with that
option (compared as the backend reads it: channels_last=1 is true). Where several baseline rows
fit one case, reports leave its speedup empty and say so (reports/rows.py) instead of picking one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from infersweep.backends.base import parse_value
from infersweep.case import OptionsError, parse_options

_SYNTAX = re.compile(r"\s*([A-Za-z0-9_.-]+)\s*(?:\[(.*)\])?\s*")


class BaselineError(ValueError):
    """A --baseline that names no backend, or an option that backend does not have."""


@dataclass(frozen=True)
class Baseline:
    backend: str
    options: dict = field(default_factory=dict)  # option -> value as the backend reads it
    defaults: dict = field(default_factory=dict)  # option -> the backend's default (its type)

    def matches(self, backend: str, options: str) -> bool:
        """Whether a row of ``backend`` with this options string is a baseline row."""
        if backend != self.backend:
            return False
        given = parse_options(options)
        for key, value in self.options.items():
            try:
                if key not in given or parse_value(given[key], self.defaults[key]) != value:
                    return False
            except ValueError:
                return False
        return True

    def __str__(self) -> str:
        if not self.options:
            return self.backend
        inner = ",".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}"
                         for k, v in sorted(self.options.items()))
        return f"{self.backend}[{inner}]"


def parse_baseline(text: str, backends: dict) -> Baseline:
    """``backends``: name -> Backend (the registry), and names of stored backends that are not
    installed mapped to None (those take no [options])."""
    raw = str(text)
    m = _SYNTAX.fullmatch(raw)
    if not m:
        raise BaselineError(f"baseline: {raw!r} is not BACKEND or BACKEND[OPTION=VALUE,...], "
                            "e.g. torch[channels_last=true]")
    name, inner = m.group(1), m.group(2)
    if name not in backends:
        raise BaselineError(f"unknown baseline {name!r}; allowed: {', '.join(backends)}")
    if inner is None:
        return Baseline(name)
    try:
        given = parse_options(inner.replace(" ", ""))
    except OptionsError as exc:
        raise BaselineError(f"baseline: {raw!r}: {exc}") from None
    if not given:
        raise BaselineError(f"baseline: {raw!r} has empty [...]: name an option, or leave the "
                            "brackets out")
    defaults = getattr(backends[name], "option_defaults", None) or {}
    options = {}
    for key, value in given.items():
        if key not in defaults:
            raise BaselineError(f"baseline: {name} has no option {key!r} (in {raw!r}); known: "
                                f"{', '.join(defaults) or 'none'}")
        try:
            options[key] = parse_value(value, defaults[key])
        except ValueError as exc:
            raise BaselineError(f"baseline: {key}={value!r} in {raw!r}: {exc}") from None
    return Baseline(name, options, {k: defaults[k] for k in options})
