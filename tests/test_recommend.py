"""`infersweep recommend`: the best trusted case meeting every constraint, ties decided by a
stated rule, misses listed closest first, exit 1 naming the constraint that excluded most, bad
input exit 2 with nothing created; [constraints] in the sweep file (validated, outside the run
directory's hash) gives report.md and report.html a Recommendation section."""

import pytest
from typer.testing import CliRunner

from conftest import cli
from infersweep.case import Case
from infersweep.cli import app
from infersweep.grid.constraints import ConstraintError, Constraints, overlay, parse_constraints
from infersweep.grid.spec import SpecError, build_spec
from infersweep.reports.formats import write_reports
from infersweep.reports.recommend import recommend, text
from infersweep.reports.rows import report_rows
from infersweep.results.result import Result
from infersweep.results.store import Store

ENV = {"host": "h", "cpu": "Test CPU", "cores_usable": 2, "cores_logical": 2, "memory_gib": 1.0,
       "os": "linux", "python": "3.11", "packages": {}, "gpus": []}
DISAGREE = "outputs disagree with the fp32 reference: cosine 0.90000 < 0.9999 for fp32"


def _result(backend, batch, median, *, p99=None, memory=500.0, cosine=1.0, top1=1.0,
            device="cpu", status="ok", measured=None, warnings=(), precision="fp32"):
    """A result whose figures are known: throughput = batch * 1000 / median, p99 as given."""
    case = Case("resnet18", "random(seed=0)", backend, device, precision, 64, batch,
                "synthetic")
    if status != "ok":
        return Result(case, status, reason="it broke")
    tail = median if p99 is None else p99
    samples = [median] * 98 + [tail] * 2  # p99 of these = tail
    values = {"peak_memory_mb": memory, "cosine": cosine, "top1_agreement": top1,
              **(measured or {})}
    return Result(case, "ok", samples_ms=samples, measured=values, warnings=list(warnings))


# throughput (img/s), p99 (ms), memory (MB): torch bs8 200/40/500, ort bs8 400/25/900,
# ort bs1 250/4/400, openvino bs8 320/30/600; and three that never compete.
RESULTS = [
    _result("torch", 8, 40.0),
    _result("onnxruntime", 8, 20.0, p99=25.0, memory=900.0),
    _result("onnxruntime", 1, 4.0, memory=400.0),
    _result("openvino", 8, 25.0, p99=30.0, memory=600.0),
    _result("openvino", 1, 1.0, measured={"noise": "starved: waited 0.9 s per s"}),
    _result("torch", 1, 1.0, measured={"disagrees": True}, warnings=[DISAGREE]),
    _result("torch", 32, 1.0, status="crashed"),
]


def _rows(results=RESULTS):
    return report_rows(results, "torch", {})


def _label(row):
    return f"{row['backend']} bs{row['batch_size']}"


def test_best_pick_runners_up_and_untrusted_counts():
    rec = recommend(_rows(), Constraints(p99_ms=35, max_memory_mb=800))
    assert _label(rec.best) == "openvino bs8"  # ort bs8 is faster but over the memory bound
    assert [_label(r) for r in rec.runners_up] == ["onnxruntime bs1"]
    assert rec.untrusted == {"noisy measurement": 1, "outputs disagree with fp32": 1,
                             "not ok (crashed)": 1}
    # the misses, closest first: ort bs8 memory +12.5%, torch bs8 p99 +14.3%
    assert [(_label(e.row), [m.bound.flag for m in e.misses], round(e.worst, 4))
            for e in rec.excluded] == [("onnxruntime bs8", ["--max-memory-mb"], 0.125),
                                       ("torch bs8", ["--p99-ms"], round(5 / 35, 4))]
    md = text(rec)
    assert "Recommended: openvino fp32 cpu, batch 8, 64 px (resnet18): 320.0 img/s" in md
    assert "| onnxruntime fp32 cpu, batch 8, 64 px | --max-memory-mb | 900.0 MB | 800 MB " \
           "| +12.5% |" in md
    assert ("Never recommended: 1 noisy measurement, 1 not ok (crashed), 1 outputs disagree "
            "with fp32.") in md


def test_objectives_change_the_pick():
    assert _label(recommend(_rows(), Constraints()).best) == "onnxruntime bs8"
    assert _label(recommend(_rows(), Constraints(objective="p99")).best) == "onnxruntime bs1"


