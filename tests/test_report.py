"""Derived outputs: speedup against the right baseline row, columns, atomic rewrites."""

import csv
import json
import re
from pathlib import Path

import pytest

from infersweep.case import Case
from infersweep.reports.formats import write_reports
from infersweep.reports.rows import rows_with_speedup
from infersweep.results.result import CSV_COLUMNS, Result

ENV = {"host": "h", "cpu": "c", "cores_usable": 2, "cores_logical": 2, "memory_gib": 1.0,
       "os": "linux", "python": "3", "packages": {}, "gpus": []}


def _ok(backend, batch, median, size=224, precision="fp32"):
    case = Case("resnet18", "random(seed=0)", backend, "cpu", precision, size, batch, "synthetic")
    return Result(case, "ok", samples_ms=[median] * 9 + [median * 1.1], gflops_per_image=3.63)


def test_speedup_is_relative_to_baseline_at_same_shape():
    results = [_ok("onnxruntime", 8, 50.0), _ok("torch", 8, 100.0), _ok("torch", 1, 20.0),
               _ok("onnxruntime", 1, 10.0), _ok("onnxruntime", 32, 100.0)]
    rows = {(r["backend"], r["batch_size"]): r for r in rows_with_speedup(results, "torch")}
    assert rows[("onnxruntime", 8)]["speedup"] == 2.0
    assert rows[("onnxruntime", 1)]["speedup"] == 2.0
    assert rows[("torch", 8)]["speedup"] == 1.0
    assert rows[("onnxruntime", 8)]["baseline"] == "torch"
    # No torch row at batch 32: no speedup, rather than one relative to some other row.
    assert rows[("onnxruntime", 32)]["speedup"] is None
    assert rows[("onnxruntime", 32)]["baseline"] is None


def test_speedup_never_crosses_precision_or_size():
    results = [_ok("torch", 8, 100.0, size=224), _ok("onnxruntime", 8, 50.0, size=256),
               _ok("onnxruntime", 8, 50.0, precision="fp16")]
    rows = rows_with_speedup(results, "torch")
    assert [r["speedup"] for r in rows if r["backend"] == "onnxruntime"] == [None, None]


def test_failed_baseline_gives_no_speedup():
    case = Case("resnet18", "random(seed=0)", "torch", "cpu", "fp32", 224, 8, "synthetic")
    rows = rows_with_speedup([Result(case, "crashed", reason="SIGSEGV"),
                              _ok("onnxruntime", 8, 50.0)], "torch")
    assert all(r["speedup"] is None for r in rows)


def test_derived_figures():
    row = _ok("torch", 8, 100.0).row()
    assert row["latency_ms_median"] == 100.0
    assert row["per_image_ms"] == 12.5
    assert row["throughput_ips"] == 80.0
    assert abs(row["achieved_tflops"] - 3.63 * 8 / 100.0) < 1e-12  # GFLOP / ms = TFLOP/s
    assert row["iterations"] == 10


def test_written_files(tmp_path):
    results = [_ok("torch", 8, 100.0), _ok("onnxruntime", 8, 50.0)]
    case = Case("resnet18", "random(seed=0)", "onnxruntime", "cpu", "fp32", 224, 16, "synthetic")
    results.append(Result(case, "timeout", reason="no result within --timeout 5 s"))
    write_reports(tmp_path, results, ENV, "torch")
    with open(tmp_path / "results.csv") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == CSV_COLUMNS
        rows = list(reader)
    assert len(rows) == 3
    timeout = next(r for r in rows if r["status"] == "timeout")
    assert timeout["latency_ms_median"] == "" and timeout["speedup"] == ""
    data = json.loads((tmp_path / "results.json").read_text())
    assert len(data["results"]) == 3 and data["baseline"] == "torch"
    assert len(data["results"][0]["samples_ms"]) == 10
    md = (tmp_path / "report.md").read_text()
    assert "| onnxruntime | synthetic | fp32 | cpu | (8, 3, 224, 224) |" in md
    assert "2.00x" in md
    assert "no result within --timeout 5 s" in md
    assert not list(tmp_path.glob(".*.tmp-*"))


