"""The `infersweep` command: run, plan, report, env.

Bad input of any kind ends with one message on stderr and exit code 2, before any case runs.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table

from infersweep.case import Case
from infersweep.grid.filters import HELP as FILTER_HELP
from infersweep.grid.filters import FilterError, parse_filter
from infersweep.grid.plan import DONE, RUN, PlannedCase, make_plan
from infersweep.results.result import Result
from infersweep.grid.spec import (SpecError, build_spec, check_inputs, load_toml, parse_option_flags,
                             prepare_out)
from infersweep.measure.stats import summarize

app = typer.Typer(add_completion=False, no_args_is_help=False,
                  help="Sweep vision-model inference over runtimes, precisions, batch and image "
                       "sizes; measure each case honestly; never lose a result.")
console = Console(soft_wrap=True)  # long lines stay whole: easy to grep and paste
err = Console(stderr=True, soft_wrap=True)

SpecFile = Annotated[Optional[Path], typer.Argument(help="sweep.toml (flags override it)")]
Model = Annotated[Optional[str], typer.Option("--model", help="torchvision model name (default: resnet18)")]
Weights = Annotated[Optional[str], typer.Option(
    "--weights", help="local state_dict; may contain {size} (default: random init, fixed seed)")]
Backends = Annotated[Optional[str], typer.Option(
    "--backends", help="comma list (default: torch,onnxruntime)")]
Devices = Annotated[Optional[str], typer.Option("--devices", help="cpu,cuda (default: cpu, +cuda if present)")]
Precisions = Annotated[Optional[str], typer.Option("--precisions", help="fp32,fp16,... (default: fp32)")]
Sizes = Annotated[Optional[str], typer.Option("--sizes", help="image sizes in px (default: 224)")]
Batches = Annotated[Optional[str], typer.Option("--batches", help="batch sizes (default: 1,8,32)")]
Data = Annotated[Optional[str], typer.Option("--data", help="synthetic, samples (bundled photos) or an image folder (default: synthetic)")]
Out = Annotated[Optional[Path], typer.Option("--out", help="run directory (default: runs/<model>-<hash>)")]
Timeout = Annotated[Optional[float], typer.Option("--timeout", help="seconds per case (default: 600)")]
Baseline = Annotated[Optional[str], typer.Option("--baseline", help="speedup baseline (default: torch)")]
Seed = Annotated[Optional[int], typer.Option("--seed", help="seed for weights and data (default: 0)")]
MinTime = Annotated[Optional[float], typer.Option("--min-time", help="timed seconds at least (default: 1)")]
MaxTime = Annotated[Optional[float], typer.Option("--max-time", help="timed seconds at most (default: 10)")]
MinIter = Annotated[Optional[int], typer.Option("--min-iterations", help="timed runs at least (default: 10)")]
TargetCi = Annotated[Optional[float], typer.Option(
    "--target-ci", help="stop at this relative 95% CI half-width of the median (default: 0.01)")]
Scope = Annotated[Optional[str], typer.Option(
    "--scope", help="compute (inputs already placed) or e2e (host in, host out) (default: compute)")]
Option = Annotated[Optional[list[str]], typer.Option(
    "--option", help="backend option BACKEND.KEY=VALUE, repeatable (e.g. torch-compile.mode="
                     "max-autotune)")]
ChannelsLast = Annotated[bool, typer.Option(
    "--channels-last", help="channels_last memory format for torch and torch-compile")]
Quick = Annotated[bool, typer.Option(
    "--quick", help="explore: +-5% target, 2 s cap per case; results marked quick")]
Only = Annotated[Optional[str], typer.Option("--only", help=FILTER_HELP)]
Gpus = Annotated[Optional[str], typer.Option(
    "--gpus", help="GPU indexes, e.g. 0,1: CUDA cases run in parallel, one worker per GPU")]
Executor = Annotated[Optional[str], typer.Option(
    "--executor", help="local (default) or ray: a Ray task per group, on a cluster or a local "
                       "Ray instance (pip install 'infersweep[ray]')")]
RayAddress = Annotated[Optional[str], typer.Option(
    "--ray-address", help="an existing Ray cluster, e.g. ray://head:10001 or head:6379 "
                          "(default: start a local Ray instance)")]
Retries = Annotated[Optional[int], typer.Option(
    "--retries", help="executor ray: re-schedule a crashed case up to N times (default: 0)")]
CompileMode = Annotated[Optional[str], typer.Option(
    "--compile-mode", help="torch-compile mode: default, reduce-overhead, max-autotune, ...")]


def _fail(message: str) -> None:
    from rich.markup import escape

    # escape: messages quote user values and commands (pip install 'infersweep[ray]') verbatim
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(2)


def _spec_from(spec_file, flags: dict):
    from infersweep.env import cuda_available

    raw = load_toml(spec_file) if spec_file else {}
    options = {k: dict(v) for k, v in raw.get("options", {}).items()} \
        if isinstance(raw.get("options"), dict) else raw.get("options")
    flag_options = parse_option_flags(flags.pop("option") or [])
    if flags.pop("channels_last"):
        for backend in ("torch", "torch-compile"):
            flag_options.setdefault(backend, {})["channels_last"] = "true"
    if flags.get("compile_mode"):
        flag_options.setdefault("torch-compile", {})["mode"] = flags["compile_mode"]
    flags.pop("compile_mode", None)
    if flag_options:
        options = options if isinstance(options, dict) else {}
        for backend, values in flag_options.items():
            options.setdefault(backend, {}).update(values)
    raw.update({k: v for k, v in flags.items() if v is not None})
    if options is not None:
        raw["options"] = options
    gpu = cuda_available()
    spec = build_spec(raw, gpu_present=gpu)
    return spec, gpu


SPEC_FLAGS = ("model", "weights", "backends", "devices", "precisions", "sizes", "batches", "data",
              "out", "timeout", "baseline", "seed", "min_time", "max_time", "min_iterations",
              "target_ci", "scope", "option", "channels_last", "compile_mode", "gpus", "quick",
              "executor", "ray_address", "retries")


def _flags(values: dict) -> dict:
    """The sweep flags among a command's arguments, named as in the TOML file."""
    flags = {k: values[k] for k in SPEC_FLAGS if k in values}  # `plan` has no executor flags
    flags["out"] = str(flags["out"]) if flags["out"] else None
    flags["quick"] = True if flags["quick"] else None  # a flag can only turn it on
    return flags