def test_energy_objective_reads_the_energy_column_and_skips_rows_without_it():
    results = [_result("torch", 8, 40.0, measured={"energy_j_per_image": 0.5}),
               _result("onnxruntime", 8, 20.0, measured={"energy_j_per_image": 0.8}),
               _result("openvino", 8, 10.0)]  # fastest, but no energy figure
    rec = recommend(_rows(results), Constraints(objective="energy"))
    assert _label(rec.best) == "torch bs8"
    (missing,) = rec.excluded
    assert _label(missing.row) == "openvino bs8" and missing.misses[0].value is None
    assert "| openvino fp32 cpu, batch 8, 64 px | --minimize energy | not measured |" in text(rec)


def test_max_qps_objective_picks_the_highest_searched_rate_and_skips_fixed_batch_rows():
    results = [_result("torch", 8, 40.0, measured={"max_qps": 180.0}),
               _result("onnxruntime", 8, 20.0, measured={"max_qps": 240.0}),
               _result("openvino", 8, 10.0)]  # a fixed-batch row: fastest, but no max QPS
    rec = recommend(_rows(results), Constraints(objective="max-qps"))
    assert _label(rec.best) == "onnxruntime bs8"
    assert [_label(r) for r in rec.runners_up] == ["torch bs8"]
    (missing,) = rec.excluded
    assert _label(missing.row) == "openvino bs8"
    assert "| openvino fp32 cpu, batch 8, 64 px | --maximize max-qps | not measured |" in text(rec)


def test_a_choice_from_single_process_rows_says_process_noise_is_not_accounted_for():
    single = [_result("torch", 8, 40.0), _result("onnxruntime", 8, 32.0)]  # 200 vs 250 img/s
    note = ("The best and the runner-up (they differ by 20% on the objective) were measured in "
            "one worker process each: process-to-process noise is not accounted for")
    assert note in text(recommend(_rows(single), Constraints()))
    repeated = [_result("torch", 8, 40.0), _result("onnxruntime", 8, 32.0)]
    for result in repeated:
        result.process_medians_ms = [result.samples_ms[0]] * 3  # three worker processes each
    assert "process-to-process" not in text(recommend(_rows(repeated), Constraints()))


def test_a_host_bound_row_among_the_two_is_named_in_the_process_noise_note():
    """A GPU that waited for the host much of the timed loop makes a median that follows the
    launching thread, which moves between processes (2.3x for a hand-written loop on the H200):
    the note says which of the two rows that is, and stays silent where both kept the GPU busy."""
    def gpu(backend, median, busy):
        return _result(backend, 8, median, device="cuda", measured={"gpu_busy_pct": busy})

    host_bound = text(recommend(_rows([gpu("torch", 4.0, 45.0), gpu("onnxruntime", 3.2, 97.0)]),
                                Constraints()))
    assert ("torch fp32 cuda, batch 8, 64 px was host-bound (the GPU busy 45% of its timed "
            "loop): its median follows the host thread that launches the work, which moves "
            "between processes") in host_bound
    assert "onnxruntime fp32 cuda, batch 8, 64 px was host-bound" not in host_bound
    busy = text(recommend(_rows([gpu("torch", 4.0, 92.0), gpu("onnxruntime", 3.2, 97.0)]),
                          Constraints()))
    assert "process-to-process noise is not accounted for" in busy
    assert "host-bound" not in busy


def test_overlapping_intervals_name_the_remedy_the_rows_have_not_used_yet():
    def spread(backend, centre, processes=()):
        case = Case("resnet18", "random(seed=0)", backend, "cpu", "fp32", 64, 8, "synthetic")
        samples = [centre + d for d in (-4.0, -2.0, 0.0, 2.0, 4.0)] * 20
        return Result(case, "ok", samples_ms=samples, process_medians_ms=list(processes),
                      measured={"peak_memory_mb": 500.0, "cosine": 1.0, "top1_agreement": 1.0})

    single = text(recommend(_rows([spread("torch", 40.0), spread("onnxruntime", 40.5)]),
                            Constraints()))
    assert "do not separate the two (process repeats, --repeats 3, might)" in single
    repeated = text(recommend(_rows([spread("torch", 40.0, (36.0, 40.0, 44.0)),
                                     spread("onnxruntime", 40.5, (36.5, 40.5, 44.5))]),
                              Constraints()))
    assert "do not separate the two (3 worker processes each: more repeats" in repeated