def test_report_format_rewrites_only_what_is_asked(tmp_path):
    """`infersweep report DIR --format ...` regenerates the chosen outputs from the store."""
    from conftest import cli

    from infersweep.results.store import Store

    store = Store(tmp_path / "results.sqlite")
    for batch in (1, 8):
        store.put(_ok("torch", batch, 10.0 * batch))
        store.put(_ok("onnxruntime", batch, 5.0 * batch))
    store.set_meta("env", ENV)
    store.close()

    proc = cli("report", tmp_path, "--format", "csv,md")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("results.sqlite")) \
        == ["report.md", "results.csv"]
    with open(tmp_path / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == 4

    proc = cli("report", tmp_path, "--format", "plots")
    assert proc.returncode == 0, proc.stderr
    assert list((tmp_path / "plots").glob("*.png")) and not (tmp_path / "report.html").exists()

    proc = cli("report", tmp_path, "--format", "html")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "report.html").is_file() and not (tmp_path / "results.json").exists()

    proc = cli("report", tmp_path, "--format", "pdf")
    assert proc.returncode == 2
    assert "unknown --format pdf" in proc.stderr and "md, csv, json, html, plots" in proc.stderr


def test_utilization_above_the_measured_peak_is_explained(tmp_path):
    results = [_ok("torch", 8, 100.0)]  # 3.63 GFLOPs x 8 / 0.1 s = 0.29 TFLOP/s
    write_reports(tmp_path, results, ENV, "torch",
                  {"cpu:fp32": {"tflops": 0.1, "source": "measured"}})
    md = (tmp_path / "report.md").read_text()
    assert "290" in md and "utilisation above 100% (cpu fp32)" in md
    write_reports(tmp_path, results, ENV, "torch",
                  {"cpu:fp32": {"tflops": 10.0, "source": "measured"}})
    assert "utilisation above 100%" not in (tmp_path / "report.md").read_text()


def test_utilization_above_the_peak_is_marked_and_explained_in_html_too(tmp_path):
    from infersweep.reports.rows import above_peak_note

    results = [_ok("torch", 8, 100.0), _ok("torch", 1, 100.0)]  # 290.4% and 36.3% of 0.1
    write_reports(tmp_path, results, ENV, "torch",
                  {"cpu:fp32": {"tflops": 0.1, "source": "measured"}}, visuals=True)
    html = (tmp_path / "report.html").read_text()
    note = above_peak_note([{"device": "cpu", "precision": "fp32", "utilization_pct": 290.4}])
    assert note.startswith("utilisation above 100% (cpu fp32): the case ran faster than the "
                           "measured peak.")
    # The same explanation as report.md's, under the table, and the cell linked to it.
    assert f"- {note}" in (tmp_path / "report.md").read_text()
    assert f'<p id="above-peak" class="note">* {note}</p>' in html
    assert ('<td class="num above-peak" data-sort="290.4" title="above the measured peak: see '
            'the note under the table">290.4<a href="#above-peak">*</a></td>') in html
    assert '<td class="num" data-sort="36.3">36.3</td>' in html  # below the peak: bare
    write_reports(tmp_path, results, ENV, "torch",
                  {"cpu:fp32": {"tflops": 10.0, "source": "measured"}}, visuals=True)
    html = (tmp_path / "report.html").read_text()
    assert 'id="above-peak"' not in html and "above-peak" not in html.split("</style>")[1]


# The README's "What a run writes" and flag table, checked against what the code writes.
README = (Path(__file__).parent.parent / "README.md").read_text()


