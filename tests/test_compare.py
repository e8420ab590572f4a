"""`infersweep compare`: pairing, the bootstrap interval of the ratio of medians, verdicts, the
regression gate, and the outputs, on synthetic latency samples."""

import json

import numpy as np
import pytest

from infersweep.reports import compare as cmp
from infersweep.case import Case
from infersweep.reports.compare import (FASTER, NO_DIFFERENCE, NOT_COMPARED, SLOWER, CompareError,
                                bootstrap_medians, compare, compare_pair, differing_fields,
                                newly_failing, parse_fraction, regressions, to_json, to_markdown)
from infersweep.grid.filters import parse_filter
from infersweep.results.result import Result


def case(backend="torch", batch=8, size=224, precision="fp32", options="", device="cpu"):
    return Case("resnet18", "random(seed=0)", backend, device, precision, size, batch,
                "synthetic", options=options)


def latencies(seed, n=200, scale=1.0, median=10.0):
    """Skewed like real latencies: lognormal body plus 3% slow outliers."""
    rng = np.random.default_rng(seed)
    x = rng.lognormal(np.log(median), 0.2, n)
    x[rng.random(n) < 0.03] *= 3
    return (x * scale).tolist()


def ok(c, samples):
    return Result(c, "ok", samples_ms=list(samples))


def test_same_distribution_no_significant_difference():
    p = compare_pair(ok(case(), latencies(1)), ok(case(), latencies(2)))
    assert p.verdict == NO_DIFFERENCE
    assert p.ci_low < 1 < p.ci_high
    assert p.ratio == pytest.approx(np.median(latencies(2)) / np.median(latencies(1)))
    assert p.a_samples == p.b_samples == 200


def test_slowed_b_is_slower_with_interval_above_one():
    a, b = latencies(1), latencies(2, scale=1.10)
    p = compare_pair(ok(case(), a), ok(case(), b))
    assert p.verdict == SLOWER
    assert 1 < p.ci_low < p.ratio < p.ci_high
    assert p.ci_low < 1.10 < p.ci_high  # the true ratio is inside
    assert p.change_pct == pytest.approx((p.ratio - 1) * 100)


def test_faster_b_is_faster_with_interval_below_one():
    p = compare_pair(ok(case(), latencies(1)), ok(case(), latencies(2, scale=0.90)))
    assert p.verdict == FASTER
    assert p.ci_low < p.ratio < p.ci_high < 1
    assert p.ci_low < 0.90 < p.ci_high


def test_exact_ratio_of_medians_direction():
    # B takes twice as long: ratio 2 = B slower; identical samples: ratio exactly 1.
    a = [1.0, 2.0, 3.0, 4.0, 5.0]
    doubled = compare_pair(ok(case(), a), ok(case(), [2 * x for x in a]))
    assert doubled.ratio == 2.0 and doubled.a_median_ms == 3.0 and doubled.b_median_ms == 6.0
    assert compare_pair(ok(case(), a), ok(case(), a)).ratio == 1.0


def test_false_positive_rate_is_near_five_percent():
    """Same distribution, 200 independent pairs: a 95% interval misses 1 about 10 times."""
    verdicts = [compare_pair(ok(case(), latencies(1000 + i)), ok(case(), latencies(5000 + i)),
                             resamples=1000).verdict for i in range(200)]
    significant = sum(v != NO_DIFFERENCE for v in verdicts)
    assert 2 <= significant <= 20, significant


def test_small_real_difference_is_found_with_many_samples():
    p = compare_pair(ok(case(), latencies(1, n=4000)), ok(case(), latencies(2, n=4000, scale=1.03)))
    assert p.verdict == SLOWER and p.ci_low < 1.03 < p.ci_high


