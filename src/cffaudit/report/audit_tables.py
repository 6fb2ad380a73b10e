"""The variance audit as Markdown (`analysis_markdown`): per design, the cells, the primary
and secondary tests with raw, Holm and Benjamini-Hochberg p-values, the effect sizes, the
pairing by seed, the assumptions, the planning numbers and the verdict in words."""

from __future__ import annotations

import math
from typing import Optional

from cffaudit.report.analysis import Analysis, DesignAudit
from cffaudit.report.tables import fmt, fmt_ci, fmt_p, markdown_table
from cffaudit.report.verdicts import adjusted, pvalue_label
from cffaudit.stats import Estimate
from cffaudit.stats.comparison import SHAPIRO_LOW_POWER_N

_ANOVA_TYPE = {1: "type I", 2: "type II", 3: "type III"}


def _short(design: DesignAudit, label: str) -> str:
    """A comparison label without its design's key (the section already names the design)."""
    prefix = f"{design.key}: "
    return label[len(prefix):] if label.startswith(prefix) else label


def _est(e: Optional[Estimate], digits: int = 3) -> str:
    return "—" if e is None else f"{fmt(e.estimate, digits)} {fmt_ci(e.confidence_interval, digits)}"


def _cells(design: DesignAudit) -> str:
    rows = [[c.label, c.n, fmt(c.mean, 2), fmt(c.sd, 3), fmt(c.var, 4), fmt(c.sem, 3), ""] for c in design.audit.cells]
    shown = {c.label for c in design.audit.cells}
    rows += [[g.label, g.n, "—", "—", "—", "—", f"skipped: {g.reason}"] for g in design.counts
             if g.skipped and g.label not in shown]
    if not any(r[-1] for r in rows):
        rows = [r[:-1] for r in rows]
        return markdown_table(["cell", "n", "mean", "sd", "var", "sem"], rows)
    return markdown_table(["cell", "n", "mean", "sd", "var", "sem", "note"], rows,
                          numeric=[False, True, True, True, True, True, False])


def _tests(design: DesignAudit, analysis: Analysis) -> str:
    rows = []
    for r in design.reports:
        label, n = _short(design, r.label), f"{r.a.n} / {r.b.n}"
        skipped = [[label, n, name, "primary" if name == r.primary_name else "secondary", "—", "—", "—", "—",
                    f"not computed: {why}"] for name, why in r.skipped_tests.items()]
        rows += [row for row in skipped if row[3] == "primary"]  # the primary test always comes first
        for t in r.tests:
            holm = fmt_p(adjusted(analysis.holm, r.label)) if t.primary else "—"
            rows.append([label, n, t.name, t.role, fmt(t.statistic, 3), fmt_p(t.pvalue), holm,
                         fmt_p(adjusted(analysis.bh, pvalue_label(r.label, t.name))),
                         fmt_ci(t.confidence_interval, 2) if t.confidence_interval is not None else "—"])
        rows += [row for row in skipped if row[3] == "secondary"]
        if r.paired is not None:
            p = r.paired
            rows.append([label, f"{p.n_pairs} pairs", "pitman-morgan (paired by seed)", "secondary",
                         fmt(p.statistic, 3), fmt_p(p.pvalue), "—",
                         fmt_p(adjusted(analysis.bh, pvalue_label(r.label, "pitman-morgan"))), "—"])
    for u in design.untested:
        rows.append([_short(design, u.label), f"{u.n_a} / {u.n_b}", "—", "—", "—", "—", "—", "—",
                     f"not tested: {u.reason}"])
    return markdown_table(["comparison", "n", "test", "role", "statistic", "p", "Holm p", "BH q", "95% CI of VR"], rows,
                          numeric=[False, True, False, False, True, True, True, True, True])


