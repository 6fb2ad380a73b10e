"""Planning: power at a ratio of interest, seeds for a power or an interval width.

Power computed at the observed ratio (post-hoc power) says nothing the p-value did not,
so the planning functions take the ratio the user cares about (`--min-ratio`). The F-test
has a closed-form power (`power.variance_ratio_power`); every other test's power is
simulated under normal data with the vectorised code of `stats.simulate`, from a fixed
seed, with its Monte Carlo standard error. `posthoc_power` exists only to be shown with
its label.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np
from scipy import stats as _st

from cffaudit.stats._validate import check_probability, plain
from cffaudit.stats.bootstrap import comparison_seed
from cffaudit.stats.equal_variance import DEFAULT_PRIMARY, TEST_NAMES
from cffaudit.stats.power import first_reaching, variance_ratio_power
from cffaudit.stats.results import _Result
from cffaudit.stats.simulate import batch_pvalues, draw

#: Replicates of a simulated power (Monte Carlo standard error at most 0.5 / sqrt(R) = 0.0035).
POWER_REPLICATES = 20_000


@dataclasses.dataclass(frozen=True)
class PlannedPower(_Result):
    """Power of `test` at a true variance ratio, for n_a and n_b seeds.

    `method` says how it was computed ('closed form' or 'simulation, normal data, R
    replicates, seed S'); `mc_se` is the simulation's standard error (0 for closed form);
    `label` is 'planning' or, for the observed ratio, 'post-hoc (observed ratio)'.
    """

    test: str
    ratio: float
    n_a: int
    n_b: int
    alpha: float
    power: float
    method: str
    mc_se: float
    label: str = "planning"


def _check(ratio: float, n: int, name: str) -> None:
    if not math.isfinite(ratio) or ratio <= 0:
        raise ValueError(f"ratio: must be a finite variance ratio > 0, got {plain(ratio)!r}")
    if int(n) != n or n < 2:
        raise ValueError(f"{name}: must be an integer >= 2, got {plain(n)!r}")


def power_at_ratio(
    ratio: float,
    n_a: int,
    n_b: Optional[int] = None,
    *,
    test: str = DEFAULT_PRIMARY,
    alpha: float = 0.05,
    replicates: int = POWER_REPLICATES,
    seed: int = 0,
) -> PlannedPower:
    """Power of the two-sided `test` when var(A) / var(B) truly is `ratio`, under normal data.

    Args:
        ratio: The ratio of interest (not the observed one).
        n_a: Seeds in group A.
        n_b: Seeds in group B (default `n_a`).
        test: One of `equal_variance.TEST_NAMES`.
        alpha: Two-sided level.
        replicates: Simulated data sets, for tests without a closed form.
        seed: Seed of the simulation (each (test, ratio, n) gets its own generator).

    Raises:
        ValueError: If the ratio is not positive, a group has fewer than 2 seeds (5 for
            Bonett), the test is unknown, or alpha is not in (0, 1).
    """
    n_b = n_a if n_b is None else n_b
    _check(float(ratio), n_a, "n_a")
    _check(float(ratio), n_b, "n_b")
    a = check_probability(alpha, "alpha")
    if test not in TEST_NAMES:
        raise ValueError(f"test: unknown test {test!r}; choose one of {list(TEST_NAMES)}")
    if test == "bonett" and min(n_a, n_b) < 5:
        raise ValueError(f"n_a, n_b: Bonett's test needs at least 5 seeds per group, got {n_a} and {n_b}")
    if test != "F" and min(n_a, n_b) < 3:
        # With 2 runs both absolute deviations are equal, the within-group spread is 0 and
        # Levene-type statistics are infinite: the test always "rejects".
        raise ValueError(f"n_a, n_b: {test} needs at least 3 seeds per group, got {n_a} and {n_b}")
    if test == "F":
        p = variance_ratio_power(ratio, n_a, n_b, alpha=a).power
        return PlannedPower("F", float(ratio), int(n_a), int(n_b), a, p, "closed form (normal data)", 0.0)
    cell = f"power {test} ratio={float(ratio)!r} n={int(n_a)}/{int(n_b)}"
    rng = np.random.default_rng(comparison_seed(seed, cell))
    x = draw("normal", rng, (replicates, int(n_a))) * math.sqrt(ratio)
    y = draw("normal", rng, (replicates, int(n_b)))
    p = float(np.mean(batch_pvalues(test, x, y, rng=rng, resamples=999) < a))
    method = f"simulation, normal data, {replicates} replicates, seed {seed}"
    return PlannedPower(test, float(ratio), int(n_a), int(n_b), a, p, method, math.sqrt(p * (1 - p) / replicates))


def posthoc_power(observed_ratio: float, n_a: int, n_b: int, **kwargs) -> PlannedPower:
    """Power at the observed ratio, labelled post-hoc: shown for completeness, never for planning.

    It is a function of the p-value alone (Hoenig & Heisey 2001, The abuse of power,
    The American Statistician 55(1)), so it adds nothing to it.
    """
    res = power_at_ratio(observed_ratio, n_a, n_b, **kwargs)
    return dataclasses.replace(res, label="post-hoc (observed ratio)")


def seeds_for_power(
    ratio: float,
    *,
    power: float = 0.8,
    test: str = DEFAULT_PRIMARY,
    alpha: float = 0.05,
    allocation: float = 1.0,
    max_n: int = 5000,
    replicates: int = POWER_REPLICATES,
    seed: int = 0,
) -> tuple[int, int]:
    """Fewest seeds (n_a, n_b = ceil(allocation * n_a)) for which `test` reaches `power` at `ratio`.

    For F this is exact (SPEC.md: ratio 2 -> 68, 3 -> 28, 4 -> 19 per group at 80%);
    for the other tests the simulated power is searched by bisection from 5 seeds (the
    smallest n of the simulation study), with the same seed at every n so that the
    search sees a smooth curve.

    Raises:
        ValueError: If the ratio is 1 or not positive, `power` is not in (alpha, 1),
            `allocation` is not positive, or `max_n` seeds do not reach the power.
    """
    if not math.isfinite(ratio) or ratio <= 0 or ratio == 1.0:
        raise ValueError(f"ratio: must be a variance ratio > 0 other than 1, got {plain(ratio)!r}")
    target = check_probability(power, "power")
    a = check_probability(alpha, "alpha")
    if target <= a:
        raise ValueError(f"power: must exceed alpha ({a}), got {target}")
    if not math.isfinite(allocation) or allocation <= 0:
        raise ValueError(f"allocation: must be a ratio n_b / n_a > 0, got {plain(allocation)!r}")
    # Below 5 per group only F's power is trusted (the simulation study starts at n = 5).
    floor = 2 if test == "F" else 5

    def sizes(n: int) -> tuple[int, int]:
        return n, max(floor, math.ceil(round(allocation * n, 9)))

    def reaches(n: int) -> bool:
        na, nb = sizes(n)
        return power_at_ratio(ratio, na, nb, test=test, alpha=a, replicates=replicates, seed=seed).power >= target

    # Double n until the power is reached, then bisect inside the last doubling: the
    # simulated tests cost in proportion to n, so never evaluate far beyond the answer.
    lo, hi = floor, floor
    while not reaches(hi):
        if hi >= max_n:
            raise ValueError(f"max_n: {test} needs more than {max_n} seeds per group for power {target} at ratio {ratio}")
        lo, hi = hi, min(max_n, 2 * hi)
    if hi == floor:
        return sizes(floor)
    return sizes(first_reaching(reaches, lo, hi))


def log_ratio_interval_width(n_a: int, n_b: int, *, confidence_level: float = 0.95) -> float:
    """Width of the F interval of log(var A / var B): log(F_{1-q} / F_q), whatever the data.

    The F interval is ratio / F_{1-q} .. ratio / F_q, so on the log scale its width
    depends on n alone (normal theory).
    """
    _check(1.0, n_a, "n_a")
    _check(1.0, n_b, "n_b")
    q = (1.0 - check_probability(confidence_level, "confidence_level")) / 2.0
    return float(np.log(_st.f.isf(q, n_a - 1, n_b - 1)) - np.log(_st.f.ppf(q, n_a - 1, n_b - 1)))


def seeds_for_log_ratio_width(
    width: float, *, confidence_level: float = 0.95, allocation: float = 1.0, max_n: int = 1_000_000
) -> tuple[int, int]:
    """Fewest seeds (n_a, n_b = ceil(allocation * n_a)) whose log-ratio interval is at most `width` wide.

    A width w bounds the ratio to within a factor exp(w) (e.g. w = log 4: the upper bound
    is at most 4 times the lower).

    Raises:
        ValueError: If `width` is not positive or `max_n` seeds are not enough.
    """
    if not math.isfinite(width) or width <= 0:
        raise ValueError(f"width: must be a positive width on the log scale, got {plain(width)!r}")
    if not math.isfinite(allocation) or allocation <= 0:
        raise ValueError(f"allocation: must be a ratio n_b / n_a > 0, got {plain(allocation)!r}")

    def sizes(n: int) -> tuple[int, int]:
        return n, max(2, math.ceil(round(allocation * n, 9)))

    def fits(n: int) -> bool:
        return log_ratio_interval_width(*sizes(n), confidence_level=confidence_level) <= width

    if not fits(max_n):
        raise ValueError(f"max_n: a width of {width} needs more than {max_n} seeds per group")
    lo, hi = 2, max_n
    if fits(lo):
        return sizes(lo)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid
    return sizes(hi)
