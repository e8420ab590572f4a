"""Speedup baselines matched on options, --baseline BACKEND[OPTION=VALUE], and untrusted rows
(outputs that disagree with the reference, a noise flag) kept out of speedups and rankings."""

import pytest

from conftest import FAST, cli
from infersweep.case import Case
from infersweep.grid.baseline import BaselineError, parse_baseline
from infersweep.backends import registry
from infersweep.reports.formats import write_reports
from infersweep.reports.rows import rows_with_speedup
from infersweep.reports.summary import batch_curves, fastest_configs
from infersweep.results.result import Result

ENV = {"host": "h", "cpu": "Test CPU", "cores_usable": 2, "cores_logical": 2, "memory_gib": 1.0,
       "os": "linux", "python": "3.11", "packages": {}, "gpus": []}
DISAGREE = ("outputs disagree with the fp32 reference: cosine 0.90000 < 0.9999 for fp32 "
            "(max abs err 1, top-1 agreement 50.0%)")


def _result(backend, ms, options="", batch=1, **kw):
    case = Case("resnet18", "random(seed=0)", backend, "cpu", "fp32", 64, batch, "synthetic",
                options=options)
    return Result(case, "ok", samples_ms=[ms] * 10, **kw)


def _by(rows, backend, options=""):
    (row,) = [r for r in rows if r["backend"] == backend and (r["options"] or "") == options]
    return row


TWO_TORCH = [_result("torch", 10.0, "channels_last=false"),
             _result("torch", 8.0, "channels_last=true"), _result("onnxruntime", 5.0)]


def test_one_baseline_row_names_its_options():
    rows = rows_with_speedup([_result("torch", 10.0, "channels_last=false"),
                              _result("onnxruntime", 5.0)], "torch")
    ort = _by(rows, "onnxruntime")
    assert ort["speedup"] == pytest.approx(2.0)
    assert ort["baseline"] == "torch (channels_last=false)"


def test_several_baseline_rows_leave_the_speedup_empty_with_the_reason():
    for order in (TWO_TORCH, TWO_TORCH[::-1]):  # not "whichever was stored last"
        ort = _by(rows_with_speedup(order, "torch"), "onnxruntime")
        assert ort["speedup"] is None
        assert ort["baseline"] == ("ambiguous baseline: torch (channels_last=false), torch "
                                   "(channels_last=true); choose one with --baseline, e.g. "
                                   "'torch[channels_last=false]'")


def test_baseline_with_options_chooses_the_row():
    rows = rows_with_speedup(TWO_TORCH, "torch[channels_last=true]")
    assert _by(rows, "onnxruntime")["speedup"] == pytest.approx(8.0 / 5.0)
    assert _by(rows, "onnxruntime")["baseline"] == "torch (channels_last=true)"
    other = _by(rows, "torch", "channels_last=false")
    assert other["speedup"] == pytest.approx(0.8)
    # channels_last=1 is read as the backend reads it: true
    assert _by(rows_with_speedup(TWO_TORCH, "torch[channels_last=1]"),
               "onnxruntime")["speedup"] == pytest.approx(1.6)


@pytest.mark.parametrize("text,message", [
    ("tensorflow", "unknown baseline 'tensorflow'"),
    ("torch[colour=red]", "torch has no option 'colour'"),
    ("torch[channels_last=maybe]", "channels_last='maybe'"),
    ("torch[channels_last]", "is not a KEY=VALUE pair"),
    ("torch[]", "has empty [...]"),
    ("torch[channels_last=true", "is not BACKEND or BACKEND[OPTION=VALUE,...]"),
])
def test_bad_baselines_are_refused(text, message):
    with pytest.raises(BaselineError, match=message.replace("[", r"\[").replace("]", r"\]")
                       .replace(".", r"\.")):
        parse_baseline(text, registry())


def test_bad_baseline_on_the_command_line_exits_2_and_creates_nothing(tmp_path):
    out = tmp_path / "run"
    done = cli("run", "--backends", "fault-ok", "--sizes", "8", "--batches", "1", *FAST,
               "--baseline", "fault-ok[x=1]", "--out", out)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: baseline: fault-ok has no option 'x' (in 'fault-ok[x=1]'); known: none"]
    assert not out.exists()


def test_disagreeing_row_gets_no_speedup_serves_as_no_baseline_and_never_ranks():
    bad_torch = _result("torch", 10.0, measured={"disagrees": True}, warnings=[DISAGREE])
    fast_but_wrong = _result("onnxruntime", 1.0, batch=8, warnings=[DISAGREE])  # warning only
    ort = _result("onnxruntime", 5.0)
    rows = rows_with_speedup([bad_torch, fast_but_wrong, ort], "torch")
    assert all(r["speedup"] is None for r in rows)  # the only torch row is untrusted
    (fastest,) = fastest_configs(rows)
    assert (fastest.runtime, fastest.batch_size) == ("onnxruntime", 1)
    (curve,) = [c for c in batch_curves(rows) if c.series.backend == "onnxruntime"]
    assert curve.batches == [1]


def test_noise_flag_excludes_a_row_and_an_absent_noise_column_is_fine():
    noisy = _result("onnxruntime", 2.0)
    rows = rows_with_speedup([_result("torch", 10.0), noisy], "torch")
    assert _by(rows, "onnxruntime")["speedup"] == pytest.approx(5.0)  # no noise column: trusted
    rows = rows_with_speedup([_result("torch", 10.0), noisy], "torch")
    for r in rows:
        r["noise"] = "starved: 40% CPU" if r["backend"] == "onnxruntime" else ""
    assert [c.runtime for c in fastest_configs(rows)] == ["torch"]


def test_untrusted_rows_are_listed_with_their_figures_in_both_reports(tmp_path):
    bad = _result("onnxruntime", 2.0, measured={"disagrees": True, "cosine": 0.9},
                  warnings=[DISAGREE])
    write_reports(tmp_path, [_result("torch", 10.0), bad], ENV, "torch", visuals=True,
                  formats=("md", "html"))
    md = (tmp_path / "report.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("| onnxruntime cpu fp32 64px"))
    assert line.endswith("| ok, untrusted | untrusted, not ranked and without speedup: outputs "
                         f"disagree with the fp32 reference; warning: {DISAGREE} "
                         "| median 2.000 ms, 500.0 img/s, cosine 0.90000 |")
    html = (tmp_path / "report.html").read_text()
    failures = html[html.index('id="failures"'):]
    assert "<td>ok, untrusted</td>" in failures
    assert "median 2.000 ms, 500.0 img/s, cosine 0.90000" in failures