def _effects(design: DesignAudit) -> str:
    rows = []
    for r in design.reports:
        e = r.effects
        if e is None:
            continue
        rows.append([_short(design, r.label), _est(e.variance_ratio), _est(e.variance_ratio_robust),
                     _est(e.sd_ratio), _est(e.variance_a, 4), _est(e.variance_b, 4), _est(e.hedges_g),
                     _est(e.prob_superiority)])
    return markdown_table(["comparison", "VR (F CI)", "VR (Bonett CI)", "SD ratio", "var A (chi-square CI)",
                           "var B (chi-square CI)", "Hedges' g", "P(A beats B)"], rows)


def _bootstrap(design: DesignAudit) -> str:
    rows = [[_short(design, r.label), fmt(r.bootstrap.statistic, 3), fmt_ci(r.bootstrap.confidence_interval, 2),
             r.bootstrap.method, r.bootstrap.n_resamples, r.bootstrap.seed]
            for r in design.reports if r.bootstrap is not None]
    return markdown_table(["comparison", "VR", "bootstrap CI", "method", "resamples", "seed"], rows)


def _paired(design: DesignAudit, analysis: Analysis) -> Optional[str]:
    rows = []
    for r in design.reports:
        p = r.paired
        if p is not None:
            rows.append([_short(design, r.label), p.n_pairs, p.n_dropped, fmt(p.correlation, 3),
                         fmt(p.variance_ratio, 3), fmt(p.statistic, 3), fmt_p(p.pvalue),
                         fmt_p(adjusted(analysis.bh, pvalue_label(r.label, "pitman-morgan")))])
    if not rows:
        return None
    return markdown_table(["comparison", "pairs", "runs unpaired", "correlation", "VR", "t", "p", "BH q"], rows)


def _means(design: DesignAudit, analysis: Analysis) -> str:
    rows = []
    for c in design.audit.comparisons:
        w = c.welch
        rows.append([
            c.label, fmt(c.a.mean, 2), fmt(c.b.mean, 2), fmt(w.mean_difference if w else None, 3),
            fmt_ci(w.confidence_interval if w else None, 3), fmt(w.statistic if w else None, 3),
            fmt(w.df if w else None, 1), fmt_p(w.pvalue if w else None),
            fmt_p(adjusted(analysis.bh, pvalue_label(design.key, c.label, "welch"))),
        ])
    return markdown_table(["comparison", "mean A", "mean B", "diff", "95% CI", "t", "df", "p", "BH q"], rows)


def _factorial(design: DesignAudit, analysis: Analysis) -> str:
    a = design.audit
    rows = []
    for res, name, key in ((a.factorial_levene, "Levene (two-way ANOVA)", "levene anova"),
                           (a.factorial_brown_forsythe, "Brown-Forsythe (two-way ANOVA)", "brown-forsythe anova")):
        for t in res.terms if res is not None else ():
            rows.append([name, t.term, fmt(t.statistic, 3), f"{t.df[0]:g}, {t.df[1]:g}", fmt_p(t.pvalue),
                         fmt_p(adjusted(analysis.bh, pvalue_label(design.key, f"{key} {t.term}")))])
    for res, name, key in ((a.levene_cells, "Levene (k cells)", "levene over cells"),
                           (a.brown_forsythe_cells, "Brown-Forsythe (k cells)", "brown-forsythe over cells")):
        if res is not None:
            rows.append([name, "all cells", fmt(res.statistic, 3), f"{res.df[0]}, {res.df[1]}", fmt_p(res.pvalue),
                         fmt_p(adjusted(analysis.bh, pvalue_label(design.key, key)))])
    return markdown_table(["test", "term", "F", "df", "p", "BH q"], rows, numeric=[False, False, True, True, True, True])


def _normality(design: DesignAudit) -> str:
    rows = []
    for r in design.reports:
        for g, s in ((r.a, r.shapiro_a), (r.b, r.shapiro_b)):
            rows.append([g.label, g.n, fmt(s.statistic if s else None, 4), fmt_p(s.pvalue if s else None),
                         "rejects normality" if s is not None and s.pvalue < r.alpha else ""])
    return markdown_table(["group", "n", "W", "p", "finding"], rows, numeric=[False, True, True, True, False])


