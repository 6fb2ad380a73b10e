"""Per-seed mechanism: do seeds with more truncation end more extreme? (issue 11, item 6)

The seed paper could not test whether "seeds with higher truncation rates produce more
extreme final accuracies". Per condition, each run (seed) contributes its layer-0 CAR
(final epoch and mean over epochs), layer-0 gradient norm and stage-1 gain; each is
rank-correlated (Spearman, scipy.stats.spearmanr) with the run's final accuracy and with
its absolute deviation from the condition's mean accuracy (how extreme the seed is). The
interval is a paired percentile bootstrap (scipy.stats.bootstrap, explicit seed).

The p-value is exact for up to `EXACT_MAX_N` runs: the share of the n! pairings whose |rho|
reaches the observed one (scipy.stats.permutation_test, every pairing enumerated). Above
that it is spearmanr's t approximation. A seed audit has a handful of runs per condition,
where the approximation is far off: at n = 5 and rho = 1 it gives p ~ 1e-24, against the
exact 2/120 (only the identity and the reversal reach |rho| = 1).

A predictor that differs from the accuracy by a constant in a condition (the stage-1 gain
when every run shares one untrained baseline, as when only the data order varies) is a
shifted copy of it: its correlations are skipped with that reason, not reported as rho = 1.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from scipy import stats as _st

from cffaudit.stats._markdown import interval, number, table
from cffaudit.stats._validate import check_column, check_probability, plain
from cffaudit.stats.bootstrap import comparison_seed
from cffaudit.stats.results import ConfidenceInterval, _Result

#: Per-run columns correlated with the outcome, as the run table is expected to name them:
#: layer-0 CAR at the final stage-1 epoch and averaged over epochs, layer-0 gradient norm
#: at the final epoch, and test_acc - untrained_test_acc.
MECHANISM_PREDICTORS = ("car_l0_final", "car_l0_mean", "grad_norm_l0_final", "stage1_gain")

#: Fewest runs a correlation is computed on (a rank correlation of 3 points takes 4 values).
MECHANISM_MIN_N = 4

#: Most runs whose p-value enumerates every pairing (8! = 40,320, about 0.1 s; 9! takes 1 s a
#: correlation); above, the t approximation.
EXACT_MAX_N = 8


@dataclasses.dataclass(frozen=True)
class RankCorrelation(_Result):
    """Spearman's rho of `predictor` with `outcome` over the runs of one condition.

    `outcome` is the response column or 'abs deviation of <response>' (|x - condition
    mean|). A skipped pair has NaN statistics and says why in `reason`. `n_undefined`
    counts bootstrap resamples in which a column was constant (rho undefined); they are
    left out of the interval. `n_dropped` counts runs without a value of either column.
    """

    condition: str
    predictor: str
    outcome: str
    n: int
    statistic: float
    pvalue: float
    confidence_interval: ConfidenceInterval
    confidence_level: float
    n_undefined: int
    n_dropped: int
    seed: Optional[int]
    skipped: bool
    reason: Optional[str]
    p_method: Optional[str] = None  # "exact" (every pairing) or "t approximation"


@dataclasses.dataclass(frozen=True)
class MechanismResult(_Result):
    """Every rank correlation of the per-seed mechanism analysis, one per (condition, predictor, outcome)."""

    response: str
    by: tuple[str, ...]
    predictors: tuple[str, ...]
    correlations: tuple[RankCorrelation, ...]
    n_resamples: int
    confidence_level: float
    seed: int

    def to_frame(self) -> pd.DataFrame:
        """One row per correlation (tidy), with the interval as `ci_low`, `ci_high`."""
        rows = []
        for c in self.correlations:
            row = {f.name: getattr(c, f.name) for f in dataclasses.fields(c) if f.name != "confidence_interval"}
            rows.append({**row, "ci_low": c.confidence_interval.low, "ci_high": c.confidence_interval.high})
        return pd.DataFrame(rows)

    def to_markdown(self) -> str:
        """A Markdown table of the correlations, skipped pairs with their reason."""
        pct = int(round(self.confidence_level * 100))
        rows = [[c.condition or "all runs", c.predictor, c.outcome, c.n,
                 "skipped" if c.skipped else number(c.statistic, 3),
                 c.reason if c.skipped else interval(c.confidence_interval),
                 "—" if c.skipped else number(c.pvalue, 2)] for c in self.correlations]
        return "\n".join([
            table(["condition", "per-seed", "against", "n", "Spearman rho", f"{pct}% CI", "p"], rows, left=3), "",
            f"- Spearman rank correlation over the runs of each condition (scipy.stats.spearmanr); p: exact over "
            f"every pairing of the runs up to {EXACT_MAX_N} runs, the t approximation above; intervals: "
            f"paired percentile bootstrap, {self.n_resamples} resamples, analysis seed {self.seed} (with under 10 "
            f"runs the percentile interval is rough: read it as a range, not a 95% guarantee).",
        ])


def _rho(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman's rho along the last axis (Pearson's r of average ranks); NaN where a row is constant."""
    rx = _st.rankdata(x, axis=-1)
    ry = _st.rankdata(y, axis=-1)
    rx = rx - rx.mean(axis=-1, keepdims=True)
    ry = ry - ry.mean(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (rx * ry).sum(axis=-1) / np.sqrt((rx * rx).sum(axis=-1) * (ry * ry).sum(axis=-1))


def _skip(condition: str, predictor: str, outcome: str, n: int, dropped: int, cl: float, reason: str) -> RankCorrelation:
    nan = math.nan
    return RankCorrelation(condition, predictor, outcome, n, nan, nan, ConfidenceInterval(nan, nan), cl, 0, dropped,
                           None, True, reason)


def _correlate(x: np.ndarray, y: np.ndarray, names: tuple[str, str, str], *, n_resamples: int, cl: float,
               seed: int, response: Optional[np.ndarray] = None, response_name: str = "") -> RankCorrelation:
    """rho of x with y; `response` (the accuracy, whatever y is) is for the shifted-copy check."""
    condition, predictor, outcome = names
    keep = np.isfinite(x) & np.isfinite(y)
    x, y, dropped = x[keep], y[keep], int(keep.size - keep.sum())
    outcome_of, outcome_of_name = (response[keep], response_name) if response is not None else (None, "")
    if x.size < MECHANISM_MIN_N:
        return _skip(*names, int(x.size), dropped, cl, f"{x.size} runs with both values (needs {MECHANISM_MIN_N})")
    for name, v in ((predictor, x), (outcome, y)):
        if np.all(v == v[0]):
            return _skip(*names, int(x.size), dropped, cl, f"{name} is constant ({plain(v[0])!r}) over these runs")
    if outcome_of is not None and np.ptp(x - outcome_of) <= 1e-6 * max(1.0, float(np.abs(outcome_of).max())):
        return _skip(*names, int(x.size), dropped, cl,
                     f"{predictor} = {outcome_of_name} - a constant here (a copy, not a mechanism)")
    res = _st.spearmanr(x, y)
    pvalue, p_method = float(res.pvalue), "t approximation"
    if x.size <= EXACT_MAX_N:
        # Permuting x alone against a fixed y enumerates the n! pairings (scipy's own
        # recipe for a correlation); permuting both samples would count each pairing n! times.
        exact = _st.permutation_test((x,), lambda a, axis=-1: _rho(a, y), permutation_type="pairings",
                                     vectorized=True, n_resamples=math.factorial(x.size), alternative="two-sided")
        pvalue, p_method = float(exact.pvalue), "exact"
    derived = comparison_seed(seed, f"mechanism | {condition} | {predictor} | {outcome}")
    with warnings.catch_warnings():
        # Resamples that repeat one run make a column constant; they are counted instead.
        warnings.simplefilter("ignore")
        boot = _st.bootstrap((x, y), _rho, paired=True, vectorized=True, n_resamples=n_resamples,
                             method="percentile", rng=np.random.default_rng(derived))
    dist = np.asarray(boot.bootstrap_distribution)
    finite = dist[np.isfinite(dist)]
    q = (1.0 - cl) / 2.0
    ci = ConfidenceInterval(*map(float, np.quantile(finite, [q, 1 - q]))) if finite.size else ConfidenceInterval(math.nan, math.nan)
    return RankCorrelation(condition, predictor, outcome, int(x.size), float(res.statistic), pvalue, ci, cl,
                           int(dist.size - finite.size), dropped, derived, False, None, p_method)


def seed_mechanism(
    frame: pd.DataFrame,
    *,
    by: Sequence[str] = ("margin",),
    predictors: Sequence[str] = MECHANISM_PREDICTORS,
    response: str = "test_acc",
    n_resamples: int = 9999,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> MechanismResult:
    """Per condition, rank correlations of per-seed diagnostics with accuracy and its extremeness.

    Args:
        frame: One row per finished run, with the `by`, `predictors` and `response`
            columns (e.g. `car_l0_final`, `car_l0_mean`, `grad_norm_l0_final`,
            `stage1_gain`, `test_acc`). Runs missing a value are left out of the pairs
            that need it (counted in `n_dropped`).
        by: Columns whose combinations are the conditions (e.g. `margin`); empty for one.
        predictors: Per-run columns correlated with the outcomes.
        response: The accuracy column; the outcomes are it and |it - condition mean|.
        n_resamples: Bootstrap resamples per correlation.
        confidence_level: Coverage of the intervals.
        seed: Analysis seed; each correlation draws from a generator derived from it and
            its labels (`bootstrap.comparison_seed`).

    Returns:
        A `MechanismResult`; pairs with fewer than `MECHANISM_MIN_N` runs or a constant
        column are kept, marked skipped with the reason.

    Raises:
        ValueError: If a column does not exist (naming the closest), a predictor or the
            response is not numeric, or the other arguments are out of range.
    """
    columns = list(frame.columns)
    response = check_column(response, columns, "response")
    predictors = [check_column(p, columns, "predictors") for p in predictors]
    by = [check_column(b, columns, "by") for b in by]
    for col in by:
        if frame[col].isna().any():
            raise ValueError(f"by: column {col!r} is empty in {int(frame[col].isna().sum())} run(s); every run needs "
                             f"a condition")
    if not predictors:
        raise ValueError("predictors: name at least one per-run column")
    cl = check_probability(confidence_level, "confidence_level")
    if int(n_resamples) != n_resamples or n_resamples < 2:
        raise ValueError(f"n_resamples: must be an integer >= 2, got {plain(n_resamples)!r}")
    numeric = {}
    for col, param in [(response, "response")] + [(p, "predictors") for p in predictors]:
        values = pd.to_numeric(frame[col], errors="coerce")
        if (values.isna() & frame[col].notna()).any():
            raise ValueError(f"{param}: column {col!r} holds values that are not numbers")
        numeric[col] = values.to_numpy(dtype=np.float64)
    data = pd.DataFrame(numeric, index=frame.index)
    groups = data.groupby([frame[b] for b in by], sort=True) if by else [((), data)]
    out = []
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        label = "/".join(str(k) for k in key)
        acc = part[response].to_numpy()
        deviation = np.abs(acc - np.nanmean(acc)) if np.isfinite(acc).any() else acc
        for predictor in predictors:
            x = part[predictor].to_numpy()
            for outcome, y in ((response, acc), (f"abs deviation of {response}", deviation)):
                out.append(_correlate(x, y, (label, predictor, outcome), n_resamples=int(n_resamples), cl=cl, seed=seed,
                                      response=acc, response_name=response))
    return MechanismResult(response=response, by=tuple(by), predictors=tuple(predictors), correlations=tuple(out),
                           n_resamples=int(n_resamples), confidence_level=cl, seed=int(seed))
