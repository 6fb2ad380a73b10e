"""The variance audit of one design: cells, pooled groups and every test, on a DataFrame.

A design is a set of runs (one row each) that differ only by the compared factor (e.g.
margin), an optional second factor (e.g. stability) and the seed. Splitting a bigger set
of runs into such designs (per dataset, schedule, ...) is the caller's job.

Tests that cannot be computed on the data (a constant group, a cell with one run) do not
stop the audit: their result is None and `notes` says why.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from cffaudit.stats.bootstrap import comparison_seed
from cffaudit.stats.checks import GroupCount
from cffaudit.stats.comparison import ComparisonReport, _attempt
from cffaudit.stats.comparison import compare as compare_groups
from cffaudit.stats.describe import describe
from cffaudit.stats.means import welch_test
from cffaudit.stats.normality import shapiro_wilk
from cffaudit.stats.power import seeds_for_power, seeds_for_standard_error, variance_ratio_power
from cffaudit.stats.results import (
    BootstrapResult,
    FactorialLeveneResult,
    GroupSummary,
    LeveneResult,
    PowerResult,
    ShapiroResult,
    VarianceRatioResult,
    WelchResult,
    _Result,
)
from cffaudit.stats.variance import (
    bootstrap_variance_ratio,
    factorial_levene,
    levene_test,
    variance_ratio_test,
)



@dataclasses.dataclass(frozen=True)
class SeedBudget(_Result):
    """How many seeds a group needs: for a target standard error, and for F-test power."""

    label: str
    sd: float
    target_se: float
    seeds_for_target_se: int


@dataclasses.dataclass(frozen=True)
class Comparison(_Result):
    """Group A (numerator) against group B (denominator): spread first, then location."""

    label: str
    a: GroupSummary
    b: GroupSummary
    variance_ratio: Optional[VarianceRatioResult]
    bootstrap: Optional[BootstrapResult]
    levene: Optional[LeveneResult]
    brown_forsythe: Optional[LeveneResult]
    welch: Optional[WelchResult]
    power_at_n: Optional[PowerResult]
    seeds_for_power: Optional[int]
    shapiro_a: Optional[ShapiroResult]
    shapiro_b: Optional[ShapiroResult]


@dataclasses.dataclass(frozen=True)
class AuditResult(_Result):
    """Every statistic of a variance audit of one design."""

    response: str
    compare: str
    levels: tuple[str, str]
    factor: Optional[str]
    pooled: bool
    cells: tuple[GroupSummary, ...]
    comparisons: tuple[Comparison, ...]
    levene_cells: Optional[LeveneResult]
    brown_forsythe_cells: Optional[LeveneResult]
    factorial_levene: Optional[FactorialLeveneResult]
    factorial_brown_forsythe: Optional[FactorialLeveneResult]
    seed_budget: tuple[SeedBudget, ...]
    bootstrap_seed: int
    notes: tuple[str, ...]
    skipped_cells: tuple[GroupCount, ...] = ()  # cells with too few runs, kept with their n and why


def _check_columns(frame: pd.DataFrame, response: str, compare: str, factor: Optional[str]) -> None:
    if response not in frame.columns:
        raise ValueError(f"response: no column {response!r}; columns are {list(frame.columns)}")
    if compare not in frame.columns:
        raise ValueError(f"compare: unknown factor {compare!r}; columns are {list(frame.columns)}")
    if factor is not None:
        if factor not in frame.columns:
            raise ValueError(f"factor: unknown factor {factor!r}; columns are {list(frame.columns)}")
        if factor == compare:
            raise ValueError(f"factor: must differ from compare ({compare!r})")


def _label(*parts: Any) -> str:
    return "/".join(str(p) for p in parts)


def _prepare(frame: pd.DataFrame, response: str, compare: str, levels: Sequence[str],
             factor: Optional[str]) -> tuple[pd.DataFrame, tuple[str, str]]:
    """The runs of the two compared levels, factor columns as text; raises on bad input."""
    _check_columns(frame, response, compare, factor)
    levels = tuple(str(v) for v in levels)
    if len(levels) != 2 or levels[0] == levels[1]:
        raise ValueError(f"levels: need two distinct levels of {compare!r}, got {levels}")
    present = set(frame[compare].astype(str))
    for lv in levels:
        if lv not in present:
            raise ValueError(f"levels: unknown level {lv!r} of {compare!r}; present: {sorted(present)}")
    data = frame[frame[compare].astype(str).isin(levels)].copy()
    data[compare] = data[compare].astype(str)
    if data[response].isna().any():
        raise ValueError(f"response: column {response!r} has {int(data[response].isna().sum())} NaN value(s)")
    if factor is not None:
        if data[factor].isna().any():
            raise ValueError(f"factor: {factor!r} is missing for some runs (not applicable to them?)")
        data[factor] = data[factor].astype(str)
    return data, levels  # type: ignore[return-value]


def _pairs(data: pd.DataFrame, compare: str, levels: tuple[str, str], factor: Optional[str], pool: bool) -> list:
    """(label, label A, label B, mask A, mask B) of every pairwise comparison of a design."""
    factor_levels = sorted(data[factor].unique()) if factor is not None else []
    # Pooled, or within each factor level.
    vs = f"{levels[0]} vs {levels[1]}"
    if factor is None:
        pairs = [(vs, levels[0], levels[1], data[compare] == levels[0], data[compare] == levels[1])]
    elif pool:
        pairs = [(f"{vs} (pooled over {factor})", f"{levels[0]} (pooled)", f"{levels[1]} (pooled)",
                  data[compare] == levels[0], data[compare] == levels[1])]
    else:
        pairs = [(f"{vs} | {factor}={fl}", _label(levels[0], fl), _label(levels[1], fl),
                  (data[compare] == levels[0]) & (data[factor] == fl),
                  (data[compare] == levels[1]) & (data[factor] == fl)) for fl in factor_levels]
    return pairs


def variance_audit(
    frame: pd.DataFrame,
    *,
    response: str = "test_acc",
    compare: str = "margin",
    levels: Sequence[str] = ("clamp", "subtract"),
    factor: Optional[str] = None,
    pool: bool = False,
    n_resamples: int = 10_000,
    confidence_level: float = 0.95,
    alpha: float = 0.05,
    target_power: float = 0.8,
    target_se: float = 0.1,
    seed: int = 0,
) -> AuditResult:
    """Run the variance audit on the runs of one design.

    Without `factor`, the two levels of `compare` are compared directly (over everything
    else in `frame`). With `factor`, the cells are compare x factor; the factorial Levene
    and Brown-Forsythe tests and the k-group tests over all cells are added, and the
    pairwise comparison is made within each level of `factor` or, with `pool`, once on
    groups pooled over `factor`.

    Args:
        frame: One row per finished run.
        response: Column of per-run values (percent accuracy).
        compare: Factor whose two levels are compared (numerator first).
        levels: The two levels of `compare`; the variance ratio is levels[0] / levels[1].
        factor: Optional second factor of the design.
        pool: Pool over `factor` for the pairwise comparison.
        n_resamples: Bootstrap resamples for the CI of the variance ratio.
        confidence_level: Coverage of every interval.
        alpha: Significance level used by the power calculation.
        target_power: Power for which `seeds_for_power` is computed.
        target_se: Standard error (response units) for the seed budget.
        seed: Analysis seed; each comparison's bootstrap draws from its own generator,
            seeded by `bootstrap.comparison_seed(seed, label)` and recorded in its result.

    Raises:
        ValueError: If a column is missing, `levels` is not two distinct levels, a level
            is absent from `frame[compare]`, `factor` equals `compare`, or `response`
            holds NaN.
    """
    data, levels = _prepare(frame, response, compare, levels, factor)
    notes: list[str] = []

    def values(mask: pd.Series) -> np.ndarray:
        return data.loc[mask, response].to_numpy(dtype=np.float64)

    # Cells: compare x factor (or compare alone).
    cell_keys: list[tuple[str, ...]] = []
    cells: list[GroupSummary] = []
    cell_values: list[np.ndarray] = []
    skipped_cells: list[GroupCount] = []
    factor_levels = sorted(data[factor].unique()) if factor is not None else []
    for lv in levels:
        for fl in factor_levels or [None]:
            mask = data[compare] == lv
            if fl is not None:
                mask &= data[factor] == fl
            x = values(mask)
            key = (lv,) if fl is None else (lv, fl)
            if x.size == 0:
                notes.append(f"cell {_label(*key)}: no runs")
                continue
            if x.size < 2:
                why = f"{x.size} run(s); a variance needs at least 2"
                skipped_cells.append(GroupCount(label=_label(*key), n=int(x.size), skipped=True, reason=why))
            summary = _attempt(notes, f"cell {_label(*key)}", lambda: describe(x, _label(*key)))
            if summary is not None:
                cell_keys.append(key)
                cells.append(summary)
                cell_values.append(x)

    pairs = _pairs(data, compare, levels, factor, pool)
    comparisons = []
    for tag, label_a, label_b, ma, mb in pairs:
        xa, xb = values(ma), values(mb)
        sa = _attempt(notes, f"{tag}: group {label_a}", lambda: describe(xa, label_a))
        sb = _attempt(notes, f"{tag}: group {label_b}", lambda: describe(xb, label_b))
        if sa is None or sb is None:
            continue
        vr = _attempt(notes, f"{tag}: variance ratio", lambda: variance_ratio_test(xa, xb, confidence_level=confidence_level))
        # One generator per comparison, from the seed and the comparison's label, so an
        # interval never depends on which other comparisons ran; its seed is recorded.
        boot = _attempt(
            notes, f"{tag}: bootstrap",
            lambda: bootstrap_variance_ratio(xa, xb, n_resamples=n_resamples, confidence_level=confidence_level,
                                             rng=comparison_seed(seed, tag)),
        )
        power = None
        n_needed = None
        if vr is not None and vr.statistic > 0:
            power = _attempt(notes, f"{tag}: power", lambda: variance_ratio_power(vr.statistic, sa.n, sb.n, alpha=alpha))
            if vr.statistic != 1.0:
                n_needed = _attempt(
                    notes, f"{tag}: seeds for power",
                    lambda: seeds_for_power(vr.statistic, power=target_power, alpha=alpha),
                )
        comparisons.append(
            Comparison(
                label=tag,
                a=sa,
                b=sb,
                variance_ratio=vr,
                bootstrap=boot,
                levene=_attempt(notes, f"{tag}: Levene", lambda: levene_test(xa, xb, center="mean")),
                brown_forsythe=_attempt(notes, f"{tag}: Brown-Forsythe", lambda: levene_test(xa, xb, center="median")),
                welch=_attempt(notes, f"{tag}: Welch", lambda: welch_test(xa, xb, confidence_level=confidence_level)),
                power_at_n=power,
                seeds_for_power=n_needed,
                shapiro_a=_attempt(notes, f"{tag}: Shapiro-Wilk {label_a}", lambda: shapiro_wilk(xa)),
                shapiro_b=_attempt(notes, f"{tag}: Shapiro-Wilk {label_b}", lambda: shapiro_wilk(xb)),
            )
        )

    levene_cells = bf_cells = fact_l = fact_bf = None
    if factor is not None:
        if len(cell_values) >= 2:
            levene_cells = _attempt(notes, "Levene over cells", lambda: levene_test(*cell_values, center="mean"))
            bf_cells = _attempt(notes, "Brown-Forsythe over cells", lambda: levene_test(*cell_values, center="median"))
        design = data[[compare, factor, response]]
        fact_l = _attempt(notes, "factorial Levene", lambda: factorial_levene(design, response, [compare, factor], center="mean"))
        fact_bf = _attempt(
            notes, "factorial Brown-Forsythe", lambda: factorial_levene(design, response, [compare, factor], center="median")
        )

    budget_groups = [c.a for c in comparisons] + [c.b for c in comparisons]
    seen: set[str] = set()
    budget = []
    for g in budget_groups if comparisons else cells:
        if g.label in seen:
            continue
        seen.add(g.label)
        budget.append(SeedBudget(g.label, g.sd, target_se, seeds_for_standard_error(g.sd, target_se)))

    return AuditResult(
        response=response,
        compare=compare,
        levels=levels,  # type: ignore[arg-type]
        factor=factor,
        pooled=bool(pool and factor is not None),
        cells=tuple(cells),
        comparisons=tuple(comparisons),
        levene_cells=levene_cells,
        brown_forsythe_cells=bf_cells,
        factorial_levene=fact_l,
        factorial_brown_forsythe=fact_bf,
        seed_budget=tuple(budget),
        bootstrap_seed=int(seed),
        notes=tuple(notes),
        skipped_cells=tuple(skipped_cells),
    )


def comparison_reports(
    frame: pd.DataFrame,
    *,
    response: str = "test_acc",
    compare: str = "margin",
    levels: Sequence[str] = ("clamp", "subtract"),
    factor: Optional[str] = None,
    pool: bool = False,
    seed_columns: Sequence[str] = ("seed",),
    primary: Optional[str] = None,
    min_ratio: float = 2.0,
    power: float = 0.8,
    alpha: float = 0.05,
    confidence_level: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> tuple[ComparisonReport, ...]:
    """`comparison.compare` for every pairwise comparison `variance_audit` makes of this design.

    Same design arguments and comparison labels as `variance_audit`. Runs are paired for
    Pitman-Morgan by the values of `seed_columns` (the run seed, or every stream seed);
    pairing is skipped when a seed column is absent. A comparison whose group has fewer
    than 2 runs is left out (`check_runs` reports such groups).

    Raises:
        ValueError: As `variance_audit`, and for an unknown `primary`.
    """
    data, levels = _prepare(frame, response, compare, levels, factor)
    seeds_present = all(c in data.columns for c in seed_columns) and bool(seed_columns)
    out = []
    for tag, label_a, label_b, ma, mb in _pairs(data, compare, levels, factor, pool):
        xa = data.loc[ma, response].to_numpy(dtype=np.float64)
        xb = data.loc[mb, response].to_numpy(dtype=np.float64)
        if min(xa.size, xb.size) < 2:
            continue
        keys_a = keys_b = None
        if seeds_present:
            keys_a = [tuple(r) for r in data.loc[ma, list(seed_columns)].itertuples(index=False)]
            keys_b = [tuple(r) for r in data.loc[mb, list(seed_columns)].itertuples(index=False)]
        out.append(compare_groups(
            xa, xb, label=tag, labels=(label_a, label_b), seeds_a=keys_a, seeds_b=keys_b, primary=primary,
            seed=seed, min_ratio=min_ratio, power=power, alpha=alpha, confidence_level=confidence_level,
            n_resamples=n_resamples,
        ))
    return tuple(out)
