"""Two-sample tests of equal variances, one of them declared primary.

scipy computes F's distribution, Levene, Brown-Forsythe, Fligner-Killeen and the
permutation test; only Bonett's (2006) interval, which neither scipy nor statsmodels
has, is written here (`bonett_log_ratio`, vectorised so the simulation study in
benchmarks/ runs the very same code). Every test takes `axis`-free 1-D samples and
returns a `VarianceTest`; `equal_variance_tests` runs them all and labels one primary.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Sequence, Union

import numpy as np
from scipy import stats as _st

from cffaudit.stats._validate import as_sample, check_probability
from cffaudit.stats.results import ConfidenceInterval, PairedVarianceTest, VarianceTest
from cffaudit.stats.variance import variance_ratio_test

#: Every test of equal variances, by the name `--primary` takes.
TEST_NAMES = ("F", "levene", "brown-forsythe", "fligner-killeen", "permutation", "bonett")

#: Tests whose p-value assumes normal data (flagged when Shapiro-Wilk rejects).
NORMAL_THEORY = frozenset({"F"})

#: The primary test when the caller names none, by issue 10's rule applied to
#: benchmarks/results/variance_test_size_power.md (seed 20261203, 10,000 replicates per
#: cell): no test kept its size within [0.025, 0.075] in every cell (F reached 0.56 under
#: the lognormal, Levene 0.19; Brown-Forsythe, Fligner-Killeen and the permutation test
#: fell to 0.000-0.009 at n = 5; Bonett to 0.014 under the bimodal mixture), so the rule
#: takes the test closest to 0.05 at the smallest n: Bonett (largest deviation 0.036 over
#: the four shapes at n = 5 per group).
DEFAULT_PRIMARY = "bonett"

#: Printed beside the default primary test, so the output says how it was chosen.
DEFAULT_PRIMARY_REASON = (
    "default: no test kept its size within 0.025-0.075 in every cell of the simulation study, "
    "and Bonett's came closest to 0.05 at 5 runs per group (benchmarks/results/variance_test_size_power.md)"
)

#: Resamples of the permutation test (the p-value's Monte Carlo error is about
#: sqrt(p (1 - p) / 9999), 0.002 at p = 0.05).
PERMUTATION_RESAMPLES = 9999

#: Bonett's interval needs a trimmed mean with trim 1 / (2 sqrt(n - 4)), so n >= 5.
BONETT_MIN_N = 5


def _bonett_trim(n: int) -> float:
    # Bonett (2006), p. 434: trim proportion 1 / [2 (n - 4)^(1/2)].
    return 1.0 / (2.0 * math.sqrt(n - 4))


def bonett_log_ratio(x: np.ndarray, y: np.ndarray, confidence_level: float = 0.95) -> tuple[np.ndarray, ...]:
    """Bonett's (2006) interval for log(var(X) / var(Y)), vectorised over leading axes.

    Reference: Bonett, D. G. (2006). Robust confidence interval for a ratio of standard
    deviations. Applied Psychological Measurement 30(5), 432-439. With m_j the trimmed
    mean of group j (trim 1 / (2 sqrt(n_j - 4))), the pooled kurtosis is
    g = (n1 + n2) sum_j sum_i (y_ij - m_j)^4 / [sum_j sum_i (y_ij - mean_j)^2]^2,
    se^2 = sum_j (g - (n_j - 3) / n_j) / (n_j - 1), and the interval is
    log(c s1^2 / s2^2) -/+ z se with c = [n1 / (n1 - z)] / [n2 / (n2 - z)], z = z_{alpha/2}.

    Args:
        x: (..., n1) samples of group 1 (the last axis is the sample).
        y: (..., n2) samples of group 2.
        confidence_level: Two-sided coverage.

    Returns:
        (log ratio of sample variances, se, low, high) of the log-variance-ratio, each of
        shape (...).
    """
    n1, n2 = x.shape[-1], y.shape[-1]
    z = float(_st.norm.isf((1.0 - confidence_level) / 2.0))
    m1 = _st.trim_mean(x, _bonett_trim(n1), axis=-1)[..., None]
    m2 = _st.trim_mean(y, _bonett_trim(n2), axis=-1)[..., None]
    d1 = x - x.mean(axis=-1, keepdims=True)
    d2 = y - y.mean(axis=-1, keepdims=True)
    ss = (d1**2).sum(axis=-1) + (d2**2).sum(axis=-1)
    kurt = (n1 + n2) * (((x - m1) ** 4).sum(axis=-1) + ((y - m2) ** 4).sum(axis=-1)) / ss**2
    se = np.sqrt((kurt - (n1 - 3) / n1) / (n1 - 1) + (kurt - (n2 - 3) / n2) / (n2 - 1))
    log_ratio = np.log(np.var(x, axis=-1, ddof=1)) - np.log(np.var(y, axis=-1, ddof=1))
    log_c = math.log(n1 / (n1 - z)) - math.log(n2 / (n2 - z))
    return log_ratio, se, log_ratio + log_c - z * se, log_ratio + log_c + z * se


def bonett_pvalue(log_ratio: np.ndarray, se: np.ndarray, n1: int, n2: int,
                  confidence_level: float = 0.95) -> np.ndarray:
    """Two-sided p-value of Bonett's test of ratio 1, consistent with his interval at `confidence_level`.

    p = 2 P(Z > |log(c s1^2 / s2^2)| / se), with c = [n1 / (n1 - z)] / [n2 / (n2 - z)]
    fixed at z = z_{(1 - confidence_level)/2}: p < 1 - confidence_level exactly when the
    interval excludes 1. With equal n, c = 1 and this is Minitab's Bonett statistic. With
    unequal n, c depends on the level; letting it vary (inverting the interval level by
    level) runs into its pole at z = min(n), where the interval excludes 1 at every level
    and the p-value collapses to ~0, so c is held at the level the audit reports.
    """
    z = float(_st.norm.isf((1.0 - confidence_level) / 2.0))
    log_c = math.log(n1 / (n1 - z)) - math.log(n2 / (n2 - z))
    stat = np.abs(np.asarray(log_ratio, float) + log_c) / np.asarray(se, float)
    return np.minimum(1.0, 2.0 * _st.norm.sf(stat))


def log_variance_ratio(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """log(var x / var y) along `axis` (ddof 1); +-inf where a variance is zero."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.var(x, axis=axis, ddof=1)) - np.log(np.var(y, axis=axis, ddof=1))


