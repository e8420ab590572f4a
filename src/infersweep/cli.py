"""The `infersweep` command: run, plan, report, compare, recommend, peak, cache, env.

Bad input of any kind ends with one message on stderr and exit code 2, before any case runs.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from infersweep.flags import (Baseline, Force, Fresh, Only, RetryFailed, SweepArgs, only_filter,
                              with_sweep_flags)
from infersweep.grid.filters import view_name
from infersweep.grid.plan import RUN, expand, make_plan, time_estimate
from infersweep.grid.preflight import check_inputs, prepare_out
from infersweep.grid.spec import SpecError
from infersweep.cli_answers import compare, recommend
from infersweep.cli_answers import load_run_or_exit as _load_run
from infersweep.terminal import TerminalObserver, console, err, fail as _fail, time_line

# rich_markup_mode "markdown": help text has no "[...]" markup to escape, and a docstring's single
# line breaks join into one paragraph that rich wraps at the terminal's width; "rich" kept every
# source line break, so a wide terminal showed sentences broken mid-way.
app = typer.Typer(add_completion=False, no_args_is_help=False, rich_markup_mode="markdown",
                  help="Sweep vision-model inference over runtimes, precisions, batch and image "
                       "sizes; measure each case honestly; never lose a result.")


def _print_version(wanted: bool) -> None:
    if wanted:
        from infersweep import __version__

        console.print(f"infersweep {__version__}")
        raise typer.Exit()


@app.callback()
def _main(ctx: typer.Context, version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="print the version and exit")] = False):
    if ctx.invoked_subcommand != "cache":  # `cache clear` must leave the cache empty
        from infersweep.artefacts.cache import cache_root
        from infersweep.run.bytecode_cache import PycacheSettingError, use_in_this_process

        # Where Python keeps no bytecode, what this process imports from here on (torch for the
        # dry runs, matplotlib for the plots) and the processes it starts compile each module
        # once, not at every start (run/bytecode_cache.py).
        try:
            use_in_this_process(cache_root())
        except PycacheSettingError as exc:
            _fail(str(exc))


def _stored_statuses(out_dir: Path, quick: bool, retry_failed: bool = False
                     ) -> tuple[dict[str, str], dict[str, str]]:
    """(finished, every stored status) of an existing run directory, read without writing."""
    from infersweep.results.store import Store

    if not (out_dir / "results.sqlite").is_file():
        return {}, {}
    store = Store(out_dir / "results.sqlite", readonly=True)
    try:
        return store.finished(retry_failed, quick), store.statuses()
    finally:
        store.close()


def _explicit_out(sweep: SweepArgs) -> Path | None:
    """--out, or the sweep file's out: known without validating the sweep (nothing heavy)."""
    out = sweep.raw().get("out")
    return Path(str(out)) if out not in (None, "") else None


