"""Issue 18: runtime knobs as grid axes. Options take several values ("1|2|4" or a TOML list),
each value its own case; a bad knob or value (even one of several) is exit 2 naming it; each
backend's knobs really reach the runtime (read back from the session)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import cli
from infersweep.backends import get_backend
from infersweep.case import Case, parse_options
from infersweep.grid.plan import expand
from infersweep.grid.spec import SpecError, build_spec


def _options(spec, backend: str) -> list[str]:
    return list(dict.fromkeys(c.options for c in expand(spec) if c.backend == backend))


def test_several_values_are_one_case_each_in_the_cartesian_product():
    spec = build_spec({"backends": "onnxruntime", "batches": "1,8", "options": {"onnxruntime": {
        "intra_op_num_threads": "1|2|4", "execution_mode": ["sequential", "parallel"]}}})
    assert _options(spec, "onnxruntime") == [
        "intra_op_num_threads=1", "execution_mode=parallel,intra_op_num_threads=1",
        "intra_op_num_threads=2", "execution_mode=parallel,intra_op_num_threads=2",
        "intra_op_num_threads=4", "execution_mode=parallel,intra_op_num_threads=4"]
    assert len(expand(spec)) == 12  # 6 combinations x 2 batches
    assert len({c.case_id for c in expand(spec)}) == 12


def test_a_toml_list_and_the_flag_spelling_are_the_same_sweep():
    listed = build_spec({"backends": "openvino", "options": {"openvino": {
        "performance_hint": ["THROUGHPUT", "LATENCY"]}}})
    flagged = build_spec({"backends": "openvino", "options": {"openvino": {
        "performance_hint": "latency|throughput"}}})  # choices match in any case
    assert expand(listed) != expand(flagged)  # the order given is the order run...
    assert sorted(expand(listed)) == sorted(expand(flagged))  # ...of the same cases
    assert listed.default_out() == flagged.default_out()
    assert listed.identity()["backend_options"] == {
        "openvino": {"performance_hint": "LATENCY|THROUGHPUT"}}


def test_single_valued_sweeps_keep_their_case_ids_and_run_directory():
    """New knobs at their default are left out of the options string: a sweep that never
    names them has the cases (and the directory) it had before they existed."""
    spec = build_spec({"backends": "torch,onnxruntime,torch-compile,openvino", "batches": "1"})
    assert {c.backend: c.options for c in expand(spec)} == {
        "torch": "channels_last=false", "onnxruntime": "",
        "torch-compile": "channels_last=false,mode=default",
        "openvino": "performance_hint=LATENCY"}
    defaults = build_spec({"backends": "torch,onnxruntime", "options": {
        "onnxruntime": {"intra_op_num_threads": "0", "graph_optimization_level": "all"},
        "torch": {"threads": [0]}}})
    assert defaults.default_out() == build_spec({"backends": "torch,onnxruntime"}).default_out()
    # a value list that includes the default is another sweep than the default alone
    assert build_spec({"options": {"torch": {"threads": "0|1"}}}).default_out() != \
        build_spec({}).default_out()


def test_values_that_mean_nothing_on_a_device_collapse_to_one_case():
    spec = build_spec({"backends": "onnxruntime", "devices": "cpu,cuda", "batches": "1",
                       "options": {"onnxruntime": {
                           "cudnn_conv_algo_search": "EXHAUSTIVE|HEURISTIC"}}})
    assert spec.case_options["onnxruntime", "cpu"] == ("",)
    assert spec.case_options["onnxruntime", "cuda"] == (
        "cudnn_conv_algo_search=EXHAUSTIVE", "cudnn_conv_algo_search=HEURISTIC")


@pytest.mark.parametrize("options, message", [
    ({"onnxruntime": {"intra_op_num_threads": "1|x|4"}},
     "option onnxruntime.intra_op_num_threads='x': invalid literal for int() with base 10: 'x'"),
    ({"onnxruntime": {"intra_op_num_threads": "1|-2"}},
     "option onnxruntime.intra_op_num_threads='-2' must be >= 0"),
    ({"onnxruntime": {"intra_op_num_threads": "1||2"}},
     "option onnxruntime.intra_op_num_threads='1||2' has an empty value"),
    ({"onnxruntime": {"graph_optimization_level": ["all", "most"]}},
     "option onnxruntime.graph_optimization_level='most'; allowed: disable, basic, extended, all"),
    ({"openvino": {"requests": "0|2"}}, "option openvino.requests='0' must be >= 1"),
    ({"onnxruntime": {"threads": "1|2"}},
     "backend onnxruntime has no option threads (its options: cudnn_conv_algo_search, "
     "intra_op_num_threads, inter_op_num_threads, graph_optimization_level, execution_mode)"),
    ({"torch-compile": {"dynamic": [True, "maybe"]}},
     "option torch-compile.dynamic='maybe': 'maybe' is not a boolean (true/false)"),
], ids=repr)
def test_a_bad_knob_or_value_names_itself(options, message):
    with pytest.raises(SpecError) as caught:
        build_spec({"backends": "onnxruntime,openvino,torch-compile", "options": options})
    assert str(caught.value) == message


def test_a_bad_value_among_several_is_exit_2_and_creates_nothing(tmp_path):
    out = tmp_path / "run"
    done = cli("run", "--backends", "onnxruntime", "--sizes", "32", "--batches", "1",
               "--option", "onnxruntime.intra_op_num_threads=1|2|many", "--out", out)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: option onnxruntime.intra_op_num_threads='many': invalid literal for int() "
        "with base 10: 'many'"]
    assert not out.exists()


# The knobs reach the runtime: each session's settings read back.

def _case(backend: str, options: str, device: str = "cpu", precision: str = "fp32") -> Case:
    return Case(model="resnet18", weights="random(seed=0)", backend=backend, device=device,
                precision=precision, image_size=32, batch_size=2, data="synthetic",
                options=options)


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    """A tiny CNN exported to ONNX with a dynamic batch (no model cache needed)."""
    import torch

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 5)).eval()
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    torch.onnx.export(model, (torch.randn(2, 3, 32, 32),), str(path), dynamo=False,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b"}})
    return path


def test_onnxruntime_session_options_are_applied(onnx_file):
    from infersweep.backends.onnxruntime import OrtCpuSession

    backend = get_backend("onnxruntime")
    case = _case("onnxruntime", "execution_mode=parallel,graph_optimization_level=basic,"
                                "inter_op_num_threads=2,intra_op_num_threads=1")
    session = OrtCpuSession(onnx_file, {}, backend.resolved_options(case))
    assert session.info["session_options"] == {
        "intra_op_num_threads": 1, "inter_op_num_threads": 2,
        "graph_optimization_level": "ORT_ENABLE_BASIC", "execution_mode": "ORT_PARALLEL"}
    out = session.fetch(session.run(session.place(np.zeros((2, 3, 32, 32), np.float32))))
    assert out.shape == (2, 5)
    default = OrtCpuSession(onnx_file, {}, backend.resolved_options(_case("onnxruntime", "")))
    assert default.info["session_options"] == {
        "intra_op_num_threads": 0, "inter_op_num_threads": 0,
        "graph_optimization_level": "ORT_ENABLE_ALL", "execution_mode": "ORT_SEQUENTIAL"}


def test_openvino_streams_threads_and_requests_are_applied(onnx_file, tmp_path):
    pytest.importorskip("openvino")
    from infersweep.backends.openvino import OpenVinoSession

    backend = get_backend("openvino")
    case = _case("openvino", "performance_hint=THROUGHPUT,requests=3,streams=2,threads=2")
    session = OpenVinoSession(onnx_file, case, {}, tmp_path, backend.resolved_options(case))
    batch = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    placed = session.place(batch)
    session.specialize(placed)
    assert session.info["applied"] == {"NUM_STREAMS": "2", "INFERENCE_NUM_THREADS": "2"}
    assert session.info["PERFORMANCE_HINT"] == "THROUGHPUT"
    assert len(session.requests) == 3 and session.pipelines
    # round robin: four launches use requests 0, 1, 2, 0; every output is the same batch's
    outputs = [session.launch(placed) for _ in range(4)]
    assert outputs[0] is outputs[3] and len({id(o) for o in outputs[:3]}) == 3
    session.synchronize()
    one = OpenVinoSession(onnx_file, _case("openvino", "performance_hint=LATENCY"), {}, tmp_path,
                          backend.resolved_options(_case("openvino", "")))
    one.specialize(placed)
    expected = one.fetch(one.run(placed))
    np.testing.assert_allclose(session.fetch(outputs[1]), expected, rtol=1e-5, atol=1e-6)
    assert not one.pipelines and len(one.requests) == 1


def test_torch_threads_are_set_for_the_cpu_case():
    import torch

    from infersweep.backends.torch_common import TorchSession

    before = torch.get_num_threads()
    try:
        session = TorchSession(torch.nn.Linear(3, 2), _case("torch", "channels_last=false,"
                                                                      "threads=1"))
        assert torch.get_num_threads() == 1 and session.info["torch_threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_torch_compile_dynamic_marks_the_batch_dimension():
    import torch

    from infersweep.backends.torch_compile import CompiledSession

    model = torch.nn.Linear(3, 2)
    dynamic = CompiledSession(model, _case("torch-compile", "channels_last=false,dynamic=true,"
                                                            "mode=default"))
    static = CompiledSession(model, _case("torch-compile", "channels_last=false,mode=default"))
    batch = np.zeros((4, 3), np.float32)
    assert dynamic.place(batch)._dynamo_dynamic_indices == {0}  # what mark_dynamic sets
    assert not hasattr(static.place(batch), "_dynamo_dynamic_indices")
    assert (dynamic.info["dynamic_batch"], static.info["dynamic_batch"]) == (True, False)


def test_resolved_options_fill_in_the_defaults():
    backend = get_backend("openvino")
    assert backend.resolved_options(_case("openvino", "performance_hint=THROUGHPUT,streams=2")) \
        == {"performance_hint": "THROUGHPUT", "streams": 2, "threads": 0, "requests": 1}
    assert parse_options(backend.canonical_options({"requests": "1"}, "cpu")) == \
        {"performance_hint": "LATENCY"}


# The report: which value won and by how much, on hand-made rows whose answer is known.

def _row(options: str, batch: int, size: int, median: float, backend="onnxruntime", **extra):
    from infersweep.results.result import CSV_COLUMNS

    row = dict.fromkeys(CSV_COLUMNS)
    row.update(model="resnet18", weights="random(seed=0)", backend=backend, device="cpu",
               precision="fp32", image_size=size, batch_size=batch, data="synthetic",
               scope="compute", options=options, status="ok", latency_ms_median=median,
               throughput_ips=batch * 1000 / median, latency_ms_std=0.1,
               case_id=f"{options}{batch}{size}", **extra)
    return row


def _threads_rows():
    """6 configurations (3 batches x 2 sizes) of threads 1, 2 and the default 0: 2 wins five
    times, 1 is always slowest; 1 over 2 is 1.31x in each, 0 over 2 is 1.1x."""
    rows = []
    for size in (32, 64):
        for batch in (1, 2, 4):
            base = 10.0 * batch * size
            two = base * (1.2 if (size, batch) == (64, 4) else 1.0)  # 0 wins this one
            rows += [_row("intra_op_num_threads=1", batch, size, base * 1.31),
                     _row("intra_op_num_threads=2", batch, size, two),
                     _row("", batch, size, base * 1.1)]
    return rows


def test_the_value_that_won_most_configurations_and_its_median_speedups():
    from infersweep.reports.knobs import knob_findings

    (finding,) = knob_findings(_threads_rows())
    assert (finding.knob, finding.winner, finding.wins, finding.configurations,
            finding.slowest) == ("intra_op_num_threads", "2", 5, 6, "1")
    assert finding.over_slowest == pytest.approx(1.31)
    assert finding.over_default == pytest.approx(1.1)
    assert finding.sentence() == ("onnxruntime intra_op_num_threads: 2 wins in 5 of 6 "
                                  "configurations, median 1.31x over 1, 1.10x over 0 "
                                  "(the default)")


def test_untrusted_rows_and_unswept_options_take_no_part():
    from infersweep.reports.knobs import knob_findings, markdown_lines

    rows = _threads_rows()
    for row in rows:  # the threads=2 rows were measured on a busy machine
        if row["options"] == "intra_op_num_threads=2":
            row["noise"] = "contended: other processes used 1.5 of 2 cores"
    rows.append(_row("channels_last=false", 1, 32, 5.0, backend="torch"))  # one value only
    (finding,) = knob_findings(rows)
    assert finding.sentence() == ("onnxruntime intra_op_num_threads: 0 wins in 6 of 6 "
                                  "configurations, median 1.19x over 1")
    assert knob_findings([r for r in rows if r["backend"] == "torch"]) == []
    assert markdown_lines([]) == []


def test_a_winner_within_noise_is_said_to_be_no_clear_winner():
    from infersweep.reports.knobs import knob_findings

    rows = [_row("execution_mode=parallel", 1, 32, 10.0), _row("", 1, 32, 10.2)]
    (finding,) = knob_findings(rows)
    assert finding.sentence() == ("onnxruntime execution_mode: parallel wins in 1 of 1 "
                                  "configuration, median 1.02x over sequential (the default); "
                                  "within 5%: no clear winner")


def test_report_md_and_html_carry_the_knobs_section(tmp_path):
    from infersweep.reports.formats import ReportContext
    from infersweep.reports.html import html_text
    from infersweep.reports.markdown import markdown_text

    rows = _threads_rows()
    env = {"host": "h", "cpu": "Test CPU", "cores_usable": 2, "cores_logical": 2,
           "memory_gib": 1.0, "os": "linux", "python": "3.11", "packages": {}, "gpus": []}
    text = markdown_text(ReportContext(out_dir=tmp_path, rows=rows, results=[], env=env,
                                       baseline="torch", title="t"))
    section = text.split("### Knobs\n", 1)[1].split("## Environment", 1)[0]
    assert "- onnxruntime intra_op_num_threads: 2 wins in 5 of 6 configurations, median 1.31x " \
           "over 1, 1.10x over 0 (the default)\n" in section
    html = html_text(rows, env, "torch", "t", [])
    assert ("<h3>Knobs</h3>" in html and "<li>onnxruntime intra_op_num_threads: 2 wins in 5 of 6 "
            "configurations, median 1.31x over 1, 1.10x over 0 (the default)</li>" in html)
