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

    @property
    def case_id(self) -> str:
        canonical = json.dumps(self.identity(), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def group_key(self) -> tuple:
        """Cases that differ only in batch size share a prepared model (one export, one session)."""
        return (self.model, self.weights, self.backend, self.device, self.precision,
                self.image_size, self.data, self.scope, self.options)

    @property
    def label(self) -> str:
        extra = "".join(f" {x}" for x in (self.scope if self.scope != "compute" else "",
                                          self.options) if x)
        return (f"{self.backend} {self.device} {self.precision} "
                f"{self.image_size}px bs{self.batch_size} {self.data}{extra}")

    def to_dict(self) -> dict:
        return asdict(self)

    def identity(self) -> dict:
        """Fields hashed into case_id. Empty options are left out, so ids of option-less cases
        stay what they were before options existed."""
        d = asdict(self)
        if not d["options"]:
            del d["options"]
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
