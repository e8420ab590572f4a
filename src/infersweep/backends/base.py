"""The backend contract. A backend knows nothing about sweeps, stores or reports.

- ``available(device)`` -> None, or why it cannot run here (package or device missing);
- ``supports(case)`` -> None, or why this case makes no sense for it;
- ``prepare(source, case, cache)`` -> Session: everything slow (export, compile, session creation);
- ``Session.place(batch)`` puts a host batch where the runtime wants it (outside the timed region);
- ``Session.specialize(placed)`` compiles for this input shape if the runtime needs that (setup);
- ``Session.launch(placed)`` enqueues one batch; ``Session.synchronize()`` waits for the device;
  ``Session.run(placed)`` = launch + synchronize: returns only when the result is complete;
- ``Session.fetch(output)`` brings an output back to the host as numpy (not timed);
- ``build_artefacts(source, case, cache)`` (optional) builds ahead, in the builder process, what
  ``prepare`` would otherwise build for the case's group (run/builder.py).

Backend options (``channels_last``, ``mode``...) are declared with their defaults; a case carries
the full canonical option string, so they are part of its identity and visible in every row.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from infersweep.case import Case, format_options, parse_options


class PrecisionError(RuntimeError):
    """The precision that was asked for was not really applied: never report such a case as it."""


class Session:
    info: dict

    def place(self, batch: np.ndarray) -> Any:
        raise NotImplementedError

    def specialize(self, placed: Any) -> None:
        """Compile or tune for this input shape; timed as setup, never as latency."""

    def launch(self, placed: Any) -> Any:
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait for queued device work; a no-op where launch is synchronous (the CPU)."""

    def run(self, placed: Any) -> Any:
        out = self.launch(placed)
        self.synchronize()
        return out

    def fetch(self, output: Any) -> np.ndarray:
        return np.asarray(output)

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class Artefact:
    """A cache entry built (or found) ahead of a group: its cache kind, its file, and whether it
    was in the cache already."""
    kind: str
    path: str
    cached: bool


def parse_value(text: str, like):
    if isinstance(like, bool):
        lowered = str(text).strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{text!r} is not a boolean (true/false)")
    if isinstance(like, int):
        return int(text)
    return str(text)


def options_of(case: Case) -> dict[str, str]:
    return parse_options(case.options)


@dataclass
class Backend:
    name: str
    devices: tuple[str, ...]
    precisions: dict[str, tuple[str, ...]]  # device -> precisions it can run there
    packages: tuple[str, ...] = ()  # import names that must be importable
    install_hint: str = ""
    needs_model: bool = True  # False only for test backends that never touch the torch model
    option_defaults: dict = field(default_factory=dict)
    option_choices: dict = field(default_factory=dict)  # option -> allowed values, where limited
    option_devices: dict = field(default_factory=dict)  # option -> devices it means anything on
    # "torch": its GPU memory lives in PyTorch's caching allocator, whose reserved peak is a
    # stand-in for the GPU memory probe where NVML is unavailable. "": the allocator is not known.
    memory_allocator: str = ""
    runs_onnx_files: bool = False  # an ONNX file --model runs as is (ONNX backends)

    def available(self, device: str) -> str | None:
        missing = [p for p in self.packages if importlib.util.find_spec(p) is None]
        if missing:
            hint = f"; install with: {self.install_hint}" if self.install_hint else ""
            return f"python package {', '.join(missing)} is not installed{hint}"
        return None

    def supports(self, case: Case) -> str | None:
        if case.device not in self.devices:
            return f"{self.name} runs on {', '.join(self.devices)}, not {case.device}"
        allowed = self.precisions.get(case.device, ())
        if case.precision not in allowed:
            return (f"{self.name} on {case.device} supports precisions "
                    f"{', '.join(allowed)}, not {case.precision}")
        return None

    def supports_model(self, case: Case) -> str | None:
        """None, or why this backend cannot run the case's model (an ONNX file on a torch
        backend). ``runs_onnx_files``: the backend runs an ONNX file as is."""
        if not self.needs_model or not case.model.lower().endswith(".onnx"):
            return None
        if not self.runs_onnx_files:
            return (f"{self.name} runs torch models; {case.model} is an ONNX file (the ONNX "
                    "backends run it: onnxruntime, openvino, onnxruntime-trt)")
        from infersweep.artefacts.model_ref import onnx_input

        batch = onnx_input(case.model).batch
        if batch is not None and batch != case.batch_size:
            return f"{case.model} is an ONNX file with a fixed batch of {batch}"
        return None

    def canonical_options(self, given: dict[str, str], device: str) -> str:
        """Validate user options against the declared ones; the options that apply on this
        device, defaults filled in."""
        unknown = sorted(set(given) - set(self.option_defaults))
        if unknown:
            known = ", ".join(self.option_defaults) or "none"
            raise ValueError(f"backend {self.name} has no option {', '.join(unknown)} "
                             f"(its options: {known})")
        merged = dict(self.option_defaults)
        for key, text in given.items():
            value = parse_value(text, self.option_defaults[key])
            allowed = self.option_choices.get(key)
            if allowed and value not in allowed:
                raise ValueError(f"option {self.name}.{key}={text!r}; allowed: {', '.join(allowed)}")
            merged[key] = value
        return format_options({k: v for k, v in merged.items()
                               if device in self.option_devices.get(k, (device,))})

    def prepare(self, source, case: Case, cache) -> Session:
        raise NotImplementedError

    def build_artefacts(self, source, case: Case, cache) -> list[Artefact]:
        """Build into ``cache`` what ``prepare`` of this case's group would build, as far as the
        CPU alone can (the builder process sees no GPU): ONNX exports, INT8 models. It runs while
        another group is measured; ``prepare`` then finds them cached. Default: nothing."""
        return []
