"""From a frame of runs to variance audits: filter, split into designs, audit each.

A design (stratum) is a set of finished runs that agree on dataset, experiment, margin
schedule, augmentation and every config setting that is not a compared factor or the
seed. Runs that differ in any of those are not replicates of each other, so they are
never pooled into one variance.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Sequence

import pandas as pd

from cffaudit.report import verdicts as vd
from cffaudit.report.inputs import CONDITION_COLUMNS, check_selected_runs, group_counts, seed_columns
from cffaudit.report.runs import DESIGN_COLUMNS, column_of, design_config_columns
from cffaudit.stats import (
    DEFAULT_PRIMARY,
    DEFAULT_PRIMARY_REASON,
    TEST_NAMES,
    AdjustedPValues,
    AuditResult,
    ComparisonReport,
    GroupCount,
    factorial_levene,
    seeds_for_log_ratio_width,
    seeds_for_power_of,
    variance_audit,
)
from cffaudit.stats.results import jsonable

SCHEMA = "cffaudit.analysis/1"


@dataclasses.dataclass(frozen=True)
class DesignAudit:
    """The audit of one design, with the design's identifying values.

    `reports` are the primary and secondary tests of each comparison (labelled
    '<key>: <comparison>'), `counts` the runs per cell with those too small to test,
    `untested` the comparisons not made, and `verdicts` one text per report, after the
    adjustment over the whole analysis.
    """

    stratum: dict[str, Any]
    n_runs: int
    audit: AuditResult
    notes: tuple[str, ...]
    runs: pd.DataFrame = dataclasses.field(repr=False, compare=False, default_factory=pd.DataFrame)
    key: str = ""
    counts: tuple[GroupCount, ...] = ()
    reports: tuple[ComparisonReport, ...] = ()
    untested: tuple[vd.Untested, ...] = ()
    verdicts: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        """A short name such as 'cifar10 (experiment=factorial, margin_schedule=standard)'."""
        rest = ", ".join(f"{k}={v}" for k, v in self.stratum.items() if k != "dataset" and v is not None)
        head = str(self.stratum.get("dataset") or "runs")
        return f"{head} ({rest})" if rest else head

    @property
    def short_title(self) -> str:
        """The design's values only, e.g. 'cifar10 · factorial · standard · standard', for plot labels."""
        return " · ".join(str(v) for v in self.stratum.values() if v is not None) or "runs"


@dataclasses.dataclass(frozen=True)
class Analysis:
    """Everything `cffaudit analyze` reports."""

    inputs: dict[str, Any]
    options: dict[str, Any]
    runs_total: int
    runs_done: int
    runs_failed: int
    runs_other: int
    runs_filtered_out: int
    designs: tuple[DesignAudit, ...]
    notes: tuple[str, ...]
    holm: Optional[AdjustedPValues] = None  # over the primary tests of every design
    bh: Optional[AdjustedPValues] = None  # over every printed test p-value

    def to_dict(self) -> dict:
        """The JSON document of `analyze --json` (schema 'cffaudit.analysis/1').

        Beside the audit of each design (whose `power_at_n` and `seeds_for_power` are at
        the observed ratio, i.e. post-hoc, and say so), `comparisons` holds the primary
        and secondary tests with raw, Holm and Benjamini-Hochberg p-values, the effect
        sizes, planning numbers and the verdict; `multiplicity` names both families.
        """
        return {
            "schema": SCHEMA,
            "inputs": jsonable(self.inputs),
            "options": jsonable(self.options),
            "runs": {
                "total": self.runs_total,
                "done": self.runs_done,
                "failed_excluded": self.runs_failed,
                "other_status_excluded": self.runs_other,
                "filtered_out": self.runs_filtered_out,
            },
            "designs": [self._design_dict(d) for d in self.designs],
            "multiplicity": {"holm": jsonable(self.holm), "benjamini_hochberg": jsonable(self.bh)},
            "notes": list(self.notes),
        }

    def _design_dict(self, d: DesignAudit) -> dict:
        audit = d.audit.to_dict()
        for c in audit["comparisons"]:
            c["posthoc"] = ("power_at_n and seeds_for_power are at the observed variance ratio (post-hoc power): "
                            "not for planning; see comparisons[].power_at_min_ratio and seeds_needed")
        return {
            "stratum": jsonable(d.stratum), "key": d.key, "n_runs": d.n_runs, "notes": list(d.notes), "audit": audit,
            "groups": jsonable(d.counts), "untested": jsonable(d.untested),
            "comparisons": vd.comparisons_json(d.reports, d.verdicts, self.holm, self.bh),
        }


