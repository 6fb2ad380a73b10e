"""Bootstrap intervals: one generator per comparison, the seed recorded, scipy's arithmetic."""

import math

import numpy as np
import pytest
from scipy import stats

from cffaudit.stats.bootstrap import BOOTSTRAP_METHODS, bootstrap_ratio_interval, comparison_seed

from tests.stats import paper_samples as ps

A, B = ps.CLAMP_DETACH, ps.SUBTRACT_DETACH


def test_comparison_seed_depends_on_seed_and_label_only():
    s = comparison_seed(0, "clamp vs subtract")
    assert s == comparison_seed(0, "clamp vs subtract")  # stable across calls and processes (sha256)
    assert s != comparison_seed(1, "clamp vs subtract") and s != comparison_seed(0, "clamp vs none")
    assert 0 <= s < 2**63
    with pytest.raises(ValueError, match="^seed:"):
        comparison_seed(-1, "x")


def test_an_interval_does_not_depend_on_what_ran_before_it():
    first = bootstrap_ratio_interval(A, B, seed=3, label="detach", n_resamples=999)
    bootstrap_ratio_interval(ps.CLAMP_DIRECT, ps.SUBTRACT_DIRECT, seed=3, label="direct", n_resamples=999)
    again = bootstrap_ratio_interval(A, B, seed=3, label="detach", n_resamples=999)
    assert first == again and first.seed == comparison_seed(3, "detach")
    other = bootstrap_ratio_interval(A, B, seed=3, label="other", n_resamples=999)
    assert other.confidence_interval != first.confidence_interval


def _log_ratio(x, y, axis=-1):
    return np.log(np.var(x, axis=axis, ddof=1)) - np.log(np.var(y, axis=axis, ddof=1))


@pytest.mark.parametrize("method", ["bca", "percentile"])
def test_interval_equals_scipy_bootstrap_of_the_log_ratio_with_the_derived_generator(method):
    res = bootstrap_ratio_interval(A, B, seed=0, label="x", method=method, n_resamples=2000)
    ref = stats.bootstrap((A, B), _log_ratio, vectorized=True, n_resamples=2000, method=method,
                          rng=np.random.default_rng(comparison_seed(0, "x")))
    assert res.confidence_interval.low == pytest.approx(math.exp(ref.confidence_interval.low))
    assert res.confidence_interval.high == pytest.approx(math.exp(ref.confidence_interval.high))
    assert res.standard_error == pytest.approx(np.std(ref.bootstrap_distribution, ddof=1))
    assert res.standard_error_of == "log variance ratio" and res.method == method


def test_basic_interval_reflects_the_percentile_one_on_the_log_scale():
    p = bootstrap_ratio_interval(A, B, seed=0, label="x", method="percentile", n_resamples=2000)
    b = bootstrap_ratio_interval(A, B, seed=0, label="x", method="basic-log", n_resamples=2000)
    theta = math.log(p.statistic)
    # Interpolated quantiles of the same resamples: basic = 2 theta - percentile bound, up to
    # scipy's own percentile rule, so compare loosely.
    assert math.log(b.confidence_interval.low) == pytest.approx(2 * theta - math.log(p.confidence_interval.high), abs=0.02)
    assert math.log(b.confidence_interval.high) == pytest.approx(2 * theta - math.log(p.confidence_interval.low), abs=0.02)


def test_standard_error_is_stable_across_seeds():
    ses = [bootstrap_ratio_interval(A, B, seed=s, label="x", n_resamples=2000).standard_error for s in range(5)]
    assert max(ses) / min(ses) < 1.1  # the ratio-scale one swung from 12 to 1,222


def test_small_groups_warn_and_bad_arguments_are_refused():
    res = bootstrap_ratio_interval(A, B, seed=0, label="x", n_resamples=200)
    assert res.warnings and "the smaller group has 7 runs" in res.warnings[0]
    with pytest.raises(ValueError, match="^method:"):
        bootstrap_ratio_interval(A, B, seed=0, method="normal")
    with pytest.raises(ValueError, match="^n_resamples:"):
        bootstrap_ratio_interval(A, B, seed=0, n_resamples=1)
    with pytest.raises(ValueError, match="^b: all 3 values are equal \\(2.0\\)"):
        bootstrap_ratio_interval(A, np.array([2.0, 2.0, 2.0]), seed=0)
    assert set(BOOTSTRAP_METHODS) == {"bca", "percentile", "basic-log"}
