"""Markdown tables that stay readable as plain text in a terminal (padded pipe tables):
the variance audit (`analysis_markdown`) and the paper reproduction (`reproduction_markdown`)."""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

from cffaudit.report.analysis import Analysis, DesignAudit
from cffaudit.report.paper import PaperReproduction, Value, explanation, printed_decimals


def fmt(value: Any, digits: int = 3) -> str:
    """A number with `digits` significant decimals; '—' for None/NaN, '∞' for infinity."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        return f"{value:.{digits}f}"
    return str(value)


def fmt_p(p: Optional[float]) -> str:
    """A p-value: 4 decimals, or '<0.0001'."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "—"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def fmt_ci(ci: Optional[Sequence[float]], digits: int = 3) -> str:
    """An interval as [low, high]."""
    if ci is None:
        return "—"
    return f"[{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Optional[Sequence[bool]] = None) -> str:
    """A pipe table padded so its columns line up in a monospace terminal.

    Args:
        headers: Column titles.
        rows: Cells; each is converted with `str`.
        numeric: Per column, whether to right-align (default: all but the first).
    """
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    right = list(numeric) if numeric is not None else [i > 0 for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if r else (":" + "-" * (w + 1)) for w, r in zip(widths, right)) + "|"
    return "\n".join([line(headers), rule] + [line(r) for r in cells])


def design_markdown(design: DesignAudit, level: int = 3) -> str:
    """All tables of one design's audit."""
    a = design.audit
    h = "#" * level
    out = [f"{h} {design.title} ({design.n_runs} runs)", ""]
    out.append(markdown_table(
        ["cell", "n", "mean", "sd", "var", "sem"],
        [[c.label, c.n, fmt(c.mean, 2), fmt(c.sd, 3), fmt(c.var, 4), fmt(c.sem, 3)] for c in a.cells],
    ))
    rows = []
    for c in a.comparisons:
        vr, bs = c.variance_ratio, c.bootstrap
        rows.append([
            c.label, f"{c.a.n} / {c.b.n}",
            fmt(vr.statistic if vr else None, 3), fmt_p(vr.pvalue if vr else None),
            fmt_ci(vr.confidence_interval if vr else None, 2), fmt_ci(bs.confidence_interval if bs else None, 2),
            fmt_p(c.levene.pvalue if c.levene else None), fmt_p(c.brown_forsythe.pvalue if c.brown_forsythe else None),
        ])
    out += ["", "Variance: VR = var(%s) / var(%s); F-test two-sided; 95%% intervals." % a.levels, ""]
    out.append(markdown_table(["comparison", "n", "VR", "F p", "F CI", "bootstrap CI", "Levene p", "B-F p"], rows))
    rows = []
    for c in a.comparisons:
        w = c.welch
        rows.append([
            c.label, fmt(c.a.mean, 2), fmt(c.b.mean, 2), fmt(w.mean_difference if w else None, 3),
            fmt_ci(w.confidence_interval if w else None, 3), fmt(w.statistic if w else None, 3),
            fmt(w.df if w else None, 1), fmt_p(w.pvalue if w else None),
        ])
    out += ["", "Means: Welch t-test.", ""]
    out.append(markdown_table(["comparison", "mean A", "mean B", "diff", "95% CI", "t", "df", "p"], rows))
    if a.factorial_levene or a.factorial_brown_forsythe or a.levene_cells:
        rows = []
        for res, name in ((a.factorial_levene, "Levene (two-way ANOVA)"), (a.factorial_brown_forsythe, "Brown-Forsythe (two-way ANOVA)")):
            if res is None:
                continue
            for t in res.terms:
                rows.append([name, t.term, fmt(t.statistic, 3), f"{t.df[0]:g}, {t.df[1]:g}", fmt_p(t.pvalue)])
        for res, name in ((a.levene_cells, "Levene (k cells)"), (a.brown_forsythe_cells, "Brown-Forsythe (k cells)")):
            if res is not None:
                rows.append([name, "all cells", fmt(res.statistic, 3), f"{res.df[0]}, {res.df[1]}", fmt_p(res.pvalue)])
        out += ["", "Factorial variance tests (absolute deviations from cell means / medians).", ""]
        out.append(markdown_table(["test", "term", "F", "df", "p"], rows, numeric=[False, False, True, True, True]))
    rows = []
    for c in a.comparisons:
        for g, s in ((c.a, c.shapiro_a), (c.b, c.shapiro_b)):
            rows.append([g.label, g.n, fmt(s.statistic if s else None, 4), fmt_p(s.pvalue if s else None)])
    out += ["", "Normality: Shapiro-Wilk per group.", ""]
    out.append(markdown_table(["group", "n", "W", "p"], rows))
    rows = [[c.label, fmt(c.power_at_n.power if c.power_at_n else None, 3), fmt(c.seeds_for_power)] for c in a.comparisons]
    out += ["", "Seed budget: power of the F-test at the observed ratio and these n; seeds per group for 80% power.", ""]
    out.append(markdown_table(["comparison", "power now", "seeds for 80%"], rows))
    if a.seed_budget:
        se = a.seed_budget[0].target_se
        out += ["", f"Seeds for a standard error of the mean of {se:g} (n = (sd / SE)^2):", ""]
        out.append(markdown_table(["group", "sd", "seeds"], [[b.label, fmt(b.sd, 3), b.seeds_for_target_se] for b in a.seed_budget]))
    notes = list(design.notes) + list(a.notes)
    if notes:
        out += [""] + [f"- note: {n}" for n in notes]
    return "\n".join(out)


