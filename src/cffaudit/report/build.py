"""Assemble the report documents: the audit of a set of runs, and the paper reproduction."""

from __future__ import annotations

import math
import platform
import textwrap
from typing import Optional, Sequence

import pandas as pd

from cffaudit import __version__
from cffaudit.report import plots
from cffaudit.report.analysis import Analysis, DesignAudit
from cffaudit.report.document import ReportDocument
from cffaudit.report.paper import PaperReproduction
from cffaudit.report.source_report import add_sources_section
from cffaudit.report.sources import SourcesAnalysis
from cffaudit.report.audit_tables import analysis_markdown, skipped_audit_markdown
from cffaudit.report.tables import reproduction_markdown


def _environment() -> str:
    import matplotlib
    import numpy
    import scipy
    import statsmodels

    return (
        f"cffaudit {__version__}; Python {platform.python_version()}, numpy {numpy.__version__}, "
        f"scipy {scipy.__version__}, statsmodels {statsmodels.__version__}, pandas {pd.__version__}, "
        f"matplotlib {matplotlib.__version__}"
    )


def _pairs(stratum: dict, columns: Sequence[str]) -> str:
    # A config column (cfg.model.depth) is named by its config path.
    return ", ".join(f"{c.removeprefix('cfg.')}={stratum[c]}" for c in columns if stratum.get(c) is not None)


def design_names(analysis: Analysis) -> tuple[str, dict[str, str]]:
    """How figures name the designs: 'column=value' pairs.

    Returns:
        What every design shares (e.g. 'dataset=cifar10, experiment=factorial'), and per
        design key the pairs that tell it from the others ('' when there is one design).
    """
    designs = analysis.designs
    columns = list(dict.fromkeys(c for d in designs for c in d.stratum))
    varying = [c for c in columns if len({str(d.stratum.get(c)) for d in designs}) > 1]
    shared = [c for c in columns if c not in varying]
    common = _pairs(designs[0].stratum, shared) if designs else ""
    return common, {d.key: _pairs(d.stratum, varying) for d in designs}


def panel_title(design: DesignAudit) -> str:
    """The full name of a design, 'dataset=cifar10, experiment=factorial, ...', for a panel."""
    return _pairs(design.stratum, list(design.stratum)) or "all runs"


def _comparison_tag(design: DesignAudit, label: str) -> str:
    """'stability=detach' of a comparison labelled '<key>: clamp vs subtract | stability=detach'
    ('' for the one comparison of a design)."""
    tag = label[len(design.key) + 2:] if label.startswith(f"{design.key}: ") else label
    return tag.split("|")[-1].strip() if "|" in tag else ""


def _entry_label(name: str, tag: str, alone: str = "all runs") -> str:
    return " | ".join(p for p in (name, tag) if p) or alone


def forest_entries(analysis: Analysis) -> list[tuple[str, float, float, float]]:
    """(label, VR, low, high) for every comparison: the primary test's 95% interval where it
    has one (F, Bonett), else the percentile bootstrap's, marked '(bootstrap)' in the label.
    Labels name what tells a comparison apart as 'column=value' (`design_names`)."""
    out = []
    _, names = design_names(analysis)
    for d in analysis.designs:
        for r in d.reports:
            label = _entry_label(names[d.key], _comparison_tag(d, r.label) if len(d.reports) > 1 else "")
            p = r.primary
            if p is not None and p.confidence_interval is not None and r.effects is not None:
                out.append((f"{label} (n={r.a.n}/{r.b.n})", r.effects.variance_ratio.estimate, *p.confidence_interval))
            elif r.bootstrap is not None:
                out.append((f"{label} (n={r.a.n}/{r.b.n}, bootstrap)", r.bootstrap.statistic,
                            *r.bootstrap.confidence_interval))
    return out


def inputs_line(inputs: dict, n_runs: Optional[int] = None, what: str = "runs") -> str:
    """'Inputs: runs/extra.csv and store runs/quickstart (20 runs)': every file, folder and
    store the runs were read from (`inputs` as `Analysis.inputs`), and how many runs."""
    items = [str(p) for p in inputs.get("paths") or []]
    if inputs.get("store"):
        items.append(f"store {inputs['store']}")
    named = ", ".join(items[:-1]) + f" and {items[-1]}" if len(items) > 1 else (items[0] if items else "none recorded")
    return f"Inputs: {named}" + (f" ({n_runs} {what})" if n_runs is not None else "")


def _power_marks(analysis: Analysis) -> list[tuple[str, int]]:
    ns = sorted({min(c.a.n, c.b.n) for d in analysis.designs for c in d.audit.comparisons})
    return [(f"n={n} used", n) for n in ns[:3]]


