"""Variance-ratio F-test, its bootstrap, Levene / Brown-Forsythe (k-group and factorial)."""

import math

import numpy as np
import pytest
from scipy import stats as st

from cffaudit.stats import (
    bootstrap_variance_ratio,
    brown_forsythe_test,
    factorial_levene,
    levene_test,
    variance_ratio_test,
)

from tests.stats import paper_samples as ps


# ----------------------------------------------------------------------------- F-test


def test_variance_ratio_matches_statsmodels_goldfeld_quandt():
    # statsmodels' Goldfeld-Quandt test regressed on a constant is an independent
    # implementation of the same F-test: F = var(second part) / var(first part),
    # two-sided p = 2 * min(tail) with df (n2-1, n1-1). Source: statsmodels.stats.diagnostic.
    # Its one-sided branches pass the df in (n1-1, n2-1) order, so they are compared on
    # equal group sizes only, where the order does not matter.
    from statsmodels.stats.diagnostic import het_goldfeldquandt

    rng = np.random.default_rng(1)
    names = {"two-sided": "two-sided", "increasing": "greater", "decreasing": "less"}
    for sizes, alternatives in [((9, 12), ["two-sided"]), ((10, 10), list(names))]:
        first, second = rng.normal(0, 1, sizes[0]), rng.normal(0, 2, sizes[1])
        y = np.r_[first, second]
        for alternative in alternatives:
            gq = het_goldfeldquandt(y, np.ones((y.size, 1)), split=first.size, alternative=alternative, result_object=False)
            ours = variance_ratio_test(second, first, alternative=names[alternative])
            assert ours.statistic == pytest.approx(gq[0], rel=1e-10)
            assert ours.pvalue == pytest.approx(gq[1], rel=1e-8)
            assert ours.df == (sizes[1] - 1, sizes[0] - 1)


def test_variance_ratio_reproduces_published_paper_pvalues():
    # Seed paper, Table 6: standard schedule F-test p = 0.003, low schedule p = 0.19.
    std = variance_ratio_test(ps.CLAMP_POOLED, ps.SUBTRACT_POOLED)
    low = variance_ratio_test(ps.LOW_CLAMP_POOLED, ps.SUBTRACT_DETACH)
    assert round(std.pvalue, 3) == 0.003
    assert round(low.pvalue, 2) == 0.19
    assert std.df == (13, 13) and low.df == (13, 6)
    # Table 5 variances, 1.0170 / 0.1724.
    assert round(std.var_a, 4) == 1.0170 and round(std.var_b, 4) == 0.1724


def test_variance_ratio_interval_inverts_the_test():
    # The CI endpoints are the ratios r0 at which the test of H0: ratio = r0 has p = alpha;
    # testing a scaled sample checks that without reusing the interval formula.
    a, b = np.array(ps.CLAMP_POOLED), np.array(ps.SUBTRACT_POOLED)
    res = variance_ratio_test(a, b, confidence_level=0.9)
    for r0 in res.confidence_interval:
        shifted = variance_ratio_test(a, b * math.sqrt(r0))  # var(b) * r0
        assert shifted.pvalue == pytest.approx(0.10, abs=1e-9)
    lo, hi = res.confidence_interval
    assert lo < res.statistic < hi


def test_variance_ratio_one_sided_intervals():
    a, b = ps.CLAMP_POOLED, ps.SUBTRACT_POOLED
    g = variance_ratio_test(a, b, alternative="greater")
    l = variance_ratio_test(a, b, alternative="less")
    assert g.pvalue + l.pvalue == pytest.approx(1.0)
    assert g.confidence_interval.high == math.inf and l.confidence_interval.low == 0.0
    # one-sided 95% bound equals the two-sided 90% bound
    two = variance_ratio_test(a, b, confidence_level=0.90)
    assert g.confidence_interval.low == pytest.approx(two.confidence_interval.low)
    assert l.confidence_interval.high == pytest.approx(two.confidence_interval.high)


def test_variance_ratio_f_quantiles_match_nist_handbook():
    # NIST/SEMATECH e-Handbook 1.3.5.9 (F-test, JAHANMI2): F(0.025, 239, 239) = 0.7756,
    # F(0.975, 239, 239) = 1.2894. With equal spread the CI is F / those quantiles.
    x = np.tile([-1.0, 1.0], 120)
    res = variance_ratio_test(x, x)
    assert res.statistic == 1.0 and res.pvalue == pytest.approx(1.0)
    assert res.confidence_interval.low == pytest.approx(1 / 1.2894, abs=2e-4)
    assert res.confidence_interval.high == pytest.approx(1 / 0.7756, abs=4e-4)