def test_tie_on_the_objective_is_decided_by_p99_and_said():
    results = [_result("torch", 8, 40.0, p99=50.0), _result("onnxruntime", 8, 40.0, p99=45.0)]
    for order in (results, results[::-1]):
        rec = recommend(_rows(order), Constraints())
        assert _label(rec.best) == "onnxruntime bs8"
    assert ("Tie on throughput with torch fp32 cpu, batch 8, 64 px: decided by lower p99 "
            "latency") in text(rec)


def test_full_tie_falls_back_to_names_and_is_deterministic():
    results = [_result("torch", 8, 40.0), _result("onnxruntime", 8, 40.0)]
    picks = {_label(recommend(_rows(o), Constraints()).best) for o in (results, results[::-1])}
    assert picks == {"onnxruntime bs8"}
    assert "decided by backend, options and case id in alphabetical order" in \
        text(recommend(_rows(results), Constraints()))


def test_min_top1_uses_accuracy_where_there_is_one_and_says_so():
    results = [_result("torch", 8, 40.0, top1=1.0, measured={"top1_accuracy": 0.7}),
               _result("onnxruntime", 8, 50.0, top1=0.95)]
    rec = recommend(_rows(results), Constraints(min_top1=0.9))
    assert _label(rec.best) == "onnxruntime bs8"  # torch agrees 100% but its accuracy is 0.7
    assert rec.top1_sources == {"top-1 accuracy": 1, "top-1 agreement": 1}
    assert "--min-top1 checked against top-1 accuracy for 1 case(s), top-1 agreement for 1 " \
           "case(s)" in text(rec)


def test_nothing_meets_names_the_constraint_that_excluded_most():
    rec = recommend(_rows(), Constraints(p99_ms=3, min_throughput=300))
    assert rec.best is None
    # p99 <= 3 ms breaks all four trusted cases, >= 300 img/s two of them
    assert rec.excluded_by() == {"--p99-ms": 4, "--min-throughput": 2}
    assert "No case meets every constraint. --p99-ms excluded most: 4 of 4 case(s)." in text(rec)


def test_device_constraint_leaves_other_devices_out():
    results = [_result("torch", 8, 40.0), _result("torch", 8, 4.0, device="cuda")]
    rec = recommend(_rows(results), Constraints(device="cpu"))
    assert rec.best["device"] == "cpu" and rec.other_devices == 1


@pytest.mark.parametrize("raw, message", [
    ({"p99_ms": "-5"}, "--p99-ms: '-5' must be a number > 0"),
    ({"max_memory_mb": "0"}, "--max-memory-mb: '0' must be a number > 0"),
    ({"min_throughput": "fast"}, "--min-throughput: 'fast' is not a number"),
    ({"min_top1": "99"}, "--min-top1: '99' must be a fraction from 0 to 1 (e.g. 0.99 or 99%)"),
    ({"min_cosine": "nan"}, "--min-cosine: 'nan' must be a fraction from -1 to 1"),
    ({"maximize": "p99"}, "--maximize: unknown objective 'p99'; allowed: throughput"),
    ({"minimize": "latency"}, "--minimize: unknown objective 'latency'; allowed: p99, energy"),
    ({"maximize": "throughput", "minimize": "p99"}, "give --maximize or --minimize, not both"),
    ({"colour": "red"}, "unknown constraint(s) colour"),
])
def test_bad_constraints_name_the_value(raw, message):
    with pytest.raises(ConstraintError) as caught:
        parse_constraints(raw, flags=True)
    assert str(caught.value).startswith(message)


def test_percent_and_overlay_of_flags_over_the_file():
    assert parse_constraints({"min_top1": "99%"}).min_top1 == pytest.approx(0.99)
    spec = {"constraints": Constraints(p99_ms=20, max_memory_mb=900, objective="p99").to_dict()}
    merged = overlay(spec, {"p99_ms": "30", "maximize": "throughput", "min_cosine": None})
    assert merged == Constraints(p99_ms=30, max_memory_mb=900, objective="throughput")
    assert overlay(spec, {}) == Constraints(p99_ms=20, max_memory_mb=900, objective="p99")


