"""The verdict layer of an analysis: primary and secondary tests per comparison, the two
multiplicity families of one `analyze`/`report` call, and the verdict in words.

The arithmetic is `cffaudit.stats` (`comparison_reports`, `holm`, `benjamini_hochberg`,
`verdict`); this module names things across designs. A comparison's label inside the
library ('clamp vs subtract') repeats from design to design, so every p-value gets a
label that starts with its design's key ('cifar10 · factorial · standard · standard:
clamp vs subtract: bonett'), and the families are built from those labels. The
bootstrap and permutation draws stay seeded by the library's label, so that the same
runs give the same intervals whatever else is analysed and however they were loaded.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence

import pandas as pd

from cffaudit.stats import (
    AdjustedPValues,
    ComparisonReport,
    GroupCount,
    benjamini_hochberg,
    comparison_reports,
    holm,
    jsonable,
    verdict,
)
from cffaudit.stats.audit import AuditResult

#: P-values left out of the Benjamini-Hochberg family, and why (printed with the family).
NOT_IN_FAMILY = "Shapiro-Wilk p-values check an assumption and are not findings, so they are left out"


def pvalue_label(key: str, *parts: str) -> str:
    """The label of one printed p-value: the design's key, then the comparison and test."""
    return ": ".join([key, *parts])


@dataclasses.dataclass(frozen=True)
class Untested:
    """A comparison that was not made because a group had too few runs."""

    label: str
    n_a: int
    n_b: int
    reason: str


def design_comparisons(sub: pd.DataFrame, *, key: str, compare: str, levels: Sequence[str], factor: Optional[str],
                       pool: bool, pair_by: Sequence[str], **options: Any) -> tuple[ComparisonReport, ...]:
    """`stats.comparison_reports` of one design, each relabelled '<key>: <comparison>'.

    Args:
        sub: The design's finished runs.
        key: The design's key (unique within the analysis).
        compare, levels, factor, pool: As `stats.variance_audit`.
        pair_by: Columns whose equal values pair a run of A with one of B (the seeds,
            and any factor pooled over, since seed k of two stabilities are two runs).
        **options: primary, min_ratio, power, alpha, n_resamples, seed.
    """
    reports = comparison_reports(sub, compare=compare, levels=levels, factor=factor, pool=pool,
                                 seed_columns=list(pair_by), **options)
    return tuple(dataclasses.replace(r, label=pvalue_label(key, r.label)) for r in reports)


def untested(counts: Sequence[GroupCount], *, key: str, levels: Sequence[str], factor: Optional[str], pool: bool,
             reports: Sequence[ComparisonReport]) -> tuple[Untested, ...]:
    """The comparisons of a design that `design_comparisons` could not make, with why."""
    n = {g.label: g.n for g in counts}
    vs = f"{levels[0]} vs {levels[1]}"
    if factor is None or pool:
        tag = vs if factor is None else f"{vs} (pooled over {factor})"

        def pooled(level: str) -> int:
            return sum(g.n for g in counts if g.label.split("/")[0] == level)

        wanted = [(tag, levels[0], levels[1], pooled(levels[0]), pooled(levels[1]))]
    else:
        flevels = sorted({g.label.split("/", 1)[1] for g in counts if "/" in g.label})
        wanted = [(f"{vs} | {factor}={fl}", f"{levels[0]}/{fl}", f"{levels[1]}/{fl}",
                   n.get(f"{levels[0]}/{fl}", 0), n.get(f"{levels[1]}/{fl}", 0)) for fl in flevels]
    made = {r.label for r in reports}
    out = []
    for tag, ga, gb, na, nb in wanted:
        label = pvalue_label(key, tag)
        if label in made:
            continue
        small = [f"{g} has {k} run(s)" if k else f"{g} has no runs" for g, k in ((ga, na), (gb, nb)) if k < 2]
        why = "; ".join(small) or "not computed"
        out.append(Untested(label, na, nb, f"{why}; a test of spread needs at least 2 runs per group"))
    return tuple(out)


