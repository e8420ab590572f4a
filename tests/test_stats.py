"""Summary statistics against values worked out by hand (and against numpy / the stdlib)."""

import math
import statistics
from math import comb

import numpy as np
import pytest

from infersweep.measure.stats import Stats, median_ci, summarize, trimmed_mean

# 1..10 plus one outlier: n = 11.
OUTLIER = [float(x) for x in range(1, 11)] + [1000.0]


def test_median_mean_trimmed_with_an_outlier():
    s = summarize(OUTLIER)
    assert s.iterations == 11
    assert s.median == 6.0  # the 6th of 11 sorted values
    assert s.mean == pytest.approx(1055 / 11)  # (55 + 1000) / 11
    # int(0.1 * 11) = 1 value dropped at each end: 1 and 1000 go, the mean of 2..10 is 6.
    assert s.trimmed == pytest.approx(6.0)
    assert s.min == 1.0
    assert s.max == 1000.0


def test_std_is_sample_std_ddof1():
    s = summarize(OUTLIER)
    # By hand: sum x^2 = 385 + 1e6, n * mean^2 = 1055^2 / 11, divided by n - 1 = 10.
    by_hand = math.sqrt((1000385 - 1055 ** 2 / 11) / 10)
    assert s.std == pytest.approx(by_hand, rel=1e-12)
    assert s.std == pytest.approx(statistics.stdev(OUTLIER), rel=1e-12)
    assert s.std == pytest.approx(299.8667886, rel=1e-8)
    # ddof=0 would be a different number: make sure it is not that one.
    assert s.std != pytest.approx(statistics.pstdev(OUTLIER), rel=1e-6)

    assert summarize([2.0, 4.0]).std == pytest.approx(math.sqrt(2.0))  # ((1 + 1) / 1) ** 0.5


def test_trimmed_mean_drops_int_tenth_of_n_at_each_end():
    # n = 20: int(2.0) = 2 dropped at each end, both outliers on each side go.
    samples = [-500.0, -400.0] + [float(x) for x in range(3, 19)] + [900.0, 1000.0]
    assert summarize(samples).trimmed == pytest.approx(sum(range(3, 19)) / 16)  # 10.5
    # n = 19: int(1.9) = 1, only one value goes at each end.
    nineteen = [-500.0] + [float(x) for x in range(2, 19)] + [1000.0]
    assert summarize(nineteen).trimmed == pytest.approx(sum(range(2, 19)) / 17)
    # n < 10: nothing is dropped, the trimmed mean is the mean.
    assert summarize([1.0, 2.0, 3.0, 100.0]).trimmed == pytest.approx(26.5)
    # The helper itself, with another proportion.
    assert trimmed_mean(np.arange(1.0, 11.0), 0.2) == pytest.approx(5.5)  # mean of 3..8


def test_order_of_samples_does_not_matter():
    rng = np.random.default_rng(1)
    samples = rng.lognormal(size=57)
    a, b = summarize(samples), summarize(rng.permutation(samples))
    assert a == b
    assert a.median == pytest.approx(float(np.median(samples)))


def test_percentiles_by_hand_and_against_numpy():
    # 0..10: linear interpolation puts p90 at 9.0 and p99 at 9.9.
    s = summarize([float(x) for x in range(11)])
    assert s.p90 == pytest.approx(9.0)
    assert s.p99 == pytest.approx(9.9)
    rng = np.random.default_rng(7)
    for n in (1, 2, 7, 100, 1001):
        samples = rng.gamma(2.0, 3.0, size=n)
        st = summarize(samples)
        assert st.p90 == pytest.approx(np.percentile(samples, 90))
        assert st.p99 == pytest.approx(np.percentile(samples, 99))
        assert st.mean == pytest.approx(np.mean(samples))
        assert st.median == pytest.approx(np.median(samples))
        assert st.min <= st.median <= st.p90 <= st.p99 <= st.max


def test_even_n_median_is_the_midpoint():
    assert summarize([4.0, 1.0, 3.0, 2.0]).median == 2.5


def test_no_samples_is_an_error_and_one_sample_is_fine():
    with pytest.raises(ValueError):
        summarize([])
    s = summarize([3.5])
    assert (s.iterations, s.mean, s.median, s.trimmed, s.std) == (1, 3.5, 3.5, 3.5, 0.0)
    assert (s.ci_low, s.ci_high) == (3.5, 3.5)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_median_ci_is_the_full_range_below_six_samples(n):
    samples = [10.0 * (i + 1) for i in range(n)][::-1]  # unsorted on purpose
    s = summarize(samples)
    assert (s.ci_low, s.ci_high) == (10.0, 10.0 * n)


def test_median_ci_for_n_100_is_the_40th_to_61st_order_statistic():
    # The textbook distribution-free 95% interval for n = 100: ranks 40 and 61 (1-based).
    assert median_ci(np.arange(1.0, 101.0)) == (40.0, 61.0)
    s = summarize(np.arange(1.0, 101.0))
    assert (s.ci_low, s.ci_high) == (40.0, 61.0)


@pytest.mark.parametrize("n", [6, 7, 10, 11, 20, 33, 100, 101, 1000])
def test_median_ci_contains_the_median(n):
    rng = np.random.default_rng(n)
    samples = rng.exponential(size=n)
    s = summarize(samples)
    assert s.ci_low <= s.median <= s.ci_high
    assert s.min <= s.ci_low and s.ci_high <= s.max


def test_median_ci_ranks_are_symmetric_and_cover_at_least_95_percent_exactly():
    # With B ~ Binomial(n, 1/2) the count of samples below the true median, the interval
    # [x_(lo+1), x_(hi+1)] (1-based) covers it exactly when lo + 1 <= B <= hi.
    for n in range(6, 401):
        lo, hi = (int(v) for v in median_ci(np.arange(float(n))))
        assert lo + hi == n - 1, n
        coverage = sum(comb(n, b) for b in range(lo + 1, hi + 1)) / 2 ** n
        assert coverage >= 0.95, (n, lo, hi, coverage)


def test_median_ci_coverage_by_simulation():
    # Skewed like latencies: exponential(1), whose true median is ln 2.
    rng = np.random.default_rng(20240601)
    true_median = math.log(2)
    trials = 400
    covered = 0
    for _ in range(trials):
        s = summarize(rng.exponential(size=100))
        covered += s.ci_low <= true_median <= s.ci_high
    coverage = covered / trials
    assert 0.90 <= coverage <= 0.99, coverage  # exact coverage for n = 100 is 0.9648


def _stats(median, lo, hi):
    return Stats(iterations=10, mean=median, median=median, trimmed=median, std=0.0, min=lo,
                 max=hi, p90=hi, p99=hi, ci_low=lo, ci_high=hi)


def test_ci_halfwidth_rel():
    assert _stats(10.0, 9.0, 11.0).ci_halfwidth_rel == pytest.approx(0.1)
    assert _stats(200.0, 199.0, 203.0).ci_halfwidth_rel == pytest.approx(0.01)
    assert _stats(5.0, 5.0, 5.0).ci_halfwidth_rel == 0.0
    assert _stats(0.0, 0.0, 1.0).ci_halfwidth_rel == math.inf
    s = summarize(np.arange(1.0, 101.0))  # median 50.5, CI 40..61
    assert s.ci_halfwidth_rel == pytest.approx((61 - 40) / 2 / 50.5)