@pytest.fixture
def run_dir(tmp_path):
    (tmp_path / "run").mkdir()
    store = Store(tmp_path / "run" / "results.sqlite")
    for r in RESULTS:
        store.put(r)
    store.set_meta("env", ENV)
    store.set_meta("spec", {"baseline": "torch",
                            "constraints": Constraints(max_memory_mb=800).to_dict()})
    store.close()
    return tmp_path / "run"


def test_cli_recommends_with_the_files_constraints_and_flags(run_dir):
    """The real command: the run's [constraints] (memory) with a flag laid over them."""
    before = sorted(p.name for p in run_dir.iterdir())
    done = cli("recommend", run_dir, "--p99-ms", "35")
    assert done.returncode == 0, done.stderr
    assert "Recommended: openvino fp32 cpu, batch 8, 64 px (resnet18)" in done.stdout
    assert "peak memory <= 800 MB (--max-memory-mb)" in done.stdout
    assert sorted(p.name for p in run_dir.iterdir()) == before  # only read


def test_cli_bad_input_exits_2_with_one_line_and_creates_nothing(tmp_path, run_dir):
    missing = tmp_path / "nothere"
    done = cli("recommend", missing)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "nothere holds no results.sqlite" in done.stderr and not missing.exists()
    runner = CliRunner()
    for args, message in ((["--p99-ms", "-1"], "--p99-ms: '-1' must be a number > 0"),
                          (["--minimize", "cost"], "unknown objective 'cost'"),
                          (["--device", "cuda"], "--device cuda: no case of this run ran on it"),
                          (["--emit", "rust"], "unknown --emit 'rust'; allowed: python")):
        result = runner.invoke(app, ["recommend", str(run_dir), *args])
        assert result.exit_code == 2 and message in result.output, (args, result.output)


def test_cli_exit_1_when_nothing_meets(run_dir):
    result = CliRunner().invoke(app, ["recommend", str(run_dir), "--min-throughput", "1000"])
    assert result.exit_code == 1
    assert "--min-throughput excluded most: 4 of 4 case(s)" in result.output


def test_constraints_in_the_sweep_file_are_validated_and_change_no_run_directory():
    plain = build_spec({"backends": "torch"})
    constrained = build_spec({"backends": "torch",
                              "constraints": {"p99_ms": 20, "minimize": "p99", "device": "cpu"}})
    assert constrained.constraints == Constraints(p99_ms=20, device="cpu", objective="p99")
    assert constrained.default_out() == plain.default_out()
    for bad, message in (({"p99_ms": -1}, "constraints.p99_ms: -1 must be a number > 0"),
                         ({"device": "tpu"}, "constraints.device: unknown device 'tpu'"),
                         ({"speed": 1}, "unknown constraint(s) speed"),
                         ("fast", "constraints: 'fast' is not a table")):
        with pytest.raises(SpecError) as caught:
            build_spec({"constraints": bad})
        assert str(caught.value).startswith(message), str(caught.value)


def test_reports_carry_the_recommendation_and_the_pareto_front(tmp_path):
    write_reports(tmp_path, RESULTS, ENV, "torch", visuals=True,
                  constraints=Constraints(p99_ms=35, max_memory_mb=800))
    md = (tmp_path / "report.md").read_text()
    section = md[md.index("## Recommendation"):md.index("## Pareto front")]
    assert "Recommended: openvino fp32 cpu, batch 8, 64 px (resnet18): 320.0 img/s" in section
    front = md[md.index("## Pareto front"):md.index("## Environment")]
    # ort bs1 (250 img/s, p99 4 ms) and ort bs8 (400 img/s, 25 ms) beat the other two
    assert "### cpu, resnet18, 64 px: 2 of 4 cases on the front" in front
    html = (tmp_path / "report.html").read_text()
    assert '<section id="recommendation"><h2>Recommendation</h2>' in html
    assert "Recommended: openvino fp32 cpu, batch 8, 64 px (resnet18): 320.0 img/s" in html
    assert 'id="plot-pareto"' in html and (tmp_path / "plots" / "pareto.svg").is_file()
    write_reports(tmp_path, RESULTS, ENV, "torch")  # no [constraints]: no Recommendation
    assert "## Recommendation" not in (tmp_path / "report.md").read_text()
