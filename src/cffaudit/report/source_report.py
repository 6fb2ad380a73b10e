"""The "Sources of variance" section of `cffaudit report`: its tables and figures."""

from __future__ import annotations

from cffaudit.report import plots, source_plots
from cffaudit.report.document import ReportDocument
from cffaudit.report.sources import SourcesAnalysis


def records_sources(runs) -> bool:
    """Whether some run records the sources of its variance (an untrained baseline or probe accuracies)."""
    if runs.empty:
        return False
    baseline = "untrained_test_acc" in runs.columns and runs["untrained_test_acc"].notna().any()
    probes = "probe_test_accs" in runs.columns and runs["probe_test_accs"].notna().any()
    return bool(baseline or probes)


def add_sources_section(doc: ReportDocument, sources: SourcesAnalysis, *, compare: str = "margin") -> None:
    """Append the section: the Markdown of `sources`, then one figure per part that has data."""
    doc.add_markdown(sources.to_markdown(level=2))
    for k, d in enumerate(sources.decompositions):
        doc.add_figure(
            f"variance_components_{k + 1}",
            plots.to_png(source_plots.component_shares(d)),
            f"Share of each variance component of {d.response} in the total, per condition, design '{d.spec}' "
            f"({d.kind}; REML point estimates, intervals in the table above).",
        )
    if sources.floors:
        doc.add_figure(
            "testset_floor",
            plots.to_png(source_plots.floor_against_observed(sources.floors)),
            "Observed between-run variance of test accuracy beside the variance that test-set sampling alone would "
            "give at the observed per-example accuracy rates (the floor), with 95% percentile bootstrap intervals "
            "over runs; what the floor does not explain is the excess in the table.",
        )
    runs = sources.runs
    if not records_sources(runs) and not sources.decompositions:
        # Results from before the sources were recorded keep the figures they had; their
        # per-seed CAR correlations are in the mechanism table above.
        doc.add_markdown("Per-seed CAR against accuracy: drawn for runs that record an untrained baseline or "
                         "several probes (`untrained_test_acc`, `probe_test_accs`), or with `--decompose`.")
        return
    if any(c in runs.columns and runs[c].notna().any() for c in ("car_l0_final", "car_l0_mean")):
        doc.add_figure(
            "car_against_accuracy",
            plots.to_png(source_plots.car_against_accuracy(runs, compare=compare)),
            "Each seed's layer-0 clamp activation rate (final stage-1 epoch and mean over epochs) against its test "
            "accuracy, coloured by condition; the rank correlations are in the per-seed mechanism table.",
        )
    if source_plots.has_probe_spread(runs):
        doc.add_figure(
            "probe_spread",
            plots.to_png(source_plots.probe_spread(runs, compare=compare)),
            "Test accuracy of every probe trained on one encoder (--probe-seeds): a column per run, its dots the "
            "probes, its line their range; columns sorted by their mean within each condition.",
        )
