"""Result types shaped like scipy's: frozen dataclasses with `statistic`, `pvalue`, `df`.

Each result converts to plain JSON-ready data with `to_dict()`; NaN becomes None there so
the JSON never carries a number that is not one.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple, Optional


class ConfidenceInterval(NamedTuple):
    """A confidence interval as (low, high), like scipy's `ConfidenceInterval`."""

    low: float
    high: float


def jsonable(value: Any) -> Any:
    """Turn results, tuples, numpy scalars and NaN into JSON-ready Python values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, ConfidenceInterval):
        return [jsonable(value.low), jsonable(value.high)]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class _Result:
    def to_dict(self) -> dict:
        """Plain-data form for JSON (NaN and infinities become None)."""
        return jsonable(self)


Result = _Result  # public name of the base, for result types defined outside stats (report.paper)


@dataclasses.dataclass(frozen=True)
class GroupSummary(_Result):
    """Descriptive statistics of one group of runs (sample variance with ddof 1)."""

    label: str
    n: int
    mean: float
    sd: float
    var: float
    sem: float


@dataclasses.dataclass(frozen=True)
class VarianceRatioResult(_Result):
    """F-test of equal variances; `statistic` is var(a) / var(b)."""

    statistic: float
    pvalue: float
    df: tuple[int, int]
    confidence_interval: ConfidenceInterval
    confidence_level: float
    alternative: str
    var_a: float
    var_b: float


@dataclasses.dataclass(frozen=True)
class BootstrapResult(_Result):
    """Bootstrap confidence interval of a statistic.

    `seed` is the seed the resamples were drawn with (derived per comparison by
    `stats.bootstrap.comparison_seed`), `standard_error` is that of `standard_error_of`,
    and `warnings` says when the interval should not be trusted (small groups).
    """

    statistic: float
    confidence_interval: ConfidenceInterval
    confidence_level: float
    n_resamples: int
    standard_error: float
    n_infinite: int  # resamples whose denominator variance was zero (ratio = inf)
    seed: Optional[int]
    method: str = "percentile"
    standard_error_of: str = "variance ratio"
    warnings: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class LeveneResult(_Result):
    """Levene (center 'mean') or Brown-Forsythe (center 'median') test across k groups."""

    statistic: float
    pvalue: float
    df: tuple[int, int]
    center: str


@dataclasses.dataclass(frozen=True)
class AnovaTerm(_Result):
    """One row of an ANOVA table."""

    term: str
    statistic: float
    pvalue: float
    df: tuple[float, float]
    sum_sq: float


@dataclasses.dataclass(frozen=True)
class FactorialLeveneResult(_Result):
    """Two-way (or n-way) ANOVA on absolute deviations from cell centers."""

    center: str
    factors: tuple[str, ...]
    terms: tuple[AnovaTerm, ...]
    anova_type: int

    def term(self, name: str) -> AnovaTerm:
        """The row for factor `name`, or for an interaction written 'a:b'.

        Raises:
            ValueError: If `name` is not a term of this table.
        """
        for t in self.terms:
            if t.term == name:
                return t
        raise ValueError(f"name: no term {name!r}; terms are {[t.term for t in self.terms]}")


@dataclasses.dataclass(frozen=True)
class WelchResult(_Result):
    """Welch's unequal-variance t-test of mean(a) - mean(b)."""

    statistic: float
    pvalue: float
    df: float
    mean_difference: float
    standard_error: float
    confidence_interval: ConfidenceInterval
    confidence_level: float
    alternative: str


@dataclasses.dataclass(frozen=True)
class ShapiroResult(_Result):
    """Shapiro-Wilk test of normality."""

    statistic: float
    pvalue: float
    n: int


@dataclasses.dataclass(frozen=True)
class PowerResult(_Result):
    """Power of the two-sided variance-ratio F-test for a true ratio at given group sizes."""

    ratio: float
    n_a: int
    n_b: int
    alpha: float
    power: float


@dataclasses.dataclass(frozen=True)
class VarianceTest(_Result):
    """One two-sample test of equal variances; `primary` marks the declared headline test.

    `statistic` is the test's own statistic (the variance ratio for F and Bonett); `df`
    and the interval (of `interval_of`) are set where the test has them.
    """

    name: str
    statistic: float
    pvalue: float
    primary: bool
    normal_theory: bool
    df: Optional[tuple[float, ...]] = None
    confidence_interval: Optional[ConfidenceInterval] = None
    interval_of: Optional[str] = None
    n_resamples: Optional[int] = None

    @property
    def role(self) -> str:
        """'primary' or 'secondary', as printed beside the test."""
        return "primary" if self.primary else "secondary"

    def with_primary(self, primary: bool) -> "VarianceTest":
        """The same result labelled primary (or secondary)."""
        return dataclasses.replace(self, primary=bool(primary))


@dataclasses.dataclass(frozen=True)
class PairedVarianceTest(_Result):
    """Pitman-Morgan test of equal variances for runs paired by seed (normal theory).

    `correlation` is that of the paired values, which the test rests on;
    `sum_difference_correlation` is the correlation of A + B with A - B that it tests;
    `n_dropped` counts runs that had no partner with the same seed.
    """

    statistic: float
    pvalue: float
    df: int
    n_pairs: int
    variance_ratio: float
    correlation: float
    sum_difference_correlation: float
    n_dropped: int
