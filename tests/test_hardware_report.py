"""Reports of a sweep that ran on several machines: grouped by hardware, speedups within one."""

import pytest

from infersweep.case import Case
from infersweep.reports.formats import write_reports
from infersweep.reports.hardware import hardware_label
from infersweep.results.result import Result


def _result(backend: str, host: str, batch: int, median: float) -> Result:
    case = Case("resnet18", "random(seed=0)", backend, "cpu", "fp32", 224, batch, "synthetic")
    return Result(case, "ok", samples_ms=[median] * 10, gflops_per_image=3.6,
                  info={"executor": "ray", "host": host, "node_id": host})


def _env(host: str, cpu: str, cores: int) -> dict:
    return {"host": host, "cpu": cpu, "cpu_flags": [], "cores_usable": cores,
            "cores_logical": cores, "memory_gib": 16.0, "os": "Linux", "python": "3.11",
            "packages": {}, "gpus": []}


def test_report_groups_by_hardware(tmp_path):
    """Two kinds of machine: speedups only within a machine, a report per machine."""
    nodes = {"a": {"env": _env("a", "CPU Alpha", 8), "peaks": {"cpu:fp32": {
                 "tflops": 1.0, "source": "measured"}}},
             "b": {"env": _env("b", "CPU Beta", 16), "peaks": {}}}
    results = [_result("torch", "a", 1, 10.0), _result("onnxruntime", "a", 1, 5.0),
               _result("onnxruntime", "b", 8, 20.0)]  # its torch baseline ran nowhere
    driver = _env("laptop", "CPU Laptop", 4)
    rows = write_reports(tmp_path, results, driver, "torch", {}, nodes=nodes)
    speedups = {(r["backend"], r["batch_size"]): r["speedup"] for r in rows}
    assert speedups[("onnxruntime", 1)] == pytest.approx(2.0)
    assert speedups[("onnxruntime", 8)] is None
    report = (tmp_path / "report.md").read_text()
    assert "## Hardware" in report and "CPU Laptop" not in report
    for label in (hardware_label(nodes["a"]["env"]), hardware_label(nodes["b"]["env"])):
        assert label in report
    subs = sorted(p.parent.name for p in (tmp_path / "hardware").glob("*/report.md"))
    assert len(subs) == 2
    alpha = next((tmp_path / "hardware").glob("cpu-alpha*/report.md")).read_text()
    assert "CPU Alpha" in alpha and "CPU Beta" not in alpha

    # One machine: no grouping, and the report describes the node, not the driver.
    single = tmp_path / "single"
    single.mkdir()
    write_reports(single, results[:2], driver, "torch", {}, nodes=nodes)
    text = (single / "report.md").read_text()
    assert "## Hardware" not in text and "CPU Alpha" in text and "CPU Laptop" not in text


def test_html_report_of_several_machines_links_each_machine(tmp_path):
    nodes = {"a": {"env": _env("a", "CPU Alpha", 8), "peaks": {}},
             "b": {"env": _env("b", "CPU Beta", 16), "peaks": {}}}
    results = [_result("torch", "a", 1, 10.0), _result("onnxruntime", "a", 1, 5.0),
               _result("torch", "b", 1, 20.0), _result("onnxruntime", "b", 1, 8.0)]
    write_reports(tmp_path, results, _env("laptop", "CPU Laptop", 4), "torch", {}, nodes=nodes,
                  visuals=True)
    html = (tmp_path / "report.html").read_text()
    assert "<h2>Hardware</h2>" in html and html.count('/report.html">CPU ') == 2
    assert not (tmp_path / "plots").exists()  # plots only per machine
    assert len(list((tmp_path / "hardware").glob("*/report.html"))) == 2
    assert len(list((tmp_path / "hardware").glob("*/plots/*.png"))) >= 2
