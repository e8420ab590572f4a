"""The sweep specification: parsed from a TOML file and/or flags, validated before anything runs.

Every problem raises SpecError with one message naming the bad value and what is allowed; the CLI
turns it into exit code 2. Validation happens in two steps: ``build_spec`` here checks the values
themselves (cheap, opens nothing), ``grid.preflight`` opens what they point to (weights files,
data folders, memory, the output directory).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from functools import cached_property
from itertools import product
from pathlib import Path

from infersweep.artefacts.export import DEFAULT_OPSET
from infersweep.artefacts.model_ref import ModelError, ModelRef, check_model, parse_model
from infersweep.backends import registry
from infersweep.backends.base import ALTERNATIVES, alternatives
from infersweep.case import format_options, scenario_text
from infersweep.grid.baseline import BaselineError, parse_baseline
from infersweep.grid.constraints import ConstraintError, Constraints, parse_constraints
from infersweep.grid.scenarios import SCENARIO_KEYS, scenario_values
from infersweep.grid.values import MAX_BATCH_SIZE, SpecError
from infersweep.grid.values import choices as _choices
from infersweep.grid.values import items as _items
from infersweep.grid.values import number as _number
from infersweep.grid.values import positive_ints as _positive_ints
from infersweep.measure.timing import MeasureSettings

KNOWN_DEVICES = ("cpu", "cuda")
KNOWN_PRECISIONS = ("fp32", "fp16", "bf16", "amp", "int8")
KNOWN_SCOPES = ("compute", "e2e")
MAX_IMAGE_SIZE = 8192
# A case stops at max_time whatever min_iterations says, so a larger minimum only turns every
# case into a run to the cap with a "fewer runs than wanted" warning: 10 s of 0.1 ms runs.
MAX_MIN_ITERATIONS = 100_000
# target_ci is the median's relative 95% CI half-width: 0.05 is +-5%. At 0.5 and above the
# "median" could be off by half or more, which measures nothing; 5 most likely meant 5%.
MAX_TARGET_CI = 0.5
MAX_REMEASURE = 10  # each costs a timed phase; a machine that stays busy will not get quieter
MAX_REPEATS = 100  # worker processes per case: 10 already pins the between-process spread down
# torch's exporter (dynamo=True) writes opset 18 and newer: asked for less, it silently keeps 18,
# so a lower number would label a model that was never exported at it.
MIN_OPSET = 18

# TOML keys and what they hold; flags use the same names.
KEYS = {
    "model": "model(s): torchvision name, timm:NAME, PATH.py:FUNCTION, module:FUNCTION, PATH.onnx",
    "weights": "path to a state_dict (may contain {size})",
    "backends": "list of backends",
    "devices": "list of devices",
    "precisions": "list of precisions",
    "sizes": "list of image sizes (px)",
    "batches": "list of batch sizes",
    "data": "list of data sources: synthetic, samples (bundled photos), or a folder of images",
    "scope": "what is timed: compute (inputs already placed) and/or e2e (host in, host out)",
    "options": "backend options: {backend: {option: value}}",
    "gpus": "GPU indexes to spread CUDA cases over, one worker per GPU",
    "quick": "exploring: +-5% target, 2 s cap per case, marked as quick",
    "out": "run directory",
    "timeout": "seconds per case",
    "baseline": "backend that speedups are relative to, optionally with options: "
                "torch[channels_last=true]",
    "seed": "seed for random weights and synthetic data",
    "opset": "ONNX opset for exports",
    "min_time": "seconds of timed runs at least",
    "max_time": "seconds of timed runs at most",
    "min_iterations": "timed runs at least",
    "target_ci": "stop when the median's 95% CI is within this fraction",
    "remeasure": "time a case flagged as noisy by the contention guard again, up to N times",
    "executor": "where cases run: local (this machine) or ray (a Ray cluster, or a local instance)",
    "ray_address": "address of an existing Ray cluster (executor ray; default: start one here)",
    "retries": "executor ray: re-schedule a crashed case up to this many times",
    "worker_per_group": "a fresh worker process for every group, and no builder (the old "
                        "isolation)",
    "repeats": "worker processes per case (their medians give the between-process interval)",
    "constraints": "what a deployment must meet, for the report's Recommendation: p99_ms, "
                   "max_memory_mb, min_throughput, min_cosine, min_top1, device, maximize or "
                   "minimize",
    **SCENARIO_KEYS,
}


QUICK_SETTINGS = {"target_ci": 0.05, "min_time_s": 0.2, "max_time_s": 2.0, "min_iterations": 5,
                  "warmup_max_s": 1.0}


@dataclass(frozen=True)
class Spec:
    models: tuple[str, ...] = ("resnet18",)  # an axis of the grid; see artefacts/model_ref.py
    weights: str | None = None
    backends: tuple[str, ...] = ("torch", "onnxruntime")
    devices: tuple[str, ...] = ("cpu",)
    precisions: tuple[str, ...] = ("fp32",)
    sizes: tuple[int, ...] = (224,)
    batches: tuple[int, ...] = (1, 8, 32)
    data: tuple[str, ...] = ("synthetic",)
    scopes: tuple[str, ...] = ("compute",)  # an axis of the grid, like sizes
    out: Path | None = None
    timeout_s: float = 600.0
    baseline: str = "torch"
    seed: int = 0
    opset: int = DEFAULT_OPSET
    measure: MeasureSettings = field(default_factory=MeasureSettings)
    backend_options: dict = field(default_factory=dict)  # backend -> {option: value} given
    # With a GPU and no --precisions, CUDA cases also run fp16 (the CPU ones stay fp32 only).
    gpu_extra_precisions: tuple[str, ...] = ()
    gpus: tuple[int, ...] = ()  # physical GPU indexes to run CUDA cases on in parallel
    quick: bool = False  # looser target, short caps: for exploring; marked in store and report
    # Where cases run; not part of identity(): the same sweep resumes whichever executor ran it.
    executor: str = "local"  # local | ray
    ray_address: str | None = None  # an existing Ray cluster; None: start a local instance
    retries: int = 0  # executor ray: re-schedule a crashed case up to this many times
    worker_per_group: bool = False  # a fresh worker for every group (no long-lived ones)
    # How many worker processes measure each case; not part of identity(): asking for more
    # repeats resumes the same run directory and adds processes to the cases it has.
    repeats: int = 1
    # [constraints]: read by the reports' Recommendation only; not part of identity(), since
    # they change no measurement.
    constraints: Constraints | None = None
    # Scenarios (measure/server.py): "" is the fixed-batch measurement; server cases come from
    # max_batches x max_delays_ms x qps (or one search per configuration with find_max_qps).
    scenarios: tuple[str, ...] = ("",)
    qps: tuple[float, ...] = ()
    max_batches: tuple[int, ...] = (8,)
    max_delays_ms: tuple[float, ...] = (2.0,)
    find_max_qps: bool = False
    pad_batches: bool = False  # in the scenario string only when set: earlier ids are kept
    p99_ms: float | None = None

    def scenario_points(self) -> list[tuple[str, tuple[int, ...]]]:
        """(scenario string, its batch sizes) for each scenario of the sweep: single-stream runs
        at batch 1, offline at the sweep's batches, a server case at its max batch."""
        points = []
        for name in self.scenarios:
            if name != "server":
                points.append((name, (1,) if name == "single-stream" else self.batches))
                continue
            bound = {} if self.p99_ms is None else {"p99_ms": self.p99_ms}
            for max_batch, delay, qps in product(self.max_batches, self.max_delays_ms,
                                                 (None,) if self.find_max_qps else self.qps):
                params = {"max_batch": max_batch, "max_delay_ms": delay, **bound}
                if self.pad_batches:
                    params["pad_batches"] = True
                if qps is not None:
                    params["qps"] = qps
                points.append((scenario_text("server", params), (max_batch,)))
        return points

    def identity(self) -> dict:
        """What defines the sweep's cases (not where it is written or how long it may take), in
        a canonical form: sweeps with the same cases have the same identity, whatever order or
        spelling they were given in. Its shape is kept from before scopes and opset were part of
        it (a single scope as a string, the opset only where it is not the default), so the run
        directories of earlier sweeps keep their names and resume."""
        order = {"backends": list(registry()), "devices": KNOWN_DEVICES,
                 "precisions": KNOWN_PRECISIONS, "gpu_extra_precisions": KNOWN_PRECISIONS}
        model = self.models[0] if len(self.models) == 1 else list(self.models)
        identity = {"model": model, "weights": self.weights, "seed": self.seed,
                    "sizes": sorted(self.sizes), "batches": sorted(self.batches),
                    "data": sorted(self.data)}
        for key, known in order.items():
            identity[key] = sorted(getattr(self, key), key=list(known).index)
        scopes = sorted(self.scopes, key=KNOWN_SCOPES.index)
        identity["scope"] = scopes[0] if len(scopes) == 1 else scopes
        identity["backend_options"] = {backend: _canonical_options(backend, given)
                                       for backend, given in self.backend_options.items()}
        if self.opset != DEFAULT_OPSET:
            identity["opset"] = self.opset
        if self.scenarios != ("",):  # absent by default: earlier run directories keep their names
            identity["scenarios"] = sorted(text for text, _ in self.scenario_points())
        return identity

    def default_out(self) -> Path:
        digest = hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()
        name = parse_model(self.models[0]).short.replace(":", "-").replace(os.sep, "-")
        more = f"+{len(self.models) - 1}" if len(self.models) > 1 else ""
        return Path("runs") / f"{name}{more}-{digest[:8]}"

    @property
    def model(self) -> str:
        """The models as one comma list (the --model value)."""
        return ",".join(self.models)

    @cached_property
    def model_refs(self) -> tuple[ModelRef, ...]:
        return tuple(parse_model(m) for m in self.models)

    @cached_property
    def case_options(self) -> dict[tuple[str, str], tuple[str, ...]]:
        """(backend, device) -> the canonical options strings its cases carry, one per
        combination of the values given as "a|b" (the options that apply on that device,
        defaults filled in). Computed once per Spec: ``build_spec`` reads it to validate the
        options (ValueError names the bad one), ``expand`` to fill in cases. Not a field: it
        derives from backend_options, so it stays out of identity() and spec.json."""
        return {(backend, device): registry()[backend].option_sets(
                    self.backend_options.get(backend, {}), device)
                for backend in self.backends for device in self.devices}