def test_interval_is_reproducible_and_independent_of_other_pairs():
    a, b = ok(case(), latencies(1)), ok(case(), latencies(2, scale=1.02))
    first, again = compare_pair(a, b), compare_pair(a, b)
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    other = compare_pair(a, b, seed=1)
    assert (other.ci_low, other.ci_high) != (first.ci_low, first.ci_high)
    # In a run comparison the pair's interval does not depend on which other pairs are there.
    extra = [ok(case(batch=1), latencies(3)), ok(case(batch=32), latencies(4))]
    alone = compare([a], [b]).pairs[0]
    crowded = [p for p in compare(extra + [a], [b] + extra).pairs if p.a.batch_size == 8][0]
    assert (alone.ci_low, alone.ci_high) == (crowded.ci_low, crowded.ci_high)


@pytest.mark.parametrize("n", [7, 8, 201, 1000])
def test_bootstrap_medians_equal_medians_of_resampled_values(n, monkeypatch):
    """The sorted-index shortcut gives exactly np.median(samples[idx]) for the same indices,
    also when the draws are split in chunks."""
    samples = np.sort(np.random.default_rng(n).lognormal(size=n))
    monkeypatch.setattr(cmp, "_CHUNK_ELEMENTS", 3 * n)  # 3 resamples per chunk
    got = bootstrap_medians(samples, 10, np.random.default_rng(42))
    rng = np.random.default_rng(42)
    expected = []
    for rows in (3, 3, 3, 1):
        idx = rng.integers(0, n, size=(rows, n), dtype=np.int32)
        expected += list(np.median(samples[idx], axis=1))
    np.testing.assert_array_equal(got, expected)


def test_bootstrap_medians_spread_matches_theory():
    # The median's standard error for a normal sample is about 1.2533 * sigma / sqrt(n).
    x = np.random.default_rng(3).normal(100, 10, 2000)
    medians = bootstrap_medians(x, 2000, np.random.default_rng(0))
    assert np.std(medians) == pytest.approx(1.2533 * 10 / np.sqrt(2000), rel=0.25)
    assert np.mean(medians) == pytest.approx(np.median(x), abs=0.3)


def test_pairs_without_two_good_sides_are_listed_not_judged():
    good = ok(case(), latencies(1))
    crashed = Result(case(), "crashed", reason="SIGSEGV in the runtime")
    p = compare_pair(good, crashed)
    assert p.verdict == NOT_COMPARED and p.ratio is None and p.ci_low is None
    assert "B crashed" in p.note and "SIGSEGV" in p.note
    assert p.a_median_ms == pytest.approx(np.median(latencies(1))) and p.b_median_ms is None
    few = compare_pair(ok(case(), [1.0, 2.0, 3.0]), good)
    assert few.verdict == NOT_COMPARED and "A has 3 samples" in few.note
    assert newly_failing([p, few]) == [p]


def test_a_side_the_contention_guard_flagged_is_not_judged():
    """A disturbed measurement (the noise column: another process on the cores, throttled
    clocks) is no basis for a verdict, as reports never rank it; here B looks 3x slower."""
    quiet = ok(case(), latencies(1))
    disturbed = Result(case(), "ok", samples_ms=latencies(2, scale=3.0),
                       measured={"noise": "cpu contended: 40% of our CPU time waiting"})
    p = compare_pair(quiet, disturbed)
    assert p.verdict == NOT_COMPARED and p.ratio is None and p.ci_low is None
    assert p.note == "B measured while disturbed (cpu contended: 40% of our CPU time waiting)"
    assert p.disturbed and p.to_dict()["disturbed"] is True
    crashed = compare_pair(Result(case(), "crashed", reason="SIGSEGV"), disturbed)
    assert crashed.note == "A crashed (SIGSEGV)" and not crashed.disturbed  # the first reason
    assert p.b_median_ms == pytest.approx(np.median(latencies(2, scale=3.0)))  # still shown
    assert regressions([p], 0.05) == [] and newly_failing([p]) == []
    assert "not compared: B measured while disturbed" in to_markdown(
        compare([quiet], [disturbed]))
    assert compare_pair(disturbed, quiet).note.startswith("A measured while disturbed")


