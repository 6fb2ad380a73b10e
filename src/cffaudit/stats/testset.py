"""The test-set sampling component of the spread of test accuracy (issue 11, item 3).

If the runs of a condition differed only by independent coin flips per test example,
example i coming out right with probability p_i in every run, the accuracy of a run over
N examples would vary across runs with variance sum_i p_i (1 - p_i) / N^2 (the variance of
a Poisson-binomial count, divided by N^2). This is the floor that a finite test set puts
under the between-run variance: Jordan (2023), "On the Variance of Neural Network
Training with respect to Test Sets and Distributions" (arXiv:2304.01910), found that for
many CIFAR-10 runs most of the observed variance of test accuracy is of this kind.

Estimator. With R runs and c_ri = 1 when run r gets example i right, the floor is
estimated by sum_i s_i^2 / N^2 with s_i^2 the sample variance (ddof 1) of c_i over runs,
that is R / (R - 1) * sum_i p_i (1 - p_i) / N^2 with p_i the mean correctness. The plug-in
sum_i p_i (1 - p_i) / N^2 is biased low by the factor (R - 1) / R, which would show as
spurious excess. The observed variance is the sample variance (ddof 1) of the run
accuracies. Their difference, the excess, equals exactly the sum over pairs of distinct
examples of their sample covariance across runs, divided by N^2: zero in expectation
when examples come out right independently of each other, positive when whole runs are
better or worse (a shared per-run shift). All three are in percent^2 (proportions
x 10^4) so that they compare with variances of `test_acc`.

Intervals are percentile bootstrap intervals over runs (scipy.stats.bootstrap, one
resample of runs for all three numbers, explicit seed), with each resampled value scaled
by R / (R - 1) so that the bootstrap distribution is centred on the estimate. In 150
simulations of 30 runs on 500 independent examples (no excess), the 95% interval of the
excess covered 0 in 88% and that of the floor covered the true floor in all; with a
shared per-run shift (true excess 7.8 percent^2, 200 data sets) the excess interval
covered 92%. The basic interval did no better (87% and 90%). Read the excess interval at
30 runs as somewhat narrow.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Optional

import numpy as np
from scipy import stats as _st

from cffaudit.stats._markdown import interval, number, table
from cffaudit.stats._validate import check_probability, plain
from cffaudit.stats.bootstrap import comparison_seed
from cffaudit.stats.effects import Estimate
from cffaudit.stats.results import ConfidenceInterval, _Result

#: Below this many runs the bootstrap over runs is rough and results warn: the percentile
#: bootstrap of variances covered less than 0.90 at 7-20 runs per group under skewed shapes
#: (benchmarks/results/variance_test_size_power.md, the study behind `BOOTSTRAP_MIN_N`).
FLOOR_MIN_RUNS = 20

# Resamples evaluated at once: each holds a (runs x runs) block of the agreement matrix.
_BATCH = 256


@dataclasses.dataclass(frozen=True)
class SamplingFloor(_Result):
    """Observed between-run variance of test accuracy against the test-set sampling floor.

    `observed`, `floor` and `excess` (= observed - floor) are in percent^2;
    `floor_share` is floor / observed (NaN when the observed variance is 0).
    """

    label: str
    n_runs: int
    n_examples: int
    mean_accuracy: float
    observed: Estimate
    floor: Estimate
    excess: Estimate
    floor_share: float
    confidence_level: float
    n_resamples: int
    seed: int
    warnings: tuple[str, ...] = ()

    def to_row(self) -> dict:
        """A flat dict (one row of a tidy table)."""
        row = {"label": self.label, "n_runs": self.n_runs, "n_examples": self.n_examples,
               "mean_accuracy": self.mean_accuracy, "floor_share": self.floor_share}
        for e in (self.observed, self.floor, self.excess):
            row.update({e.name: e.estimate, f"{e.name}_low": e.confidence_interval.low,
                        f"{e.name}_high": e.confidence_interval.high})
        return row


def correctness(predictions: Any, labels: Any, *, probe: int = 0) -> np.ndarray:
    """Per-run, per-example correctness from predicted classes and the labels.

    Args:
        predictions: Predicted classes shaped (runs, N), or (runs, K, N) for K probes per
            run (`predictions.npz`'s `probes` stacked over runs).
        labels: True classes, shape (N,), or (runs, N) as read from each run's file; the
            rows must then be equal (the runs were tested on one test set, in one order).
        probe: With (runs, K, N) predictions, the probe to use; 0 is the probe whose
            accuracy is `test_acc`.

    Returns:
        A boolean array shaped (runs, N).

    Raises:
        ValueError: If the shapes do not match, runs carry different labels, or `probe`
            is out of range.
    """
    pred = np.asarray(predictions)
    y = np.asarray(labels)
    if y.ndim == 2:
        differ = np.flatnonzero(np.any(y != y[:1], axis=1))
        if differ.size:
            raise ValueError(f"labels: run {int(differ[0])} was tested on other labels than run 0 ({differ.size} "
                             f"run(s) differ); analyse runs on different test sets separately")
        if pred.shape[:1] != y.shape[:1]:
            raise ValueError(f"labels: {y.shape[0]} runs of labels for {pred.shape[0]} runs of predictions")
        y = y[0]
    if y.ndim != 1:
        raise ValueError(f"labels: expected shape (N,) or (runs, N), got {y.shape}")
    if pred.ndim == 3:
        if not 0 <= probe < pred.shape[1]:
            raise ValueError(f"probe: must lie in [0, {pred.shape[1] - 1}] for {pred.shape[1]} probes, got {plain(probe)!r}")
        pred = pred[:, probe, :]
    if pred.ndim != 2 or pred.shape[1] != y.size:
        raise ValueError(f"predictions: expected shape (runs, {y.size}) or (runs, K, {y.size}) to match the "
                         f"{y.size} labels, got {pred.shape}; were they made on the same test set?")
    return pred == y[None, :]


def _statistics(agree: np.ndarray, acc: np.ndarray, n_examples: int):
    """The (observed, floor, excess) statistic of resampled run indices, for scipy.stats.bootstrap."""

    def statistic(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64)  # (..., R)
        r = idx.shape[-1]
        a = acc[idx]
        observed = a.var(axis=-1, ddof=1)
        mean_p = a.mean(axis=-1)  # mean over examples of p_i = mean accuracy
        # sum_i p_i^2 = (1 / R^2) sum_{r, s} agree[r, s] over the resampled runs
        sum_p2 = agree[idx[..., :, None], idx[..., None, :]].sum(axis=(-2, -1)) / (r * r * n_examples ** 2)
        floor = r / (r - 1) * (mean_p / n_examples - sum_p2)
        return np.stack([observed, floor, observed - floor]) * 1e4

    return statistic


def sampling_floor(
    correct: Any,
    *,
    label: str = "",
    n_resamples: int = 9999,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> SamplingFloor:
    """Between-run variance of test accuracy against the floor of test-set sampling.

    Args:
        correct: Per-run, per-example correctness, shape (runs, N) (see `correctness`).
        label: The condition's label; with `seed` it fixes the generator
            (`bootstrap.comparison_seed`).
        n_resamples: Bootstrap resamples of the runs.
        confidence_level: Coverage of the intervals.
        seed: Analysis seed.

    Returns:
        A `SamplingFloor` with the observed variance, the floor and their difference, each
        with a percentile bootstrap interval over runs, in percent^2.

    Raises:
        ValueError: If `correct` is not a 2-D array of booleans (or 0/1) with at least 3
            runs and one example, or the other arguments are out of range.
    """
    c = np.asarray(correct)
    if c.ndim != 2 or c.shape[0] < 3 or c.shape[1] < 1:
        raise ValueError(f"correct: expected a (runs, examples) array with at least 3 runs, got shape {c.shape}")
    if c.dtype != bool:
        if not np.all(np.isin(c, (0, 1))):
            raise ValueError("correct: expected booleans or 0/1 per run and example (use `correctness` on "
                             "predictions and labels)")
        c = c.astype(bool)
    cl = check_probability(confidence_level, "confidence_level")
    if int(n_resamples) != n_resamples or n_resamples < 2:
        raise ValueError(f"n_resamples: must be an integer >= 2, got {plain(n_resamples)!r}")
    runs, n = c.shape
    cf = c.astype(np.float64)
    agree = cf @ cf.T  # (R, R): examples right in both runs
    acc = cf.mean(axis=1)
    statistic = _statistics(agree, acc, n)
    point = statistic(np.arange(runs))
    derived = comparison_seed(seed, f"testset floor | {label}")
    # A resample of R runs drawn with replacement shrinks every sample variance by
    # (R - 1) / R in expectation (E*[s*^2] = (R - 1) / R s^2), and all three numbers are
    # sums of sample variances and covariances: unscaled, the floor's interval (narrow,
    # as it sums over N examples) lay wholly below its own estimate.
    def resampled(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        return statistic(idx) * runs / (runs - 1)

    res = _st.bootstrap((np.arange(runs),), resampled, vectorized=True, n_resamples=int(n_resamples),
                        confidence_level=cl, method="percentile", rng=np.random.default_rng(derived), batch=_BATCH)
    method = "percentile bootstrap over runs"
    estimates = [Estimate(name, float(point[k]), ConfidenceInterval(float(res.confidence_interval.low[k]),
                                                                    float(res.confidence_interval.high[k])), cl, method)
                 for k, name in enumerate(("observed", "floor", "excess"))]
    notes = []
    if runs < FLOOR_MIN_RUNS:
        notes.append(f"{runs} runs: below {FLOOR_MIN_RUNS} the bootstrap over runs is rough")
    if point[0] == 0:
        notes.append("every run has the same accuracy; the floor share is undefined")
    return SamplingFloor(
        label=str(label), n_runs=runs, n_examples=n, mean_accuracy=float(acc.mean() * 100), observed=estimates[0],
        floor=estimates[1], excess=estimates[2],
        floor_share=float(point[1] / point[0]) if point[0] > 0 else math.nan,
        confidence_level=cl, n_resamples=int(n_resamples), seed=derived, warnings=tuple(notes))


def sampling_floors_markdown(results: Mapping[str, SamplingFloor] | list[SamplingFloor], *, title: Optional[str] = None) -> str:
    """A Markdown table of test-set floors, one row per condition, with the estimator named."""
    items = list(results.values()) if isinstance(results, Mapping) else list(results)
    pct = int(round(items[0].confidence_level * 100)) if items else 95
    rows = [[r.label or "all runs", r.n_runs, r.n_examples, f"{r.mean_accuracy:.2f}",
             f"{number(r.observed.estimate)} {interval(r.observed.confidence_interval)}",
             f"{number(r.floor.estimate)} {interval(r.floor.confidence_interval)}",
             f"{number(r.excess.estimate)} {interval(r.excess.confidence_interval)}",
             "—" if math.isnan(r.floor_share) else f"{100 * r.floor_share:.0f}%"] for r in items]
    out = [] if title is None else [title, ""]
    out.append(table(["condition", "runs", "test examples", "mean acc (%)", f"observed var ({pct}% CI)",
                      f"test-set floor ({pct}% CI)", f"excess ({pct}% CI)", "floor share"], rows))
    out += ["", "- Variances in percent^2. Floor: sum_i s_i^2 / N^2, s_i^2 the variance over runs of example i's "
                "correctness (the Poisson-binomial variance at the observed per-example rates, Jordan 2023); "
                "excess = observed - floor; intervals: percentile bootstrap over runs."]
    out += [f"- {r.label or 'all runs'}: {w}" for r in items for w in r.warnings]
    return "\n".join(out)