def _canonical_options(backend: str, given: dict[str, str]) -> dict[str, str]:
    """The options given to a backend as its cases will carry them (true, not 1 or True), less
    those equal to their default: they change no case. Several values ("2|1") are sorted and
    joined by "|", so the order they were given in names no other sweep. Only for options
    already validated."""
    spec_backend = registry()[backend]
    canonical = {}
    for key, text in given.items():
        values = sorted({spec_backend.option_value(key, item) for item in alternatives(text)})
        if values != [spec_backend.option_defaults[key]]:
            canonical[key] = ALTERNATIVES.join(format_options({key: value}).partition("=")[2]
                                               for value in values)
    return canonical


def load_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise SpecError(f"sweep file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:  # a checkpoint, an image: TOML files are UTF-8 text
        raise SpecError(f"{path} is not a TOML sweep file: byte 0x{exc.object[exc.start]:02x} "
                        f"at offset {exc.start} is not UTF-8 text") from None
    except OSError as exc:
        raise SpecError(f"cannot read sweep file {path}: {exc.strerror}") from None
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise SpecError(f"{path}: unknown key(s) {', '.join(unknown)}; "
                        f"allowed: {', '.join(KEYS)}")
    base = path.parent
    # Paths in a sweep file are relative to the file, so the file can be run from anywhere.
    for key in ("weights", "out"):
        if isinstance(raw.get(key), str) and not os.path.isabs(raw[key]):
            raw[key] = str(base / raw[key])
    if isinstance(raw.get("model"), list | str):
        items = raw["model"] if isinstance(raw["model"], list) else raw["model"].split(",")
        raw["model"] = [_model_text(m, base) for m in items]
    if isinstance(raw.get("data"), list | str):
        items = raw["data"] if isinstance(raw["data"], list) else raw["data"].split(",")
        raw["data"] = [d if not isinstance(d, str) or d.strip() == "synthetic"
                       or os.path.isabs(d.strip()) else str(base / d.strip()) for d in items]
    return raw


def _model_text(item, base: Path):
    """A sweep file's model entry with its file path made relative to the file."""
    if not isinstance(item, str) or not item.strip():
        return item
    try:
        return parse_model(item, base).text
    except ModelError as exc:
        raise SpecError(str(exc)) from None


def _models(value) -> tuple[str, ...]:
    """The --model entries, each checked without running user code (model_ref.check_model)."""
    entries = []
    for item in _items("model", value):
        try:
            ref = parse_model(str(item))
            check_model(ref)
        except ModelError as exc:
            raise SpecError(str(exc)) from None
        entries.append(ref.text)
    return tuple(dict.fromkeys(entries))


def build_spec(raw: dict, gpus_visible: int = 0) -> Spec:
    """Turn merged TOML + flag values into a validated Spec (values only, no files opened).
    ``gpus_visible``: how many GPUs this machine has (``env.gpu_count()``); with any, the
    default devices and precisions include CUDA, and --gpus indexes are checked against it."""
    gpu_present = gpus_visible > 0
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise SpecError(f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(KEYS)}")
    spec = Spec(devices=("cpu", "cuda") if gpu_present else ("cpu",))
    values: dict = {}
    backends = tuple(registry())
    if "model" in raw:
        values["models"] = _models(raw["model"])
    if raw.get("weights") not in (None, ""):
        values["weights"] = str(raw["weights"])
    if "backends" in raw:
        values["backends"] = _choices("backends", raw["backends"], backends)
    if "devices" in raw:
        values["devices"] = _choices("devices", raw["devices"], KNOWN_DEVICES)
    if "precisions" in raw:
        values["precisions"] = _choices("precisions", raw["precisions"], KNOWN_PRECISIONS)
    elif gpu_present:
        values["gpu_extra_precisions"] = ("fp16",)
    if "sizes" in raw:
        values["sizes"] = _positive_ints("sizes", raw["sizes"], MAX_IMAGE_SIZE)
    if "batches" in raw:
        values["batches"] = _positive_ints("batches", raw["batches"], MAX_BATCH_SIZE)
    if "data" in raw:
        values["data"] = tuple(dict.fromkeys(str(d) for d in _items("data", raw["data"])))
    if "scope" in raw:
        values["scopes"] = _choices("scope", raw["scope"], KNOWN_SCOPES)
    if raw.get("out") not in (None, ""):
        values["out"] = Path(str(raw["out"]))
    if "timeout" in raw:
        values["timeout_s"] = _number("timeout", raw["timeout"])
    if "baseline" in raw:
        try:  # BACKEND or BACKEND[OPTION=VALUE,...] (grid/baseline.py)
            values["baseline"] = str(parse_baseline(raw["baseline"], registry()))
        except BaselineError as exc:
            raise SpecError(str(exc)) from None
    if "seed" in raw:
        values["seed"] = _number("seed", raw["seed"], int, 0, inclusive=True)
    values.update(_executor_values(raw))  # before --gpus: with Ray, --gpus is the wrong flag
    if raw.get("gpus") not in (None, ""):
        gpus = tuple(dict.fromkeys(_items("gpus", raw["gpus"])))
        # -1 is an int too (and True): an index is a non-negative integer, written in digits
        if not all(re.fullmatch(r"[0-9]+", str(g)) and not isinstance(g, bool) for g in gpus):
            raise SpecError(f"gpus: {raw['gpus']!r} is not a list of GPU indexes (0,1,...)")
        values["gpus"] = tuple(int(g) for g in gpus)
        bad = [g for g in values["gpus"] if g >= gpus_visible]
        if bad:
            raise SpecError(f"gpus: no GPU {bad[0]} on this machine ({gpus_visible} visible)")
    if "opset" in raw:
        values["opset"] = _opset(raw["opset"])
    if "repeats" in raw:
        values["repeats"] = _number("repeats", raw["repeats"], int, 1, inclusive=True)
        if values["repeats"] > MAX_REPEATS:
            raise SpecError(f"repeats: {raw['repeats']!r} is more than {MAX_REPEATS} processes "
                            "per case")
    if "constraints" in raw:
        values["constraints"] = _constraints(raw["constraints"])
    measure = {}
    if raw.get("quick") in (True, "true", "1"):
        values["quick"] = True
        measure.update(QUICK_SETTINGS)  # explicit measurement flags below still win
    elif raw.get("quick") not in (None, False, "false", "0"):
        raise SpecError(f"quick: {raw['quick']!r} is not true or false")
    if "min_time" in raw:
        measure["min_time_s"] = _number("min_time", raw["min_time"], float, 0, inclusive=True)
    if "max_time" in raw:
        measure["max_time_s"] = _number("max_time", raw["max_time"])
    if "min_iterations" in raw:
        measure["min_iterations"] = _number("min_iterations", raw["min_iterations"], int, 1, True)
        if measure["min_iterations"] > MAX_MIN_ITERATIONS:
            raise SpecError(f"min_iterations: {measure['min_iterations']} is absurdly large (at "
                            f"most {MAX_MIN_ITERATIONS}; a case stops at max_time anyway)")
    if "target_ci" in raw:
        measure["target_ci"] = _number("target_ci", raw["target_ci"])
        if measure["target_ci"] >= MAX_TARGET_CI:
            raise SpecError(f"target_ci: {raw['target_ci']!r} must be a fraction below "
                            f"{MAX_TARGET_CI:g}, e.g. 0.05 for +-5%")
    if "remeasure" in raw:
        measure["remeasure"] = _number("remeasure", raw["remeasure"], int, 0, inclusive=True)
        if measure["remeasure"] > MAX_REMEASURE:
            raise SpecError(f"remeasure: {raw['remeasure']!r} is too many (at most "
                            f"{MAX_REMEASURE})")
    server_values, server_measure = scenario_values(raw)
    values.update(server_values)
    measure.update(server_measure)
    if measure:
        values["measure"] = replace(spec.measure, **measure)
    spec = replace(spec, **values)
    spec = replace(spec, backend_options=_backend_options(raw.get("options"), spec.backends))
    try:
        spec.case_options  # validates the options given, per backend and device, now (exit 2)
    except ValueError as exc:
        raise SpecError(str(exc)) from None
    if spec.measure.max_time_s < spec.measure.min_time_s:
        raise SpecError(f"max_time ({spec.measure.max_time_s:g}) is below min_time "
                        f"({spec.measure.min_time_s:g})")
    return spec


def _opset(value) -> int:
    """An ONNX opset that both the exporter and the installed onnx know."""
    opset = _number("opset", value, int, 0, inclusive=True)
    if opset < MIN_OPSET:
        raise SpecError(f"opset: {value!r} is below {MIN_OPSET}, the oldest opset torch's ONNX "
                        "exporter writes")
    try:
        import onnx.defs

        newest = onnx.defs.onnx_opset_version()
    except ImportError:  # no onnx: no ONNX backend can run either; the plan says so per case
        return opset
    if opset > newest:
        raise SpecError(f"opset: {opset} is newer than the installed onnx knows (at most {newest})")
    return opset


def _constraints(raw) -> Constraints:
    try:
        constraints = parse_constraints(raw)
    except ConstraintError as exc:
        raise SpecError(str(exc)) from None
    if constraints.device is not None and constraints.device not in KNOWN_DEVICES:
        raise SpecError(f"constraints.device: unknown device {constraints.device!r}; allowed: "
                        f"{', '.join(KNOWN_DEVICES)}")
    return constraints


KNOWN_EXECUTORS = ("local", "ray")


def _executor_values(raw: dict) -> dict:
    """executor, ray_address, retries; Ray must be importable when it is asked for."""
    import importlib.util

    values: dict = {}
    if raw.get("executor") not in (None, ""):
        values["executor"] = _choices("executor", [raw["executor"]], KNOWN_EXECUTORS)[0]
    executor = values.get("executor", "local")
    if raw.get("ray_address") not in (None, ""):
        values["ray_address"] = str(raw["ray_address"]).strip()
    if raw.get("retries") not in (None, ""):
        values["retries"] = _number("retries", raw["retries"], int, 0, inclusive=True)
    if raw.get("worker_per_group") in (True, "true", "1"):
        values["worker_per_group"] = True
    elif raw.get("worker_per_group") not in (None, False, "false", "0"):
        raise SpecError(f"worker_per_group: {raw['worker_per_group']!r} is not true or false")
    if executor != "ray":
        for key, flag in (("ray_address", "--ray-address"), ("retries", "--retries")):
            if values.get(key):
                raise SpecError(f"{flag} needs --executor ray")
        return values
    if raw.get("gpus") not in (None, ""):
        raise SpecError("--gpus is for the local executor; with --executor ray every GPU of the "
                        "Ray cluster is used, one group per GPU")
    try:
        missing = importlib.util.find_spec("ray") is None
    except (ImportError, ValueError):
        missing = True
    if missing:  # (a Ray that is present but cannot be imported fails when the sweep starts)
        raise SpecError("--executor ray needs Ray, which is not installed; install it with: "
                        "pip install 'infersweep[ray]'")
    return values


def parse_option_flags(flags: list[str]) -> dict[str, dict[str, str]]:
    """``--option torch.channels_last=true`` (repeatable) -> {"torch": {"channels_last": "true"}};
    several values stay one text, ``--option "onnxruntime.intra_op_num_threads=1|2"``."""
    options: dict[str, dict[str, str]] = {}
    for flag in flags:
        target, sep, value = flag.partition("=")
        backend, dot, key = target.partition(".")
        if not sep or not dot or not backend or not key:
            raise SpecError(f"--option {flag!r}: expected BACKEND.OPTION=VALUE, "
                            "e.g. torch.channels_last=true")
        options.setdefault(backend.strip(), {})[key.strip()] = value.strip()
    return options


def check_options_tables(options) -> None:
    """[options] holds a table per backend; anything else is a SpecError naming the entry."""
    example = "expected a table per backend, e.g. [options.torch] channels_last = true"
    if not isinstance(options, dict):
        raise SpecError(f"options: {options!r} is not a table; {example}")
    for backend, value in options.items():
        if not isinstance(value, dict):
            raise SpecError(f"options: {backend} = {value!r} is not a table; {example}")


def _backend_options(raw, backends: tuple[str, ...]) -> dict:
    """The options given to each backend of the sweep ({} where none), as text: a TOML list
    [1, 2, 4] becomes "1|2|4", one case per value; ``Spec.case_options`` validates them."""
    raw = raw or {}
    check_options_tables(raw)
    unknown = sorted(set(raw) - set(registry()))
    if unknown:
        raise SpecError(f"options for unknown backend(s) {', '.join(unknown)}; "
                        f"allowed: {', '.join(registry())}")
    return {backend: {k: _option_text(backend, k, v) for k, v in raw.get(backend, {}).items()}
            for backend in backends}


def _option_text(backend: str, key: str, value) -> str:
    """One option's value(s) as text: a scalar as is, a list as "a|b" (booleans true/false)."""
    items = value if isinstance(value, list) else [value]
    if not items or any(isinstance(item, list | dict) for item in items):
        raise SpecError(f"options: {backend}.{key} = {value!r} is not a value or a list of values")
    return ALTERNATIVES.join(str(item).lower() if isinstance(item, bool) else str(item)
                             for item in items)