def _only(text: str | None):
    """The --only filter, or None; a bad filter is a SpecError (exit 2)."""
    from infersweep.backends import registry

    if not text:
        return None
    try:
        return parse_filter(text, backends=registry())
    except FilterError as exc:
        raise SpecError(f"--only: {exc}") from None


def _load_results(run_dir: Path) -> list:
    from infersweep.results.store import Store

    if not (run_dir / "results.sqlite").is_file():
        _fail(f"{run_dir} holds no results.sqlite (is it a run directory?)")
    store = Store(run_dir / "results.sqlite")
    try:
        return store.results()
    finally:
        store.close()


class TerminalObserver:
    """A live progress bar with the current case and ETA, and one line per finished case."""

    def __init__(self):
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), console=console, transient=True)
        self.task = None

    def planned(self, plan: list[PlannedCase]) -> None:
        to_run = sum(p.action == RUN for p in plan)
        done = sum(p.action == DONE for p in plan)
        skipped = len(plan) - to_run - done
        if not plan:
            console.print("no case of this sweep matches the --only filter: nothing to do")
        console.print(f"{len(plan)} cases: {to_run} to run, {done} already done, "
                      f"{skipped} unsupported/unavailable")
        for p in plan:
            if p.action not in (RUN, DONE):
                console.print(f"  [yellow]{p.action:>11}[/]  {p.case.label}: {p.reason}",
                              highlight=False)
        self.progress.start()
        self.task = self.progress.add_task("starting", total=to_run)

    def case_started(self, case: Case) -> None:
        self.progress.update(self.task, description=case.label)

    def case_finished(self, result: Result) -> None:
        self.progress.advance(self.task)
        console.print(case_line(result), highlight=False)

    def close(self) -> None:
        self.progress.stop()


def case_line(result: Result) -> str:
    label = result.case.label
    if result.status != "ok":
        return f"  [red]{result.status:>11}[/]  {label}: {result.reason[:300]}"
    s = summarize(result.samples_ms)
    ips = result.case.batch_size * 1000 / s.median
    line = (f"  [green]{'ok':>11}[/]  {label}\n{'':13}median [bold]{s.median:.3f} ms[/] ± {s.std:.3f}"
            f"  (min {s.min:.3f} … max {s.max:.3f})  {ips:.1f} img/s  n={s.iterations}")
    if result.warnings:
        line += f"\n{'':13}[yellow]warning:[/] {'; '.join(result.warnings)}"
    return line


