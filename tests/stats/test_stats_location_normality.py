"""Welch's t-test, Shapiro-Wilk and descriptive statistics."""

import math

import numpy as np
import pytest
from scipy import stats as st

from cffaudit.stats import describe, shapiro_wilk, welch_test

from tests.stats import paper_samples as ps


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_welch_matches_scipy_including_interval(alternative):
    # Reference: scipy.stats.ttest_ind(equal_var=False) and its confidence_interval().
    rng = np.random.default_rng(2)
    a, b = rng.normal(1.0, 1.0, 8), rng.normal(0.0, 3.0, 13)
    ours = welch_test(a, b, alternative=alternative, confidence_level=0.9)
    ref = st.ttest_ind(a, b, equal_var=False, alternative=alternative)
    ci = ref.confidence_interval(confidence_level=0.9)
    assert ours.statistic == pytest.approx(ref.statistic, rel=1e-10)
    assert ours.pvalue == pytest.approx(ref.pvalue, rel=1e-10)
    assert ours.df == pytest.approx(ref.df, rel=1e-10)
    assert ours.confidence_interval.low == pytest.approx(ci.low, rel=1e-10)
    assert ours.confidence_interval.high == pytest.approx(ci.high, rel=1e-10)


def test_welch_matches_statsmodels_compare_means():
    # Second reference: statsmodels CompareMeans with usevar='unequal'.
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

    a, b = np.array(ps.CLAMP_POOLED), np.array(ps.SUBTRACT_POOLED)
    cm = CompareMeans(DescrStatsW(a), DescrStatsW(b))
    t, p, df = cm.ttest_ind(usevar="unequal")
    low, high = cm.tconfint_diff(alpha=0.05, usevar="unequal")
    ours = welch_test(a, b)
    assert (ours.statistic, ours.pvalue, ours.df) == pytest.approx((t, p, df), rel=1e-10)
    assert tuple(ours.confidence_interval) == pytest.approx((low, high), rel=1e-10)
    assert ours.mean_difference == pytest.approx(a.mean() - b.mean())


def test_welch_one_constant_group_is_fine_two_are_not():
    res = welch_test([1.0, 1.0, 1.0], [0.0, 1.0, 2.0, 3.0])
    assert math.isfinite(res.statistic)
    with pytest.raises(ValueError, match="both groups are constant"):
        welch_test([1.0, 1.0], [2.0, 2.0])


def test_shapiro_reproduces_published_values():
    # Shapiro & Wilk (1965), Biometrika 52, the weights of 11 men: W = 0.79.
    weights = [148, 154, 158, 160, 161, 162, 166, 170, 182, 195, 236]
    assert shapiro_wilk(weights).statistic == pytest.approx(0.79, abs=0.005)
    # Seed paper, Table 23 (published): W and p of the pooled groups.
    expected = [
        (ps.CLAMP_POOLED, 0.9513, 0.5816),
        (ps.SUBTRACT_POOLED, 0.9516, 0.5853),
        (ps.LOW_CLAMP_POOLED, 0.9608, 0.7355),
        (ps.SUBTRACT_DETACH, 0.9074, 0.3780),
    ]
    for values, w, p in expected:
        res = shapiro_wilk(values)
        assert (round(res.statistic, 4), round(res.pvalue, 4)) == (w, p)
        assert res.n == len(values)


def test_describe_matches_numpy_and_paper_table3():
    # Seed paper Table 3, clamp/detach: mean 78.52, std 0.927, var 0.8590.
    g = describe(ps.CLAMP_DETACH, "clamp/detach")
    assert (round(g.mean, 2), round(g.sd, 3), round(g.var, 4)) == (78.52, 0.927, 0.8590)
    x = np.array(ps.CLAMP_DETACH)
    assert g.var == pytest.approx(np.var(x, ddof=1)) and g.sem == pytest.approx(st.sem(x))
    assert g.n == 7 and g.label == "clamp/detach"
    assert describe([2.0, 2.0]).var == 0.0  # a constant group is described, not rejected
