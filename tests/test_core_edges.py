"""Edges of the measurement core that `make mutate` found untested: compare's passing-through of
its settings and its pair order, the exact messages, dtypes, the speedup's baseline column and
row order, and where a measured peak is keyed and stored."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from infersweep.case import Case
from infersweep.grid.filters import parse_filter
from infersweep.measure.stats import summarize
from infersweep.measure import timing
from infersweep.probes import peaks
from infersweep.probes.agreement import measure_agreement
from infersweep.reports.compare import (FASTER, NO_DIFFERENCE, SLOWER, CompareError, Pair, compare,
                                        compare_pair, differing_fields, parse_fraction,
                                        regressions)
from infersweep.reports.rows import rows_with_speedup
from infersweep.results.result import Result


def case(backend="torch", batch=8, size=224):
    return Case("resnet18", "random(seed=0)", backend, "cpu", "fp32", size, batch, "synthetic")


def ok(c, scale=1.0, seed=0, n=60):
    return Result(c, "ok", samples_ms=(np.random.default_rng(seed).normal(10, 0.5, n) * scale)
                  .tolist())


# --- compare ----------------------------------------------------------------------------------

def test_compare_passes_its_settings_to_every_pair_and_keeps_them():
    a, b = [ok(case())], [ok(case(), 1.012, seed=1)]
    settings = dict(resamples=300, seed=7, confidence=0.5, margin=0.0)
    got = compare(a, b, **settings)
    assert got.pairs[0] == compare_pair(a[0], b[0], label=got.pairs[0].label, **settings)
    assert (got.resamples, got.seed, got.confidence, got.margin) == (300, 7, 0.5, 0.0)
    assert (got.a_name, got.b_name) == ("A", "B")
    assert compare(a, b, a_name="old", b_name="new").b_name == "new"
    default = compare(a, b).pairs[0]
    assert default.verdict == NO_DIFFERENCE and got.pairs[0].verdict == SLOWER


def test_pairs_come_in_numeric_order_of_batch_and_unpaired_cases_are_all_listed():
    a = [ok(case(batch=b)) for b in (10, 2, 1)] + [ok(case(batch=64)), ok(case(batch=128))]
    b = [ok(case(batch=b)) for b in (1, 10, 2)] + [ok(case(batch=256)), ok(case(batch=512))]
    got = compare(a, b)
    assert [p.a.batch_size for p in got.pairs] == [1, 2, 10]
    assert [r.case.batch_size for r in got.only_a] == [64, 128]
    assert [r.case.batch_size for r in got.only_b] == [256, 512]
    assert got.counts()[NO_DIFFERENCE] == 3


def test_two_b_cases_at_one_key_are_ambiguous():
    a = [ok(case("torch"))]
    b = [ok(case("onnxruntime")), ok(case("openvino"))]
    got = compare(a + b, a + b, a_filter=parse_filter("backend=torch"),
                  b_filter=parse_filter("backend=onnxruntime|openvino"))
    assert got.pairs == [] and len(got.ambiguous) == 1 and len(got.ambiguous[0][1]) == 2


def test_same_groups_are_refused_with_the_exact_message():
    rows = [ok(case())]
    with pytest.raises(CompareError) as err:
        compare(rows, rows)
    assert str(err.value) == ("--a and --b select the same cases: give them different values of "
                              "at least one field, e.g. --a backend=torch --b backend=onnxruntime")


def test_status_never_counts_as_a_differing_field():
    assert differing_fields(parse_filter("status=ok"), parse_filter("status=failed")) == ()


def test_pair_to_dict_is_every_figure():
    p = compare_pair(ok(case()), ok(case(), 2.0), label="x")
    d = p.to_dict()
    assert d == {"label": "x", "a": {**case().to_dict(), "case_id": case().case_id},
                 "b": {**case().to_dict(), "case_id": case().case_id}, "a_status": "ok",
                 "b_status": "ok", "a_median_ms": p.a_median_ms, "b_median_ms": p.b_median_ms,
                 "a_samples": 60, "b_samples": 60, "ratio": p.ratio, "ci_low": p.ci_low,
                 "ci_high": p.ci_high, "change_pct": p.change_pct, "verdict": SLOWER, "note": "",
                 "a_repeats": 1, "b_repeats": 1, "disturbed": False,
                 "interval_from": "within one process"}
    assert d["ratio"] == pytest.approx(2.0)


def test_regressions_boundary_and_message():
    def pair(low):
        return Pair(case(), case(), "ok", "ok", 1.0, 1.2, 9, 9, 1.2, low, 1.3, SLOWER)

    assert regressions([pair(1.05), pair(1.0501)], 0.05) == [pair(1.0501)]
    with pytest.raises(CompareError) as err:
        regressions([], -0.01)
    assert str(err.value) == "threshold must be >= 0, not -0.01"


@pytest.mark.parametrize("text", ["1", "1.5"])
def test_parse_fraction_refuses_one_and_more_as_ambiguous(text):
    with pytest.raises(CompareError, match="is ambiguous"):
        parse_fraction(text)


def test_parse_fraction_message_for_text():
    with pytest.raises(CompareError) as err:
        parse_fraction("five")
    assert str(err.value) == ("'five' is not a fraction: write a percentage like 5% or a "
                              "fraction like 0.05")


# --- stats and timing -------------------------------------------------------------------------

def test_summary_of_float32_samples_is_computed_in_float64():
    samples = np.random.default_rng(0).lognormal(0, 1, 1001).astype(np.float32)
    wide = samples.astype(np.float64)
    s = summarize(samples)
    assert s.mean == float(wide.mean()) and s.std == float(wide.std(ddof=1))


def test_no_samples_message():
    with pytest.raises(ValueError) as err:
        summarize([])
    assert str(err.value) == "no samples"


def test_pipelined_throughput_aims_at_fifty_milliseconds_by_default(monkeypatch):
    now = [0]
    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter=lambda: now[0] / 1e3))
    launches = []

    def launch():
        launches.append(1)
        now[0] += 1

    timing.pipelined_throughput(launch, launch, batch_size=1, median_ms=1.0, repeats=1)
    assert len(launches) == 50  # 0.05 s / 1 ms


# --- agreement and accuracy -------------------------------------------------------------------

def test_agreement_of_float16_outputs_is_computed_in_float64():
    # 1000 logits of 300: their squares sum past float16's range (65504).
    ref = np.full((2, 1000), 300, dtype=np.float16)
    a = measure_agreement(ref.copy(), ref)
    assert a.cosine == pytest.approx(1.0) and a.max_abs_err == 0.0
    b = measure_agreement(ref.astype(np.float64), ref)
    assert b.cosine == pytest.approx(1.0)


def test_agreement_of_small_logits_is_not_scaled():
    ref = np.array([[0.03, 0.01], [0.01, 0.03]])  # norms below 1
    out = ref[::-1].copy()
    assert measure_agreement(out, ref).cosine == pytest.approx(0.6)


def test_accuracy_reads_each_image_s_argmax(tmp_path):
    from test_agreement_accuracy import labelled_folder

    from infersweep.backends.base import Backend
    from infersweep.case import Case
    from infersweep.probes import ProbeContext
    from infersweep.probes.accuracy import Accuracy

    class Fixed:  # answers these logits for the folder's one batch of 4
        place = fetch = staticmethod(lambda x: x)
        run = staticmethod(lambda placed: output)

    batches = labelled_folder(tmp_path / "data", {"cat": 2, "dog": 2})  # labels 0, 0, 1, 1
    output = np.array([[0.0, 9.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # answers 1, 0, 1, 1
    ctx = ProbeContext(backend=Backend("torch", ("cpu",), {}), source=None, cache=None,
                       settings=None, seed=0, case=Case("m", "w", "torch", "cpu", "fp32", 8, 4,
                                                        "folder"),
                       batches=batches, output=output, session=Fixed())
    assert Accuracy().after(ctx).fields == {"top1_accuracy": 0.75, "accuracy_images": 4}


# --- speedup rows -----------------------------------------------------------------------------

def test_speedup_rows_name_their_baseline_and_put_it_first():
    rows = rows_with_speedup([ok(case("onnxruntime")), ok(case("torch")),
                              ok(case("openvino", batch=1))], "torch")
    assert [(r["backend"], r["batch_size"], r["baseline"]) for r in rows] == [
        ("openvino", 1, None), ("torch", 8, "torch"), ("onnxruntime", 8, "torch")]


# --- where a measured peak is keyed and stored --------------------------------------------------

@pytest.fixture
def measured(tmp_path, monkeypatch):
    root = tmp_path / "not" / "yet"  # the cache folder does not exist yet
    monkeypatch.setenv("INFERSWEEP_CACHE", str(root))
    calls = []
    monkeypatch.setattr(peaks, "measure_in_subprocess",
                        lambda device, precision: calls.append(device) or 1.5)
    return root, calls


def test_a_cpu_peak_on_a_machine_with_a_gpu_is_measured_and_keyed_by_the_cpu(measured):
    root, calls = measured
    env = {"cpu": "Xeon", "cores_usable": 4, "gpus": [{"name": "NVIDIA H200"}]}
    found = peaks.peak_for("cpu", "fp32", env)
    assert found["tflops"] == 1.5 and calls == ["cpu"]
    assert list(json.loads((root / "peaks.json").read_text())) == ["cpu:Xeon:4 cores:fp32"]


def test_a_failed_measurement_is_no_peak_and_not_cached(measured, monkeypatch):
    root, _ = measured
    monkeypatch.setattr(peaks, "measure_in_subprocess", lambda device, precision: None)
    assert peaks.peak_for("cpu", "fp32", {"cpu": "Xeon", "cores_usable": 4}) is None
    assert not (root / "peaks.json").exists()
    assert math.isfinite(peaks.table_peak("NVIDIA H200", "int8")["tflops"])


# --- found by the second mutation run ---------------------------------------------------------

def test_the_interval_is_the_documented_bootstrap_seeded_by_both_case_ids():
    from infersweep.reports.compare import bootstrap_medians

    a, b = ok(case(batch=8), seed=1), ok(case("onnxruntime", batch=8), 1.1, seed=2)
    p = compare_pair(a, b, confidence=0.9)
    rng = np.random.default_rng([0, int(a.case.case_id, 16), int(b.case.case_id, 16)])
    boot = bootstrap_medians(b.samples_ms, 2000, rng) / bootstrap_medians(a.samples_ms, 2000, rng)
    assert (p.ci_low, p.ci_high) == tuple(np.percentile(boot, [5.0, 95.0]))


def test_a_side_that_did_not_run_ok_has_no_median_even_with_samples():
    failed = Result(case(), "crashed", reason="SIGSEGV", samples_ms=[1.0] * 9)
    p = compare_pair(failed, ok(case()))
    assert (p.a_median_ms, p.a_samples, p.note) == (None, 0, "A crashed (SIGSEGV)")
    p = compare_pair(ok(case()), Result(case(), "oom", samples_ms=[1.0] * 9))
    assert (p.b_median_ms, p.b_samples, p.note) == (None, 0, "B oom")


def _constant(c, values):
    return Result(c, "ok", samples_ms=list(values))


@pytest.mark.parametrize("b_values, verdict", [
    ([1.0] * 9, NO_DIFFERENCE),  # ratio exactly 1 - margin: not beyond the margin
    ([3.0] * 9, NO_DIFFERENCE),  # ratio exactly 1 + margin
    ([1.0] * 5 + [2.0] * 4, NO_DIFFERENCE),  # interval's upper end exactly 1
    ([4.0] * 5 + [2.0] * 4, NO_DIFFERENCE),  # interval's lower end exactly 1
    ([0.9] * 9, FASTER), ([3.1] * 9, SLOWER)])
def test_verdict_boundaries_are_strict(b_values, verdict):
    a = _constant(case(), [2.0] * 9)
    p = compare_pair(a, _constant(case("onnxruntime"), b_values), margin=0.5)
    assert p.verdict == verdict, p


def test_cache_builds_in_a_fresh_folder_even_after_a_killed_build(tmp_path):
    import os

    from infersweep.artefacts.cache import ArtifactCache, key_digest

    cache = ArtifactCache(tmp_path / "not" / "yet")
    stale = cache.root / "onnx" / f"{key_digest({'k': 1})}.tmp-{os.getpid()}"
    stale.mkdir(parents=True)
    (stale / "half.onnx").write_bytes(b"x")  # a killed build of the same pid left this
    seen = []
    entry, _ = cache.get_or_build("onnx", {"k": 1},
                                  lambda d: seen.append(sorted(p.name for p in d.iterdir())))
    assert seen == [[]] and not stale.exists()
    key = {"z": 2, "a": [1]}
    entry, _ = cache.get_or_build("onnx", key, lambda d: None)
    assert (entry / "key.json").read_text() == '{\n "a": [\n  1\n ],\n "z": 2\n}'


def test_warmup_compares_the_last_window_only(monkeypatch):
    from test_timing_loop import FakeClock

    clock = FakeClock()
    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter=lambda: clock.ns / 1e9,
                                                        perf_counter_ns=lambda: clock.ns))
    settings = timing.MeasureSettings(warmup_max_s=5.0, warmup_min_s=0.0)  # windows alone
    # 10 | 20 | 22 ...: window 3 is 10% off window 2 (windows 2+3 together would be 5% off)
    run = clock.runner(lambda i: 10.0 if i < 3 else 20.0 if i < 6 else 22.0)
    assert timing.warm_up(run, settings) == (12, [])
    # exactly 5% apart: settled
    assert timing.warm_up(clock.runner(lambda i: 20.0 if i < 3 else 21.0), settings) == (6, [])
    # the deadline is reached exactly at the 4th run: stop there
    clock.ns = 0
    n, warnings = timing.warm_up(clock.runner(lambda i: 1.0), timing.MeasureSettings(
        warmup_max_s=0.004))
    assert (n, warnings) == (4, ["warmup did not settle in 0.004 s (4 runs)"])


@pytest.mark.parametrize("limits, samples, warnings", [
    (dict(max_time_s=0.02, min_time_s=5.0), 20, []),  # the cap reached exactly: stop
    (dict(min_time_s=0.02), 20, []),  # min_time reached exactly: enough
])
def test_time_limits_reached_exactly_count(monkeypatch, limits, samples, warnings):
    from test_timing_loop import FakeClock

    clock = FakeClock()
    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter=lambda: clock.ns / 1e9,
                                                        perf_counter_ns=lambda: clock.ns))
    # cold run and warmup take no time, so the timed phase starts at exactly 0 s
    t = timing.measure(clock.runner(lambda i: 0.0 if i < 7 else 1.0),
                       timing.MeasureSettings(**{"min_iterations": 10, **limits}))
    assert (len(t.samples_ms), t.warnings) == (samples, warnings)


def test_the_cap_at_exactly_min_iterations_is_no_warning(monkeypatch):
    from test_timing_loop import FakeClock

    clock = FakeClock()
    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter=lambda: clock.ns / 1e9,
                                                        perf_counter_ns=lambda: clock.ns))
    t = timing.measure(clock.runner(lambda i: 0.0 if i < 7 else 50.0),
                       timing.MeasureSettings(min_iterations=3, max_time_s=0.15))
    assert (len(t.samples_ms), t.warnings) == (3, [])
