"""Effect sizes with intervals: variance and SD ratios, per-group variances, Hedges' g, P(A beats B).

scipy supplies the distributions (F, chi-square, noncentral t, Student t) and the
Mann-Whitney count; the Brunner-Munzel standard error of P(A > B) is written here
because scipy's `brunnermunzel` returns only the test (its statistic is checked equal to
(p - 1/2) / se in the tests).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import numpy as np
from scipy import optimize as _opt
from scipy import special as _sp
from scipy import stats as _st

from cffaudit.stats._validate import as_sample, check_probability
from cffaudit.stats.equal_variance import BONETT_MIN_N, bonett_test
from cffaudit.stats.results import ConfidenceInterval, _Result
from cffaudit.stats.variance import variance_ratio_test


@dataclasses.dataclass(frozen=True)
class Estimate(_Result):
    """A point estimate with its interval and how the interval was made."""

    name: str
    estimate: float
    confidence_interval: ConfidenceInterval
    confidence_level: float
    method: str


@dataclasses.dataclass(frozen=True)
class EffectSizes(_Result):
    """Every effect size of one comparison of A with B (ratios are A over B)."""

    variance_ratio: Estimate
    variance_ratio_robust: Optional[Estimate]
    sd_ratio: Estimate
    variance_a: Estimate
    variance_b: Estimate
    hedges_g: Optional[Estimate]
    prob_superiority: Optional[Estimate]


def variance_interval(values: Any, *, confidence_level: float = 0.95, name: str = "variance") -> Estimate:
    """Chi-square interval of one group's variance: (n-1) s^2 / chi2_{1-q} .. (n-1) s^2 / chi2_q (normal theory)."""
    x = as_sample(values, "values", allow_constant=True)
    cl = check_probability(confidence_level, "confidence_level")
    q, df = (1.0 - cl) / 2.0, x.size - 1
    s2 = float(np.var(x, ddof=1))
    ci = ConfidenceInterval(df * s2 / float(_st.chi2.isf(q, df)), df * s2 / float(_st.chi2.ppf(q, df)))
    return Estimate(name, s2, ci, cl, "chi-square (normal theory)")


def hedges_g(a: Any, b: Any, *, confidence_level: float = 0.95) -> Estimate:
    """Hedges' g of mean(A) - mean(B) with the exact noncentral-t interval of the effect.

    g = J d, d = (mean_a - mean_b) / s_pooled, J = Gamma(m/2) / (sqrt(m/2) Gamma((m-1)/2))
    with m = n_a + n_b - 2 (Hedges 1981, J. Educational Statistics 6(2):107-128). The
    interval inverts the noncentral t of t = d / sqrt(1/n_a + 1/n_b) for its noncentrality
    (Steiger & Fouladi 1997); it is exact for the population standardised difference
    under normality with equal variances, so it is not shrunk by J.

    Raises:
        ValueError: If a group has fewer than 2 values, or both are constant.
    """
    x, y = as_sample(a, "a", allow_constant=True), as_sample(b, "b", allow_constant=True)
    cl = check_probability(confidence_level, "confidence_level")
    n1, n2 = x.size, y.size
    m = n1 + n2 - 2
    sp2 = ((n1 - 1) * np.var(x, ddof=1) + (n2 - 1) * np.var(y, ddof=1)) / m
    if sp2 == 0:
        raise ValueError("a, b: both groups are constant; the standardised difference is undefined")
    d = float((np.mean(x) - np.mean(y)) / math.sqrt(sp2))
    j = math.exp(_sp.gammaln(m / 2) - _sp.gammaln((m - 1) / 2)) / math.sqrt(m / 2)
    scale = math.sqrt(1 / n1 + 1 / n2)
    t = d / scale
    q = (1.0 - cl) / 2.0

    def ncp_for(prob: float) -> float:
        # nct.cdf(t; m, ncp) falls with ncp; bracket the root generously around t.
        f = lambda ncp: float(_st.nct.cdf(t, m, ncp)) - prob  # noqa: E731
        span = 10.0 + 2.0 * abs(t)
        return float(_opt.brentq(f, t - span, t + span, xtol=1e-12))

    lo, hi = ncp_for(1.0 - q) * scale, ncp_for(q) * scale
    return Estimate("hedges_g", j * d, ConfidenceInterval(lo, hi), cl, "noncentral t (exact under normality)")