# ----------------------------------------------------------------------------- bootstrap


def test_bootstrap_agrees_with_scipy_bootstrap():
    # scipy.stats.bootstrap with two unpaired samples resamples each independently, the
    # same procedure; percentile CIs agree up to Monte Carlo error.
    a, b = np.array(ps.CLAMP_POOLED), np.array(ps.SUBTRACT_POOLED)
    ours = bootstrap_variance_ratio(a, b, n_resamples=20_000, rng=7)
    ref = st.bootstrap(
        (a, b),
        lambda x, y, axis: np.var(x, axis=axis, ddof=1) / np.var(y, axis=axis, ddof=1),
        n_resamples=20_000,
        method="percentile",
        vectorized=True,
        paired=False,
        rng=np.random.default_rng(11),
    ).confidence_interval
    assert ours.confidence_interval.low == pytest.approx(ref.low, rel=0.06)
    assert ours.confidence_interval.high == pytest.approx(ref.high, rel=0.06)
    assert ours.n_resamples == 20_000 and ours.seed == 7


def test_bootstrap_is_reproducible_and_seed_dependent():
    a, b = ps.CLAMP_POOLED, ps.SUBTRACT_POOLED
    r1 = bootstrap_variance_ratio(a, b, n_resamples=2000, rng=3)
    r2 = bootstrap_variance_ratio(a, b, n_resamples=2000, rng=np.random.default_rng(3))
    r3 = bootstrap_variance_ratio(a, b, n_resamples=2000, rng=4)
    assert r1.confidence_interval == r2.confidence_interval
    assert r1.confidence_interval != r3.confidence_interval
    assert r1.statistic == pytest.approx(np.var(a, ddof=1) / np.var(b, ddof=1))


def test_bootstrap_counts_infinite_ratios_of_tiny_groups():
    # With 2 values per group, half the denominator resamples repeat one value: variance 0.
    res = bootstrap_variance_ratio([1.0, 2.0], [3.0, 5.0], n_resamples=4000, rng=0)
    assert 0.4 < res.n_infinite / 4000 < 0.6
    assert res.confidence_interval.high == math.inf


