"""Vectorised p-values of the tests of equal variances, for simulation.

Shared by the power calculations of `stats.planning` (tests without a closed-form power)
and by the simulation study in benchmarks/, so that both run the code the audit runs.
Each function takes (replicates, n) arrays and returns one p-value per replicate.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as _st

from cffaudit.stats.equal_variance import TEST_NAMES, bonett_log_ratio, bonett_pvalue, log_variance_ratio

#: Shapes of the simulation study, each scaled to unit variance.
DISTRIBUTIONS = ("normal", "t3", "lognormal", "bimodal")


def draw(dist: str, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Unit-variance draws of one shape (so a scale of sqrt(r) gives variance ratio r).

    Raises:
        ValueError: If `dist` is not one of `DISTRIBUTIONS`.
    """
    if dist == "normal":
        return rng.standard_normal(shape)
    if dist == "t3":
        return rng.standard_t(3, shape) / math.sqrt(3.0)  # var(t3) = 3
    if dist == "lognormal":
        e = math.e
        return (rng.lognormal(0.0, 1.0, shape) - math.sqrt(e)) / math.sqrt((e - 1.0) * e)
    if dist == "bimodal":
        # Equal mixture of N(-2, 1) and N(2, 1): two clear modes, variance 1 + 4 = 5.
        sign = np.where(rng.random(shape) < 0.5, -2.0, 2.0)
        return (sign + rng.standard_normal(shape)) / math.sqrt(5.0)
    raise ValueError(f"dist: unknown distribution {dist!r}; choose one of {list(DISTRIBUTIONS)}")


def batch_pvalues(name: str, x: np.ndarray, y: np.ndarray, *, rng: np.random.Generator,
                  resamples: int = 999) -> np.ndarray:
    """Two-sided p-value of test `name` for each row of x (replicates, n1) and y (replicates, n2).

    The permutation test draws one set of permutations per batch, shared by the rows
    (scipy's vectorised permutation_test): every row's p-value is valid on its own.

    Raises:
        ValueError: If `name` is not one of `TEST_NAMES`.
    """
    n1, n2 = x.shape[-1], y.shape[-1]
    if name == "F":
        ratio = np.var(x, axis=-1, ddof=1) / np.var(y, axis=-1, ddof=1)
        tails = np.minimum(_st.f.cdf(ratio, n1 - 1, n2 - 1), _st.f.sf(ratio, n1 - 1, n2 - 1))
        return np.minimum(1.0, 2.0 * tails)
    if name in ("levene", "brown-forsythe"):
        with np.errstate(divide="ignore", invalid="ignore"):  # a replicate with zero spread
            return _st.levene(x, y, center="mean" if name == "levene" else "median", axis=-1).pvalue
    if name == "fligner-killeen":
        with np.errstate(divide="ignore", invalid="ignore"):
            return _st.fligner(x, y, axis=-1).pvalue
    if name == "bonett":
        lr, se, _, _ = bonett_log_ratio(x, y)
        return bonett_pvalue(lr, se, n1, n2)
    if name == "permutation":
        xc, yc = x - np.median(x, axis=-1, keepdims=True), y - np.median(y, axis=-1, keepdims=True)
        batch = max(1, 2_000_000 // (x.shape[0] * (n1 + n2)))
        return _st.permutation_test((xc, yc), log_variance_ratio, vectorized=True, n_resamples=resamples,
                                    axis=-1, rng=rng, batch=batch).pvalue
    raise ValueError(f"test: unknown test {name!r}; choose one of {list(TEST_NAMES)}")
