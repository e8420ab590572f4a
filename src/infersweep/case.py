"""A Case is one point of the sweep grid; a Group is the cases that share one prepared model.

Case ids are a hash of the fields that change what is measured, so the same case gets the same id
in every run: that is what makes resume work. Measurement settings (min time, target CI) are not
part of the id: re-measuring a case with tighter settings replaces the same row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True, order=True)
class Case:
    model: str
    weights: str  # "random(seed=N)" or the checkpoint path with {size} filled in
    backend: str
    device: str
    precision: str
    image_size: int
    batch_size: int
    data: str
    scope: str = "compute"
    options: str = ""  # the backend's options, canonical "k=v,k=v" with defaults filled in
    # "" = the fixed-batch measurement; else single-stream, offline, or server(k=v,...) with the
    # server's rate or p99 bound, max batch and max queue delay (see scenario_text)
    scenario: str = ""

    @property
    def case_id(self) -> str:
        canonical = json.dumps(self.identity(), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def group_key(self) -> tuple:
        """Cases that differ only in batch size (or scenario: a server batches on the same
        session) share a prepared model (one export, one session)."""
        return (self.model, self.weights, self.backend, self.device, self.precision,
                self.image_size, self.data, self.scope, self.options)

    @property
    def label(self) -> str:
        extra = "".join(f" {x}" for x in (self.scope if self.scope != "compute" else "",
                                          self.options, self.scenario) if x)
        return (f"{self.backend} {self.device} {self.precision} "
                f"{self.image_size}px bs{self.batch_size} {self.data}{extra}")

    def to_dict(self) -> dict:
        return asdict(self)

    def identity(self) -> dict:
        """Fields hashed into case_id. Empty options and scenario are left out, so ids of cases
        without them stay what they were before they existed."""
        d = asdict(self)
        for key in ("options", "scenario"):
            if not d[key]:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Case:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class OptionsError(ValueError):
    """An item of an options string that is not KEY=VALUE."""

    def __init__(self, item: str):
        super().__init__(f"{item!r} is not a KEY=VALUE pair")
        self.item = item


def parse_options(text: str) -> dict[str, str]:
    """"k=v,k=v" -> {k: v} ("" -> {}); the one reader of a case's options string. Keys and values
    are kept as written (a canonical string has no spaces); a later key wins."""
    if not text:
        return {}
    pairs = {}
    for item in text.split(","):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise OptionsError(item.strip())
        pairs[key] = value
    return pairs


def format_options(options: Mapping) -> str:
    """The canonical options string: sorted by key, booleans as true/false."""
    return ",".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}"
                    for k, v in sorted(options.items()))


SCENARIOS = ("single-stream", "offline", "server")


def scenario_text(name: str, params: Mapping | None = None) -> str:
    """The canonical scenario string: ``server(max_batch=8,max_delay_ms=2,qps=200)``, keys sorted,
    numbers without trailing zeros (2.0 -> 2), so one scenario has one spelling and one id."""
    if not params:
        return name
    return f"{name}({format_options({k: _number_text(v) for k, v in params.items()})})"


def _number_text(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def scenario_parts(text: str) -> tuple[str, dict[str, str]]:
    """``server(qps=200,max_batch=8)`` -> ("server", {"qps": "200", "max_batch": "8"})."""
    name, paren, rest = text.partition("(")
    if paren and not rest.endswith(")"):
        raise ValueError(f"scenario {text!r}: missing ')'")
    return name, parse_options(rest[:-1]) if paren else {}


def weights_label(weights_path: str | None, image_size: int, seed: int) -> str:
    if weights_path is None:
        return f"random(seed={seed})"
    return weights_path.replace("{size}", str(image_size))


def group_cases(cases: list[Case]) -> list[list[Case]]:
    """Split into groups sharing a prepared model, keeping first-seen order; batches ascending."""
    groups: dict[tuple, list[Case]] = {}
    for case in cases:
        groups.setdefault(case.group_key, []).append(case)
    return [sorted(g, key=lambda c: c.batch_size) for g in groups.values()]
