"""Planning: power at a ratio of interest and seed counts, against closed forms and SPEC.md."""

import math

import numpy as np
import pytest
from scipy import stats

from cffaudit.stats.planning import (
    log_ratio_interval_width,
    posthoc_power,
    power_at_ratio,
    seeds_for_log_ratio_width,
    seeds_for_power,
)
from cffaudit.stats.power import variance_ratio_power
from cffaudit.stats.simulate import batch_pvalues, draw
from cffaudit.stats import equal_variance as ev


@pytest.mark.parametrize("ratio, n", [(2.0, 68), (3.0, 28), (4.0, 19)])
def test_f_seed_counts_match_spec(ratio, n):
    # SPEC.md: F-test, alpha 0.05, 80% power.
    assert seeds_for_power(ratio, test="F") == (n, n)


def test_simulated_power_of_f_matches_its_closed_form():
    closed = variance_ratio_power(3.0, 10, 14).power
    sim = power_at_ratio(3.0, 10, 14, test="F", replicates=20000)  # closed form path
    assert sim.power == closed and sim.method.startswith("closed form")
    rng = np.random.default_rng(11)
    x, y = draw("normal", rng, (40000, 10)) * math.sqrt(3.0), draw("normal", rng, (40000, 14))
    mc = np.mean(batch_pvalues("F", x, y, rng=rng) < 0.05)
    assert mc == pytest.approx(closed, abs=4 * math.sqrt(closed * (1 - closed) / 40000))


def test_simulated_power_is_seeded_and_carries_its_error():
    a = power_at_ratio(4.0, 10, test="brown-forsythe", replicates=4000, seed=1)
    b = power_at_ratio(4.0, 10, test="brown-forsythe", replicates=4000, seed=1)
    assert a == b and 0 < a.power < 1 and a.mc_se == pytest.approx(math.sqrt(a.power * (1 - a.power) / 4000))
    assert "4000 replicates, seed 1" in a.method and a.label == "planning"
    # Brown-Forsythe is less powerful than F under normal data.
    assert a.power < variance_ratio_power(4.0, 10).power


def test_posthoc_power_is_labelled():
    res = posthoc_power(26.8, 7, 7, test="F")
    assert res.label == "post-hoc (observed ratio)" and res.power == variance_ratio_power(26.8, 7).power


def test_unequal_allocation_needs_fewer_seeds_in_a_than_equal_groups_of_the_larger_size():
    na, nb = seeds_for_power(4.0, test="F", allocation=2.0)
    assert nb == math.ceil(2 * na) and na < 19
    assert variance_ratio_power(4.0, na, nb).power >= 0.8 > variance_ratio_power(4.0, na - 1, math.ceil(2 * (na - 1))).power


def test_simulated_seed_search_reaches_the_target():
    na, nb = seeds_for_power(4.0, test="levene", replicates=4000)
    assert power_at_ratio(4.0, na, nb, test="levene", replicates=4000).power >= 0.8
    assert power_at_ratio(4.0, na - 1, na - 1, test="levene", replicates=4000).power < 0.8


def test_log_ratio_width_is_the_f_interval_width():
    q_hi, q_lo = stats.f.isf(0.025, 6, 6), stats.f.ppf(0.025, 6, 6)
    assert log_ratio_interval_width(7, 7) == pytest.approx(math.log(q_hi / q_lo))
    na, nb = seeds_for_log_ratio_width(math.log(4.0))
    assert log_ratio_interval_width(na, nb) <= math.log(4.0) < log_ratio_interval_width(na - 1, na - 1)


def test_planning_refuses_bad_arguments():
    with pytest.raises(ValueError, match="^ratio:"):
        seeds_for_power(1.0)
    with pytest.raises(ValueError, match="^power:"):
        seeds_for_power(2.0, power=0.01)
    with pytest.raises(ValueError, match="^allocation:"):
        seeds_for_power(2.0, allocation=0.0)
    with pytest.raises(ValueError, match="^test:"):
        power_at_ratio(2.0, 5, test="bartlett")
    with pytest.raises(ValueError, match="^n_a, n_b: Bonett"):
        power_at_ratio(2.0, 4, test="bonett")
    with pytest.raises(ValueError, match="^width:"):
        seeds_for_log_ratio_width(0.0)
    with pytest.raises(ValueError, match="^max_n:"):
        seeds_for_power(1.01, test="F", max_n=50)


@pytest.mark.parametrize("name", ev.TEST_NAMES)
def test_batch_pvalues_equal_the_single_sample_tests(name):
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(6, 6)) * 1.5, rng.normal(size=(6, 9))
    batch = batch_pvalues(name, x, y, rng=np.random.default_rng(0), resamples=9999)
    single = [ev.run_test(name, x[i], y[i], rng=0).pvalue for i in range(6)]
    # The permutation test is exact at 6 + 9 (5005 splits < 9999 resamples) in both.
    assert batch == pytest.approx(single, rel=1e-9)
