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
Knobs added later (threads, graph optimisation level...) whose default is what the backend always
did are ``implicit``: left out of the string while at their default, so the cases of sweeps that
never set them keep their ids. A sweep gives an option several values as "1|2|4" (grid axes):
``option_sets`` turns them into one canonical string per combination.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from itertools import product
from typing import Any

import numpy as np

from infersweep.case import Case, format_options, parse_options


class PrecisionError(RuntimeError):
    """The precision that was asked for was not really applied: never report such a case as it."""


class Session:
    info: dict
    # launch() returns before the result is complete, so back-to-back launches overlap: the
    # worker measures pipelined throughput (always on CUDA; on the CPU where this is True).
    pipelines: bool = False

    def place(self, batch: np.ndarray) -> Any:
        raise NotImplementedError

    def refill(self, placed: Any, batch: np.ndarray) -> Any:
        """``batch`` (the shape ``placed`` was made for) where ``placed`` lives, for the next
        run: a server copies each request batch into input buffers it allocated once. By
        default a fresh ``place``; device backends copy into the buffer they have."""
        return self.place(batch)

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


ALTERNATIVES = "|"  # --option "onnxruntime.intra_op_num_threads=1|2|4": three cases


def alternatives(text: str) -> list[str]:
    """The values of one option given as "a|b|c" (a single value: a list of one)."""
    return [item.strip() for item in str(text).split(ALTERNATIVES)]


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
    option_minimum: dict = field(default_factory=dict)  # integer option -> smallest value
    # Left out of the canonical string while at their default (see the module's docstring).
    implicit_options: tuple[str, ...] = ()

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

    def option_value(self, key: str, text):
        """One option's value as the backend reads it (choices matched in any case: latency is
        LATENCY), or ValueError naming backend.option=value."""
        default = self.option_defaults[key]
        where = f"option {self.name}.{key}={text!r}"
        try:
            value = parse_value(text, default)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        allowed = self.option_choices.get(key)
        if allowed:
            spelled = {str(choice).lower(): choice for choice in allowed}
            if str(value).lower() not in spelled:
                raise ValueError(f"{where}; allowed: {', '.join(map(str, allowed))}")
            value = spelled[str(value).lower()]
        minimum = self.option_minimum.get(key)
        if minimum is not None and value < minimum:
            raise ValueError(f"{where} must be >= {minimum}")
        return value

    def canonical_options(self, given: dict[str, str], device: str) -> str:
        """Validate user options (one value each) against the declared ones; the options that
        apply on this device, defaults filled in (implicit ones left out at their default)."""
        unknown = sorted(set(given) - set(self.option_defaults))
        if unknown:
            known = ", ".join(self.option_defaults) or "none"
            raise ValueError(f"backend {self.name} has no option {', '.join(unknown)} "
                             f"(its options: {known})")
        merged = dict(self.option_defaults)
        for key, text in given.items():
            merged[key] = self.option_value(key, text)
        return format_options({k: v for k, v in merged.items()
                               if device in self.option_devices.get(k, (device,))
                               and not (k in self.implicit_options
                                        and v == self.option_defaults[k])})

    def option_sets(self, given: dict[str, str], device: str) -> tuple[str, ...]:
        """The canonical strings of every combination of the values given as "a|b" (the
        cartesian product, in the order given); combinations that end up equal (1|1, or an
        option that means nothing on this device) once. ValueError names a bad value."""
        keys = list(given)
        values = []
        for key in keys:
            items = alternatives(given[key])
            if "" in items:
                raise ValueError(f"option {self.name}.{key}={given[key]!r} has an empty value")
            values.append(items)
        sets = [self.canonical_options(dict(zip(keys, combo)), device)
                for combo in product(*values)]
        return tuple(dict.fromkeys(sets))

    def resolved_options(self, case: Case) -> dict:
        """Every option of the case as the backend reads it, defaults filled in."""
        given = options_of(case)
        return {key: self.option_value(key, given[key]) if key in given else default
                for key, default in self.option_defaults.items()}

    def prepare(self, source, case: Case, cache) -> Session:
        raise NotImplementedError

    def preload(self) -> None:
        """Import what this backend's first group would, before that group comes: a worker
        started ahead does it while the worker before it measures (run/worker.py). It touches
        no device. Default: the packages."""
        for package in self.packages:
            importlib.import_module(package)

    def build_artefacts(self, source, case: Case, cache) -> list[Artefact]:
        """Build into ``cache`` what ``prepare`` of this case's group would build, as far as the
        CPU alone can (the builder process sees no GPU): ONNX exports, INT8 models. It runs while
        another group is measured; ``prepare`` then finds them cached. Default: nothing."""
        return []