@pytest.mark.parametrize("text,value", [("5%", 0.05), ("0.05", 0.05), (" 12.5 % ", 0.125),
                                        ("0", 0.0), ("0%", 0.0), ("150%", 1.5)])
def test_parse_fraction(text, value):
    assert parse_fraction(text) == pytest.approx(value)


@pytest.mark.parametrize("text,fragment", [("5", "ambiguous: write 5% or 0.05"),
                                           ("five", "not a fraction"), ("-5%", ">= 0"),
                                           ("", "not a fraction"), ("nan", ">= 0")])
def test_parse_fraction_refuses(text, fragment):
    with pytest.raises(CompareError, match=fragment):
        parse_fraction(text)


def test_regressions_need_the_whole_interval_beyond_the_threshold():
    a = [ok(case(batch=b), latencies(b)) for b in (1, 8, 32)]
    b = [ok(case(batch=1), latencies(101, scale=1.10)),  # clearly slower
         ok(case(batch=8), latencies(108)),  # same
         ok(case(batch=32), latencies(132, scale=0.9))]  # faster
    result = compare(a, b)
    slow = [p for p in result.pairs if p.a.batch_size == 1][0]
    assert slow.verdict == SLOWER
    assert regressions(result, 0.0) == [slow]  # any significant slowdown
    assert regressions(result.pairs, slow.ci_low - 1 - 1e-6) == [slow]
    assert regressions(result, slow.ci_low - 1 + 1e-6) == []  # interval reaches below 1 + t
    # The point estimate beyond the threshold is not enough.
    threshold = (slow.ratio - 1) - 0.01
    assert slow.ratio > 1 + threshold > slow.ci_low
    assert regressions(result, threshold) == []
    assert regressions(result, parse_fraction("50%")) == []
    with pytest.raises(CompareError):
        regressions(result, -0.1)


def test_two_runs_pair_equal_cases_only():
    grid = [case(backend, batch) for backend in ("torch", "onnxruntime") for batch in (1, 8)]
    run_a = [ok(c, latencies(i)) for i, c in enumerate(grid)]
    run_b = [ok(c, latencies(10 + i)) for i, c in enumerate(grid[1:])]  # torch bs1 missing
    run_b.append(ok(case("torch", 1, precision="fp16"), latencies(20)))  # only in B
    result = compare(run_a, run_b, a_name="runs/old", b_name="runs/new")
    assert result.ignored == ()
    assert sorted((p.a.backend, p.a.batch_size) for p in result.pairs) == [
        ("onnxruntime", 1), ("onnxruntime", 8), ("torch", 8)]
    assert all(p.a == p.b and p.a.case_id == p.b.case_id for p in result.pairs)
    assert [r.case for r in result.only_a] == [case("torch", 1)]
    assert [r.case for r in result.only_b] == [case("torch", 1, precision="fp16")]
    assert result.ambiguous == []
    # --only narrows both sides
    only = compare(run_a, run_b, only=parse_filter("backend=onnxruntime"))
    assert [p.a.backend for p in only.pairs] == ["onnxruntime", "onnxruntime"]
    assert only.only_a == [] and only.only_b == []