@app.command()
def run(spec_file: SpecFile = None, model: Model = None, weights: Weights = None,
        backends: Backends = None, devices: Devices = None, precisions: Precisions = None,
        sizes: Sizes = None, batches: Batches = None, data: Data = None, out: Out = None,
        timeout: Timeout = None, baseline: Baseline = None, seed: Seed = None,
        min_time: MinTime = None, max_time: MaxTime = None, min_iterations: MinIter = None,
        target_ci: TargetCi = None, scope: Scope = None, option: Option = None,
        channels_last: ChannelsLast = False, compile_mode: CompileMode = None, gpus: Gpus = None,
        quick: Quick = False, only: Only = None, executor: Executor = None,
        ray_address: RayAddress = None, retries: Retries = None,
        fresh: Annotated[bool, typer.Option("--fresh", help="forget earlier results in --out")] = False,
        retry_failed: Annotated[bool, typer.Option(
            "--retry-failed", help="re-run failed/crashed/oom/timeout cases")] = False,
        force: Annotated[bool, typer.Option(
            "--force", help="run even when the memory estimate exceeds available memory")] = False):
    """Run a sweep; results are stored per case and resumed on the next run with the same --out."""
    from infersweep.run.ray import RayUnavailable
    from infersweep.results.store import RunDirBusy, exclusive_run
    from infersweep.sweep import run_sweep

    try:
        spec, gpu = _spec_from(spec_file, _flags(locals()))
        only_filter = _only(only)
        check_inputs(spec, force)
        out_dir = prepare_out(spec.out or spec.default_out())
    except SpecError as exc:
        _fail(str(exc))
    console.print(f"run directory: [bold]{out_dir}[/]")
    observer = TerminalObserver()
    try:
        with exclusive_run(out_dir):
            try:
                outcome = run_sweep(spec, out_dir, observer, fresh=fresh,
                                    retry_failed=retry_failed, gpu_present=gpu, only=only_filter)
            finally:
                observer.close()
    except (RunDirBusy, RayUnavailable) as exc:
        _fail(str(exc))
    except (OSError, sqlite3.Error) as exc:  # e.g. the disk under --out filled up mid-sweep
        _fail(f"cannot write results to {out_dir}: {exc}. Every case stored before this is "
              "safe in results.sqlite; free space and run the same command to resume")
    from infersweep.reports.rows import status_line

    summary = status_line(outcome.rows)
    if outcome.interrupted:
        console.print(f"[yellow]interrupted[/]: {summary}; run the same command again to resume")
        raise typer.Exit(130)
    console.print(f"{summary}. Wrote {out_dir}/results.csv, results.json, report.md, report.html, plots/")


@app.command()
def plan(spec_file: SpecFile = None, model: Model = None, weights: Weights = None,
         backends: Backends = None, devices: Devices = None, precisions: Precisions = None,
         sizes: Sizes = None, batches: Batches = None, data: Data = None, out: Out = None,
         timeout: Timeout = None, baseline: Baseline = None, seed: Seed = None,
         min_time: MinTime = None, max_time: MaxTime = None, min_iterations: MinIter = None,
         target_ci: TargetCi = None, scope: Scope = None, option: Option = None,
         channels_last: ChannelsLast = False, compile_mode: CompileMode = None,
         gpus: Gpus = None, quick: Quick = False, only: Only = None,
         list_models: Annotated[bool, typer.Option("--list-models",
                                                   help="list the model names and exit")] = False):
    """Print the expanded cases and what will happen to each, without running anything."""
    from infersweep.results.store import Store

    if list_models:
        from infersweep.artefacts.models import available_models

        console.print(" ".join(available_models()))
        return
    try:
        spec, gpu = _spec_from(spec_file, _flags(locals()))
        only_filter = _only(only)
        check_inputs(spec)
    except SpecError as exc:
        _fail(str(exc))
    out_dir = spec.out or spec.default_out()
    finished: dict[str, str] = {}
    stored: dict[str, str] = {}
    if (out_dir / "results.sqlite").exists():
        store = Store(out_dir / "results.sqlite")
        finished, stored = store.finished(quick=spec.quick), store.statuses()
        store.close()
    planned = make_plan(spec, finished, gpu, only_filter, stored)
    if not planned:
        console.print(f"no case of this sweep matches --only {only!r}")
        return
    table = Table(title=f"plan for {out_dir}")
    for col in ("case_id", "backend", "device", "precision", "size", "batch", "data", "action",
                "reason"):
        table.add_column(col)
    for p in planned:
        c = p.case
        table.add_row(c.case_id, c.backend, c.device, c.precision, str(c.image_size),
                      str(c.batch_size), c.data, p.action, p.reason)
    console.print(table)
    to_run = [p.case for p in planned if p.action == RUN]
    console.print(f"{len(planned)} cases, {len(to_run)} to run")
    console.print(estimate_line(to_run, spec.quick))


