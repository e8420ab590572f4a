"""The summary at the top of the reports: optimal batch, saturation, fastest configuration and the
generated comparison sentences, on hand-made numbers whose answers are known."""

from infersweep.case import Case
from infersweep.reports.formats import write_reports
from infersweep.reports.rows import rows_with_speedup
from infersweep.results.result import CSV_COLUMNS, Result
from infersweep.reports.summary import batch_curves, build_summary, speedup_findings, fastest_configs

ENV = {"host": "h", "cpu": "Test CPU 9000", "cores_usable": 2, "cores_logical": 2,
       "memory_gib": 1.0, "os": "linux", "python": "3.11",
       "packages": {"torch": "2.14.1", "onnxruntime": "1.22.0"},
       "gpus": [{"index": 0, "name": "NVIDIA H200", "driver": "570.1", "memory_gib": 139.8}]}


def _row(batch, ips, backend="torch", size=224, status="ok", device="cpu", precision="fp32"):
    row = dict.fromkeys(CSV_COLUMNS)
    row.update(model="resnet18", weights="random(seed=0)", backend=backend, device=device,
               precision=precision, image_size=size, batch_size=batch, data="synthetic",
               scope="compute", options="", status=status, case_id=f"{backend}{size}{batch}")
    if status == "ok":
        row.update(throughput_ips=ips, latency_ms_median=batch * 1000.0 / ips)
    return row


def _curve(rows):
    (curve,) = batch_curves(rows)
    return curve


def test_optimal_batch_is_smallest_reaching_95_percent_of_best():
    # best 400; 95% of it is 380: batch 16 (385) is enough, batch 32 buys 4% more.
    curve = _curve([_row(1, 100), _row(8, 300), _row(16, 385), _row(32, 400)])
    assert curve.optimal_batch == 16
    assert curve.best_ips == 400
    assert curve.rising is False  # 400 / 385 = +3.9%: within noise, saturated
    assert curve.verdict == "saturated"


def test_exactly_95_percent_counts_and_a_dip_after_the_best_is_saturated():
    curve = _curve([_row(8, 95.0), _row(16, 100.0), _row(32, 90.0)])
    assert curve.optimal_batch == 8
    assert curve.verdict == "saturated"


def test_still_rising_at_largest_batch_is_not_saturated():
    curve = _curve([_row(32, 200), _row(1, 50), _row(8, 150)])  # order of rows does not matter
    assert curve.batches == [1, 8, 32]
    assert curve.optimal_batch == 32
    assert curve.rising is True
    assert curve.verdict == "not saturated: try larger batches"


def test_rising_but_next_batch_failed_does_not_advise_larger_batches():
    curve = _curve([_row(1, 50), _row(8, 150), _row(32, None, status="oom"),
                    _row(64, None, status="oom")])
    assert curve.batches == [1, 8] and curve.optimal_batch == 8
    assert curve.rising is True
    assert curve.verdict == "still rising at batch 8; batch 32 ended oom"


def test_one_batch_size_has_unknown_saturation_and_failed_only_has_no_curve():
    assert _curve([_row(8, 100)]).verdict == "one batch size ran: saturation unknown"
    assert _curve([_row(8, 100)]).optimal_batch == 8
    assert batch_curves([_row(8, None, status="crashed")]) == []


def test_curves_are_per_backend_size_and_precision():
    rows = [_row(1, 10), _row(8, 20), _row(1, 30, backend="onnxruntime"),
            _row(1, 5, size=384), _row(1, 40, precision="fp16")]
    assert len(batch_curves(rows)) == 4


def _ok(backend, batch, median, size=224, device="cpu", precision="fp32"):
    case = Case("resnet18", "random(seed=0)", backend, device, precision, size, batch, "synthetic")
    return Result(case, "ok", samples_ms=[median] * 10)


def test_sentences_from_known_speedups():
    # torch 100 ms at batch 32 and onnxruntime 100/2.3 ms there: 2.3x; at batch 8, 1.5x.
    results = [_ok("torch", 32, 100.0), _ok("onnxruntime", 32, 100.0 / 2.3),
               _ok("torch", 8, 40.0), _ok("onnxruntime", 8, 40.0 / 1.5)]
    found, missing = speedup_findings(rows_with_speedup(results, "torch"), "torch", ENV)
    assert missing == []
    (c,) = found
    assert (c.batch_size, c.image_size, round(c.speedup, 6)) == (32, 224, 2.3)
    assert c.sentence(ENV) == ("onnxruntime is 2.3x faster than torch on the CPU at batch 32, "
                               "224 px (fp32; 1.50x to 2.30x over the 2 cases both ran).")


def test_slower_and_about_as_fast_sentences_name_the_gpu():
    slower = rows_with_speedup([_ok("torch", 8, 10.0, device="cuda"),
                                _ok("onnxruntime", 8, 20.0, device="cuda")], "torch")
    (c,) = speedup_findings(slower, "torch", ENV)[0]
    assert c.sentence(ENV) == ("onnxruntime is 2.0x slower than torch (speedup 0.50x) on the "
                               "GPU (NVIDIA H200) at batch 8, 224 px (fp32).")
    same = rows_with_speedup([_ok("torch", 8, 10.0), _ok("onnxruntime", 8, 9.8)], "torch")
    (c,) = speedup_findings(same, "torch", ENV)[0]
    assert c.sentence(ENV).startswith("onnxruntime is about as fast as torch (1.02x) on the CPU")


