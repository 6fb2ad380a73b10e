"""Seed budgets: seeds for a target standard error, and power of the variance-ratio F-test."""

from __future__ import annotations

import math
from typing import Optional

from scipy import stats as _st

from cffaudit.stats._validate import check_probability, plain
from cffaudit.stats.results import PowerResult


def seeds_for_standard_error(sd: float, target_se: float) -> int:
    """Seeds needed so that the standard error of the mean, sd / sqrt(n), is at most `target_se`.

    n = ceil((sd / target_se)^2), and at least 2 so that a variance can be estimated.

    Args:
        sd: Standard deviation of the per-seed values (e.g. from a pilot).
        target_se: Wanted standard error of the mean, in the same unit.

    Raises:
        ValueError: If `sd` is negative or not finite, or `target_se` is not positive.
    """
    if not math.isfinite(sd) or sd < 0:
        raise ValueError(f"sd: must be a finite number >= 0, got {plain(sd)!r}")
    if not math.isfinite(target_se) or target_se <= 0:
        raise ValueError(f"target_se: must be a finite number > 0, got {plain(target_se)!r}")
    # Round the ratio before ceil so that (0.3/0.1)^2 = 9.000000000000002 is 9, not 10.
    return max(2, math.ceil(round((sd / target_se) ** 2, 9)))


def first_reaching(reaches, lo: int, hi: int) -> int:
    """The smallest n in (lo, hi] with ``reaches(n)``, for a predicate that stays true once
    true (power rising with n), given ``reaches(lo)`` false and ``reaches(hi)`` true."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if reaches(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _check_ratio(ratio: float) -> float:
    r = float(ratio)
    if not math.isfinite(r) or r <= 0:
        raise ValueError(f"ratio: must be a finite variance ratio > 0, got {plain(ratio)!r}")
    return r


def _check_n(n: int, name: str) -> int:
    if int(n) != n or n < 2:
        raise ValueError(f"{name}: must be an integer >= 2, got {plain(n)!r}")
    return int(n)


def variance_ratio_power(ratio: float, n_a: int, n_b: Optional[int] = None, *, alpha: float = 0.05) -> PowerResult:
    """Power of the two-sided F-test of equal variances when var(A)/var(B) truly is `ratio`.

    With normal data, (s_a^2/s_b^2) / ratio ~ F(n_a-1, n_b-1), so the test rejects with
    probability F.cdf(F_low / ratio) + F.sf(F_high / ratio), where F_low and F_high are the
    alpha/2 and 1-alpha/2 quantiles of F(n_a-1, n_b-1).

    Args:
        ratio: True variance ratio var(A) / var(B).
        n_a: Seeds in group A.
        n_b: Seeds in group B (default: `n_a`).
        alpha: Two-sided significance level.

    Raises:
        ValueError: If `ratio` is not positive, a group size is below 2, or `alpha` is not in (0, 1).
    """
    r = _check_ratio(ratio)
    na = _check_n(n_a, "n_a")
    nb = na if n_b is None else _check_n(n_b, "n_b")
    a = check_probability(alpha, "alpha")
    d1, d2 = na - 1, nb - 1
    f_low = _st.f.ppf(a / 2.0, d1, d2)
    f_high = _st.f.isf(a / 2.0, d1, d2)
    power = float(_st.f.cdf(f_low / r, d1, d2) + _st.f.sf(f_high / r, d1, d2))
    return PowerResult(ratio=r, n_a=na, n_b=nb, alpha=a, power=power)


def seeds_for_power(ratio: float, *, power: float = 0.8, alpha: float = 0.05, max_n: int = 1_000_000) -> int:
    """Smallest number of seeds per group (equal groups) for which the F-test reaches `power`.

    Check values (SPEC.md, alpha 0.05, 80% power): ratio 1.5 -> 193, 2 -> 68, 3 -> 28,
    4 -> 19. Ratios r and 1/r need the same n.

    Args:
        ratio: True variance ratio to detect (not 1).
        power: Target power.
        alpha: Two-sided significance level.
        max_n: Search limit.

    Raises:
        ValueError: If `ratio` is 1 or not positive, `power` is not in (alpha, 1), or the
            target is not reached by `max_n` seeds.
    """
    r = _check_ratio(ratio)
    if r == 1.0:
        raise ValueError("ratio: a ratio of 1 is the null hypothesis; no number of seeds detects it")
    target = check_probability(power, "power")
    a = check_probability(alpha, "alpha")
    if target <= a:
        raise ValueError(f"power: must exceed alpha ({a}), got {target}")

    def reaches(n: int) -> bool:
        return variance_ratio_power(r, n, alpha=a).power >= target

    if not reaches(max_n):
        raise ValueError(f"max_n: power {target} for ratio {r} needs more than {max_n} seeds per group")
    # Power rises with n for a fixed ratio != 1, so bisection on n finds the first success.
    if reaches(2):
        return 2
    return first_reaching(reaches, 2, max_n)
