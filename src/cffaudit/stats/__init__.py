"""Statistics of the variance audit: numpy, scipy, statsmodels and pandas only.

Importing this package must not import torch, ray or matplotlib (tests check it in a
fresh interpreter), so `cffaudit analyze` runs where no training stack is installed.
Results look like scipy's: frozen dataclasses with `statistic`, `pvalue`, `df` and
confidence intervals as (low, high).
"""

from cffaudit.stats.audit import AuditResult, Comparison, SeedBudget, variance_audit
from cffaudit.stats.describe import describe
from cffaudit.stats.means import welch_test
from cffaudit.stats.normality import shapiro_wilk
from cffaudit.stats.power import seeds_for_power, seeds_for_standard_error, variance_ratio_power
from cffaudit.stats.results import (
    AnovaTerm,
    BootstrapResult,
    ConfidenceInterval,
    FactorialLeveneResult,
    GroupSummary,
    LeveneResult,
    PowerResult,
    ShapiroResult,
    VarianceRatioResult,
    WelchResult,
    jsonable,
)
from cffaudit.stats.variance import (
    bootstrap_variance_ratio,
    brown_forsythe_test,
    factorial_levene,
    levene_test,
    variance_ratio_test,
)

__all__ = [
    "AnovaTerm",
    "AuditResult",
    "BootstrapResult",
    "Comparison",
    "ConfidenceInterval",
    "FactorialLeveneResult",
    "GroupSummary",
    "LeveneResult",
    "PowerResult",
    "SeedBudget",
    "ShapiroResult",
    "VarianceRatioResult",
    "WelchResult",
    "bootstrap_variance_ratio",
    "brown_forsythe_test",
    "describe",
    "factorial_levene",
    "jsonable",
    "levene_test",
    "seeds_for_power",
    "seeds_for_standard_error",
    "shapiro_wilk",
    "variance_audit",
    "variance_ratio_power",
    "variance_ratio_test",
    "welch_test",
]