def test_missing_baseline_is_said_not_guessed():
    case = Case("resnet18", "random(seed=0)", "torch", "cpu", "fp32", 224, 8, "synthetic")
    failed_baseline = rows_with_speedup([Result(case, "crashed", reason="SIGSEGV"),
                                         _ok("onnxruntime", 8, 5.0)], "torch")
    assert speedup_findings(failed_baseline, "torch", ENV) == (
        [], ["The baseline torch has no successful case: no speedups computed."])
    # The baseline ran, but not at fp16: that one comparison is missing, the other one is made.
    partial = rows_with_speedup([_ok("torch", 8, 10.0), _ok("onnxruntime", 8, 5.0),
                                 _ok("onnxruntime", 8, 4.0, precision="fp16")], "torch")
    found, missing = speedup_findings(partial, "torch", ENV)
    assert [c.precision for c in found] == ["fp32"]
    assert missing == ["No torch result matches onnxruntime on the CPU in fp16: "
                       "no speedup computed."]


def test_fastest_configuration_per_device_precision_and_size():
    rows = rows_with_speedup([_ok("torch", 8, 80.0), _ok("torch", 32, 200.0),
                              _ok("onnxruntime", 8, 40.0), _ok("onnxruntime", 32, 100.0),
                              _ok("torch", 8, 300.0, size=512)], "torch")
    fastest = fastest_configs(rows)
    assert [(f.image_size, f.runtime, f.batch_size) for f in fastest] == [
        (224, "onnxruntime", 32), (512, "torch", 8)]
    assert fastest[0].throughput_ips == 320.0  # 32 images in 100 ms
    assert fastest[0].speedup == 2.0


def test_report_md_starts_with_the_summary(tmp_path):
    results = [_ok("torch", 32, 100.0), _ok("onnxruntime", 32, 100.0 / 2.3),
               _ok("torch", 8, 40.0), _ok("onnxruntime", 8, 40.0 / 1.5)]
    write_reports(tmp_path, results, ENV, "torch")
    md = (tmp_path / "report.md").read_text()
    assert md.index("## Summary") < md.index("## Environment") < md.index("## Results")
    assert "- CPU: Test CPU 9000 (2 usable cores)" in md
    assert "- GPU 0: NVIDIA H200, 139.8 GiB, driver 570.1" in md
    assert "torch 2.14.1, onnxruntime 1.22.0" in md
    assert "onnxruntime is 2.3x faster than torch on the CPU at batch 32, 224 px" in md
    assert "| onnxruntime fp32 cpu | 224 px | 8, 32 | 32 | 736.0 img/s | " \
           "not saturated: try larger batches |" in md
    # Without visuals=True (every case of a sweep), no plots and no HTML: they take seconds.
    assert not (tmp_path / "plots").exists() and not (tmp_path / "report.html").exists()


def test_summary_of_only_failed_cases():
    case = Case("resnet18", "random(seed=0)", "torch", "cpu", "fp32", 224, 8, "synthetic")
    summary = build_summary(rows_with_speedup([Result(case, "oom", reason="MemoryError")],
                                              "torch"), ENV, "torch")
    assert summary.fastest == [] and summary.curves == [] and summary.sentences == []


def _filtered_report(tmp_path, results, only):
    from infersweep.grid.filters import parse_filter

    write_reports(tmp_path, results, ENV, "torch", visuals=True, only=parse_filter(only))
    return (tmp_path / "report.md").read_text(), (tmp_path / "report.html").read_text()


def test_a_report_filtered_to_leave_out_the_baseline_keeps_its_speedups_and_says_so(tmp_path):
    # Speedups are computed on the whole run; leaving the baseline's own rows out of the view
    # must not make the summary claim it never ran while the tables show "2.28x vs torch".
    results = [_ok("torch", 8, 100.0), _ok("onnxruntime", 8, 100.0 / 2.28)]
    md, html = _filtered_report(tmp_path, results, "backend=onnxruntime")
    finding = "onnxruntime is 2.3x faster than torch on the CPU at batch 8, 224 px (fp32)."
    note = ("The baseline torch is filtered out of this report; the speedups compare with its "
            "cases in the whole run.")
    assert f"{finding}\n\n{note}\n" in md
    assert f"<p>{finding}</p><p>{note}</p>" in html
    assert "no successful case" not in md and "no successful case" not in html
    assert "| cpu | fp32 | 224 px | onnxruntime | 8 | 182.4 img/s | 43.86 ms | 2.28x vs torch |" \
        in md
    assert "<td>43.86 ms</td><td>2.28x vs torch</td>" in html
    assert '<td class="num" data-sort="2.28">2.28</td>' in html  # the results table's speedup
    assert _md_results(md) == [{**_md_results(md)[0], "speedup": "2.28x"}]


def _md_results(md: str) -> list[dict]:
    """The rows of report.md's results table as {header: cell}."""
    table = md.split("## Results\n\n")[1].split("\n\n")[0].splitlines()
    head = [c.strip() for c in table[0].strip("|").split("|")]
    return [dict(zip(head, (c.strip() for c in line.strip("|").split("|"))))
            for line in table[2:]]


def test_a_filtered_report_whose_baseline_really_failed_says_so(tmp_path):
    case = Case("resnet18", "random(seed=0)", "torch", "cpu", "fp32", 224, 8, "synthetic")
    results = [Result(case, "crashed", reason="SIGSEGV"), _ok("onnxruntime", 8, 5.0)]
    md, html = _filtered_report(tmp_path, results, "backend=onnxruntime")
    sentence = "The baseline torch has no successful case: no speedups computed."
    assert f"{sentence}\n" in md and f"<p>{sentence}</p>" in html
    assert "filtered out" not in md and "vs torch" not in md and "vs torch" not in html
