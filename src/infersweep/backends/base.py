"""The backend contract. A backend knows nothing about sweeps, stores or reports.

- ``available(device)`` -> None, or why it cannot run here (package or device missing);
- ``supports(case)`` -> None, or why this case makes no sense for it;
- ``prepare(source, case, cache)`` -> Session: everything slow (export, compile, session creation);
- ``Session.place(batch)`` puts a host batch where the runtime wants it (outside the timed region);
- ``Session.run(placed)`` runs one batch and returns only when the result is complete;
- ``Session.fetch(output)`` brings an output back to the host as numpy (not timed).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from infersweep.cases import Case


class Session(Protocol):
    info: dict  # facts about what was really built (threads, providers, dtype), kept with the result

    def place(self, batch: np.ndarray) -> Any: ...
    def run(self, placed: Any) -> Any: ...
    def fetch(self, output: Any) -> np.ndarray: ...
    def close(self) -> None: ...


@dataclass
class Backend:
    name: str
    devices: tuple[str, ...]
    precisions: tuple[str, ...]
    packages: tuple[str, ...] = ()  # import names that must be importable
    install_hint: str = ""
    needs_model: bool = True  # False only for test backends that never touch the torch model
    notes: dict = field(default_factory=dict)

    def available(self, device: str) -> str | None:
        missing = [p for p in self.packages if importlib.util.find_spec(p) is None]
        if missing:
            hint = f"; install with: {self.install_hint}" if self.install_hint else ""
            return f"python package {', '.join(missing)} is not installed{hint}"
        return None

    def supports(self, case: Case) -> str | None:
        if case.device not in self.devices:
            return f"{self.name} runs on {', '.join(self.devices)}, not {case.device}"
        if case.precision not in self.precisions:
            return (f"{self.name} on {case.device} supports precisions "
                    f"{', '.join(self.precisions)}, not {case.precision}")
        return None

    def prepare(self, source, case: Case, cache) -> Session:
        raise NotImplementedError
