"""Effect sizes against closed forms, scipy's Brunner-Munzel test and large-sample formulas."""

import math

import numpy as np
import pytest
from scipy import stats

from cffaudit.stats.effects import effect_sizes, hedges_g, probability_of_superiority, variance_interval
from cffaudit.stats.variance import variance_ratio_test

from tests.stats import paper_samples as ps

A, B = ps.CLAMP_POOLED, ps.SUBTRACT_POOLED


def test_variance_interval_is_the_chi_square_one():
    x = np.array(ps.CLAMP_DETACH)
    s2 = np.var(x, ddof=1)
    res = variance_interval(x)
    assert res.estimate == pytest.approx(s2)
    assert res.confidence_interval.low == pytest.approx(6 * s2 / stats.chi2.ppf(0.975, 6))
    assert res.confidence_interval.high == pytest.approx(6 * s2 / stats.chi2.ppf(0.025, 6))


def test_hedges_g_estimate_and_exact_interval():
    x, y = np.array(A), np.array(B)
    m = x.size + y.size - 2
    sp = math.sqrt(((x.size - 1) * np.var(x, ddof=1) + (y.size - 1) * np.var(y, ddof=1)) / m)
    d = (x.mean() - y.mean()) / sp
    res = hedges_g(x, y)
    assert res.estimate == pytest.approx(d * (1 - 3 / (4 * m - 1)), rel=1e-3)  # Hedges' approximate J
    scale = math.sqrt(1 / x.size + 1 / y.size)
    t = d / scale
    lo, hi = res.confidence_interval
    assert stats.nct.cdf(t, m, lo / scale) == pytest.approx(0.975, abs=1e-9)
    assert stats.nct.cdf(t, m, hi / scale) == pytest.approx(0.025, abs=1e-9)


def test_hedges_g_interval_approaches_the_large_sample_formula():
    rng = np.random.default_rng(2)
    x, y = rng.normal(0.5, 1, 400), rng.normal(0, 1, 400)
    res = hedges_g(x, y)
    g = res.estimate
    se = math.sqrt(800 / 400**2 + g**2 / (2 * 800))  # Hedges & Olkin (1985), eq. 5.14
    assert res.confidence_interval.low == pytest.approx(g - 1.96 * se, abs=0.01)
    assert res.confidence_interval.high == pytest.approx(g + 1.96 * se, abs=0.01)


def test_prob_superiority_matches_mann_whitney_and_brunner_munzel():
    res = probability_of_superiority(A, B)
    u = stats.mannwhitneyu(A, B).statistic
    assert res.estimate == pytest.approx(u / (len(A) * len(B)))
    bm = stats.brunnermunzel(B, A)  # scipy tests P(B < A) + ties/2 = 1/2, i.e. our estimate
    se = float(res.method.split("se ")[1].split(",")[0])
    assert bm.statistic == pytest.approx((res.estimate - 0.5) / se, rel=1e-3)
    lo, hi = res.confidence_interval
    assert lo < res.estimate < hi and 0 <= lo and hi <= 1


def test_prob_superiority_counts_ties_as_half():
    assert probability_of_superiority([1.0, 2.0, 3.0], [2.0, 2.5, 0.0]).estimate == pytest.approx(5.5 / 9)


def test_prob_superiority_refuses_groups_that_do_not_overlap():
    with pytest.raises(ValueError, match="^a, b: the groups do not overlap"):
        probability_of_superiority([5.0, 6.0, 7.0], [1.0, 2.0, 3.0])


def test_effect_sizes_bundle_and_degenerate_parts():
    res = effect_sizes(A, B)
    f = variance_ratio_test(A, B)
    assert res.variance_ratio.confidence_interval == f.confidence_interval
    assert res.sd_ratio.estimate == pytest.approx(math.sqrt(f.statistic))
    assert res.variance_ratio_robust.method == "Bonett (2006)"
    small = effect_sizes([1.0, 2.0, 4.0], [5.0, 6.5, 8.0])
    assert small.variance_ratio_robust is None and small.prob_superiority is None
    assert "NaN" not in str(res.to_dict())