def probability_of_superiority(a: Any, b: Any, *, confidence_level: float = 0.95) -> Estimate:
    """P(a seed of A beats a seed of B) + half the chance of a tie, with a Brunner-Munzel interval.

    The estimate is U_A / (n_a n_b) (scipy's Mann-Whitney U). Its standard error is
    Brunner & Munzel's (2000, Biometrical Journal 42(1):17-25) from the placements:
    se = sqrt(n_a S_a^2 + n_b S_b^2) / (n_a n_b), with Welch-type df; the interval is
    p +- t se, clipped to [0, 1].

    Raises:
        ValueError: If a group has fewer than 2 values, or the groups do not overlap at
            all (every S^2 is zero, so the standard error is 0 and no interval exists).
    """
    x, y = as_sample(a, "a", allow_constant=True), as_sample(b, "b", allow_constant=True)
    cl = check_probability(confidence_level, "confidence_level")
    n1, n2 = x.size, y.size
    p = float(_st.mannwhitneyu(x, y, alternative="two-sided").statistic) / (n1 * n2)
    ranks = _st.rankdata(np.concatenate([x, y]))
    r1, r2 = ranks[:n1], ranks[n1:]
    own1, own2 = _st.rankdata(x), _st.rankdata(y)
    s1 = float(np.sum((r1 - own1 - r1.mean() + (n1 + 1) / 2) ** 2) / (n1 - 1))
    s2 = float(np.sum((r2 - own2 - r2.mean() + (n2 + 1) / 2) ** 2) / (n2 - 1))
    v = n1 * s1 + n2 * s2
    if v == 0:
        raise ValueError("a, b: the groups do not overlap, so the Brunner-Munzel standard error is 0; "
                         f"every seed of one group beats every seed of the other (estimate {p})")
    se = math.sqrt(v) / (n1 * n2)
    df = v**2 / ((n1 * s1) ** 2 / (n1 - 1) + (n2 * s2) ** 2 / (n2 - 1))
    h = float(_st.t.isf((1.0 - cl) / 2.0, df)) * se
    return Estimate("prob_superiority", p, ConfidenceInterval(max(0.0, p - h), min(1.0, p + h)), cl,
                    f"Brunner-Munzel (se {se:.4g}, df {df:.3g})")


def effect_sizes(a: Any, b: Any, *, confidence_level: float = 0.95) -> EffectSizes:
    """All effect sizes of A against B; those the data cannot carry are None.

    The variance ratio's interval is the F interval (normal theory) and, from 5 runs per
    group, Bonett's robust one; the SD ratio's is the square root of the F interval.

    Raises:
        ValueError: If a group has fewer than 2 values or is constant (no ratio exists).
    """
    f = variance_ratio_test(a, b, confidence_level=confidence_level)
    vr = Estimate("variance_ratio", f.statistic, f.confidence_interval, f.confidence_level, "F (normal theory)")
    robust = None
    if min(np.size(a), np.size(b)) >= BONETT_MIN_N:
        bt = bonett_test(a, b, confidence_level=confidence_level)
        robust = Estimate("variance_ratio", bt.statistic, bt.confidence_interval, f.confidence_level, "Bonett (2006)")
    sd = Estimate("sd_ratio", math.sqrt(f.statistic),
                  ConfidenceInterval(math.sqrt(f.confidence_interval.low), math.sqrt(f.confidence_interval.high)),
                  f.confidence_level, "square root of the F interval")

    def maybe(fn):
        try:
            return fn()
        except ValueError:
            return None

    return EffectSizes(
        variance_ratio=vr,
        variance_ratio_robust=robust,
        sd_ratio=sd,
        variance_a=variance_interval(a, confidence_level=confidence_level, name="variance_a"),
        variance_b=variance_interval(b, confidence_level=confidence_level, name="variance_b"),
        hedges_g=maybe(lambda: hedges_g(a, b, confidence_level=confidence_level)),
        prob_superiority=maybe(lambda: probability_of_superiority(a, b, confidence_level=confidence_level)),
    )