def _test(name: str, statistic: float, pvalue: float, **extra: Any) -> VarianceTest:
    return VarianceTest(
        name=name,
        statistic=float(statistic),
        pvalue=float(pvalue),
        primary=False,
        normal_theory=name in NORMAL_THEORY,
        **extra,
    )


def f_test(a: Any, b: Any, *, confidence_level: float = 0.95) -> VarianceTest:
    """The two-sided variance-ratio F-test (exact under normality only)."""
    r = variance_ratio_test(a, b, confidence_level=confidence_level)
    return _test("F", r.statistic, r.pvalue, df=(float(r.df[0]), float(r.df[1])),
                 confidence_interval=r.confidence_interval, interval_of="variance ratio")


def levene(a: Any, b: Any, *, center: str = "mean") -> VarianceTest:
    """Levene's test (center 'mean') or Brown-Forsythe's (center 'median'), by scipy."""
    x, y = as_sample(a, "a", allow_constant=True), as_sample(b, "b", allow_constant=True)
    if np.all(x == x[0]) and np.all(y == y[0]):
        raise ValueError("a, b: both groups are constant; the statistic is 0/0")
    r = _st.levene(x, y, center=center)
    return _test("levene" if center == "mean" else "brown-forsythe", r.statistic, r.pvalue,
                 df=(1.0, float(x.size + y.size - 2)))


