"""Normality per group: the F-test of variances leans on it."""

from __future__ import annotations

from typing import Any

from scipy import stats as _st

from cffaudit.stats._validate import as_sample
from cffaudit.stats.results import ShapiroResult


def shapiro_wilk(values: Any) -> ShapiroResult:
    """Shapiro-Wilk W test of normality (scipy's implementation of Royston's algorithm).

    Args:
        values: The per-seed values of one group (3 to 5000 values).

    Raises:
        ValueError: If `values` has fewer than 3 values, holds NaN, or is constant (scipy
            would return W = 1 with a warning, a number that means nothing).
    """
    x = as_sample(values, "values", min_n=3)
    res = _st.shapiro(x)
    return ShapiroResult(statistic=float(res.statistic), pvalue=float(res.pvalue), n=int(x.size))
