"""Tests of equal variances against scipy, brute force and published values."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from cffaudit.stats.equal_variance import (
    DEFAULT_PRIMARY,
    TEST_NAMES,
    bonett_log_ratio,
    bonett_pvalue,
    bonett_test,
    equal_variance_tests,
    paired_variance_test,
    permutation_variance_test,
    pitman_morgan_test,
    run_test,
)
from cffaudit.stats.variance import variance_ratio_test

from tests.stats import paper_samples as ps

# statpsych's ci.ratio.sd2 example (Bonett's R package, documented output):
Y1 = [32, 39, 26, 35, 43, 27, 40, 37, 34, 29]
Y2 = [36, 44, 47, 42, 49, 39, 46, 31, 33, 48]


def _statpsych_sd_ratio_ci(y1, y2, iterations, alpha=0.05):
    """A plain-Python transcription of the formulas of statpsych's ci.ratio.sd2.

    With `iterations` = 0 (ratios fixed at 1) its pooled kurtosis is Bonett's (2006)
    original one; with 10 it is statpsych's refinement, whose documented output checks
    every other ingredient (trim, c, se).
    """
    z = stats.norm.ppf(1 - alpha / 2)
    n1, n2 = len(y1), len(y2)

    def trimmed(y):
        k = int(len(y) * (1 / (2 * math.sqrt(len(y) - 4))))
        s = sorted(y)[k:len(y) - k]
        return sum(s) / len(s)

    def var(y):
        m = sum(y) / len(y)
        return sum((v - m) ** 2 for v in y) / (len(y) - 1)

    v1, v2, m1, m2 = var(y1), var(y2), trimmed(y1), trimmed(y2)
    a1, a2 = sum((v - m1) ** 4 for v in y1), sum((v - m2) ** 4 for v in y2)
    c0 = (n1 / (n1 - z)) * ((n2 - z) / n2)
    rl = ru = 1.0
    lo = hi = None
    for _ in range(max(iterations, 1)):
        kl = (n1 + n2) * (a1 + rl**4 * a2) / ((n1 - 1) * v1 + rl**2 * (n2 - 1) * v2) ** 2
        ku = (n1 + n2) * (a1 + ru**4 * a2) / ((n1 - 1) * v1 + ru**2 * (n2 - 1) * v2) ** 2
        sel = math.sqrt((kl - (n1 - 3) / n1) / (n1 - 1) + (kl - (n2 - 3) / n2) / (n2 - 1))
        seu = math.sqrt((ku - (n1 - 3) / n1) / (n1 - 1) + (ku - (n2 - 3) / n2) / (n2 - 1))
        lr = math.log(c0 * v1 / v2)
        lo, hi = math.sqrt(math.exp(lr - z * sel)), math.sqrt(math.exp(lr + z * seu))
        if iterations:
            rl, ru = lo, hi
    return lo, hi


def test_statpsych_transcription_reproduces_its_documented_output():
    lo, hi = _statpsych_sd_ratio_ci(Y1, Y2, iterations=10)
    assert (lo, hi) == pytest.approx((0.486279, 1.728396), abs=1e-6)


@pytest.mark.parametrize("a, b", [(Y1, Y2), (ps.CLAMP_POOLED, ps.SUBTRACT_DETACH), (ps.CLAMP_DIRECT, ps.SUBTRACT_DIRECT)])
def test_bonett_interval_equals_the_independent_transcription(a, b):
    lo, hi = _statpsych_sd_ratio_ci(a, b, iterations=0)
    res = bonett_test(a, b)
    assert res.confidence_interval.low == pytest.approx(lo**2, rel=1e-10)
    assert res.confidence_interval.high == pytest.approx(hi**2, rel=1e-10)
    assert res.statistic == pytest.approx(np.var(a, ddof=1) / np.var(b, ddof=1))


def test_bonett_pvalue_with_equal_n_inverts_the_interval():
    a, b = np.array(Y1, float), np.array(Y2, float)
    p = bonett_test(a, b).pvalue
    lr, se, lo, hi = bonett_log_ratio(a, b, confidence_level=1 - p)
    assert min(abs(lo), abs(hi)) == pytest.approx(0.0, abs=1e-9)  # the bound touches ratio 1
    lr, se, _, _ = bonett_log_ratio(a, b)
    assert bonett_pvalue(lr, se, 10, 10) == pytest.approx(2 * stats.norm.sf(abs(lr) / se))


def test_bonett_needs_five_values_per_group():
    with pytest.raises(ValueError, match="^a: needs at least 5"):
        bonett_test([1.0, 2.0, 4.0, 3.0], Y2)


def test_bonett_interval_covers_about_95_percent_of_normal_samples():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(4000, 20)) * 2.0, rng.normal(size=(4000, 20))
    _, _, lo, hi = bonett_log_ratio(x, y)
    cover = np.mean((lo < math.log(4.0)) & (math.log(4.0) < hi))
    assert 0.93 < cover < 0.97


def test_the_scipy_backed_tests_equal_scipy():
    a, b = ps.CLAMP_POOLED, ps.SUBTRACT_POOLED
    assert run_test("levene", a, b).pvalue == pytest.approx(stats.levene(a, b, center="mean").pvalue)
    assert run_test("brown-forsythe", a, b).pvalue == pytest.approx(stats.levene(a, b, center="median").pvalue)
    assert run_test("fligner-killeen", a, b).pvalue == pytest.approx(stats.fligner(a, b).pvalue)
    f = run_test("F", a, b)
    assert f.pvalue == pytest.approx(variance_ratio_test(a, b).pvalue) and f.normal_theory
    with pytest.raises(ValueError, match="^primary: unknown test 'bartlett'"):
        run_test("bartlett", a, b)


def test_permutation_test_equals_full_enumeration():
    a = np.array([1.0, 4.0, 2.5, 7.0])
    b = np.array([3.0, 3.4, 2.9, 3.2])
    ac, bc = a - np.median(a), b - np.median(b)
    pooled = np.concatenate([ac, bc])
    observed = math.log(np.var(ac, ddof=1) / np.var(bc, ddof=1))
    stats_all = []
    for idx in itertools.combinations(range(8), 4):
        rest = [i for i in range(8) if i not in idx]
        stats_all.append(math.log(np.var(pooled[list(idx)], ddof=1) / np.var(pooled[rest], ddof=1)))
    s = np.array(stats_all)
    eps = 1e-12
    p_ref = min(1.0, 2 * min(np.mean(s >= observed - eps), np.mean(s <= observed + eps)))
    res = permutation_variance_test(a, b, rng=0)
    assert res.statistic == pytest.approx(observed) and res.pvalue == pytest.approx(p_ref)


def test_all_tests_run_with_one_primary_first_and_unknown_names_refused():
    results, skipped = equal_variance_tests(ps.CLAMP_DETACH, ps.SUBTRACT_DETACH, primary="F", rng=1)
    assert [r.name for r in results][0] == "F" and results[0].role == "primary"
    assert sorted(r.name for r in results) == sorted(TEST_NAMES) and skipped == {}
    assert sum(r.primary for r in results) == 1 and DEFAULT_PRIMARY in TEST_NAMES
    results, skipped = equal_variance_tests([1.0, 2.0, 4.0], [2.0, 2.5, 2.2])
    assert "bonett" in skipped and "needs at least 5" in skipped["bonett"]
    with pytest.raises(ValueError, match="^primary: 'x' is not among"):
        equal_variance_tests(Y1, Y2, primary="x")
    with pytest.raises(ValueError, match=r"^tests: unknown test\(s\) \['x'\]"):
        equal_variance_tests(Y1, Y2, tests=("F", "x"), primary="F")


def test_pitman_morgan_equals_the_correlation_test_of_sums_and_differences():
    rng = np.random.default_rng(7)
    a = rng.normal(size=12)
    b = 0.6 * a + rng.normal(size=12) * 0.5
    res = pitman_morgan_test(a, b)
    ref = stats.pearsonr(a + b, a - b)
    assert res.sum_difference_correlation == pytest.approx(ref.statistic)
    assert res.pvalue == pytest.approx(ref.pvalue) and res.df == 10
    f, r = np.var(a, ddof=1) / np.var(b, ddof=1), np.corrcoef(a, b)[0, 1]
    closed = (f - 1) * math.sqrt(10) / (2 * math.sqrt(f * (1 - r**2)))  # Pitman (1939)
    assert res.statistic == pytest.approx(closed) and res.correlation == pytest.approx(r)


def test_pairing_by_seed_counts_the_runs_left_without_a_partner():
    a = {1: 78.5, 2: 78.3, 3: 78.4, 4: 77.0, 9: 80.0}
    b = {1: 78.8, 2: 79.3, 3: 78.9, 4: 79.0, 5: 77.9}
    res = paired_variance_test(a, b)
    assert res.n_pairs == 4 and res.n_dropped == 2
    ref = pitman_morgan_test([78.5, 78.3, 78.4, 77.0], [78.8, 79.3, 78.9, 79.0])
    assert res.pvalue == pytest.approx(ref.pvalue)
    assert paired_variance_test({1: 1.0, 2: 2.0}, {1: 1.0, 2: 3.0}) is None  # under 3 pairs: not paired
    with pytest.raises(ValueError, match="^a, b: paired samples need equal lengths"):
        pitman_morgan_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 5.0])


def test_bonett_pvalue_agrees_with_the_95_interval_at_unequal_n():
    rng = np.random.default_rng(9)
    x, y = rng.standard_t(4, size=(5000, 5)) * 1.6, rng.standard_t(4, size=(5000, 20))
    lr, se, lo, hi = bonett_log_ratio(x, y)
    p = bonett_pvalue(lr, se, 5, 20)
    excludes = (lo > 0) | (hi < 0)
    assert np.array_equal(p < 0.05, excludes) and 0.05 < excludes.mean() < 0.95