@app.command()
@with_sweep_flags()
def run(sweep: SweepArgs, fresh: Fresh = False, retry_failed: RetryFailed = False,
        force: Force = False):
    """Run a sweep; results are stored per case and resumed on the next run with the same --out.

    Exit code: 0 when at least one case of the sweep has an ok result; 1 when none has (every
    case failed, unsupported or unavailable); 2 for bad input or a busy --out (nothing is created
    or changed); 130 when interrupted (Ctrl-C; run the same command again to resume)."""
    from infersweep.run.ray import RayUnavailable
    from infersweep.results.store import RunDirBusy, RunDirLock, StoreError, exclusive_run
    from infersweep.sweep import run_sweep

    lock = None
    try:
        # A run directory in use is refused first, before torch is imported: the refused
        # command must not take seconds of CPU from the case being measured there.
        early_out = _explicit_out(sweep)
        if early_out is not None:
            lock = RunDirLock(early_out)
            lock.acquire(create=False)
        spec, gpu = sweep.spec()
        out_dir = spec.out or spec.default_out()
        if lock is None:
            lock = RunDirLock(out_dir)
            lock.acquire(create=False)
        only = only_filter(sweep.only)
        check_inputs(spec, force)
        if only is not None:
            stored = {} if fresh else _stored_statuses(out_dir, spec.quick)[1]
            if not any(only.matches(c, stored.get(c.case_id)) for c in expand(spec)):
                _fail(f"no case of this sweep matches --only {sweep.only!r}: nothing to run "
                      "(nothing was created)")
        spec, budget_line = _fit_budget(sweep, spec, gpu, out_dir, only, fresh, retry_failed)
        out_dir = prepare_out(out_dir)
    except (SpecError, RunDirBusy, StoreError) as exc:
        if lock is not None:
            lock.release()
        _fail(str(exc))
    console.print(f"run directory: [bold]{escape(str(out_dir))}[/]")
    if budget_line:
        console.print(budget_line, highlight=False)
    observer = TerminalObserver()
    try:
        with exclusive_run(out_dir, lock):
            try:
                outcome = run_sweep(spec, out_dir, observer, fresh=fresh,
                                    retry_failed=retry_failed, gpu_present=gpu, only=only)
            finally:
                observer.close()
    except (RunDirBusy, RayUnavailable, StoreError) as exc:
        _fail(str(exc))
    except (OSError, sqlite3.Error) as exc:  # e.g. the disk under --out filled up mid-sweep
        _fail(f"cannot write results to {out_dir}: {exc}. Every case stored before this is "
              "safe in results.sqlite; free space and run the same command to resume")
    except KeyboardInterrupt:  # outside the cases (setting up, or stopping them): no summary
        console.print(f"[yellow]interrupted[/]: every case that finished is in "
                      f"{escape(str(out_dir))}/results.sqlite; run the same command again to "
                      "resume", highlight=False)
        raise typer.Exit(130)
    _finish_run(out_dir, outcome)


def _fit_budget(sweep: SweepArgs, spec, gpu: bool, out_dir: Path, only, fresh: bool,
                retry_failed: bool):
    """--budget: the spec with the timing that fits the cases this run would measure, and the
    line that says what was chosen (grid/budget.py); (spec, None) without it."""
    if sweep.budget is None:
        return spec, None
    finished, stored = ({}, {}) if fresh else \
        _stored_statuses(out_dir, spec.quick, retry_failed)
    planned = make_plan(spec, finished, gpu, only, stored)
    return sweep.fit_budget(spec, [p.case for p in planned if p.action == RUN])


def _finish_run(out_dir: Path, outcome) -> None:
    """The closing line of `run`, and its exit code (see `run`'s help)."""
    from infersweep.reports.rows import status_line

    summary = status_line(outcome.rows)
    where = escape(str(out_dir))
    split = time_line(outcome.time_split) if outcome.time_split is not None else None
    if outcome.reports_interrupted:
        console.print(f"[yellow]interrupted[/] while writing the reports: report.html and plots/ "
                      f"in {where} may be missing or out of date. Every finished case is in "
                      f"results.sqlite: rebuild the reports with `infersweep report {where}`, "
                      "or run the same command again to resume", highlight=False)
        raise typer.Exit(130)
    if outcome.interrupted:
        if split:
            console.print(split, highlight=False)
        done = summary or "no case had finished"
        console.print(f"[yellow]interrupted[/]: {done}; run the same command again to resume")
        raise typer.Exit(130)
    console.print(f"{summary}. Wrote {where}/results.csv, results.json, report.md, report.html, "
                  "plots/", highlight=False)
    if split:  # the closing line: where this session's time went
        console.print(split, highlight=False)
    if outcome.ok == 0:
        err.print(f"[bold red]no case of this sweep succeeded[/] ({summary}): the reasons are in "
                  f"{where}/report.md", highlight=False)
        raise typer.Exit(1)


