"""From a frame of runs to variance audits: filter, split into designs, audit each.

A design (stratum) is a set of finished runs that agree on dataset, experiment, margin
schedule, augmentation and every config setting that is not a compared factor or the
seed. Runs that differ in any of those are not replicates of each other, so they are
never pooled into one variance.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import pandas as pd

from cffaudit.report.runs import DESIGN_COLUMNS, column_of, design_config_columns
from cffaudit.stats import AuditResult, variance_audit
from cffaudit.stats.results import jsonable

SCHEMA = "cffaudit.analysis/1"


@dataclasses.dataclass(frozen=True)
class DesignAudit:
    """The audit of one design, with the design's identifying values."""

    stratum: dict[str, Any]
    n_runs: int
    audit: AuditResult
    notes: tuple[str, ...]
    runs: pd.DataFrame = dataclasses.field(repr=False, compare=False, default_factory=pd.DataFrame)

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

    def to_dict(self) -> dict:
        """The JSON document of `analyze --json` (schema 'cffaudit.analysis/1')."""
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
            "designs": [
                {"stratum": jsonable(d.stratum), "n_runs": d.n_runs, "notes": list(d.notes), "audit": d.audit.to_dict()}
                for d in self.designs
            ],
            "notes": list(self.notes),
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
) -> Analysis:
    """Filter the runs, split them into designs and run the variance audit on each.

    Args:
        frame: Runs as returned by `load_runs`.
        compare: Factor whose two `levels` are compared.
        levels: Numerator and denominator level of the variance ratio.
        factor: Optional second factor (factorial tests).
        pool: Pool over `factor` for the pairwise comparison.
        where: Filters from `parse_where`.
        n_resamples: Bootstrap resamples.
        seed: Bootstrap seed (each design's audit uses this seed).
        target_se: Target standard error for the seed budget (response units).
        inputs: Description of the inputs, copied to the JSON.

    Raises:
        ValueError: If `compare`/`factor` is not a column, a level of `compare` is absent
            from every design, or no finished run is left after filtering.
    """
    levels = tuple(levels)
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
    present = set(done[compare].dropna().astype(str))
    missing = [lv for lv in levels if lv not in present]
    if missing:
        raise ValueError(f"levels: unknown level(s) {missing} of {compare!r}; present: {sorted(present)}")

    notes: list[str] = []
    if failed:
        notes.append(f"{failed} failed run(s) excluded from the statistics")
    if other:
        notes.append(f"{other} run(s) with a status other than done/failed excluded")
    cols = _design_columns(done, compare, factor)
    designs = []
    groups = done.groupby(cols, dropna=False, sort=False) if cols else [((), done)]
    for key, sub in groups:
        key = key if isinstance(key, tuple) else (key,)
        stratum = {c: (None if pd.isna(v) else v) for c, v in zip(cols, key)}
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
        designs.append(DesignAudit(stratum=stratum, n_runs=len(sub), audit=audit, notes=tuple(design_notes), runs=sub))
    if not designs:
        raise ValueError(f"no design holds both levels {list(levels)} of {compare!r}")
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
    )