def _common_figures(doc: ReportDocument, analysis: Analysis) -> None:
    o = analysis.options
    panels = [(panel_title(d), d.runs) for d in analysis.designs if not d.runs.empty]
    if panels:
        doc.add_figure(
            "per_seed_accuracy",
            plots.to_png(plots.per_seed_accuracy(panels, compare=o["compare"], factor=o["factor"])),
            "Per-seed test accuracy by condition, one panel per design (box: quartiles; dots: individual seeds).",
        )
    entries = forest_entries(analysis)
    common, names = design_names(analysis)
    shared = f"\n{textwrap.fill(common, 110)}" if common else ""
    if entries:
        doc.add_figure(
            "variance_ratio_forest",
            plots.to_png(plots.forest_plot(
                entries, title=f"var({o['levels'][0]}) / var({o['levels'][1]}) with the 95% CI of the primary test"
                               + shared,
                xlabel=f"variance ratio var({o['levels'][0]}) / var({o['levels'][1]}), log scale; bars: 95% CI of "
                       f"{o['primary']}")),
            f"Variance ratio per design with the 95% interval of the primary test ({o['primary']}); an entry marked "
            f"'bootstrap' has the percentile-bootstrap interval instead ({o['n_resamples']} resamples, generator "
            f"seeded per comparison from seed {o['bootstrap_seed']}), where the primary test has no interval. Right "
            f"of 1 means {o['levels'][0]} varies more.",
        )
    observed = [(_entry_label(names[d.key], c.label.split("|")[-1].strip() if "|" in c.label else "", "observed"),
                 c.variance_ratio.statistic)
                for d in analysis.designs for c in d.audit.comparisons
                if c.variance_ratio is not None and math.isfinite(c.variance_ratio.statistic)]
    # Keep the figure legible: the largest departures from 1 first, at most six.
    observed = sorted(observed, key=lambda e: -abs(math.log(e[1])) if e[1] > 0 else 0)[:6]
    doc.add_figure(
        "power_curve",
        plots.to_png(plots.power_curve(observed=observed, marks=_power_marks(analysis), note=common)),
        "Power of the two-sided F-test of equal variances (alpha 0.05) against seeds per group: reference ratios "
        "(solid) and the ratios observed here (dashed, folded to >= 1; post-hoc, for orientation only: plan with a "
        "ratio of interest, --min-ratio); dotted line: 80% power.",
    )


def analysis_report(analysis: Optional[Analysis], history: Optional[pd.DataFrame] = None,
                    title: str = "cffaudit variance audit", sources: Optional[SourcesAnalysis] = None, *,
                    inputs: Optional[dict] = None, skipped: Optional[str] = None) -> ReportDocument:
    """The report of `cffaudit report`: tables, per-seed plot, layer diagnostics, forest and
    power plots, then the sources of variance (when given).

    Args:
        analysis: The result of `analyze_runs`; None when the comparison does not apply
            to the runs (`skipped` says why), for a report of the sources only.
        history: Per-epoch records from `load_run_histories` (optional).
        title: Document title.
        sources: The result of `sources.analyze_sources` (optional).
        inputs: What was read (`paths`, `store`); default: the analysis's.
        skipped: Why there is no audit, when `analysis` is None.
    """
    inputs = inputs if inputs is not None else (analysis.inputs if analysis is not None else {})
    if analysis is not None:
        line = inputs_line(inputs, analysis.runs_total)
    else:  # the sources analysis keeps the finished runs only
        line = inputs_line(inputs, len(sources.runs) if sources is not None else None, "finished runs")
    doc = ReportDocument(title, line + ". " + _environment() + ".")
    if analysis is None:
        doc.add_markdown(skipped_audit_markdown(skipped or "skipped."))
        compare = None
        runs = sources.runs if sources is not None else pd.DataFrame()
        if not runs.empty and runs["condition"].astype(str).nunique() > 1:
            shown = runs.assign(condition=runs["condition"].astype(str).str.replace("*", " ×\n", regex=False))
            doc.add_figure(
                "per_seed_accuracy",
                plots.to_png(plots.per_seed_accuracy([("runs by condition", shown)], compare="condition")),
                "Per-seed test accuracy by condition of the sources of variance (box: quartiles; dots: runs).",
            )
    else:
        doc.add_markdown(analysis_markdown(analysis))
        _common_figures(doc, analysis)
        compare, factor = analysis.options["compare"], analysis.options["factor"]
        runs = pd.concat([d.runs for d in analysis.designs], ignore_index=True) if analysis.designs else pd.DataFrame()
    if not runs.empty and plots.has_layer_diagnostics(runs):
        doc.add_figure(
            "layer_profiles",
            plots.to_png(plots.run_layer_profiles(runs, compare=compare or "condition",
                                                  factor=factor if analysis is not None else None)),
            "Clamp activation rate and gradient norm of each block at the final stage-1 epoch, mean ± sd over seeds.",
        )
    else:
        doc.add_markdown("Per-layer CAR and gradient norms: not present in these inputs (tidy CSVs carry none).")
    if history is not None and not history.empty and history["car"].notna().any():
        done = history[history["status"] == "done"]
        if not done.empty:
            doc.add_figure(
                "car_over_epochs",
                plots.to_png(plots.car_over_epochs(done, compare=compare or "margin")),
                "Clamp activation rate over stage-1 epochs, one line per seed (first and last layer).",
            )
    if sources is not None:
        add_sources_section(doc, sources, compare=compare or "condition")
    return doc


def paper_report(rep: PaperReproduction, analysis: Analysis, car: pd.DataFrame) -> ReportDocument:
    """The report of `cffaudit paper --out`: the recomputed tables, then the paper-data figures."""
    doc = ReportDocument(
        "The seed paper, recomputed from its data",
        "Data: the paper's per-seed accuracies (Appendices A and C) and CAR tables, shipped in cffaudit.paperdata. "
        + _environment() + ".",
    )
    doc.add_markdown(reproduction_markdown(rep))
    doc.add_markdown("## Figures from the paper's data")
    _common_figures(doc, analysis)
    doc.add_figure(
        "paper_car_by_layer",
        plots.to_png(plots.paper_car_by_layer(car)),
        "Clamp activation rate by layer from the paper's Tables 7, 11 and 18 (SVHN: layers 0-3 only). The paper "
        "publishes CAR averaged over seeds, so no per-seed spread can be drawn.",
    )
    doc.add_markdown(analysis_markdown(analysis))
    return doc