def estimate_line(cases: list[Case], quick: bool) -> str:
    from infersweep.results.history import wall_times

    known = wall_times(quick)
    seen = [known[c.case_id] for c in cases if c.case_id in known]
    if not cases:
        return "nothing to run"
    if not seen:
        return "no history for these cases yet: no time estimate (the first run records one)"
    total = sum(seen) * len(cases) / len(seen)  # unseen cases assumed like the seen ones
    note = "" if len(seen) == len(cases) else \
        f" ({len(cases) - len(seen)} of {len(cases)} cases without history, assumed average)"
    return f"estimated time: {total / 60:.1f} min from earlier runs{note}"



@app.command()
def report(out_dir: Annotated[Path, typer.Argument(help="a run directory")],
           baseline: Baseline = None, only: Only = None,
           formats: Annotated[Optional[str], typer.Option(
               "--format", help="which outputs to rewrite, comma-separated: md, csv, json, html, "
                                "plots (html draws the plots it embeds) [all]")] = None):
    """Regenerate the output files of DIR from DIR/results.sqlite (--only: matching rows)."""
    from infersweep.reports.formats import FORMATS, files_written
    from infersweep.sweep import rebuild_reports

    if not (out_dir / "results.sqlite").is_file():
        _fail(f"{out_dir} holds no results.sqlite (is it a run directory?)")
    chosen = tuple(dict.fromkeys(f.strip().lower() for f in (formats or "").split(",")
                                 if f.strip())) or FORMATS
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown:
        _fail(f"unknown --format {', '.join(unknown)}; allowed: {', '.join(FORMATS)}")
    try:
        only_filter = _only(only)
    except SpecError as exc:
        _fail(str(exc))
    rows = rebuild_reports(out_dir, baseline, only_filter, chosen)
    if only and not rows:
        console.print(f"no case in {out_dir} matches --only {only!r}")
    console.print(f"{len(rows)} cases. Wrote {out_dir}/: {', '.join(files_written(chosen))}")


@app.command()
def peak(devices: Annotated[str, typer.Option("--devices", help="cpu,cuda")] = "cpu",
         precisions: Annotated[str, typer.Option("--precisions", help="fp32,fp16,bf16")] = "fp32",
         remeasure: Annotated[bool, typer.Option(
             "--remeasure", help="measure even where a table value or a cached one exists")] = False):
    """Peak TFLOP/s of this machine per device and precision (measured with a large matrix
    product and cached; known GPUs from a datasheet table): the basis of utilization_pct."""
    from infersweep.env import collect
    from infersweep.probes.peaks import MATMUL_DTYPE, peak_for

    env_facts = collect()
    table = Table()
    for col in ("device", "precision", "TFLOP/s", "source"):
        table.add_column(col)
    for device in [d.strip() for d in devices.split(",") if d.strip()]:
        if device not in ("cpu", "cuda"):
            _fail(f"unknown device {device!r}; allowed: cpu, cuda")
        if device == "cuda" and not env_facts["gpus"]:
            _fail("no CUDA GPU is visible on this machine")
        for precision in [p.strip() for p in precisions.split(",") if p.strip()]:
            if precision not in MATMUL_DTYPE:
                _fail(f"unknown precision {precision!r}; allowed: {', '.join(MATMUL_DTYPE)}")
            found = peak_for(device, precision, env_facts, remeasure=remeasure)
            table.add_row(device, precision, f"{found['tflops']:g}" if found else "unknown",
                          found["source"] if found else "measurement failed")
    console.print(table)