def parse_where(items: Sequence[str]) -> dict[str, list[str]]:
    """Parse repeated `key=value` filters; `key=a,b` keeps either value.

    Raises:
        ValueError: If an item has no '=' or an empty key.
    """
    out: dict[str, list[str]] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"where: expected key=value, got {item!r}")
        out.setdefault(key.strip(), []).extend(v.strip() for v in value.split(","))
    return out


def apply_where(frame: pd.DataFrame, where: dict[str, list[str]]) -> pd.DataFrame:
    """Keep the runs whose column `key` (as text) is one of the given values; `key` may
    name a factor as a spec does (``augment``, ``loss.margin``) or a config path.

    Raises:
        ValueError: If a key is not a column of `frame`.
    """
    mask = pd.Series(True, index=frame.index)
    for key, values in where.items():
        col = column_of(key)
        if col not in frame.columns:
            col = f"cfg.{key}"
        if col not in frame.columns:
            known = [c for c in frame.columns if not c.startswith(("car_l", "grad_norm_l"))]
            raise ValueError(f"where: unknown column {key!r}; columns are {known}")
        mask &= frame[col].astype(str).isin(values)
    return frame[mask]


def _design_columns(frame: pd.DataFrame, compare: str, factor: Optional[str]) -> list[str]:
    cols = [c for c in DESIGN_COLUMNS if c in frame.columns and frame[c].notna().any()]
    cols += design_config_columns(frame)
    return [c for c in cols if c not in (compare, factor)]


#: The default target width of the log variance-ratio interval: its upper end at most 4
#: times its lower end.
DEFAULT_LOG_RATIO_WIDTH = math.log(4.0)


def _pair_columns(sub: pd.DataFrame, compare: str, factor: Optional[str], pool: bool) -> list[str]:
    """Columns that pair a run of A with a run of B: every factor the comparison pools over
    (seed k of two stabilities are two different runs), then the seeds."""
    pooled = [c for c in ("stability", "margin_schedule", "augmentation")
              if c != compare and c in sub.columns and (c != factor or pool)
              and sub[c].dropna().astype(str).nunique() > 1]
    return pooled + seed_columns(sub)


def _unique_key(title: str, taken: set[str]) -> str:
    key, k = title, 1
    while key in taken:
        k += 1
        key = f"{title} ({k})"
    taken.add(key)
    return key


class MissingLevelsError(ValueError):
    """No finished run has a level of `compare` that the audit compares."""


