"""The sweep flags that `run` and `plan` share, declared once.

Typer reads a command's parameters from its signature, so ``with_sweep_flags`` writes the shared
ones into the signature of the command it decorates (their order here is their order in
``--help``); the command itself receives them as one ``SweepArgs``. ``SPEC_FLAGS``, the flags that
become keys of the sweep (as in sweep.toml), derives from the same declaration.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from infersweep.backends import registry
from infersweep.backends.base import parse_value
from infersweep.case import Case
from infersweep.env import gpu_count
from infersweep.grid.budget import BudgetError, fit, given_settings, parse_duration
from infersweep.grid.filters import HELP as FILTER_HELP
from infersweep.grid.filters import Filter, FilterError, parse_filter
from infersweep.grid.spec import (Spec, SpecError, build_spec, check_options_tables, load_toml,
                                  parse_option_flags)

# Reused by other commands (report, compare) as well.
Baseline = Annotated[Optional[str], typer.Option(
    "--baseline", help="speedup baseline: a backend, optionally with options, e.g. "
                       "'torch[channels_last=true]' (default: torch)")]
Only = Annotated[Optional[str], typer.Option("--only", help=FILTER_HELP)]
# What `run` does with the results already in --out; `plan` takes them too, to show what that run
# would do.
Fresh = Annotated[bool, typer.Option("--fresh", help="forget earlier results in --out")]
RetryFailed = Annotated[bool, typer.Option(
    "--retry-failed", help="re-run failed/crashed/oom/timeout cases")]
Force = Annotated[bool, typer.Option(
    "--force", help="run even when the memory estimate exceeds available memory")]


@dataclass(frozen=True)
class Flag:
    name: str  # the parameter name; for a sweep key, its name in sweep.toml
    annotation: Any  # Annotated[type, typer.Option(...)] or typer.Argument
    default: Any = None
    in_spec: bool = True  # False: an input of the command, not a key of the sweep
    executor: bool = False  # where cases run: `run` has these, `plan` does not


def _option(name: str, kind, help: str, default=None, **kw) -> Flag:
    flag = "--" + name.replace("_", "-")
    return Flag(name, Annotated[Optional[kind] if default is None else kind,
                                typer.Option(flag, help=help)], default, **kw)


FLAGS = (
    Flag("spec_file", Annotated[Optional[Path], typer.Argument(
        help="sweep.toml (flags override it)")], in_spec=False),
    _option("model", str, "comma list: torchvision name, timm:NAME, PATH.py:FUNCTION, "
            "module:FUNCTION or PATH.onnx (default: resnet18)"),
    _option("weights", str,
            "local state_dict; may contain {size} (default: random init, fixed seed)"),
    _option("backends", str, "comma list (default: torch,onnxruntime)"),
    _option("devices", str, "cpu,cuda (default: cpu, +cuda if present)"),
    _option("precisions", str, "fp32,fp16,... (default: fp32)"),
    _option("sizes", str, "image sizes in px (default: 224)"),
    _option("batches", str, "batch sizes (default: 1,8,32)"),
    _option("data", str,
            "synthetic, samples (bundled photos) or an image folder (default: synthetic)"),
    _option("out", Path, "run directory (default: runs/MODEL-HASH)"),
    _option("timeout", float, "seconds per case (default: 600)"),
    Flag("baseline", Baseline),
    _option("seed", int, "seed for weights and data (default: 0)"),
    _option("min_time", float, "timed seconds at least (default: 1)"),
    _option("max_time", float, "timed seconds at most (default: 10)"),
    _option("min_iterations", int, "timed runs at least (default: 10)"),
    _option("target_ci", float,
            "stop at this relative 95% CI half-width of the median (default: 0.01)"),
    _option("remeasure", int,
            "time a case the contention guard flagged as noisy again, up to N times (default: 1)"),
    _option("scope", str,
            "compute (inputs already placed) or e2e (host in, host out) (default: compute)"),
    _option("option", list[str], "backend option BACKEND.KEY=VALUE, repeatable (e.g. "
                                 "torch-compile.mode=max-autotune)"),
    _option("channels_last", bool, "channels_last memory format for torch and torch-compile",
            default=False),
    _option("compile_mode", str,
            "torch-compile mode: default, reduce-overhead, max-autotune, ..."),
    _option("gpus", str,
            "GPU indexes, e.g. 0,1: CUDA cases run in parallel, one worker per GPU"),
    _option("repeats", int, "worker processes per case, run round robin; the row's median is the "
                            "median of their medians, its CI their spread (default: 1)"),
    _option("quick", bool, "explore: +-5% target, 2 s cap per case; results marked quick",
            default=False),
    _option("scenarios", str, "comma list: fixed (the default: fixed-batch latency), "
            "single-stream, offline, server"),
    _option("qps", str, "server: target request rates, comma list (Poisson arrivals)"),
    _option("max_batch", str, "server: largest batches the batcher forms, comma list (default: 8)"),
    _option("max_delay_ms", str,
            "server: longest waits for a batch to fill, comma list (default: 2)"),
    _option("find_max_qps", bool, "server: search the highest rate whose p99 stays under "
                                  "--p99-ms", default=False),
    _option("pad_batches", bool, "server: run every batch the batcher forms at --max-batch, "
            "padded (one input shape: no re-planning or recompiling when the size changes)",
            default=False),
    _option("p99_ms", float, "server: p99 request-latency bound in ms"),
    _option("server_min_duration", float,
            "server: seconds of arrivals per run at least (default: 10, LoadGen's)"),
    _option("server_min_requests", int,
            "server: requests per run at least (default: 100, LoadGen's)"),
    _option("qps_resolution", float,
            "server: the max-QPS search stops within this fraction (default: 0.05)"),
    _option("budget", str, "fit the sweep in this wall time, e.g. 300s, 5m, 1.5h: chooses min/max "
                           "time and target CI per case (timing flags given win)", in_spec=False),
    Flag("only", Only, in_spec=False),
    _option("executor", str, "local (default) or ray: a Ray task per group, on a cluster or a "
                             "local Ray instance (pip install 'infersweep[ray]')", executor=True),
    _option("ray_address", str, "an existing Ray cluster, e.g. ray://head:10001 or head:6379 "
                                "(default: start a local Ray instance)", executor=True),
    _option("retries", int,
            "executor ray: re-schedule a crashed case up to N times (default: 0)", executor=True),
    _option("worker_per_group", bool, "a fresh worker process for every group, and no builder "
            "(the old isolation; default: a worker serves group after group while healthy)",
            default=False, executor=True),
)
SPEC_FLAGS = tuple(f.name for f in FLAGS if f.in_spec)


@dataclass(frozen=True)
class SweepArgs:
    """What `run` or `plan` was given for the sweep."""

    spec_file: Path | None
    flags: dict  # the sweep flags by name (SPEC_FLAGS); None or False where not given
    only: str | None  # --only text
    budget: str | None = None  # --budget text (grid/budget.py)

    def raw(self) -> dict:
        """The sweep file's values with the flags laid over them: what ``build_spec`` takes.
        Flags override the file; two flags that say opposite things are a SpecError."""
        flags = dict(self.flags)
        raw = load_toml(self.spec_file) if self.spec_file else {}
        options = raw.get("options")
        if options is not None:
            check_options_tables(options)  # before merging: [options] torch = "x" is refused
            options = {k: dict(v) for k, v in options.items()}  # a copy, to merge flags into
        flag_options = parse_option_flags(flags.pop("option", None) or [])
        if flags.pop("channels_last", False):
            for backend in CHANNELS_LAST_BACKENDS:
                _refuse_conflict(flag_options, backend, "channels_last", "true", "--channels-last")
                flag_options.setdefault(backend, {})["channels_last"] = "true"
        if flags.get("compile_mode"):
            _refuse_conflict(flag_options, "torch-compile", "mode", flags["compile_mode"],
                             f"--compile-mode {flags['compile_mode']}")
            flag_options.setdefault("torch-compile", {})["mode"] = flags["compile_mode"]
        flags.pop("compile_mode", None)
        if flag_options:
            options = options or {}
            for backend, values in flag_options.items():
                options.setdefault(backend, {}).update(values)
        flags["out"] = str(flags["out"]) if flags.get("out") else None
        # a flag can only turn these on
        for switch in ("quick", "find_max_qps", "pad_batches", "worker_per_group"):
            flags[switch] = True if flags.get(switch) else None
        raw.update({k: v for k, v in flags.items() if v is not None})
        if options is not None:
            raw["options"] = options
        return raw

    def spec(self) -> tuple[Spec, bool]:
        """The validated Spec, and whether this machine has a GPU; SpecError on bad input."""
        raw = self.raw()
        gpus_visible = gpu_count()
        spec = build_spec(raw, gpus_visible=gpus_visible)
        self._refuse_options_outside(spec.backends)
        if self.budget is not None:
            try:
                parse_duration(self.budget)
            except BudgetError as exc:
                raise SpecError(str(exc)) from None
            if spec.quick:
                raise SpecError("--budget and --quick both choose how long cases are timed; "
                                "give one")
        return spec, gpus_visible > 0

    def fit_budget(self, spec: Spec, to_run: list[Case]) -> tuple[Spec, str | None]:
        """The spec with the timing that fits --budget (grid/budget.py), and the line that says
        what it chose; (spec, None) without --budget. SpecError where it cannot fit."""
        if self.budget is None:
            return spec, None
        from infersweep.results.history import case_costs, proven_combinations

        try:
            plan = fit(parse_duration(self.budget), to_run, spec.repeats, spec.measure,
                       given_settings(self.raw()), case_costs(), self.budget,
                       proven=proven_combinations())
        except BudgetError as exc:
            raise SpecError(str(exc)) from None
        return replace(spec, measure=plan.settings), plan.line()

    def _refuse_options_outside(self, backends: tuple[str, ...]) -> None:
        """An option flag for a backend the sweep does not run would be dropped without a word.
        (Options in a sweep file are not refused: a --backends flag may narrow the file's
        backends on purpose.)"""
        given = [(f"--option {flag}", flag.partition(".")[0].strip())
                 for flag in self.flags.get("option") or []]
        if self.flags.get("compile_mode"):
            given.append((f"--compile-mode {self.flags['compile_mode']}", "torch-compile"))
        for flag, backend in given:
            if backend not in backends:
                raise SpecError(f"{flag}: {backend} is not among the sweep's backends "
                                f"({', '.join(backends)}); add it to --backends")
        if self.flags.get("channels_last") and not set(CHANNELS_LAST_BACKENDS) & set(backends):
            raise SpecError(f"--channels-last: neither {' nor '.join(CHANNELS_LAST_BACKENDS)} is "
                            f"among the sweep's backends ({', '.join(backends)})")


# The backends --channels-last sets channels_last=true for.
CHANNELS_LAST_BACKENDS = ("torch", "torch-compile")


def _refuse_conflict(flag_options: dict, backend: str, key: str, value: str, flag: str) -> None:
    """A shortcut flag and an --option for the same setting must agree (compared as the
    backend reads them: channels_last=1 is true)."""
    given = flag_options.get(backend, {}).get(key)
    if given is None:
        return
    default = registry()[backend].option_defaults[key]
    try:
        same = parse_value(given, default) == parse_value(value, default)
    except ValueError:
        same = False
    if not same:
        raise SpecError(f"{flag} conflicts with --option {backend}.{key}={given}; give one")


def only_filter(text: str | None) -> Filter | None:
    """The --only filter of run, plan and report, or None; a bad one is a SpecError (exit 2)."""
    if not text:
        return None
    try:
        return parse_filter(text, backends=registry())
    except FilterError as exc:
        raise SpecError(f"--only: {exc}") from None


def with_sweep_flags(executor: bool = True):
    """Give the decorated command the sweep flags (``executor``: the executor flags too).

    The command declares a parameter ``sweep: SweepArgs`` and its own options; its signature
    as typer sees it is the shared flags, in FLAGS order, followed by its own options."""
    shared = [f for f in FLAGS if executor or not f.executor]

    def decorate(command):
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values()
               if p.name != "sweep"]
        params = [inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                    default=f.default, annotation=f.annotation) for f in shared]
        params += own

        @functools.wraps(command)
        def wrapper(**values):
            given = {f.name: values.pop(f.name) for f in shared}
            sweep = SweepArgs(spec_file=given.pop("spec_file"), only=given.pop("only"),
                              budget=given.pop("budget"), flags=given)
            return command(sweep=sweep, **values)

        wrapper.__signature__ = inspect.Signature(params)
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate
