"""A report format that lives only in the tests: loaded with INFERSWEEP_PLUGINS=toy_format, it
must reach `infersweep report` without a line changed in infersweep itself."""

from infersweep.reports.formats import ReportContext, ReportFormat, atomic_write


def write_toy(ctx: ReportContext) -> None:
    lines = [f"{r['case_id']} {r['backend']} bs{r['batch_size']} {r['status']} "
             f"{r['speedup'] if r['speedup'] is not None else '-'}" for r in ctx.rows]
    atomic_write(ctx.out_dir / "toy.txt", f"toy report of {ctx.title}\n" + "\n".join(lines) + "\n")


REPORT_FORMATS = [ReportFormat("toy", ("toy.txt",), write_toy)]