def _readme_paragraph(start: str) -> str:
    """The README's text from ``start`` to the next list item or blank line, joined to one line."""
    tail = README[README.index(start):]
    end = min(i for i in (tail.find("\n- ", 1), tail.find("\n\n")) if i > 0)
    return " ".join(tail[:end].split())


@pytest.fixture(scope="module")
def two_group_run(tmp_path_factory):
    """A real sweep of two groups of three batches; batch 2 of fault-abort crashes its worker."""
    from conftest import FAST, cli

    out = tmp_path_factory.mktemp("readme") / "run"
    proc = cli("run", "--backends", "fault-ok,fault-abort", "--batches", "1,2,3", "--sizes", 8,
               "--out", out, *FAST)
    assert "crashed" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return out, json.loads((out / "results.json").read_text())


def test_readme_names_the_keys_results_json_has(two_group_run):
    _out, data = two_group_run
    text = _readme_paragraph("- `results.csv` (the columns below) and `results.json`")
    keys, extra = text.split("keys ")[1].split(": one object per row")[0], \
        text.split("every column plus ")[1].split(" (the raw samples")[0]
    assert re.findall(r"`(\w+)`", keys) == list(data)
    row_extra = [k for k in data["results"][0] if k not in CSV_COLUMNS]
    assert re.findall(r"`(\w+)`", extra) == row_extra


def test_readme_describes_the_worker_logs_as_written(two_group_run):
    out, data = two_group_run
    first = {}
    for row in data["results"]:
        if row["batch_size"] == 1:
            first[row["backend"]] = row["case_id"]
    # One log per group, named after its first case; a crash's row names its group's log.
    assert sorted(p.name for p in (out / "logs").iterdir()) == sorted(
        f"worker-{cid}.log" for cid in first.values())
    (crashed,) = [r for r in data["results"] if r["status"] == "crashed"]
    assert crashed["info"]["log"] == str(out / "logs" / f"worker-{first['fault-abort']}.log")
    assert _readme_paragraph("- `env.json` and `logs/") == (
        "- `env.json` and `logs/worker-<case_id>.log`: one log per group of cases (cases that "
        "differ only in batch size share a worker and a prepared model), named after the group's "
        "first case; it holds the stdout/stderr of every worker of that group, appended when a "
        "worker is restarted after a crash, and a failed case's traceback.")


def test_readme_states_the_quick_settings_the_code_uses():
    from infersweep.grid.spec import QUICK_SETTINGS as q

    assert (f"| `--quick` | | exploring: ±{q['target_ci']:.0%} target; timed phase "
            f"{q['min_time_s']:g}–{q['max_time_s']:g} s and at least {q['min_iterations']} runs, "
            f"warmup {q['min_time_s']:g}–{q['warmup_max_s']:g} s per case (preparation such as "
            "exports and "
            "compiles comes on top; measurement flags given with it win); rows are marked quick "
            "and never count as done for a full run |") in README.splitlines()


def test_readme_says_what_plans_estimate_leaves_out(two_group_run):
    from conftest import FAST, cli

    from infersweep.results.history import wall_times

    out, data = two_group_run
    proc = cli("plan", "--backends", "fault-ok,fault-abort", "--batches", "1,2,3", "--sizes", 8,
               "--out", out.parent / "again", *FAST)
    # The estimate is the sum of the cases' latest wall times, nothing more ...
    total = sum(wall_times()[r["case_id"]] for r in data["results"])
    assert proc.stdout.splitlines()[-1] == f"estimated time: {total / 60:.1f} min from earlier runs"
    # ... and the README says so.
    line = README.index("infersweep plan [SWEEP.toml] [flags]")
    assert " ".join(README[line:README.index("infersweep report DIR")].split()) == (
        "infersweep plan [SWEEP.toml] [flags] every case and what will happen to it, and a time "
        "estimate (the cases' wall times in earlier runs; starting the workers, measuring peaks "
        "and writing the report at the end come on top, seconds that dominate a short sweep)")
