"""Statistics of the variance audit: numpy, scipy, statsmodels and pandas only.

Sources of variance (issue 11): `decompose` (variance components of 'A/B' nested and
'A*B' crossed designs), `sampling_floor` (the test-set sampling floor under the observed
between-run variance) and `seed_mechanism` (per-seed rank correlations of CAR, gradient
norm and stage-1 gain with accuracy).

Importing this package must not import torch, ray or matplotlib (tests check it in a
fresh interpreter), so `cffaudit analyze` runs where no training stack is installed.
Results look like scipy's: frozen dataclasses with `statistic`, `pvalue`, `df` and
confidence intervals as (low, high).
"""

from cffaudit.stats.audit import AuditResult, Comparison, SeedBudget, comparison_reports, variance_audit
from cffaudit.stats.bootstrap import (
    BOOTSTRAP_METHODS,
    BOOTSTRAP_MIN_N,
    DEFAULT_BOOTSTRAP,
    bootstrap_ratio_interval,
    comparison_seed,
)
from cffaudit.stats.checks import GroupCount, RunCheck, RunTableError, check_runs
from cffaudit.stats.comparison import ComparisonReport, adjust, compare, verdict, verdicts
from cffaudit.stats.component_results import ComponentRatio, ConditionComponents, Decomposition, VarianceComponent
from cffaudit.stats.components import decompose, probe_rows
from cffaudit.stats.describe import describe
from cffaudit.stats.effects import (
    EffectSizes,
    Estimate,
    effect_sizes,
    hedges_g,
    probability_of_superiority,
    variance_interval,
)
from cffaudit.stats.equal_variance import (
    DEFAULT_PRIMARY,
    DEFAULT_PRIMARY_REASON,
    TEST_NAMES,
    bonett_test,
    equal_variance_tests,
    paired_variance_test,
    pitman_morgan_test,
    run_test,
)
from cffaudit.stats.means import welch_test
from cffaudit.stats.mechanism import MECHANISM_MIN_N, MECHANISM_PREDICTORS, MechanismResult, RankCorrelation, seed_mechanism
from cffaudit.stats.multiplicity import AdjustedPValues, adjust_pvalues, benjamini_hochberg, holm
from cffaudit.stats.normality import shapiro_wilk
from cffaudit.stats.planning import (
    PlannedPower,
    log_ratio_interval_width,
    posthoc_power,
    power_at_ratio,
    seeds_for_log_ratio_width,
)
from cffaudit.stats.planning import seeds_for_power as seeds_for_power_of
from cffaudit.stats.power import seeds_for_power, seeds_for_standard_error, variance_ratio_power
from cffaudit.stats.results import (
    AnovaTerm,
    BootstrapResult,
    ConfidenceInterval,
    FactorialLeveneResult,
    GroupSummary,
    LeveneResult,
    PairedVarianceTest,
    PowerResult,
    ShapiroResult,
    VarianceRatioResult,
    VarianceTest,
    WelchResult,
    jsonable,
)
from cffaudit.stats.testset import FLOOR_MIN_RUNS, SamplingFloor, correctness, sampling_floors_markdown, sampling_floor
from cffaudit.stats.variance import (
    bootstrap_variance_ratio,
    brown_forsythe_test,
    factorial_levene,
    levene_test,
    variance_ratio_test,
)

__all__ = [
    "AdjustedPValues",
    "AnovaTerm",
    "AuditResult",
    "BOOTSTRAP_METHODS",
    "BOOTSTRAP_MIN_N",
    "BootstrapResult",
    "Comparison",
    "ComparisonReport",
    "ComponentRatio",
    "ConditionComponents",
    "ConfidenceInterval",
    "DEFAULT_BOOTSTRAP",
    "DEFAULT_PRIMARY",
    "DEFAULT_PRIMARY_REASON",
    "Decomposition",
    "EffectSizes",
    "Estimate",
    "FLOOR_MIN_RUNS",
    "FactorialLeveneResult",
    "GroupCount",
    "GroupSummary",
    "LeveneResult",
    "MECHANISM_MIN_N",
    "MECHANISM_PREDICTORS",
    "MechanismResult",
    "PairedVarianceTest",
    "PlannedPower",
    "PowerResult",
    "RankCorrelation",
    "RunCheck",
    "RunTableError",
    "SamplingFloor",
    "SeedBudget",
    "ShapiroResult",
    "TEST_NAMES",
    "VarianceComponent",
    "VarianceRatioResult",
    "VarianceTest",
    "WelchResult",
    "adjust",
    "adjust_pvalues",
    "benjamini_hochberg",
    "bonett_test",
    "bootstrap_ratio_interval",
    "bootstrap_variance_ratio",
    "brown_forsythe_test",
    "check_runs",
    "compare",
    "comparison_reports",
    "comparison_seed",
    "correctness",
    "decompose",
    "describe",
    "effect_sizes",
    "equal_variance_tests",
    "factorial_levene",
    "hedges_g",
    "holm",
    "jsonable",
    "levene_test",
    "log_ratio_interval_width",
    "paired_variance_test",
    "pitman_morgan_test",
    "posthoc_power",
    "power_at_ratio",
    "probability_of_superiority",
    "probe_rows",
    "run_test",
    "sampling_floor",
    "sampling_floors_markdown",
    "seed_mechanism",
    "seeds_for_log_ratio_width",
    "seeds_for_power",
    "seeds_for_power_of",
    "seeds_for_standard_error",
    "shapiro_wilk",
    "variance_audit",
    "variance_interval",
    "variance_ratio_power",
    "variance_ratio_test",
    "verdict",
    "verdicts",
    "welch_test",
]