def fligner_killeen(a: Any, b: Any) -> VarianceTest:
    """Fligner-Killeen's rank test of equal spread (scipy.stats.fligner, median-centred)."""
    x, y = as_sample(a, "a", allow_constant=True), as_sample(b, "b", allow_constant=True)
    if np.all(x == x[0]) and np.all(y == y[0]):
        raise ValueError("a, b: both groups are constant; the statistic is 0/0")
    r = _st.fligner(x, y, center="median")
    return _test("fligner-killeen", r.statistic, r.pvalue, df=(1.0,))


def permutation_variance_test(
    a: Any, b: Any, *, n_resamples: int = PERMUTATION_RESAMPLES, rng: Union[int, np.random.Generator]
) -> VarianceTest:
    """Permutation test of the variance ratio after centring each group at its median.

    Centring makes the groups exchangeable under equal spread even when their locations
    differ; the statistic is log(var A / var B) of the centred values and the p-value is
    scipy.stats.permutation_test's two-sided one (exact when the permutations are fewer
    than `n_resamples`).
    """
    x, y = as_sample(a, "a"), as_sample(b, "b")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(int(rng))
    xc, yc = x - np.median(x), y - np.median(y)
    if np.all(xc == 0) or np.all(yc == 0):
        raise ValueError("a, b: a group is constant; its log variance is -inf")
    res = _st.permutation_test((xc, yc), log_variance_ratio, vectorized=True, n_resamples=int(n_resamples), rng=gen)
    return _test("permutation", res.statistic, res.pvalue, n_resamples=int(n_resamples))


def bonett_test(a: Any, b: Any, *, confidence_level: float = 0.95) -> VarianceTest:
    """Bonett's (2006) robust test of var(A) = var(B), with its interval for the variance ratio.

    Raises:
        ValueError: If a group has fewer than 5 values (the trimmed mean needs n >= 5) or
            is constant.
    """
    x, y = as_sample(a, "a", min_n=BONETT_MIN_N), as_sample(b, "b", min_n=BONETT_MIN_N)
    cl = check_probability(confidence_level, "confidence_level")
    lr, se, lo, hi = (float(v) for v in bonett_log_ratio(x, y, cl))
    p = float(bonett_pvalue(np.array(lr), np.array(se), x.size, y.size, confidence_level=cl))
    return _test("bonett", math.exp(lr), p, confidence_interval=ConfidenceInterval(math.exp(lo), math.exp(hi)),
                 interval_of="variance ratio")


def run_test(name: str, a: Any, b: Any, *, rng: Union[int, np.random.Generator] = 0,
             confidence_level: float = 0.95) -> VarianceTest:
    """Run the test called `name` (one of `TEST_NAMES`) on groups A and B.

    Raises:
        ValueError: If `name` is unknown, or the test cannot be computed on the data.
    """
    if name == "F":
        return f_test(a, b, confidence_level=confidence_level)
    if name in ("levene", "brown-forsythe"):
        return levene(a, b, center="mean" if name == "levene" else "median")
    if name == "fligner-killeen":
        return fligner_killeen(a, b)
    if name == "permutation":
        return permutation_variance_test(a, b, rng=rng)
    if name == "bonett":
        return bonett_test(a, b, confidence_level=confidence_level)
    raise ValueError(f"primary: unknown test {name!r}; choose one of {list(TEST_NAMES)}")


