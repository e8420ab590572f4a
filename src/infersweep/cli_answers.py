"""The commands that answer questions about finished runs: compare (is B faster than A?) and
recommend (what should I deploy?). cli.py registers them; bad input exits 2 as everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from infersweep.flags import Only
from infersweep.grid.filters import FilterError, check_known, parse_filter
from infersweep.terminal import console, err, fail


def load_run_or_exit(run_dir: Path):
    """The stored run of DIR (sweep.StoredRun), only read; a missing or damaged store: exit 2."""
    from infersweep.results.store import StoreError
    from infersweep.sweep import load_run

    if not (run_dir / "results.sqlite").is_file():
        fail(f"{run_dir} holds no results.sqlite (is it a run directory?)")
    try:
        return load_run(run_dir)
    except StoreError as exc:
        fail(str(exc))


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
            "--margin", help="smaller changes are run-to-run noise, not a verdict")] = "2%",
        ignore_process_noise: Annotated[bool, typer.Option(
            "--ignore-process-noise", help="let --fail-if-slower judge runs measured without "
                                           "--repeats (process-to-process noise unseen)")] = False):
    """Compare two runs (or two groups of one run) case by case, with a verdict per case.

    B/A median latency with a bootstrap 95% CI: faster, slower, or no significant difference."""
    from infersweep.reports.compare import (CompareError, parse_fraction, regressions, to_json,
                                    to_markdown)
    from infersweep.reports.compare import compare as compare_results

    if output not in ("md", "json"):
        fail(f"unknown --format {output!r}; allowed: md, json")
    if (a is None) != (b is None):
        fail("give both --a and --b, or neither")
    if run_b is None and a is None:
        fail("compare needs a second run directory, or --a and --b")
    try:
        filter_a, filter_b, filter_only = parse_filter(a), parse_filter(b), parse_filter(only)
        threshold = parse_fraction(fail_if_slower) if fail_if_slower else None
        noise_margin = parse_fraction(margin)
    except (FilterError, ValueError) as exc:
        fail(str(exc))
    results_a = load_run_or_exit(run_a).results
    results_b = results_a if run_b is None else load_run_or_exit(run_b).results  # same list: one run
    try:
        # A name no stored case has is a typo: it would select nothing and pass the gate.
        check_known(filter_a, [r.case for r in results_a], "--a")
        check_known(filter_b, [r.case for r in results_b], "--b")
        check_known(filter_only, [r.case for r in results_a + results_b], "--only")
    except FilterError as exc:
        fail(str(exc))
    name_a = f"{run_a}" + (f" ({filter_a})" if a else "")
    name_b = f"{run_b or run_a}" + (f" ({filter_b})" if b else "")
    try:
        result = compare_results(results_a, results_b, a_filter=filter_a, b_filter=filter_b,
                                 only=filter_only, a_name=name_a, b_name=name_b,
                                 margin=noise_margin)
    except CompareError as exc:
        fail(str(exc))
    single = result.single_process()
    if threshold is not None and single and not ignore_process_noise:
        fail(f"--fail-if-slower needs both runs measured with --repeats 2 or more: {len(single)} "
              "compared pair(s) come from one worker process per case, whose noise between "
              "processes would pass for a regression; re-run with --repeats 3, or add "
              "--ignore-process-noise to judge them anyway")
    disturbed = result.disturbed()
    if threshold is not None and disturbed:
        fail(f"--fail-if-slower cannot judge {len(disturbed)} pair(s) whose timing the contention "
             "guard flagged as disturbed (another process, starved or throttled): measure them "
             "again on a quiet machine, or leave them out with --only")
    text = to_markdown(result) if output == "md" else to_json(result)
    console.print(text, markup=False, highlight=False)
    if threshold is not None:
        slower = regressions(result, threshold)
        if slower:
            err.print(f"{len(slower)} case(s) slower than A by more than {threshold:.0%} "
                      "(95% CI above the threshold)", highlight=False)
            raise typer.Exit(1)


def _text(flag: str, help: str):
    return Annotated[Optional[str], typer.Option(flag, help=help)]


def recommend(run_dir: Annotated[Path, typer.Argument(help="a run directory")],
              p99_ms: _text("--p99-ms", "p99 latency of one batch at most (ms)") = None,
              max_memory_mb: _text("--max-memory-mb", "peak memory at most (MB)") = None,
              min_throughput: _text("--min-throughput", "images/s at least") = None,
              min_cosine: _text("--min-cosine", "cosine vs fp32 at least: 0.999") = None,
              min_top1: _text("--min-top1", "top-1 accuracy, or agreement with fp32 where "
                                            "the data has no labels, at least: 0.99") = None,
              device: _text("--device", "only cases on this device") = None,
              maximize: _text("--maximize", "throughput (default) or max-qps") = None,
              minimize: _text("--minimize", "p99 or energy") = None,
              emit: _text("--emit", "python: a script building the recommended configuration "
                                    "on stdout (the recommendation on stderr)") = None):
    """What to deploy: the best case of DIR meeting every constraint, and what kept the others out.

    Flags override the sweep file's [constraints]. Exit code: 0 with a recommendation, 1 when no
    case meets the constraints, 2 for bad input."""
    flags = {k: v for k, v in locals().items() if k not in ("run_dir", "emit")}
    from infersweep.grid.constraints import ConstraintError, overlay
    from infersweep.reports import emit as emitting, recommend as recommending

    try:
        overlay(None, flags)  # the flags alone first: nothing is read for a bad one
        if emit not in (None, "python"):
            raise ConstraintError(f"unknown --emit {emit!r}; allowed: python")
        stored_run = load_run_or_exit(run_dir)
        rec = recommending.recommend_run(stored_run, overlay(stored_run.spec, flags))
        snippet = emitting.snippet_for(rec.best, stored_run) if emit and rec.best else ""
    except (ConstraintError, emitting.EmitError) as exc:
        fail(str(exc))
    (err if emit else console).print(recommending.text(rec), markup=False, highlight=False)
    console.print(snippet, markup=False, highlight=False, end="")
    raise typer.Exit(0 if rec.best else 1)
