"""Results of the variance-components decomposition (`stats.components.decompose`) and their tables."""

from __future__ import annotations

import dataclasses
from typing import Optional

import pandas as pd

from cffaudit.stats._markdown import interval, number, table
from cffaudit.stats.results import ConfidenceInterval, _Result


@dataclasses.dataclass(frozen=True)
class VarianceComponent(_Result):
    """One component of one condition: its REML variance, share of the total and intervals.

    `role` is 'A', 'B' (B within A when nested), 'A:B' or 'residual'; `name` spells it
    with the columns (e.g. 'probe_seed within seed'). `anova` is the untruncated ANOVA
    estimate on balanced data (None otherwise): negative where REML sits on the boundary.
    """

    name: str
    role: str
    variance: float
    confidence_interval: ConfidenceInterval
    share: float
    share_interval: ConfidenceInterval
    on_boundary: bool
    anova: Optional[float]


@dataclasses.dataclass(frozen=True)
class ConditionComponents(_Result):
    """The decomposition of one condition (one combination of the `by` columns).

    `method` names the point estimator, `interval_method` how the intervals were made;
    `n_failed` counts bootstrap draws whose refit failed (unbalanced data only), which
    are left out of the intervals; `notes` say what to keep in mind (boundary estimates,
    the residual holding an unidentified interaction).
    """

    condition: str
    n_runs: int
    n_levels_a: int
    n_levels_b: int
    balanced: bool
    replicates: Optional[int]
    mean: float
    total: float
    components: tuple[VarianceComponent, ...]
    method: str
    interval_method: str
    n_resamples: int
    n_failed: int
    seed: int
    notes: tuple[str, ...]

    def component(self, role_or_name: str) -> VarianceComponent:
        """The component with this role ('A', 'B', 'A:B', 'residual') or name.

        Raises:
            ValueError: If no component has it.
        """
        for c in self.components:
            if role_or_name in (c.role, c.name):
                return c
        names = [c.name for c in self.components]
        raise ValueError(f"role_or_name: no component {role_or_name!r} in {self.condition!r}; components are {names}")


@dataclasses.dataclass(frozen=True)
class ComponentRatio(_Result):
    """One component of condition `numerator` over the same component of `denominator`.

    The interval is the basic interval on the log scale of the ratio of independent
    parametric bootstrap draws of the two conditions; `n_undefined` counts draws where
    both were 0.
    """

    component: str
    role: str
    numerator: str
    denominator: str
    ratio: float
    confidence_interval: ConfidenceInterval
    confidence_level: float
    n_undefined: int


@dataclasses.dataclass(frozen=True)
class Decomposition(_Result):
    """Variance components of `response` for the design `spec`, per condition.

    `kind` is 'nested' ('A/B': B within A) or 'crossed' ('A*B'); `a` and `b` are the
    columns. `ratios` compare each component between the two levels of `compare`.
    `skipped` holds (condition, reason) for conditions left out (`skip_unidentified`).
    """

    response: str
    spec: str
    kind: str
    a: str
    b: str
    by: tuple[str, ...]
    compare: Optional[str]
    conditions: tuple[ConditionComponents, ...]
    ratios: tuple[ComponentRatio, ...]
    confidence_level: float
    seed: int
    skipped: tuple[tuple[str, str], ...] = ()

    def condition(self, label: str) -> ConditionComponents:
        """The decomposition of the condition labelled `label` ('' when `by` is empty).

        Raises:
            ValueError: If there is no such condition.
        """
        for c in self.conditions:
            if c.condition == label:
                return c
        raise ValueError(f"label: no condition {label!r}; conditions are {[c.condition for c in self.conditions]}")

    def to_frame(self) -> pd.DataFrame:
        """One row per (condition, component): tidy, for plots of shares per condition."""
        rows = []
        for cond in self.conditions:
            for c in cond.components:
                rows.append({
                    "condition": cond.condition, "component": c.name, "role": c.role, "variance": c.variance,
                    "ci_low": c.confidence_interval.low, "ci_high": c.confidence_interval.high, "share": c.share,
                    "share_low": c.share_interval.low, "share_high": c.share_interval.high,
                    "on_boundary": c.on_boundary, "anova": c.anova, "n_runs": cond.n_runs, "method": cond.method,
                })
        return pd.DataFrame(rows)

    def to_markdown(self) -> str:
        """The components table, then the ratio table, then the notes, as Markdown."""
        pct = int(round(self.confidence_level * 100))
        rows = []
        for cond in self.conditions:
            for c in cond.components:
                mark = " (boundary)" if c.on_boundary else ""
                rows.append([cond.condition or "all runs", c.name, cond.n_runs, number(c.variance, 3) + mark,
                             interval(c.confidence_interval), f"{100 * c.share:.1f}%",
                             interval(tuple(100 * v for v in c.share_interval), 3)])
        out = [f"Variance components of {self.response}, design `{self.spec}` ({self.kind})", "",
               table(["condition", "component", "runs", "variance", f"{pct}% CI", "share", f"share {pct}% CI (%)"], rows, left=2)]
        if self.ratios:
            out += ["", table(
                ["component", "ratio of", "ratio", f"{pct}% CI"],
                [[r.component, f"{r.numerator} / {r.denominator}", number(r.ratio, 3), interval(r.confidence_interval)]
                 for r in self.ratios], left=2)]
        methods = sorted({f"{c.method}; intervals: {c.interval_method}" for c in self.conditions})
        notes = [f"{c.condition or 'all runs'}: {n}" for c in self.conditions for n in c.notes]
        notes += [f"{label or 'all runs'}: not decomposed ({reason})" for label, reason in self.skipped]
        out += [""] + [f"- {m}" for m in methods] + [f"- {n}" for n in notes]
        return "\n".join(out)