def equal_variance_tests(
    a: Any,
    b: Any,
    *,
    primary: str = DEFAULT_PRIMARY,
    tests: Sequence[str] = TEST_NAMES,
    rng: Union[int, np.random.Generator] = 0,
    confidence_level: float = 0.95,
) -> tuple[tuple[VarianceTest, ...], dict[str, str]]:
    """Every test of equal variances on A and B, the `primary` one labelled so.

    Returns:
        (results, skipped): one `VarianceTest` per test that could be computed, primary
        first; `skipped` maps the name of each test that could not to the reason.

    Raises:
        ValueError: If `primary` is not one of `tests`, or a name is unknown.
    """
    unknown = [t for t in tests if t not in TEST_NAMES]
    if unknown:
        raise ValueError(f"tests: unknown test(s) {unknown}; choose from {list(TEST_NAMES)}")
    if primary not in tests:
        raise ValueError(f"primary: {primary!r} is not among the tests run {list(tests)}; choose one of {list(TEST_NAMES)}")
    results: list[VarianceTest] = []
    skipped: dict[str, str] = {}
    for name in [primary] + [t for t in tests if t != primary]:
        try:
            r = run_test(name, a, b, rng=rng, confidence_level=confidence_level)
        except ValueError as exc:
            skipped[name] = str(exc)
            continue
        results.append(r.with_primary(name == primary))
    return tuple(results), skipped


def pitman_morgan_test(a: Any, b: Any) -> PairedVarianceTest:
    """Pitman-Morgan test of var(A) = var(B) for paired samples (pairs aligned by position).

    var(A) = var(B) exactly when A + B and A - B are uncorrelated (Pitman 1939, Morgan
    1939), so the test is the t-test of that correlation: t = r sqrt(n - 2) / sqrt(1 - r^2)
    on n - 2 df, which equals (F - 1) sqrt(n - 2) / (2 sqrt(F (1 - r_ab^2))) with
    F = s_a^2 / s_b^2 and r_ab the correlation of the pairs. Normal theory.

    Raises:
        ValueError: If the samples differ in length, have fewer than 3 pairs, hold NaN,
            or a group is constant.
    """
    x, y = as_sample(a, "a", min_n=3), as_sample(b, "b", min_n=3)
    if x.size != y.size:
        raise ValueError(f"a, b: paired samples need equal lengths, got {x.size} and {y.size}")
    n = x.size
    r_ab = float(np.corrcoef(x, y)[0, 1])
    ratio = float(np.var(x, ddof=1) / np.var(y, ddof=1))
    r_sd = float(np.corrcoef(x + y, x - y)[0, 1])
    if abs(r_sd) >= 1.0:
        raise ValueError("a, b: the sums and differences are perfectly correlated; no test is possible")
    t = r_sd * math.sqrt(n - 2) / math.sqrt(1.0 - r_sd**2)
    p = float(2.0 * _st.t.sf(abs(t), n - 2))
    return PairedVarianceTest(statistic=t, pvalue=p, df=n - 2, n_pairs=n, variance_ratio=ratio,
                              correlation=r_ab, sum_difference_correlation=r_sd, n_dropped=0)


def pair_by_seed(a: dict, b: dict) -> tuple[np.ndarray, np.ndarray, int, list]:
    """Align two {seed key: value} maps on the seed keys they share.

    A seed key is the run seed, or a tuple of every stream seed where a design varies the
    streams apart. Returns (a values, b values, number of runs dropped for lack of a
    partner, the shared keys in sorted order).
    """
    shared = sorted(set(a) & set(b), key=repr)
    dropped = len(a) + len(b) - 2 * len(shared)
    return (np.array([a[k] for k in shared], dtype=np.float64), np.array([b[k] for k in shared], dtype=np.float64),
            dropped, shared)


def paired_variance_test(a: dict, b: dict) -> Optional[PairedVarianceTest]:
    """Pitman-Morgan on the runs of A and B that share a seed key; None when fewer than 3 pairs.

    Args:
        a: {seed key: value} of group A.
        b: {seed key: value} of group B.

    Returns:
        The test with `n_dropped`, the runs left without a partner, or None when the
        groups share fewer than 3 seeds (then the design is not paired).

    Raises:
        ValueError: If a paired group is constant.
    """
    xa, xb, dropped, _ = pair_by_seed(a, b)
    if xa.size < 3:
        return None
    return dataclasses.replace(pitman_morgan_test(xa, xb), n_dropped=dropped)
