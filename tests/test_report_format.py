"""The report-format registry: a format from test code alone reaches `infersweep report`, and a
declared column reaches the report.md and report.html tables without editing a report module."""

import csv
import os

import pytest
from conftest import cli

from infersweep.case import Case
from infersweep.probes.base import Column
from infersweep.reports import formats
from infersweep.reports.formats import write_reports
from infersweep.results import result as resultmod
from infersweep.results.result import Result
from infersweep.results.store import Store

ENV = {"host": "h", "cpu": "Test CPU", "cores_usable": 2, "cores_logical": 2, "memory_gib": 1.0,
       "os": "linux", "python": "3.11", "packages": {}, "gpus": []}
TOY_ENV = {**os.environ, "INFERSWEEP_PLUGINS": "toy_format"}


def _ok(backend: str, batch: int, median: float) -> Result:
    case = Case("resnet18", "random(seed=0)", backend, "cpu", "fp32", 224, batch, "synthetic")
    return Result(case, "ok", samples_ms=[median] * 10, gflops_per_image=3.63)


def _results() -> list[Result]:
    return [_ok("torch", 8, 100.0), _ok("onnxruntime", 8, 50.0), _ok("onnxruntime", 1, 10.0)]


@pytest.fixture
def run_dir(tmp_path):
    store = Store(tmp_path / "results.sqlite")
    for r in _results():
        store.put(r)
    store.set_meta("env", ENV)
    store.close()
    return tmp_path


def _toy_lines(run_dir) -> dict[str, str]:
    lines = (run_dir / "toy.txt").read_text().splitlines()
    assert lines[0] == f"toy report of {run_dir.name}"
    return {line.split()[0]: line for line in lines[1:]}


def test_toy_format_through_the_cli(run_dir):
    proc = cli("report", run_dir, "--format", "toy", env=TOY_ENV)
    assert proc.returncode == 0, proc.stderr
    assert "toy.txt" in proc.stdout
    # Only what was asked for: no built-in report was written.
    assert sorted(p.name for p in run_dir.iterdir() if p.name != "results.sqlite") == ["toy.txt"]
    rows = _toy_lines(run_dir)
    assert set(rows) == {r.case.case_id for r in _results()}
    onnx8 = next(line for line in rows.values() if "onnxruntime bs8" in line)
    assert onnx8.endswith(" ok 2.0")  # the rows it gets carry the speedups

    (run_dir / "toy.txt").unlink()
    proc = cli("report", run_dir, env=TOY_ENV)  # every format, the plugin's among them
    assert proc.returncode == 0, proc.stderr
    assert len(_toy_lines(run_dir)) == 3
    for name in ("report.md", "results.csv", "results.json", "report.html"):
        assert (run_dir / name).is_file(), name

    # Without the plugin the format does not exist.
    proc = cli("report", run_dir, "--format", "toy")
    assert proc.returncode == 2 and "unknown --format toy" in proc.stderr


def test_registry_lists_plugins_after_the_builtins(monkeypatch):
    assert formats.format_names() == ("md", "csv", "json", "html", "plots")
    monkeypatch.setenv("INFERSWEEP_PLUGINS", "toy_format")
    assert formats.format_names() == ("md", "csv", "json", "html", "plots", "toy")
    assert formats.FORMATS == formats.format_names()
    assert formats.files_written(["toy", "html"]) == ["toy.txt", "report.html", "plots/"]


def test_visual_formats_only_when_asked(tmp_path):
    write_reports(tmp_path, _results(), ENV, "torch")
    assert not (tmp_path / "report.html").exists() and not (tmp_path / "plots").exists()
    assert (tmp_path / "report.md").is_file()
    write_reports(tmp_path, _results(), ENV, "torch", visuals=True, formats=["plots"])
    assert list((tmp_path / "plots").glob("*.png")) and not (tmp_path / "report.html").exists()


def test_a_declared_column_reaches_every_table(tmp_path, monkeypatch):
    """A column appended to the declarations (as a probe's would be) shows up in results.csv,
    report.md and report.html with its title, unit and format: no report module edited."""
    declared = resultmod.columns()
    monkeypatch.setattr(resultmod, "columns",
                        lambda: declared + [Column("toy_ms", "toy (ms)", ".2f", " ms")])
    plain_row = Result.row
    monkeypatch.setattr(Result, "row", lambda self: {**plain_row(self), "toy_ms": 4.25})
    write_reports(tmp_path, _results(), ENV, "torch", visuals=True, formats=["md", "csv", "html"])

    md = (tmp_path / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| backend | data |"))
    titles = [t.strip() for t in header.strip("|").split("|")]
    assert titles[-2:] == ["toy", "status"]  # declared order, before the status
    assert md.count("| 4.25 ms | ok |") == 3

    html = (tmp_path / "report.html").read_text()
    assert '<th data-type="num">toy (ms)</th>' in html
    assert html.count('<td class="num" data-sort="4.25">4.25</td>') == 3

    with open(tmp_path / "results.csv") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames[-1] == "toy_ms"
        assert [r["toy_ms"] for r in reader] == ["4.25"] * 3


def test_hidden_column_stays_out_of_the_tables(tmp_path, monkeypatch):
    declared = resultmod.columns()
    monkeypatch.setattr(resultmod, "columns", lambda: declared + [
        Column("toy_secret", "toy secret", ".2f", in_table=False)])
    plain_row = Result.row
    monkeypatch.setattr(Result, "row", lambda self: {**plain_row(self), "toy_secret": 7.5})
    write_reports(tmp_path, _results(), ENV, "torch", visuals=True, formats=["md", "html", "csv"])
    assert "toy secret" not in (tmp_path / "report.md").read_text()
    assert "toy secret" not in (tmp_path / "report.html").read_text()
    assert "toy_secret" in (tmp_path / "results.csv").read_text().splitlines()[0]