def test_bootstrap_needs_an_explicit_rng():
    with pytest.raises(ValueError, match="rng"):
        bootstrap_variance_ratio([1.0, 2.0, 3.0], [1.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_variance_ratio([1.0, 2.0, 3.0], [1.0, 3.0, 4.0], n_resamples=0, rng=1)


# ----------------------------------------------------------------------------- Levene


@pytest.mark.parametrize("center", ["mean", "median"])
def test_levene_matches_scipy(center):
    rng = np.random.default_rng(5)
    groups = [rng.normal(0, s, n) for s, n in [(1, 6), (2, 9), (0.5, 7), (3, 5)]]
    ours = levene_test(*groups, center=center)
    ref = st.levene(*groups, center=center)
    assert ours.statistic == pytest.approx(ref.statistic, rel=1e-10)
    assert ours.pvalue == pytest.approx(ref.pvalue, rel=1e-10)
    assert ours.df == (3, 23)
    assert brown_forsythe_test(*groups).pvalue == pytest.approx(st.levene(*groups, center="median").pvalue)


def test_levene_reproduces_paper_table4_values():
    # Seed paper Table 4 (published): Levene 0.061 / 0.824 / 0.058 and Brown-Forsythe
    # 0.058 / 0.856 / 0.137. These are one-way tests pooled over the other factor and the
    # 4-cell k-group test (see cffaudit.report.paper for why).
    cd, cr, sd, sr = ps.CLAMP_DETACH, ps.CLAMP_DIRECT, ps.SUBTRACT_DETACH, ps.SUBTRACT_DIRECT
    assert round(levene_test(cd + cr, sd + sr).pvalue, 3) == 0.061
    assert round(levene_test(cd + sd, cr + sr).pvalue, 3) == 0.824
    assert round(levene_test(cd, cr, sd, sr).pvalue, 3) == 0.058
    assert round(brown_forsythe_test(cd + cr, sd + sr).pvalue, 3) == 0.058
    assert round(brown_forsythe_test(cd + sd, cr + sr).pvalue, 3) == 0.856
    assert round(brown_forsythe_test(cd, cr, sd, sr).pvalue, 3) == 0.137


def test_levene_allows_one_constant_group_but_not_all():
    res = levene_test([1.0, 1.0, 1.0], [0.0, 2.0, 4.0])
    assert res.statistic > 0 and 0 < res.pvalue < 1
    with pytest.raises(ValueError, match="groups"):
        levene_test([1.0, 1.0], [2.0, 2.0])
    with pytest.raises(ValueError, match="groups"):
        levene_test([1.0, 2.0])
    with pytest.raises(ValueError, match="center"):
        levene_test([1.0, 2.0], [1.0, 3.0], center="trimmed")


# ----------------------------------------------------------------------------- factorial


def _factorial_frame():
    return ps.factorial_frame("acc")


@pytest.mark.parametrize("center", ["mean", "median"])
def test_factorial_levene_matches_hand_computed_two_way_anova(center):
    # Balanced 2x2 two-way ANOVA by the textbook sums of squares (e.g. Montgomery,
    # Design and Analysis of Experiments, ch. 5) on |y - cell center|.
    frame = _factorial_frame()
    z = (frame.acc - frame.groupby(["margin", "stability"]).acc.transform(center)).abs()
    frame = frame.assign(z=z)
    n, a, b = 7, 2, 2
    grand = frame.z.mean()
    ma = frame.groupby("margin").z.mean()
    mb = frame.groupby("stability").z.mean()
    mab = frame.groupby(["margin", "stability"]).z.mean()
    ss_a = b * n * ((ma - grand) ** 2).sum()
    ss_b = a * n * ((mb - grand) ** 2).sum()
    ss_ab = n * sum(
        (mab[(i, j)] - ma[i] - mb[j] + grand) ** 2 for i in ma.index for j in mb.index
    )
    ss_e = ((frame.z - frame.groupby(["margin", "stability"]).z.transform("mean")) ** 2).sum()
    df_e = a * b * (n - 1)
    expected = {"margin": ss_a, "stability": ss_b, "margin:stability": ss_ab}
    res = factorial_levene(frame, "acc", ["margin", "stability"], center=center)
    for term, ss in expected.items():
        row = res.term(term)
        assert row.sum_sq == pytest.approx(ss, rel=1e-9)
        assert row.statistic == pytest.approx(ss / (ss_e / df_e), rel=1e-9)
        assert row.pvalue == pytest.approx(st.f.sf(ss / (ss_e / df_e), 1, df_e), rel=1e-9)
        assert row.df == (1.0, df_e)


def test_factorial_levene_with_one_factor_is_the_one_way_test():
    frame = _factorial_frame()
    res = factorial_levene(frame, "acc", ["margin"], center="mean")
    ref = st.levene(ps.CLAMP_POOLED, ps.SUBTRACT_POOLED, center="mean")
    assert res.term("margin").pvalue == pytest.approx(ref.pvalue, rel=1e-9)


def test_factorial_levene_balanced_types_agree_and_names_survive_odd_columns():
    frame = _factorial_frame().rename(columns={"margin": "margin type", "stability": "loss.stability"})
    results = [factorial_levene(frame, "acc", ["margin type", "loss.stability"], anova_type=t) for t in (1, 2, 3)]
    for t in ("margin type", "loss.stability", "margin type:loss.stability"):
        ps_ = [r.term(t).pvalue for r in results]
        assert ps_[0] == pytest.approx(ps_[1]) == pytest.approx(ps_[2])


@pytest.mark.parametrize(
    "mutate, param",
    [
        (lambda f: f.drop(columns="stability"), "factors"),
        (lambda f: f.assign(acc=f.acc.where(f.index != 3)), "response"),
        (lambda f: f[~((f.margin == "clamp") & (f.stability == "direct"))], "factors"),
        (lambda f: f.drop(index=f[(f.margin == "clamp") & (f.stability == "direct")].index[1:]), "frame"),
        (lambda f: f.assign(stability="detach"), "factors"),
        (lambda f: f.assign(acc=1.0), "frame"),
    ],
    ids=["unknown-factor", "nan-response", "empty-cell", "cell-of-one", "single-level", "all-constant"],
)
def test_factorial_levene_rejects_invalid_designs(mutate, param):
    with pytest.raises(ValueError, match=f"^{param}:"):
        factorial_levene(mutate(_factorial_frame()), "acc", ["margin", "stability"])
    with pytest.raises(ValueError, match="^response:"):
        factorial_levene(_factorial_frame(), "accuracy", ["margin", "stability"])
