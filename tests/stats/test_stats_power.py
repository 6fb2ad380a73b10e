"""Seed budget and the power of the variance-ratio F-test."""

import numpy as np
import pytest
from scipy import stats as st

from cffaudit.stats import seeds_for_power, seeds_for_standard_error, variance_ratio_power


@pytest.mark.parametrize("ratio, n", [(1.5, 193), (2.0, 68), (3.0, 28), (4.0, 19)])
def test_seeds_for_power_matches_spec_check_values(ratio, n):
    # SPEC.md "How many seeds a variance audit needs": alpha 0.05, 80% power.
    assert seeds_for_power(ratio) == n
    assert seeds_for_power(1 / ratio) == n  # the two-sided test is symmetric in the ratio
    assert variance_ratio_power(ratio, n).power >= 0.8 > variance_ratio_power(ratio, n - 1).power


def test_seeds_for_power_equals_linear_search():
    for ratio, power in [(2.5, 0.9), (6.0, 0.5), (1.8, 0.95)]:
        n = 2
        while variance_ratio_power(ratio, n).power < power:
            n += 1
        assert seeds_for_power(ratio, power=power) == n


def test_power_matches_monte_carlo_simulation():
    # Simulate normal samples with the given variance ratio and count F-test rejections.
    rng = np.random.default_rng(0)
    ratio, na, nb, reps = 3.0, 8, 11, 40_000
    va = rng.normal(0, np.sqrt(ratio), (reps, na)).var(axis=1, ddof=1)
    vb = rng.normal(0, 1.0, (reps, nb)).var(axis=1, ddof=1)
    f = va / vb
    lo, hi = st.f.ppf(0.025, na - 1, nb - 1), st.f.isf(0.025, na - 1, nb - 1)
    simulated = np.mean((f < lo) | (f > hi))
    assert variance_ratio_power(ratio, na, nb).power == pytest.approx(simulated, abs=0.01)


def test_power_under_the_null_is_alpha():
    assert variance_ratio_power(1.0, 7, 12, alpha=0.05).power == pytest.approx(0.05, abs=1e-12)


def test_seeds_for_standard_error():
    # n = (sd / SE)^2 (SPEC.md): sd 1.0 for SE 0.25 needs 16 seeds; 0.3 for 0.1 needs 9.
    assert seeds_for_standard_error(1.0, 0.25) == 16
    assert seeds_for_standard_error(0.3, 0.1) == 9
    assert seeds_for_standard_error(1.008, 0.25) == 17  # 16.26 rounds up
    assert seeds_for_standard_error(0.0, 0.1) == 2


@pytest.mark.parametrize(
    "call, param",
    [
        (lambda: seeds_for_power(1.0), "ratio"),
        (lambda: seeds_for_power(-2.0), "ratio"),
        (lambda: seeds_for_power(float("nan")), "ratio"),
        (lambda: seeds_for_power(2.0, power=1.0), "power"),
        (lambda: seeds_for_power(2.0, power=0.01), "power"),
        (lambda: seeds_for_power(1.01, max_n=50), "max_n"),
        (lambda: variance_ratio_power(2.0, 1), "n_a"),
        (lambda: variance_ratio_power(2.0, 5, 1), "n_b"),
        (lambda: variance_ratio_power(2.0, 5, alpha=0.0), "alpha"),
        (lambda: seeds_for_standard_error(float("nan"), 0.1), "sd"),
        (lambda: seeds_for_standard_error(1.0, 0.0), "target_se"),
    ],
)
def test_power_inputs_are_validated(call, param):
    with pytest.raises(ValueError, match=f"^{param}:"):
        call()
