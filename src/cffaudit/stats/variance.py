"""Tests about spread: variance-ratio F-test, bootstrap of the ratio, Levene/Brown-Forsythe.

scipy has no two-sample variance-ratio F-test, so it is written here from
`scipy.stats.f`. Levene's statistic is computed directly (one-way ANOVA on absolute
deviations) so that scipy.stats.levene stays an independent check in the tests.
"""

from __future__ import annotations

import math
from typing import Any, Sequence, Union

import numpy as np
import pandas as pd
from scipy import stats as _st

from cffaudit.stats._validate import as_sample, check_alternative, check_probability, plain
from cffaudit.stats.results import (
    AnovaTerm,
    BootstrapResult,
    ConfidenceInterval,
    FactorialLeveneResult,
    LeveneResult,
    VarianceRatioResult,
)

_CENTERS = ("mean", "median")


def variance_ratio_test(
    a: Any,
    b: Any,
    *,
    alternative: str = "two-sided",
    confidence_level: float = 0.95,
) -> VarianceRatioResult:
    """F-test of H0: var(A) = var(B), with a confidence interval for var(A) / var(B).

    Under normality, (s_a^2 / s_b^2) / (sigma_a^2 / sigma_b^2) follows F(n_a - 1, n_b - 1).
    The two-sided p-value doubles the smaller tail (as R's `var.test`), and the interval
    inverts the same pivot.

    Args:
        a: Values of the numerator group (e.g. clamp).
        b: Values of the denominator group (e.g. subtract).
        alternative: 'two-sided', 'greater' (var(A) > var(B)) or 'less'.
        confidence_level: Coverage of the interval for the ratio.

    Raises:
        ValueError: If a group has fewer than 2 values, holds NaN, or is constant (a zero
            variance makes the ratio 0 or infinite, which no F-test can qualify).
    """
    x = as_sample(a, "a")
    y = as_sample(b, "b")
    check_alternative(alternative)
    cl = check_probability(confidence_level, "confidence_level")
    d1, d2 = x.size - 1, y.size - 1
    var_a, var_b = float(np.var(x, ddof=1)), float(np.var(y, ddof=1))
    ratio = var_a / var_b
    lower_tail = float(_st.f.cdf(ratio, d1, d2))
    upper_tail = float(_st.f.sf(ratio, d1, d2))
    if alternative == "two-sided":
        p = min(1.0, 2.0 * min(lower_tail, upper_tail))
        q = (1.0 - cl) / 2.0
        ci = ConfidenceInterval(ratio / _st.f.isf(q, d1, d2), ratio / _st.f.ppf(q, d1, d2))
    elif alternative == "greater":
        p = upper_tail
        ci = ConfidenceInterval(ratio / _st.f.isf(1.0 - cl, d1, d2), math.inf)
    else:
        p = lower_tail
        ci = ConfidenceInterval(0.0, ratio / _st.f.ppf(1.0 - cl, d1, d2))
    return VarianceRatioResult(
        statistic=ratio,
        pvalue=p,
        df=(d1, d2),
        confidence_interval=ConfidenceInterval(float(ci.low), float(ci.high)),
        confidence_level=cl,
        alternative=alternative,
        var_a=var_a,
        var_b=var_b,
    )


