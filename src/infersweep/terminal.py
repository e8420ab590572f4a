"""What a sweep prints while it runs: the plan's summary, a live progress bar with the current
case and ETA, and one line per finished case."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

from infersweep.case import Case
from infersweep.grid.plan import DONE, RUN, PlannedCase
from infersweep.measure.stats import summarize
from infersweep.results.result import Result
from infersweep.results.time_split import TimeSplit

console = Console(soft_wrap=True)  # long lines stay whole: easy to grep and paste
err = Console(stderr=True, soft_wrap=True)

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
        console.print(f"{len(plan)} cases: {to_run} to run, {done} already done, "
                      f"{skipped} unsupported/unavailable")
        for p in plan:
            if p.action not in (RUN, DONE):
                console.print(f"  [yellow]{p.action:>11}[/]  {escape(p.case.label)}: "
                              f"{escape(p.reason)}",
                              highlight=False)
        self.progress.start()
        self.task = self.progress.add_task("starting", total=to_run)

    def case_started(self, case: Case) -> None:
        self.progress.update(self.task, description=escape(case.label))

    def case_finished(self, result: Result) -> None:
        self.progress.advance(self.task)
        console.print(case_line(result), highlight=False)

    def close(self) -> None:
        self.progress.stop()


def case_line(result: Result) -> str:
    # Labels, reasons and warnings are plain text that quotes user values and install lines
    # (pip install 'infersweep[openvino]'): escaped, or rich reads "[openvino]" as a tag.
    label = escape(result.case.label)
    if result.status != "ok":
        return f"  [red]{result.status:>11}[/]  {label}: {escape(result.reason[:300])}"
    if result.case.scenario.startswith("server"):  # request latencies, not batch timings
        from infersweep.reports.scenarios import terminal_line

        return f"  [green]{'ok':>11}[/]  {label}\n{'':13}{terminal_line(result)}"
    s = summarize(result.samples_ms)
    ips = result.case.batch_size * 1000 / s.median
    line = (f"  [green]{'ok':>11}[/]  {label}\n{'':13}median [bold]{s.median:.3f} ms[/] ± {s.std:.3f}"
            f"  (min {s.min:.3f} … max {s.max:.3f})  {ips:.1f} img/s  n={s.iterations}")
    if result.warnings:
        line += f"\n{'':13}[yellow]warning:[/] {escape('; '.join(result.warnings))}"
    return line


def time_line(split: TimeSplit) -> str:
    """The run's closing line about time: where this session's wall time went."""
    per_case = split.harness_per_case_s()
    tail = f"; harness per case {per_case:.2f} s" if per_case is not None else ""
    return f"time: {split.line()}{tail}"


def fail(message: str) -> None:
    # escape: messages quote user values and commands (pip install 'infersweep[ray]') verbatim
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(2)