@app.command()
@with_sweep_flags(executor=False)
def plan(sweep: SweepArgs, fresh: Fresh = False, retry_failed: RetryFailed = False,
         force: Force = False,
         list_models: Annotated[bool, typer.Option("--list-models",
                                                   help="list the model names and exit")] = False):
    """Print the expanded cases and what 'run' with the same flags would do with each.

    The run directory is only read: plan works on a read-only mount."""
    from infersweep.results.store import StoreError

    if list_models:
        from infersweep.artefacts.models import available_models

        console.print(" ".join(available_models()))
        return
    try:
        spec, gpu = sweep.spec()
        only = only_filter(sweep.only)
        check_inputs(spec, force)
        out_dir = spec.out or spec.default_out()
        spec, budget_line = _fit_budget(sweep, spec, gpu, out_dir, only, fresh, retry_failed)
        # read only: plan writes nothing; --fresh: run would forget the stored results first
        finished, stored = ({}, {}) if fresh else \
            _stored_statuses(out_dir, spec.quick, retry_failed)
    except (SpecError, StoreError) as exc:
        _fail(str(exc))
    planned = make_plan(spec, finished, gpu, only, stored)
    if not planned:
        _fail(f"no case of this sweep matches --only {sweep.only!r}")
    table = Table(title=Text(f"plan for {out_dir}"))
    scoped = spec.scopes != ("compute",)  # else every row would say compute
    for col in ("case_id", "backend", "device", "precision", "size", "batch", "data") + \
            ("scope",) * scoped + ("action", "reason"):
        table.add_column(col)
    for p in planned:
        c = p.case
        # Text: reasons quote install lines ('infersweep[openvino]') that markup would eat
        table.add_row(c.case_id, c.backend, c.device, c.precision, str(c.image_size),
                      str(c.batch_size), Text(c.data), *(c.scope,) * scoped, p.action,
                      Text(p.reason))
    console.print(table)
    to_run = [p.case for p in planned if p.action == RUN]
    console.print(f"{len(planned)} cases, {len(to_run)} to run")
    console.print(budget_line or time_estimate(to_run, spec.quick), highlight=False)



@app.command()
def report(out_dir: Annotated[Path, typer.Argument(help="a run directory")],
           baseline: Baseline = None, only: Only = None,
           to: Annotated[Optional[Path], typer.Option(
               "--to", help="write the outputs to this folder; DIR is only read (default: DIR "
                            "itself, or DIR/views/FILTER/ with --only)")] = None,
           formats: Annotated[Optional[str], typer.Option(
               "--format", help="which outputs to rewrite, comma-separated: md, csv, json, html, "
                                "plots (html draws the plots it embeds) [all]")] = None):
    """Regenerate the output files of DIR from DIR/results.sqlite.

    --only writes a view of the matching cases to DIR/views/FILTER/ (or --to), never over DIR's
    own full outputs; a filter that matches no case writes nothing (exit 2). A read-only DIR needs
    --to."""
    from infersweep.backends import registry
    from infersweep.grid.filters import select
    from infersweep.reports.formats import FORMATS, files_written
    from infersweep.sweep import rebuild_reports

    chosen = tuple(dict.fromkeys(f.strip().lower() for f in (formats or "").split(",")
                                 if f.strip())) or FORMATS
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown:
        _fail(f"unknown --format {', '.join(unknown)}; allowed: {', '.join(FORMATS)}")
    try:
        only_rows = only_filter(only)
    except SpecError as exc:
        _fail(str(exc))
    stored_run = _load_run(out_dir)
    backends = {**registry(), **{r.case.backend: None for r in stored_run.results
                                if r.case.backend not in registry()}}
    if baseline is not None:
        from infersweep.grid.baseline import BaselineError, parse_baseline

        try:
            baseline = str(parse_baseline(baseline, backends))
        except BaselineError as exc:
            _fail(str(exc))
    shown = select(stored_run.results, only_rows)
    if only_rows is not None and not shown:
        _fail(f"no case in {out_dir} matches --only {only!r}: nothing written")
    target = to or (out_dir / "views" / view_name(only_rows) if only_rows else out_dir)
    if not _writable(target):
        _fail(f"cannot write the reports to {target}: it is read-only; write them elsewhere "
              "with --to DIR")
    try:
        target.mkdir(parents=True, exist_ok=True)
        rows = rebuild_reports(stored_run, target, baseline, only_rows, chosen)
    except OSError as exc:
        _fail(f"cannot write the reports to {target}: {exc.strerror or exc}")
    view = f" (a view of {len(shown)} of {len(stored_run.results)} cases; the run's own " \
        "reports are unchanged)" if only_rows and target != out_dir else ""
    console.print(f"{len(rows)} cases. Wrote {target}/: {', '.join(files_written(chosen))}{view}",
                  highlight=False)