def bootstrap_variance_ratio(
    a: Any,
    b: Any,
    *,
    n_resamples: int = 10_000,
    confidence_level: float = 0.95,
    rng: Union[None, int, np.random.Generator] = None,
) -> BootstrapResult:
    """Percentile-bootstrap confidence interval of var(A) / var(B).

    Each group is resampled with replacement independently of the other (the paper's
    procedure, Appendix E). A resample whose denominator group drew one value n times has
    variance zero; its ratio is +inf and is kept, because dropping those resamples would
    shift the percentiles. Their count is reported as `n_infinite`.

    Args:
        a: Values of the numerator group.
        b: Values of the denominator group.
        n_resamples: Number of bootstrap resamples.
        confidence_level: Coverage of the percentile interval.
        rng: A seed or a `numpy.random.Generator`. Required: the interval is random, and
            an unseeded call would not be reproducible.

    Raises:
        ValueError: If `rng` is None, `n_resamples` < 1, or a group is invalid (see
            `variance_ratio_test`).
    """
    x = as_sample(a, "a")
    y = as_sample(b, "b")
    cl = check_probability(confidence_level, "confidence_level")
    if int(n_resamples) != n_resamples or n_resamples < 1:
        raise ValueError(f"n_resamples: must be a positive integer, got {plain(n_resamples)!r}")
    if rng is None:
        raise ValueError("rng: pass a seed or numpy.random.Generator; the bootstrap must be reproducible")
    seed = int(rng) if isinstance(rng, (int, np.integer)) else None
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(seed)
    n_resamples = int(n_resamples)
    # (n_resamples, n) index draws: one row per resample, each group drawn on its own.
    xa = x[gen.integers(0, x.size, size=(n_resamples, x.size))]
    xb = y[gen.integers(0, y.size, size=(n_resamples, y.size))]
    va = np.var(xa, axis=1, ddof=1)
    vb = np.var(xb, axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = va / vb
    # 0/0 (both resamples constant) has no ratio at all; count it with the infinite ones
    # and place it at +inf, the conservative side for an upper bound.
    ratios = np.where(np.isnan(ratios), np.inf, ratios)
    alpha = 1.0 - cl
    low, high = (_percentile(ratios, q) for q in (alpha / 2, 1 - alpha / 2))
    # The ratio-scale standard deviation of the resamples swung from 12 to 1,222 on the
    # same data (a few near-zero denominators dominate it); the log ratio's is stable.
    finite = ratios[np.isfinite(ratios) & (ratios > 0)]
    se = float(np.std(np.log(finite), ddof=1)) if finite.size > 1 else math.nan
    return BootstrapResult(
        statistic=float(np.var(x, ddof=1) / np.var(y, ddof=1)),
        confidence_interval=ConfidenceInterval(float(low), float(high)),
        confidence_level=cl,
        n_resamples=n_resamples,
        standard_error=se,
        n_infinite=int(np.sum(~np.isfinite(ratios))),
        seed=seed,
        standard_error_of="log variance ratio",
    )


def _percentile(values: np.ndarray, q: float) -> float:
    """numpy's default (linear) percentile, except that a position touching +inf is +inf.

    np.percentile interpolates inf - inf into NaN there, which would hide the fact that
    the bound is unbounded.
    """
    v = np.sort(values)
    pos = q * (v.size - 1)
    lo, hi = int(math.floor(pos)), int(math.ceil(pos))
    if math.isinf(v[hi]) and (hi == lo or pos > lo):
        return math.inf
    return float(v[lo] + (v[hi] - v[lo]) * (pos - lo))


def _center_name(center: str) -> str:
    if center not in _CENTERS:
        raise ValueError(f"center: must be 'mean' (Levene) or 'median' (Brown-Forsythe), got {center!r}")
    return center


def levene_test(*groups: Any, center: str = "mean") -> LeveneResult:
    """Levene's test of equal variances across k >= 2 groups.

    One-way ANOVA F on |x_ij - c_i|, where c_i is the group mean (Levene 1960) or median
    (Brown & Forsythe 1974). A constant group is allowed (its deviations are zero, which
    is what the test is about); if every group is constant the statistic is 0/0 and an
    error is raised.

    Args:
        *groups: Two or more samples.
        center: 'mean' (Levene) or 'median' (Brown-Forsythe).

    Raises:
        ValueError: If fewer than two groups are given, a group has fewer than 2 values or
            holds NaN, or all groups are constant.
    """
    _center_name(center)
    if len(groups) < 2:
        raise ValueError(f"groups: need at least 2 groups, got {len(groups)}")
    xs = [as_sample(g, f"groups[{i}]", allow_constant=True) for i, g in enumerate(groups)]
    centre = np.mean if center == "mean" else np.median
    z = [np.abs(x - centre(x)) for x in xs]
    k = len(z)
    n = np.array([zi.size for zi in z], dtype=np.float64)
    N = float(n.sum())
    zbar_i = np.array([zi.mean() for zi in z])
    zbar = float(np.concatenate(z).mean())
    between = float(np.sum(n * (zbar_i - zbar) ** 2))
    within = float(sum(np.sum((zi - m) ** 2) for zi, m in zip(z, zbar_i)))
    if within == 0.0:
        if between == 0.0:
            raise ValueError("groups: every group is constant; the Levene statistic is 0/0")
        stat = math.inf
    else:
        stat = (N - k) / (k - 1) * between / within
    p = float(_st.f.sf(stat, k - 1, N - k)) if math.isfinite(stat) else 0.0
    return LeveneResult(statistic=float(stat), pvalue=p, df=(k - 1, int(N - k)), center=center)


def brown_forsythe_test(*groups: Any) -> LeveneResult:
    """Brown-Forsythe test: Levene's test with deviations from the group medians.

    See `levene_test` for arguments and errors.
    """
    return levene_test(*groups, center="median")


def factorial_levene(
    frame: pd.DataFrame,
    response: str,
    factors: Sequence[str],
    *,
    center: str = "mean",
    anova_type: int = 2,
) -> FactorialLeveneResult:
    """Factorial Levene / Brown-Forsythe test: ANOVA on absolute deviations from cell centers.

    Each value is replaced by |y - c_cell|, c_cell being the mean (Levene) or median
    (Brown-Forsythe) of its cell (one combination of factor levels); then a full-factorial
    linear model with sum-to-zero contrasts is fitted by statsmodels OLS and tested with
    `anova_lm`. In a balanced design ANOVA types 1, 2 and 3 agree.

    Args:
        frame: One row per run.
        response: Column with the per-run values (e.g. 'test_acc').
        factors: Column names of the crossed factors (e.g. ['margin', 'stability']).
        center: 'mean' or 'median'.
        anova_type: 1, 2 or 3, passed to `statsmodels.stats.anova.anova_lm`.

    Returns:
        One `AnovaTerm` per main effect and interaction, named 'a', 'b', 'a:b'.

    Raises:
        ValueError: If a column is missing, the response holds NaN, a factor has fewer than
            two levels or NaN, a cell of the full crossing is empty or has fewer than 2 runs.
    """
    import statsmodels.formula.api as smf
    from statsmodels.stats.anova import anova_lm

    _center_name(center)
    if anova_type not in (1, 2, 3):
        raise ValueError(f"anova_type: must be 1, 2 or 3, got {plain(anova_type)!r}")
    factors = list(factors)
    if not factors:
        raise ValueError("factors: need at least one factor")
    if len(set(factors)) != len(factors):
        raise ValueError(f"factors: repeated names in {factors}")
    if response not in frame.columns:
        raise ValueError(f"response: no column {response!r}; columns are {list(frame.columns)}")
    for f in factors:
        if f not in frame.columns:
            raise ValueError(f"factors: no column {f!r}; columns are {list(frame.columns)}")
        if frame[f].isna().any():
            raise ValueError(f"factors: column {f!r} has missing levels")
        if frame[f].nunique() < 2:
            raise ValueError(f"factors: {f!r} has a single level {frame[f].iloc[0]!r}; nothing to compare")
    as_sample(frame[response].to_numpy(), "response", allow_constant=True)
    cells = frame.groupby(factors, observed=True)[response]
    sizes = cells.size()
    expected = int(np.prod([frame[f].nunique() for f in factors]))
    if len(sizes) != expected:
        raise ValueError(f"factors: the crossing of {factors} has {expected} cells but only {len(sizes)} hold runs")
    if (sizes < 2).any():
        raise ValueError(f"frame: cell {sizes.idxmin()!r} has {int(sizes.min())} run(s); each cell needs 2")
    centre = cells.transform("mean" if center == "mean" else "median")
    # Factor names may hold spaces or dots; fit on safe aliases and map the names back.
    alias = {f: f"f{i}" for i, f in enumerate(factors)}
    data = pd.DataFrame({alias[f]: frame[f].astype(str).to_numpy() for f in factors})
    data["z"] = np.abs(frame[response].to_numpy(dtype=np.float64) - centre.to_numpy(dtype=np.float64))
    if float(data["z"].abs().sum()) == 0.0:
        raise ValueError("frame: every cell is constant; the test statistic is 0/0")
    rhs = " * ".join(f"C({alias[f]}, Sum)" for f in factors)
    fit = smf.ols(f"z ~ {rhs}", data=data).fit()
    table = anova_lm(fit, typ=anova_type)
    df_resid = float(table.loc["Residual", "df"])
    back = {f"C({alias[f]}, Sum)": f for f in factors}
    terms = []
    for name, row in table.iterrows():
        if name in ("Residual", "Intercept"):
            continue
        label = ":".join(back[part] for part in str(name).split(":"))
        terms.append(
            AnovaTerm(
                term=label,
                statistic=float(row["F"]),
                pvalue=float(row["PR(>F)"]),
                df=(float(row["df"]), df_resid),
                sum_sq=float(row["sum_sq"]),
            )
        )
    return FactorialLeveneResult(center=center, factors=tuple(factors), terms=tuple(terms), anova_type=anova_type)

