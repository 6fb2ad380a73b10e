"""Tests about location: Welch's t-test with the interval for the mean difference."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats as _st

from cffaudit.stats._validate import as_sample, check_alternative, check_probability
from cffaudit.stats.results import ConfidenceInterval, WelchResult


def welch_test(
    a: Any,
    b: Any,
    *,
    alternative: str = "two-sided",
    confidence_level: float = 0.95,
) -> WelchResult:
    """Welch's t-test of mean(A) - mean(B) without assuming equal variances.

    Degrees of freedom by the Welch-Satterthwaite equation. One constant group is fine
    (the other carries the standard error); two constant groups are not.

    Args:
        a: Values of group A.
        b: Values of group B.
        alternative: 'two-sided', 'greater' (mean(A) > mean(B)) or 'less'.
        confidence_level: Coverage of the interval for the mean difference.

    Raises:
        ValueError: If a group has fewer than 2 values or holds NaN, or both are constant.
    """
    x = as_sample(a, "a", allow_constant=True)
    y = as_sample(b, "b", allow_constant=True)
    check_alternative(alternative)
    cl = check_probability(confidence_level, "confidence_level")
    va, vb = np.var(x, ddof=1) / x.size, np.var(y, ddof=1) / y.size
    se2 = float(va + vb)
    if se2 == 0.0:
        raise ValueError("a, b: both groups are constant; the standard error of the difference is zero")
    se = math.sqrt(se2)
    df = se2**2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
    diff = float(np.mean(x) - np.mean(y))
    t = diff / se
    if alternative == "two-sided":
        p = float(2.0 * _st.t.sf(abs(t), df))
        h = float(_st.t.isf((1.0 - cl) / 2.0, df)) * se
        ci = ConfidenceInterval(diff - h, diff + h)
    elif alternative == "greater":
        p = float(_st.t.sf(t, df))
        ci = ConfidenceInterval(diff - float(_st.t.isf(1.0 - cl, df)) * se, math.inf)
    else:
        p = float(_st.t.cdf(t, df))
        ci = ConfidenceInterval(-math.inf, diff + float(_st.t.isf(1.0 - cl, df)) * se)
    return WelchResult(
        statistic=float(t),
        pvalue=min(1.0, p),
        df=float(df),
        mean_difference=diff,
        standard_error=se,
        confidence_interval=ci,
        confidence_level=cl,
        alternative=alternative,
    )