def test_two_groups_of_one_run_pair_on_the_other_fields():
    run = []
    for size in (224, 256):
        for batch in (1, 8):
            run.append(ok(case("torch", batch, size, options="channels_last=false"),
                          latencies(size + batch)))
            run.append(ok(case("onnxruntime", batch, size,
                               options="cudnn_conv_algo_search=EXHAUSTIVE"),
                          latencies(1000 + size + batch, scale=0.8)))
    run.append(ok(case("torch", 32, 224, options="channels_last=false"), latencies(7)))
    run.append(ok(case("onnxruntime", 8, 224, precision="fp16"), latencies(8)))
    result = compare(run, run, a_filter=parse_filter("backend=torch"),
                     b_filter=parse_filter("backend=onnxruntime"))
    assert result.ignored == ("backend", "options")  # options are per backend
    assert len(result.pairs) == 4
    for p in result.pairs:
        assert (p.a.backend, p.b.backend) == ("torch", "onnxruntime")
        assert (p.a.image_size, p.a.batch_size, p.a.precision, p.a.device) == \
            (p.b.image_size, p.b.batch_size, p.b.precision, p.b.device)
        assert p.verdict == FASTER
    assert [r.case.batch_size for r in result.only_a] == [32]
    assert [r.case.precision for r in result.only_b] == ["fp16"]
    # Labels name only what varies between pairs; the rest is common.
    assert sorted(p.label for p in result.pairs) == ["224px bs1", "224px bs8", "256px bs1",
                                                     "256px bs8"]
    assert result.common["model"] == "resnet18" and result.common["device"] == "cpu"
    # A group filter with a value both sides share keeps that field in the match.
    same_precision = compare(run, run, a_filter=parse_filter("backend=torch,precision=fp32"),
                             b_filter=parse_filter("backend=onnxruntime,precision=fp32"))
    assert same_precision.ignored == ("backend", "options")
    assert len(same_precision.pairs) == 4 and same_precision.only_b == []


def test_two_cases_at_one_key_are_ambiguous_until_narrowed():
    run = [ok(case("torch", 8, options="channels_last=false"), latencies(1)),
           ok(case("torch", 8, options="channels_last=true"), latencies(2)),
           ok(case("onnxruntime", 8, options="cudnn_conv_algo_search=EXHAUSTIVE"), latencies(3))]
    loose = compare(run, run, a_filter=parse_filter("backend=torch"),
                    b_filter=parse_filter("backend=onnxruntime"))
    assert loose.pairs == [] and len(loose.ambiguous) == 1
    (ra, rb), = loose.ambiguous
    assert len(ra) == 2 and len(rb) == 1
    narrow = compare(run, run, a_filter=parse_filter("backend=torch,options=channels_last=true"),
                     b_filter=parse_filter("backend=onnxruntime"))
    assert [p.a.options for p in narrow.pairs] == ["channels_last=true"]
    assert narrow.ambiguous == []


def test_groups_that_differ_in_a_numeric_field():
    run = [ok(case("torch", 8, size), latencies(size)) for size in (224, 256)]
    result = compare(run, run, a_filter=parse_filter("size=224"),
                     b_filter=parse_filter("size=256"))
    assert result.ignored == ("image_size",)
    (p,) = result.pairs
    assert (p.a.image_size, p.b.image_size) == (224, 256)


def test_differing_fields():
    f = parse_filter
    assert differing_fields(None, None) == ()
    assert differing_fields(f("backend=torch"), f("backend=onnxruntime")) == ("backend", "options")
    assert differing_fields(f("precision=fp32"), f("precision=fp32")) == ()
    assert differing_fields(f("precision=fp32,batch=8"), f("precision=fp16")) == \
        ("precision", "batch_size")
    assert differing_fields(f("status=ok,size<512"), f("size>=512")) == ("image_size",)


def test_one_run_with_groups_that_do_not_differ_is_refused():
    run = [ok(case(), latencies(1))]
    with pytest.raises(CompareError, match="--a and --b select the same cases"):
        compare(run, run)
    with pytest.raises(CompareError, match="different values"):
        compare(run, run, a_filter=parse_filter("backend=torch"),
                b_filter=parse_filter("backend=torch"))