@app.command()
def compare(
        run_a: Annotated[Path, typer.Argument(help="run directory A")],
        run_b: Annotated[Optional[Path], typer.Argument(help="run directory B (default: A)")] = None,
        a: Annotated[Optional[str], typer.Option("--a", help="group A of a run, e.g. backend=torch")] = None,
        b: Annotated[Optional[str], typer.Option("--b", help="group B, e.g. backend=onnxruntime")] = None,
        only: Only = None,
        output: Annotated[str, typer.Option("--format", help="md or json")] = "md",
        fail_if_slower: Annotated[Optional[str], typer.Option(
            "--fail-if-slower", help="exit 1 if B is significantly slower than A by more than "
                                     "this, e.g. 5%")] = None,
        margin: Annotated[str, typer.Option(
            "--margin", help="smaller changes are run-to-run noise, not a verdict")] = "2%"):
    """Compare two runs (or two groups of one run) case by case: B/A median latency with a
    bootstrap 95% CI and a verdict: faster, slower, or no significant difference."""
    from infersweep.reports.compare import (CompareError, parse_fraction, regressions, to_json,
                                    to_markdown)
    from infersweep.reports.compare import compare as compare_results

    if output not in ("md", "json"):
        _fail(f"unknown --format {output!r}; allowed: md, json")
    if (a is None) != (b is None):
        _fail("give both --a and --b, or neither")
    if run_b is None and a is None:
        _fail("compare needs a second run directory, or --a and --b")
    try:
        filter_a, filter_b, filter_only = parse_filter(a), parse_filter(b), parse_filter(only)
        threshold = parse_fraction(fail_if_slower) if fail_if_slower else None
        noise_margin = parse_fraction(margin)
    except (FilterError, ValueError) as exc:
        _fail(str(exc))
    results_a = _load_results(run_a)
    results_b = results_a if run_b is None else _load_results(run_b)  # same list: one run
    name_a = f"{run_a}" + (f" ({filter_a})" if a else "")
    name_b = f"{run_b or run_a}" + (f" ({filter_b})" if b else "")
    try:
        result = compare_results(results_a, results_b, a_filter=filter_a, b_filter=filter_b,
                                 only=filter_only, a_name=name_a, b_name=name_b,
                                 margin=noise_margin)
    except CompareError as exc:
        _fail(str(exc))
    text = to_markdown(result) if output == "md" else to_json(result)
    console.print(text, markup=False, highlight=False)
    if threshold is not None:
        slower = regressions(result, threshold)
        if slower:
            err.print(f"{len(slower)} case(s) slower than A by more than {threshold:.0%} "
                      "(95% CI above the threshold)", highlight=False)
            raise typer.Exit(1)


cache_app = typer.Typer(help="The artefact cache ($INFERSWEEP_CACHE): exports, compiled kernels, "
                             "references, peaks.")
app.add_typer(cache_app, name="cache")


@cache_app.command("list")
def cache_list():
    """List cached artefacts with their keys and sizes."""
    from infersweep.artefacts.cache import cache_root, entries

    table = Table(title=str(cache_root()))
    for col in ("kind", "key", "MB"):
        table.add_column(col)
    found = entries()
    for e in found:
        key = ", ".join(f"{k}={v}" for k, v in e["key"].items() if k not in ("torch",))
        table.add_row(e["kind"], key, f"{e['bytes'] / 2**20:.1f}")
    console.print(table)
    console.print(f"{len(found)} entries, {sum(e['bytes'] for e in found) / 2**20:.1f} MB "
                  "(Inductor/Triton kernel caches not listed)")


@cache_app.command("clear")
def cache_clear(kind: Annotated[Optional[str], typer.Option(
        "--kind", help="only this kind: onnx, reference, inductor, triton")] = None):
    """Delete cached artefacts (everything, or one kind)."""
    from infersweep.artefacts.cache import CacheError, cache_root, clear

    try:
        freed = clear(kind)
    except CacheError as exc:
        _fail(str(exc))
    console.print(f"cleared {kind or 'everything'} in {cache_root()}: {freed / 2**20:.1f} MB freed")


@app.command()
def env():
    """Print the hardware and software this machine would measure with."""
    from infersweep.env import collect, describe

    from infersweep.backends import registry

    facts = collect()
    table = Table(show_header=False)
    for label, value in describe(facts):
        table.add_row(label, str(value))
    for name, backend in registry().items():
        devices = [d for d in backend.devices if d == "cpu" or facts["gpus"]]
        usable = [d for d in devices if backend.available(d) is None]
        reasons = {backend.available(d) for d in backend.devices if backend.available(d)}
        state = f"available on {', '.join(usable)}" if usable else "not available"
        if reasons:
            state += f" ({'; '.join(sorted(reasons))})"
        table.add_row(f"backend {name}", state)
    console.print(table)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
