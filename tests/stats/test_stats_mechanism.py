"""Per-seed mechanism: Spearman correlations against scipy, paired bootstrap, skipped pairs."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cffaudit.stats import MECHANISM_PREDICTORS, seed_mechanism
from cffaudit.stats.mechanism import _rho


def runs(rng, n=12, margins=("clamp", "subtract")):
    rows = []
    for margin in margins:
        car = rng.uniform(0.1, 0.5, n)
        acc = 70 + 10 * car + rng.normal(0, 0.5, n)
        for i in range(n):
            rows.append({"margin": margin, "seed": i, "car_l0_final": car[i], "car_l0_mean": car[i] * 0.8 + rng.normal(0, 0.02),
                         "grad_norm_l0_final": rng.lognormal(), "stage1_gain": rng.normal(1, 0.3), "test_acc": acc[i]})
    return pd.DataFrame(rows)


def test_correlations_match_scipy_per_condition():
    frame = runs(np.random.default_rng(0))
    res = seed_mechanism(frame, n_resamples=200)
    assert len(res.correlations) == 2 * len(MECHANISM_PREDICTORS) * 2
    for c in res.correlations:
        part = frame[frame.margin == c.condition]
        y = part.test_acc if c.outcome == "test_acc" else (part.test_acc - part.test_acc.mean()).abs()
        expected = stats.spearmanr(part[c.predictor], y)
        assert c.statistic == pytest.approx(expected.statistic, abs=1e-12)
        assert c.pvalue == pytest.approx(expected.pvalue, rel=1e-9)
        assert c.n == 12 and not c.skipped
    strong = [c for c in res.correlations if c.predictor == "car_l0_final" and c.outcome == "test_acc"]
    assert all(c.statistic > 0.8 and c.confidence_interval.low > 0.3 for c in strong)


def test_bootstrap_interval_equals_scipy_with_spearmanr_itself():
    frame = runs(np.random.default_rng(1), margins=("clamp",))
    res = seed_mechanism(frame, predictors=["car_l0_final"], n_resamples=300, seed=4)
    c = res.correlations[0]
    # The same generator, resampling paired runs with spearmanr itself (not vectorised).
    rng = np.random.default_rng(c.seed)
    ref = stats.bootstrap((frame.car_l0_final.to_numpy(), frame.test_acc.to_numpy()),
                          lambda x, y: stats.spearmanr(x, y).statistic, paired=True, vectorized=False,
                          n_resamples=300, method="percentile", rng=rng)
    assert c.confidence_interval.low == pytest.approx(ref.confidence_interval.low, abs=1e-12)
    assert c.confidence_interval.high == pytest.approx(ref.confidence_interval.high, abs=1e-12)
    assert seed_mechanism(frame, predictors=["car_l0_final"], n_resamples=300, seed=4).to_dict() == res.to_dict()


def test_vectorised_rho_handles_ties_and_constant_rows():
    x = np.array([[1.0, 2.0, 2.0, 5.0], [3.0, 3.0, 3.0, 3.0]])
    y = np.array([[4.0, 1.0, 3.0, 2.0], [1.0, 2.0, 3.0, 4.0]])
    got = _rho(x, y)
    assert got[0] == pytest.approx(stats.spearmanr(x[0], y[0]).statistic)
    assert np.isnan(got[1])


def test_small_or_constant_pairs_are_skipped_with_a_reason():
    frame = runs(np.random.default_rng(2), n=6, margins=("clamp",))
    frame.loc[frame.index[:3], "stage1_gain"] = np.nan  # three runs without the baseline probe
    frame["grad_norm_l0_final"] = 1.0
    res = seed_mechanism(frame, n_resamples=50)
    by_pred = {(c.predictor, c.outcome): c for c in res.correlations}
    gain = by_pred[("stage1_gain", "test_acc")]
    assert gain.skipped and gain.n == 3 and gain.n_dropped == 3 and "needs 4" in gain.reason
    flat = by_pred[("grad_norm_l0_final", "test_acc")]
    assert flat.skipped and "grad_norm_l0_final is constant" in flat.reason
    assert not by_pred[("car_l0_mean", "abs deviation of test_acc")].skipped
    md = res.to_markdown()
    assert "skipped" in md and "Spearman" in md
    tidy = res.to_frame()
    assert len(tidy) == 8 and {"ci_low", "ci_high", "reason"} <= set(tidy.columns)


def test_bad_input_is_refused():
    frame = runs(np.random.default_rng(3))
    with pytest.raises(ValueError, match=r"^predictors: no column 'car_l0_fnal' .*did you mean 'car_l0_final'"):
        seed_mechanism(frame, predictors=["car_l0_fnal"])
    with pytest.raises(ValueError, match=r"^by: no column 'margins'"):
        seed_mechanism(frame, by=["margins"])
    with pytest.raises(ValueError, match=r"^predictors: column 'margin' holds values that are not numbers"):
        seed_mechanism(frame, by=[], predictors=["margin"])
    with pytest.raises(ValueError, match="^predictors: name at least one"):
        seed_mechanism(frame, predictors=[])
    with pytest.raises(ValueError, match=r"^by: column 'margin' is empty in 1 run"):
        seed_mechanism(frame.assign(margin=frame.margin.where(frame.index != 0)))


def test_small_conditions_get_the_exact_permutation_p_value():
    # Closed forms by enumerating the 5! = 120 pairings (Kendall & Gibbons, Rank
    # Correlation Methods, the null distribution of Spearman's rho): |rho| = 1 is reached
    # by the identity and the reversal only, so p = 2/120; rho = 0.9 (sum of squared rank
    # differences 2: the identity or one of 4 adjacent swaps) has P(rho >= 0.9) = 5/120,
    # two-sided 10/120. spearmanr's t approximation gives ~1e-24 and 0.037.
    base = {"margin": "clamp", "car_l0_final": 0.1, "car_l0_mean": 0.1, "grad_norm_l0_final": 1.0}
    acc = np.array([70.0, 71.0, 72.5, 73.0, 75.0])
    for car, expected in ((acc / 100, 2 / 120), (np.array([0.1, 0.3, 0.2, 0.4, 0.5]), 10 / 120)):
        frame = pd.DataFrame([{**base, "car_l0_final": c, "test_acc": a} for c, a in zip(car, acc)])
        res = seed_mechanism(frame, predictors=["car_l0_final"], n_resamples=50)
        c = res.correlations[0]
        assert c.p_method == "exact" and c.pvalue == pytest.approx(expected, abs=1e-12)
        assert abs(stats.spearmanr(car, acc).pvalue - expected) > 0.005  # the approximation is off here
    big = runs(np.random.default_rng(3), n=9, margins=("clamp",))
    assert all(c.p_method == "t approximation" for c in seed_mechanism(big, n_resamples=50).correlations)


def test_a_gain_over_one_shared_baseline_is_not_reported_as_a_mechanism():
    # Every run of the condition has the same untrained baseline (60.25): the gain is the
    # accuracy minus a constant, so its rho with the accuracy is 1 by construction.
    acc = np.array([78.1, 77.6, 78.9, 78.3, 77.95])
    frame = pd.DataFrame({"margin": "clamp", "test_acc": acc, "stage1_gain": acc - 60.25,
                          "car_l0_final": [0.61, 0.64, 0.60, 0.63, 0.62]})
    res = seed_mechanism(frame, predictors=["stage1_gain", "car_l0_final"], n_resamples=50)
    gain = [c for c in res.correlations if c.predictor == "stage1_gain"]
    assert len(gain) == 2 and all(c.skipped and "- a constant here" in c.reason for c in gain)
    assert not any(c.skipped for c in res.correlations if c.predictor == "car_l0_final")
    frame["stage1_gain"] = acc - np.array([60.25, 61.0, 60.5, 59.9, 60.1])  # baselines differ: a real predictor
    assert not any(c.skipped for c in seed_mechanism(frame, predictors=["stage1_gain"], n_resamples=50).correlations)