def analysis_markdown(analysis: Analysis, level: int = 2) -> str:
    """The whole analysis as Markdown: run counts, then one section per design."""
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
    for n in analysis.notes:
        lines.append(f"- note: {n}")
    for d in analysis.designs:
        lines += ["", design_markdown(d, level + 1)]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- the paper

#: The paper's tables in reading order, with their captions (`reproduction_markdown`).
TABLE_TITLES = {
    "3": "Table 3. CIFAR-10 factorial, standard margin: cells",
    "4": "Table 4. CIFAR-10 factorial variance tests (p-values)",
    "5": "Table 5. CIFAR-10 pooled over stability",
    "6": "Table 6. Dose-response: standard vs low margin schedule",
    "7": "Table 7. CAR reduction from the standard to the low schedule (%)",
    "9": "Table 9. Cross-dataset summary",
    "10": "Table 10. CIFAR-100 pooled",
    "11": "Table 11. Mean CAR over layers (%)",
    "13": "Table 13. SVHN (direct only)",
    "14": "Table 14. Fashion-MNIST",
    "15": "Table 15. SVHN difficulty sweep",
    "18": "Table 18. SVHN CAR profile (Appendix B)",
    "23": "Table 23. Shapiro-Wilk normality (Appendix D)",
    "text 5.2.1": "Section 5.2.1 text: pooled CIFAR-10 comparison",
    "text 5.2.2": "Section 5.2.2 text: low-margin probe",
    "text 7.1": "Section 7.1 text: CIFAR-100",
    "text 7.2": "Section 7.2 text: SVHN",
    "text 7.3": "Section 7.3 text: Fashion-MNIST",
}


def format_value(value: Value, reported: Optional[str] = None) -> str:
    """A recomputed value with the printed decimals (+2, to show how far it is), or a range."""
    if value is None:
        return "—"
    d = (printed_decimals(reported.lstrip("<>")) if reported else 4) + 2
    if reported and printed_decimals(reported.lstrip("<>")) == 0 and not isinstance(value, tuple) and float(value).is_integer():
        return str(int(value))  # counts
    if isinstance(value, tuple):
        return f"{value[0]:.{d - 1}f} to {value[1]:.{d - 1}f}"
    if math.isinf(value):
        return "∞"
    return f"{value:.{d}f}"


def reproduction_markdown(rep: PaperReproduction, level: int = 2) -> str:
    """All tables side by side (reported | recomputed | status | alternatives that match)."""
    h = "#" * level
    counts: dict[str, int] = {}
    for v in rep.values:
        counts[v.status] = counts.get(v.status, 0) + 1
    lines = [
        f"{h} The paper's tables, recomputed from its per-seed data",
        "",
        "Each value is recomputed by the method the paper describes and compared with the printed value at the "
        "printed precision. Where it differs, standard alternatives are computed and any that gives the printed "
        f"value is named. Bootstrap: {rep.n_resamples} resamples, seed {rep.seed}.",
        "",
        "Summary: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ".",
    ]
    for table, title in TABLE_TITLES.items():
        vals = rep.table(table)
        if not vals:
            continue
        rows = []
        for v in vals:
            matching = [a.method for a in v.alternatives if a.matches] if v.status == "alternative reproduces" else []
            other = "; ".join(f"{a.method}: {format_value(a.value, v.reported)}" for a in v.alternatives
                              if not a.matches and v.status in ("differs", "alternative reproduces", "not in data"))
            rows.append([v.row, v.column, v.reported or "(illegible)", format_value(v.reproduced, v.reported), v.status,
                         "; ".join(matching) or other or ""])
        lines += ["", f"{h}# {title}", ""]
        lines.append(markdown_table(["row", "column", "reported", "recomputed", "status", "method that gives it / others tried"],
                                    rows, numeric=[False, False, True, True, False, False]))
        if explanation(table):
            lines += ["", f"Finding: {explanation(table)}"]
        notes = sorted({v.note for v in vals if v.note and v.status == "not in data"})
        lines += [f"- note: {n}" for n in notes]
    return "\n".join(lines) + "\n"