def _planning(design: DesignAudit, analysis: Analysis) -> str:
    from cffaudit.stats import log_ratio_interval_width

    o = analysis.options
    rows = []
    for r in design.reports:
        pw, post = r.power_at_min_ratio, r.posthoc_power
        rows.append([
            _short(design, r.label), r.primary_name, f"{r.a.n} / {r.b.n}", fmt(pw.power if pw else None, 3),
            fmt(r.seeds_needed[0] if r.seeds_needed else None), fmt(log_ratio_interval_width(r.a.n, r.b.n), 2),
            fmt(post.power if post else None, 3),
        ])
    pct = int(round(o["power"] * 100))
    return markdown_table(["comparison", "primary", "n", f"power at VR {o['min_ratio']:g}",
                           f"seeds/group for {pct}%", "log-VR CI width now", "post-hoc power (observed VR, F)"], rows)


def _seeds(n: list, o: dict) -> str:
    if o.get("allocation", 1.0) == 1.0:
        return f"{n[0]} seeds per group"
    return f"{n[0]} seeds of {o['levels'][0]} and {n[1]} of {o['levels'][1]} (--allocation {o['allocation']:g})"


def _allocated(o: dict) -> str:
    if o.get("allocation", 1.0) == 1.0:
        return ""
    return (f" With {o['allocation']:g} seeds of {o['levels'][1]} per seed of {o['levels'][0]}, "
            f"{int(round(o['power'] * 100))}% power at VR {o['min_ratio']:g} needs {_seeds(o['seeds_for_power'], o)}.")


def design_markdown(design: DesignAudit, analysis: Analysis, level: int = 3) -> str:
    """All tables of one design's audit, ending with the verdicts."""
    a, o = design.audit, analysis.options
    h = "#" * level
    out = [f"{h} {design.title} ({design.n_runs} runs)", "", _cells(design)]
    out += ["", f"Tests of equal variances, VR = var({a.levels[0]}) / var({a.levels[1]}), two-sided: primary "
            f"{o['primary']}, every other test secondary. Holm p: over the primary tests of the whole call; BH q: "
            "Benjamini-Hochberg over every printed test p-value (families below).", "", _tests(design, analysis)]
    if any(r.effects is not None for r in design.reports):
        out += ["", "Effect sizes, 95% intervals (VR and SD ratio: A over B; Hedges' g: mean A - mean B; "
                "P(A beats B): a seed of A scores higher than one of B, Brunner-Munzel interval).", "",
                _effects(design)]
    if any(r.bootstrap is not None for r in design.reports):
        out += ["", "Bootstrap of the VR: one generator per comparison, seeded from --seed and the comparison's "
                "label (seed shown), so an interval never depends on what else was analysed.", "", _bootstrap(design)]
    paired = _paired(design, analysis)
    if paired:
        out += ["", "Paired by seed (runs of A and B with equal seeds start from the same initialisation, data "
                "order and augmentation): Pitman-Morgan test of equal variances, normal theory.", "", paired]
    out += ["", "Means: Welch t-test (secondary).", "", _means(design, analysis)]
    if a.factorial_levene or a.factorial_brown_forsythe or a.levene_cells:
        ss = _ANOVA_TYPE[(a.factorial_levene or a.factorial_brown_forsythe).anova_type] \
            if (a.factorial_levene or a.factorial_brown_forsythe) else "—"
        out += ["", f"Factorial variance tests (secondary): ANOVA on absolute deviations from cell means / medians, "
                f"{ss} sums of squares (--anova-type).", "", _factorial(design, analysis)]
    if design.reports:
        small = min(min(r.a.n, r.b.n) for r in design.reports) < SHAPIRO_LOW_POWER_N
        out += ["", "Normality: Shapiro-Wilk per group; a rejection is attached as a warning to the normal-theory "
                "results (F, its interval, the chi-square intervals, Hedges' g, Pitman-Morgan)."
                + (f" Below {SHAPIRO_LOW_POWER_N} runs per group it has little power: not rejecting is weak "
                   "evidence of normality." if small else ""), "", _normality(design)]
        out += ["", f"Planning (not post-hoc): power of the primary test at this n for a true VR of "
                f"{o['min_ratio']:g} (--min-ratio) and seeds per group for {int(round(o['power'] * 100))}% "
                f"(--power); tests other than F simulated under normal data. A 95% interval of log VR no wider than "
                f"{fmt(o['log_ratio_width'], 3)} (upper end at most {fmt(math.exp(o['log_ratio_width']), 3)} times "
                f"the lower) needs {_seeds(o['seeds_for_log_ratio_width'], o)}.{_allocated(o)} Post-hoc power, at the "
                "observed ratio, restates the p-value and is shown only for completeness.", "", _planning(design, analysis)]
    if a.seed_budget:
        se = a.seed_budget[0].target_se
        out += ["", f"Seeds for a standard error of the mean of {se:g} (n = (sd / SE)^2):", ""]
        out.append(markdown_table(["group", "sd", "seeds"], [[b.label, fmt(b.sd, 3), b.seeds_for_target_se] for b in a.seed_budget]))
    warnings = [f"- warning: {_short(design, r.label)}: {w}" for r in design.reports for w in r.warnings]
    notes = list(design.notes) + list(a.notes) + [f"{_short(design, r.label)}: {n}" for r in design.reports for n in r.notes]
    if warnings or notes:
        out += [""] + warnings + [f"- note: {n}" for n in notes]
    if design.verdicts:
        out += ["", f"{h}# Verdict", ""]
        for text in design.verdicts:
            out += [f"**Verdict.** {_short(design, text)}", ""]
    return "\n".join(out).rstrip()