def _writable(folder: Path) -> bool:
    """Whether files can be created in ``folder`` (or, where it does not exist yet, in the
    nearest folder above it that does); a read-only mount says no even to root."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return existing.is_dir() and os.access(existing, os.W_OK)


@app.command()
def peak(devices: Annotated[str, typer.Option("--devices", help="cpu,cuda")] = "cpu",
         precisions: Annotated[str, typer.Option("--precisions", help="fp32,fp16,bf16")] = "fp32",
         remeasure: Annotated[bool, typer.Option(
             "--remeasure", help="measure even where a table value or a cached one exists")] = False):
    """Peak TFLOP/s of this machine per device and precision: the basis of utilization_pct.

    Measured with a large matrix product and cached; known GPUs from a datasheet table."""
    from infersweep.env import collect, gpu_count
    from infersweep.probes.peaks import MATMUL_DTYPE, peak_for

    env_facts = collect()
    table = Table()
    for col in ("device", "precision", "TFLOP/s", "source"):
        table.add_column(col)
    for device in [d.strip() for d in devices.split(",") if d.strip()]:
        if device not in ("cpu", "cuda"):
            _fail(f"unknown device {device!r}; allowed: cpu, cuda")
        if device == "cuda" and not gpu_count():
            _fail("no CUDA GPU is visible on this machine")
        for precision in [p.strip() for p in precisions.split(",") if p.strip()]:
            if precision not in MATMUL_DTYPE:
                _fail(f"unknown precision {precision!r}; allowed: {', '.join(MATMUL_DTYPE)}")
            found = peak_for(device, precision, env_facts, remeasure=remeasure)
            table.add_row(device, precision, f"{found['tflops']:g}" if found else "unknown",
                          found["source"] if found else "measurement failed")
    console.print(table)


app.command()(compare)
app.command()(recommend)


cache_app = typer.Typer(rich_markup_mode="markdown",
                        help="The artefact cache ($INFERSWEEP_CACHE): exports, compiled kernels, "
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
    from infersweep.backends import registry
    from infersweep.env import collect, describe, gpu_count

    facts = collect()
    gpu_present = gpu_count() > 0
    table = Table(show_header=False)
    for label, value in describe(facts):  # Text: install lines ('infersweep[gpu]') stay whole
        table.add_row(label, Text(str(value)))
    for name, backend in registry().items():
        devices = [d for d in backend.devices if d == "cpu" or gpu_present]
        usable = [d for d in devices if backend.available(d) is None]
        reasons = {backend.available(d) for d in backend.devices if backend.available(d)}
        state = f"available on {', '.join(usable)}" if usable else "not available"
        if reasons:
            state += f" ({'; '.join(sorted(reasons))})"
        table.add_row(f"backend {name}", Text(state))
    console.print(table)


def _click_errors() -> tuple[type, type]:
    """click's UsageError and ClickException as typer raises them (newer typer vendors click as
    typer._click): found through typer.BadParameter, public in every version, which derives
    from both."""
    bases = {cls.__name__: cls for cls in typer.BadParameter.__mro__}
    return bases["UsageError"], bases["ClickException"]


def main() -> None:
    usage_error, click_error = _click_errors()
    try:
        code = app(standalone_mode=False)  # returns typer.Exit's code; click errors propagate
    except usage_error as exc:  # argument-parser errors too: one line, exit 2, like any bad input
        hint = f" (see {exc.ctx.command_path} --help)" if exc.ctx else ""
        err.print(f"[bold red]error:[/] {escape(exc.format_message() + hint)}", highlight=False)
        sys.exit(exc.exit_code)
    except click_error as exc:
        err.print(f"[bold red]error:[/] {escape(exc.format_message())}", highlight=False)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