def analyze_runs(
    frame: pd.DataFrame,
    *,
    compare: str = "margin",
    levels: Sequence[str] = ("clamp", "subtract"),
    factor: Optional[str] = None,
    pool: bool = False,
    where: Optional[dict[str, list[str]]] = None,
    n_resamples: int = 10_000,
    seed: int = 0,
    target_se: float = 0.1,
    inputs: Optional[dict[str, Any]] = None,
    primary: Optional[str] = None,
    min_ratio: float = 2.0,
    power: float = 0.8,
    alpha: float = 0.05,
    log_ratio_width: float = DEFAULT_LOG_RATIO_WIDTH,
    anova_type: int = 2,
    allocation: float = 1.0,
    scope: str = "this analysis",
) -> Analysis:
    """Filter the runs, check them, split them into designs and audit each; then adjust
    the p-values of all designs together and write the verdicts.

    Args:
        frame: Runs as returned by `load_runs`.
        compare: Factor whose two `levels` are compared.
        levels: Numerator and denominator level of the variance ratio.
        factor: Optional second factor (factorial tests).
        pool: Pool over `factor` for the pairwise comparison.
        where: Filters from `parse_where`.
        n_resamples: Bootstrap resamples.
        seed: Analysis seed; each comparison's bootstrap and permutation draws use a
            generator derived from it and the comparison's label (recorded).
        target_se: Target standard error for the seed budget (response units).
        inputs: Description of the inputs, copied to the JSON.
        primary: The primary test (one of `stats.TEST_NAMES`); default `DEFAULT_PRIMARY`.
        min_ratio: Variance ratio of interest for the planning numbers.
        power: Target power of the planning numbers.
        alpha: Level of every test and of the verdicts.
        log_ratio_width: Target width of the log variance-ratio interval, for a seed count.
        anova_type: Sums of squares of the factorial ANOVA on absolute deviations (2 or 3).
        allocation: Seeds of B per seed of A in the planning numbers that do not depend
            on the data (seeds for `power` at `min_ratio`, seeds for `log_ratio_width`).
        scope: Words naming this call in the multiplicity families ("this analyze call").

    Raises:
        MissingLevelsError: If a level of `compare` is absent from every finished run.
        ValueError: If `compare`/`factor` is not a column, no finished run is left after filtering, an option is out
            of range, or the runs fail the input checks (`stats.RunTableError`: a run given
            twice, an accuracy that is not a percentage).
    """
    levels = tuple(levels)
    if primary is not None and primary not in TEST_NAMES:
        raise ValueError(f"primary: unknown test {primary!r}; choose one of {list(TEST_NAMES)}")
    if anova_type not in (2, 3):
        raise ValueError(f"anova_type: must be 2 or 3, got {anova_type!r}")
    if not (math.isfinite(min_ratio) and min_ratio > 0 and min_ratio != 1):
        raise ValueError(f"min_ratio: must be a variance ratio > 0 other than 1, got {min_ratio!r}")
    if not 0 < alpha < power < 1:
        raise ValueError(f"power: must lie between alpha ({alpha!r}) and 1, got {power!r}")
    if not (math.isfinite(allocation) and allocation > 0):
        raise ValueError(f"allocation: must be a ratio n_B / n_A > 0, got {allocation!r}")
    seeds_for_width = seeds_for_log_ratio_width(log_ratio_width, allocation=allocation)  # raises on a width <= 0
    compare, factor = column_of(compare), (column_of(factor) if factor is not None else None)
    total = len(frame)
    selected = apply_where(frame, where or {})
    status = selected["status"].astype(str)
    done = selected[status == "done"]
    failed = int((status == "failed").sum())
    other = int(len(selected) - len(done) - failed)
    for name, col in (("compare", compare), ("factor", factor)):
        if col is not None and col not in frame.columns:
            raise ValueError(f"{name}: unknown factor {col!r}; columns are {[c for c in frame.columns if not c.startswith(('car_l', 'grad_norm_l'))]}")
    if done.empty:
        raise ValueError(f"no finished runs to analyse ({total} loaded, {failed} failed, {total - len(selected)} filtered out)")
    # Before any statistic: a run given twice or an accuracy that is not a percentage.
    check_selected_runs(done, [compare, *([factor] if factor else []), *CONDITION_COLUMNS,
                               *design_config_columns(done)])
    present = set(done[compare].dropna().astype(str))
    missing = [lv for lv in levels if lv not in present]
    if missing:
        raise MissingLevelsError(f"levels: unknown level(s) {missing} of {compare!r}; present: {sorted(present)}")

    notes: list[str] = []
    if failed:
        notes.append(f"{failed} failed run(s) excluded from the statistics")
    if other:
        notes.append(f"{other} run(s) with a status other than done/failed excluded")
    cols = _design_columns(done, compare, factor)
    designs = []
    keys: set[str] = set()
    groups = done.groupby(cols, dropna=False, sort=False) if cols else [((), done)]
    options = dict(primary=primary, min_ratio=min_ratio, power=power, alpha=alpha, n_resamples=n_resamples,
                   seed=seed)
    for key, sub in groups:
        key = key if isinstance(key, tuple) else (key,)
        stratum = {c: (None if pd.isna(v) else jsonable(v)) for c, v in zip(cols, key)}  # plain numbers in notes
        design_notes: list[str] = []
        sub_levels = set(sub[compare].dropna().astype(str))
        if not all(lv in sub_levels for lv in levels):
            notes.append(f"design {stratum}: skipped, it lacks level(s) {[lv for lv in levels if lv not in sub_levels]} of {compare}")
            continue
        use_factor = factor
        if factor is not None:
            fvals = sub.loc[sub[compare].astype(str).isin(levels), factor]
            if fvals.isna().all():
                design_notes.append(f"{factor} does not apply to these runs; compared without it")
                use_factor = None
            elif fvals.isna().any():
                design_notes.append(f"{factor} is missing for some runs; compared without it")
                use_factor = None
            elif fvals.astype(str).nunique() < 2:
                design_notes.append(f"{factor} has one level here ({fvals.iloc[0]}); compared without it")
                use_factor = None
        for other_factor in ("stability", "margin_schedule", "augmentation"):
            if other_factor in (compare, use_factor) or other_factor not in sub.columns:
                continue
            vals = sorted(sub[other_factor].dropna().astype(str).unique())
            if len(vals) > 1:
                design_notes.append(f"pooled over {other_factor} ({', '.join(vals)})")
        for runtime_col in ("device", "precision"):
            if runtime_col in sub.columns:
                counts = sub[runtime_col].dropna().astype(str).value_counts().sort_index()
                if len(counts) > 1:
                    mix = ", ".join(f"{v} ({n} runs)" for v, n in counts.items())
                    design_notes.append(
                        f"mixes runs trained with {runtime_col} {mix}: a hardware difference inside the "
                        f"comparison; keep one with --where {runtime_col}={counts.index[0]}")
        audit = variance_audit(
            sub,
            compare=compare,
            levels=levels,
            factor=use_factor,
            pool=pool,
            n_resamples=n_resamples,
            seed=seed,
            target_se=target_se,
        )
        if use_factor is not None and anova_type != 2:
            audit = _refit_factorial(audit, sub, compare, levels, use_factor, anova_type)
        dkey = _unique_key(" · ".join(str(v) for v in stratum.values() if v is not None) or "runs", keys)
        cells = group_counts(sub, compare, levels, use_factor)
        reports = vd.design_comparisons(sub, key=dkey, compare=compare, levels=levels, factor=use_factor, pool=pool,
                                        pair_by=_pair_columns(sub, compare, use_factor, pool), **options)
        missed = vd.untested(cells, key=dkey, levels=levels, factor=use_factor, pool=pool, reports=reports)
        design_notes += [f"{g.label}: left out of the tests of spread ({g.reason})" for g in cells if g.skipped]
        designs.append(DesignAudit(stratum=stratum, n_runs=len(sub), audit=audit, notes=tuple(design_notes), runs=sub,
                                   key=dkey, counts=cells, reports=reports, untested=missed))
    if not designs:
        raise ValueError(f"no design holds both levels {list(levels)} of {compare!r}")
    holm_res, bh = vd.families(designs, scope)
    designs = [dataclasses.replace(d, verdicts=tuple(vd.verdict_text(r, holm_res, bh) for r in d.reports))
               for d in designs]
    options = {
        "compare": compare,
        "levels": list(levels),
        "factor": factor,
        "pool": pool,
        "where": where or {},
        "n_resamples": n_resamples,
        "bootstrap_seed": seed,
        "target_se": target_se,
        "design_columns": cols,
        "primary": primary or DEFAULT_PRIMARY,
        "primary_reason": DEFAULT_PRIMARY_REASON if primary is None else "chosen by the user (--primary)",
        "alpha": alpha,
        "min_ratio": min_ratio,
        "power": power,
        "log_ratio_width": log_ratio_width,
        "allocation": allocation,
        "seeds_for_log_ratio_width": list(seeds_for_width),
        # With equal groups this is each comparison's `seeds_needed` (not searched twice).
        "seeds_for_power": None if allocation == 1.0 else list(seeds_for_power_of(
            min_ratio, power=power, test=primary or DEFAULT_PRIMARY, alpha=alpha, allocation=allocation)),
        "anova_type": anova_type,
    }
    return Analysis(
        inputs=inputs or {},
        options=options,
        runs_total=total,
        runs_done=len(done),
        runs_failed=failed,
        runs_other=other,
        runs_filtered_out=total - len(selected),
        designs=tuple(designs),
        notes=tuple(notes),
        holm=holm_res,
        bh=bh,
    )


def _refit_factorial(audit: AuditResult, sub: pd.DataFrame, compare: str, levels: Sequence[str], factor: str,
                     anova_type: int) -> AuditResult:
    """The audit with its factorial Levene and Brown-Forsythe ANOVAs refitted with `anova_type`
    sums of squares (`variance_audit` fits type II)."""
    data = sub[sub[compare].astype(str).isin(levels)].assign(
        **{compare: lambda f: f[compare].astype(str), factor: lambda f: f[factor].astype(str)})[[compare, factor, "test_acc"]]
    notes = list(audit.notes)
    fits = {}
    for center, field in (("mean", "factorial_levene"), ("median", "factorial_brown_forsythe")):
        try:
            fits[field] = factorial_levene(data, "test_acc", [compare, factor], center=center, anova_type=anova_type)
        except ValueError as exc:
            fits[field] = None
            notes.append(f"factorial {center}-centred ANOVA (type {anova_type}): not computed ({exc})")
    return dataclasses.replace(audit, notes=tuple(notes), **fits)
