"""Test-set sampling floor: closed forms on the correctness matrix and simulations with a known truth."""

import numpy as np
import pytest
from scipy.special import expit, logit

from cffaudit.stats import correctness, sampling_floors_markdown, sampling_floor


def bernoulli_runs(rng, runs=40, n=2000, shift_sd=0.0):
    # Fixed per-example rates p_i; a per-run shift on the logit scale makes whole runs
    # better or worse together (correlated examples), which the floor does not contain.
    p = rng.uniform(0.3, 0.98, n)
    shift = rng.normal(0.0, shift_sd, (runs, 1))
    return rng.random((runs, n)) < expit(logit(p)[None, :] + shift)


def test_floor_and_excess_equal_their_closed_forms():
    c = bernoulli_runs(np.random.default_rng(0), runs=12, n=300, shift_sd=0.3)
    res = sampling_floor(c, n_resamples=200)
    n = c.shape[1]
    acc = c.mean(axis=1)
    assert res.observed.estimate == pytest.approx(np.var(acc, ddof=1) * 1e4, rel=1e-10)
    # Poisson-binomial variance at the observed rates, with the ddof-1 correction R / (R - 1).
    p = c.mean(axis=0)
    floor = 12 / 11 * np.sum(p * (1 - p)) / n ** 2 * 1e4
    assert res.floor.estimate == pytest.approx(floor, rel=1e-10)
    assert res.floor.estimate == pytest.approx(np.var(c, axis=0, ddof=1).sum() / n ** 2 * 1e4, rel=1e-10)
    # The excess is the sum of covariances between distinct examples.
    cov = np.cov(c.T.astype(float))
    assert res.excess.estimate == pytest.approx((cov.sum() - np.trace(cov)) / n ** 2 * 1e4, rel=1e-8)
    assert res.n_runs == 12 and res.n_examples == 300
    assert res.mean_accuracy == pytest.approx(acc.mean() * 100)
    assert res.warnings  # 12 runs is below FLOOR_MIN_RUNS


def test_independent_examples_leave_no_excess():
    res = sampling_floor(bernoulli_runs(np.random.default_rng(1)), n_resamples=500, seed=2)
    lo, hi = res.excess.confidence_interval
    assert lo < 0 < hi
    assert res.floor_share == pytest.approx(1.0, abs=0.35)
    assert res.floor.confidence_interval.low < res.floor.estimate < res.floor.confidence_interval.high


def test_a_shared_per_run_shift_shows_as_excess():
    res = sampling_floor(bernoulli_runs(np.random.default_rng(3), shift_sd=0.2), n_resamples=500, seed=2)
    assert res.excess.confidence_interval.low > 0
    assert res.floor_share < 0.5
    assert res.observed.estimate == pytest.approx(res.floor.estimate + res.excess.estimate)


def test_bootstrap_is_reproducible_and_depends_on_the_label():
    c = bernoulli_runs(np.random.default_rng(4), runs=15, n=200)
    a, b = sampling_floor(c, n_resamples=100, label="clamp"), sampling_floor(c, n_resamples=100, label="clamp")
    assert a.to_dict() == b.to_dict()
    assert sampling_floor(c, n_resamples=100, label="subtract").seed != a.seed


def test_correctness_from_predictions_and_probes():
    labels = np.array([0, 1, 2, 1])
    pred = np.array([[[0, 1, 2, 0], [1, 1, 2, 1]], [[0, 0, 0, 1], [0, 1, 2, 1]]], dtype=np.int8)  # (runs, K, N)
    assert correctness(pred, labels).tolist() == [[True, True, True, False], [True, False, False, True]]
    assert correctness(pred, labels, probe=1).all(axis=1).tolist() == [False, True]
    assert correctness(pred[:, 0], labels).shape == (2, 4)
    with pytest.raises(ValueError, match=r"^predictions: expected shape \(runs, 3\).*same test set"):
        correctness(pred, labels[:3])
    with pytest.raises(ValueError, match=r"^probe: must lie in \[0, 1\]"):
        correctness(pred, labels, probe=2)
    with pytest.raises(ValueError, match=r"^labels: expected shape \(N,\) or \(runs, N\)"):
        correctness(pred, labels[None, None])
    per_run = np.stack([labels, labels])
    assert correctness(pred, per_run).tolist() == correctness(pred, labels).tolist()
    per_run[1, 0] = 2
    with pytest.raises(ValueError, match="^labels: run 1 was tested on other labels than run 0"):
        correctness(pred, per_run)
    with pytest.raises(ValueError, match="^labels: 1 runs of labels for 2 runs"):
        correctness(pred, labels[None])


def test_bad_correctness_matrices_are_refused():
    with pytest.raises(ValueError, match=r"^correct: expected a \(runs, examples\) array with at least 3 runs"):
        sampling_floor(np.ones((2, 5), bool))
    with pytest.raises(ValueError, match="^correct: expected booleans or 0/1"):
        sampling_floor(np.full((4, 5), 0.5))
    with pytest.raises(ValueError, match="^n_resamples"):
        sampling_floor(np.ones((4, 5), bool), n_resamples=1)


def test_markdown_and_rows():
    c = bernoulli_runs(np.random.default_rng(5), runs=10, n=100)
    res = sampling_floor(c, n_resamples=50, label="clamp")
    md = sampling_floors_markdown({"clamp": res})
    assert "| clamp" in md and "test-set floor" in md and "Jordan 2023" in md
    row = res.to_row()
    assert row["excess"] == pytest.approx(res.excess.estimate) and row["floor_low"] <= row["floor"]
    same = sampling_floor(np.ones((5, 20), bool), n_resamples=20)
    assert same.observed.estimate == 0 and np.isnan(same.floor_share)