def other_pvalues(key: str, audit: AuditResult) -> dict[str, float]:
    """The audit's own printed p-values (Welch, factorial and k-cell tests), labelled."""
    out: dict[str, float] = {}
    for c in audit.comparisons:
        if c.welch is not None:
            out[pvalue_label(key, c.label, "welch")] = c.welch.pvalue
    for res, name in ((audit.factorial_levene, "levene anova"), (audit.factorial_brown_forsythe, "brown-forsythe anova")):
        for t in res.terms if res is not None else ():
            out[pvalue_label(key, f"{name} {t.term}")] = t.pvalue
    for res, name in ((audit.levene_cells, "levene over cells"), (audit.brown_forsythe_cells, "brown-forsythe over cells")):
        if res is not None:
            out[pvalue_label(key, name)] = res.pvalue
    return {k: v for k, v in out.items() if v == v}  # NaN (a degenerate test) is printed as '—', not adjusted


def families(designs: Sequence[Any], scope: str) -> tuple[AdjustedPValues, AdjustedPValues]:
    """Holm over the primary tests of every design, Benjamini-Hochberg over every printed test p-value.

    A test without a p-value (NaN: a constant group, pairs with no spread) is printed as
    '—' and left out of both families.
    """
    primaries: dict[str, float] = {}
    every: dict[str, float] = {}
    for d in designs:
        for r in d.reports:
            if r.primary is not None and r.primary.pvalue == r.primary.pvalue:
                primaries[r.label] = r.primary.pvalue
            every.update({k: v for k, v in r.pvalues().items() if v == v})
        every.update(other_pvalues(d.key, d.audit))
    n_designs = len(designs)
    fam_h = f"primary tests of {scope} ({len(primaries)} comparison(s) in {n_designs} design(s))"
    fam_bh = (f"every test p-value printed by {scope} ({len(every)} p-values: tests of equal variances, "
              f"Pitman-Morgan, Welch, factorial and k-cell tests; {NOT_IN_FAMILY})")
    return holm(primaries, family=fam_h), benjamini_hochberg(every, family=fam_bh)


def adjusted(family: Optional[AdjustedPValues], label: str) -> Optional[float]:
    """The adjusted p-value of `label` in `family`, or None when it is not a member."""
    if family is None or label not in family.labels:
        return None
    return family[label]


def verdict_text(report: ComparisonReport, holm_res: AdjustedPValues, bh: AdjustedPValues) -> str:
    """`stats.verdict` after Holm, with the Benjamini-Hochberg values of its p-values."""
    text = verdict(report, holm_res)
    parts = []
    if report.primary is not None:
        q = adjusted(bh, f"{report.label}: {report.primary.name}")
        if q is not None:
            parts.append(f"primary {report.primary.name} q = {q:.3g}")
    if report.paired is not None:
        q = adjusted(bh, f"{report.label}: pitman-morgan")
        if q is not None:
            parts.append(f"Pitman-Morgan q = {q:.3g}")
    if parts:
        text += f" Benjamini-Hochberg over every printed p-value: {', '.join(parts)}."
    if report.posthoc_power is not None:
        text += (f" (Post-hoc power at the observed ratio, {report.posthoc_power.power:.3g} for the F-test, "
                 f"is shown for completeness only: it restates the p-value and is no guide to planning.)")
    return text


def comparisons_json(reports: Sequence[ComparisonReport], verdicts: Sequence[str], holm_res: AdjustedPValues,
                     bh: AdjustedPValues) -> list[dict]:
    """The reports as JSON, each test with its role and its Holm and Benjamini-Hochberg p-values."""
    out = []
    for r, text in zip(reports, verdicts):
        doc = jsonable(r)
        for t in doc["tests"]:
            t["role"] = "primary" if t["primary"] else "secondary"
            t["pvalue_holm"] = adjusted(holm_res, r.label) if t["primary"] else None
            t["pvalue_bh"] = adjusted(bh, f"{r.label}: {t['name']}")
        if doc["paired"] is not None:
            doc["paired"]["role"] = "secondary"
            doc["paired"]["pvalue_bh"] = adjusted(bh, f"{r.label}: pitman-morgan")
        doc["verdict"] = text
        out.append(doc)
    return out