def test_markdown_and_json():
    a = [ok(case("torch", b), latencies(b)) for b in (1, 8, 16)]
    b = [ok(case("onnxruntime", 1), latencies(50, scale=1.2)),
         ok(case("onnxruntime", 8), latencies(51, scale=0.8)),
         Result(case("onnxruntime", 16), "oom", reason="CUDA out of memory"),
         ok(case("onnxruntime", 64), latencies(52))]
    result = compare(a + b, a + b, a_filter=parse_filter("backend=torch"),
                     b_filter=parse_filter("backend=onnxruntime"),
                     a_name="run (backend=torch)", b_name="run (backend=onnxruntime)")
    md = to_markdown(result)
    assert "- A: run (backend=torch)" in md and "below 1 means B is faster" in md
    assert "except backend, options" in md
    assert "3 pairs: 1 faster, 1 slower, 1 not compared" in md
    table = [line for line in md.splitlines() if line.startswith("| bs")]
    assert len(table) == 3
    slow = [p for p in result.pairs if p.verdict == SLOWER][0]
    row = [line for line in table if line.startswith("| bs1 |")][0]
    assert "| torch | onnxruntime |" in row and "**slower**" in row
    assert f"{slow.ratio:.3f} ({slow.ci_low:.3f}–{slow.ci_high:.3f})" in row
    assert f"+{(slow.ratio - 1) * 100:.1f}%" in row
    assert "not compared: B oom (CUDA out of memory)" in md
    assert "## Only in B (1)" in md and "bs64" in md.split("## Only in B")[1]

    data = json.loads(to_json(result))
    assert data["ignored_fields"] == ["backend", "options"]
    assert data["counts"] == {FASTER: 1, SLOWER: 1, NO_DIFFERENCE: 0, NOT_COMPARED: 1}
    by_batch = {p["a"]["batch_size"]: p for p in data["pairs"]}
    assert by_batch[1]["ratio"] == slow.ratio and by_batch[1]["ci_low"] == slow.ci_low
    assert by_batch[1]["verdict"] == SLOWER and by_batch[1]["b"]["backend"] == "onnxruntime"
    assert by_batch[1]["a"]["case_id"] == case("torch", 1).case_id
    assert by_batch[16]["ratio"] is None and by_batch[16]["b_status"] == "oom"
    assert [r["batch_size"] for r in data["only_b"]] == [64]
    assert data["method"]["resamples"] == 2000


def test_markdown_with_nothing_paired():
    result = compare([ok(case(batch=1), latencies(1))], [ok(case(batch=8), latencies(2))])
    md = to_markdown(result)
    assert "no pairs" in md and "## Only in A (1)" in md and "## Only in B (1)" in md
    assert "| case |" not in md


def tight(seed, scale=1.0, n=400):
    """Samples so steady that the bootstrap interval of a ratio is about +-0.1% wide."""
    return (np.random.default_rng(seed).normal(10.0, 0.01, n) * scale).tolist()


@pytest.mark.parametrize("scale, verdict_without_margin", [(1.01, SLOWER), (0.99, FASTER)])
def test_a_one_percent_change_with_a_tight_interval_is_within_the_noise_margin(
        scale, verdict_without_margin):
    a, b = ok(case(), tight(1)), ok(case(), tight(2, scale))
    p = compare_pair(a, b)
    assert p.ratio == pytest.approx(scale, abs=0.001)
    assert p.ci_low > 1 or p.ci_high < 1  # the interval alone would call it significant
    assert p.verdict == NO_DIFFERENCE
    assert compare_pair(a, b, margin=0.0).verdict == verdict_without_margin
    assert cmp.MARGIN == 0.02


@pytest.mark.parametrize("scale, verdict", [(1.03, SLOWER), (0.97, FASTER)])
def test_a_change_beyond_the_margin_with_a_tight_interval_is_a_verdict(scale, verdict):
    assert compare_pair(ok(case(), tight(1)), ok(case(), tight(2, scale))).verdict == verdict
    # a margin wider than the change: no verdict
    assert compare_pair(ok(case(), tight(1)), ok(case(), tight(2, scale)),
                        margin=0.04).verdict == NO_DIFFERENCE