def _families(analysis: Analysis, level: int) -> list[str]:
    h = "#" * level
    out = [f"{h} Multiplicity", ""]
    if analysis.holm is not None:
        out += [f"- Holm (family-wise error): {analysis.holm.family}.",
                f"- Benjamini-Hochberg (false discovery rate): {analysis.bh.family}."]
        if len(analysis.holm):
            rows = [[lbl, fmt_p(p), fmt_p(q)] for lbl, p, q in
                    zip(analysis.holm.labels, analysis.holm.pvalues, analysis.holm.adjusted)]
            out += ["", markdown_table(["primary test of", "p", "Holm p"], rows)]
    return out


def analysis_markdown(analysis: Analysis, level: int = 2) -> str:
    """The whole analysis as Markdown: run counts and options, one section per design, the families."""
    h = "#" * level
    o = analysis.options
    lines = [
        f"{h} Variance audit",
        "",
        f"Runs: {analysis.runs_total} loaded, {analysis.runs_done} finished and analysed, "
        f"{analysis.runs_failed} failed (excluded), {analysis.runs_other} other status (excluded), "
        f"{analysis.runs_filtered_out} filtered out by --where.",
        f"Compared: {o['compare']} = {o['levels'][0]} vs {o['levels'][1]}"
        + (f"; factor: {o['factor']}" + (" (pooled)" if o["pool"] else "") if o["factor"] else "")
        + f"; bootstrap {o['n_resamples']} resamples, seed {o['bootstrap_seed']}.",
    ]
    if "primary" in o:
        lines.append(f"Primary test: {o['primary']} ({o['primary_reason']}); every other test is secondary. "
                     f"Level {o['alpha']}; factorial ANOVA with {_ANOVA_TYPE[o['anova_type']]} sums of squares.")
    for n in analysis.notes:
        lines.append(f"- note: {n}")
    for d in analysis.designs:
        lines += ["", design_markdown(d, analysis, level + 1)]
    lines += [""] + _families(analysis, level + 1)
    return "\n".join(lines) + "\n"


def skipped_audit_markdown(reason: str, level: int = 2) -> str:
    """The audit section when the comparison does not apply to the runs (`reason`)."""
    return f"{'#' * level} Variance audit\n\n{reason[:1].upper()}{reason[1:]}\n"
