"""The `analyze`, `report` and `paper` commands: argument parsing and dispatch only."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any, NamedTuple, Optional

from cffaudit.atomic import atomic_write_json
from cffaudit.cli import CLIError


#: The comparison `analyze` and `report` make without --compare and --levels.
DEFAULT_COMPARE, DEFAULT_LEVELS = "margin", "clamp,subtract"


class Audit(NamedTuple):
    """What `analyze` and `report` print: the variance audit (None when the default
    comparison does not apply, `skipped` saying why), the sources of variance, and the
    per-epoch histories (`report` only)."""

    analysis: Any
    skipped: Optional[str]
    sources: Any
    history: Any
    inputs: dict


def _add_input_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="tidy CSV files, result.json files, or directories searched recursively for result.json")
    p.add_argument("--store", metavar="DIR", help="a run store directory (runs/<run_id>/result.json)")
    p.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                   help="keep runs whose KEY equals VALUE (repeatable; VALUE may be a,b)")
    p.add_argument("--compare", default=None, metavar="FACTOR",
                   help="factor whose two levels are compared, a column of the run table (e.g. stability, or arm for a "
                        "spec with arms) (default: margin; without --compare and --levels, runs lacking clamp or "
                        "subtract skip the audit and keep the sources of variance)")
    p.add_argument("--levels", default=None, metavar="A,B",
                   help="the two levels of --compare; the variance ratio is var(A) / var(B) (default: clamp,subtract)")
    p.add_argument("--factor", default=None, metavar="FACTOR", help="second factor of a factorial design (e.g. stability)")
    p.add_argument("--pool", action="store_true", help="pool over --factor for the pairwise comparison")
    p.add_argument("--resamples", type=int, default=10_000, metavar="N", help="bootstrap resamples (default: 10000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    p.add_argument("--target-se", type=float, default=0.1, metavar="SE",
                   help="standard error of the mean (accuracy points) for the seed budget (default: 0.1)")
    p.add_argument("--decompose", action="append", default=[], metavar="SPEC",
                   help="variance components of test_acc per condition for the design SPEC over run-table columns: "
                        "'A/B' (B nested in A, e.g. 'seed/probe_seed', which expands probe_test_accs) or 'A*B' "
                        "(crossed, e.g. 'seed_init*seed_data'); quote it, the shell expands *; repeatable")
    _add_verdict_arguments(p)


def _add_verdict_arguments(p: argparse.ArgumentParser) -> None:
    # The test names live in cffaudit.stats, which imports pandas and scipy: building the
    # parser must not, so --primary is checked when the command runs.
    p.add_argument("--primary", default=None, metavar="TEST",
                   help="the primary test of equal variances: F, levene, brown-forsythe, fligner-killeen, permutation "
                        "or bonett; every other test is secondary (default: the test chosen by the simulation study "
                        "benchmarks/results/variance_test_size_power.md, printed with its reason in the output)")
    p.add_argument("--min-ratio", type=float, default=2.0, metavar="R",
                   help="variance ratio of interest for planning: the primary test's power at the design's n and "
                        "the seeds per group it needs (default: 2)")
    p.add_argument("--power", type=float, default=0.8, metavar="P",
                   help="target power for the seeds per group (default: 0.8)")
    p.add_argument("--log-ratio-width", type=float, default=None, metavar="W",
                   help="target width of the 95%% interval of log(VR), for a seed count (default: ln 4, i.e. the "
                        "upper end at most 4 times the lower)")
    p.add_argument("--allocation", type=float, default=1.0, metavar="K",
                   help="seeds of B per seed of A in the seed counts for --power and --log-ratio-width "
                        "(default: 1, equal groups)")
    p.add_argument("--anova-type", type=int, choices=(2, 3), default=2,
                   help="sums of squares of the factorial ANOVA on absolute deviations (default: 2)")


def add_analysis_commands(sub: argparse._SubParsersAction) -> None:
    """Register `analyze`, `report` and `paper` on the CLI's subparsers."""
    p = sub.add_parser("analyze", help="variance audit of a set of runs, as Markdown tables and optional JSON")
    _add_input_arguments(p)
    p.add_argument("--json", metavar="OUT", help="also write the audit as JSON (schema cffaudit.analysis/1)")
    p.set_defaults(func=run_analyze)

    p = sub.add_parser("report", help="self-contained HTML report (figures embedded) and a Markdown twin")
    _add_input_arguments(p)
    p.add_argument("--out", required=True, metavar="DIR", help="directory for report.html, report.md and figures/")
    p.add_argument("--json", metavar="OUT", help="also write the audit as JSON")
    p.set_defaults(func=run_report)

    p = sub.add_parser(
        "paper", help="recompute the seed paper's tables from its per-seed data, beside the reported values",
        description="Recompute the seed paper's tables (means, variances, variance ratios, tests) from the "
                    "per-seed accuracies it published (cffaudit/paperdata) and print them beside the values "
                    "the paper reports; nothing is trained.")
    p.add_argument("--json", metavar="OUT", help="write every reported and recomputed value as JSON")
    p.add_argument("--out", metavar="DIR", help="also write an HTML + Markdown report with figures")
    p.add_argument("--resamples", type=int, default=10_000, metavar="N", help="bootstrap resamples (default: 10000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    p.set_defaults(func=run_paper)


def _analysis(args: argparse.Namespace, *, histories: bool = False):
    """The audit of the inputs, its sources of variance, and (with `histories`) their
    per-epoch diagnostics, read in the same pass over the results."""
    from cffaudit.report.analysis import MissingLevelsError, analyze_runs, parse_where
    from cffaudit.report.runs import RunLoadError, load_runs_with_histories
    from cffaudit.report.sources import analyze_sources

    if not args.inputs and not args.store:
        raise CLIError("give at least one INPUT (CSV, result.json or directory) or --store DIR")
    chosen = args.compare is not None or args.levels is not None
    compare = args.compare if args.compare is not None else DEFAULT_COMPARE
    levels = [v.strip() for v in (args.levels if args.levels is not None else DEFAULT_LEVELS).split(",") if v.strip()]
    if len(levels) != 2:
        raise CLIError(f"--levels: expected two levels A,B, got {args.levels!r}")
    if args.resamples < 1:
        raise CLIError(f"--resamples: must be at least 1, got {args.resamples}")
    if not (math.isfinite(args.min_ratio) and args.min_ratio > 0 and args.min_ratio != 1):
        raise CLIError(f"--min-ratio: must be a variance ratio > 0 other than 1, got {args.min_ratio:g}")
    if not 0.05 < args.power < 1:
        raise CLIError(f"--power: must lie between the level 0.05 and 1, got {args.power:g}")
    from cffaudit.stats import TEST_NAMES

    if args.primary is not None and args.primary not in TEST_NAMES:
        raise CLIError(f"--primary: unknown test {args.primary!r}; choose one of {', '.join(TEST_NAMES)}")
    width = math.log(4.0) if args.log_ratio_width is None else args.log_ratio_width
    if not (math.isfinite(width) and width > 0):
        raise CLIError(f"--log-ratio-width: must be a positive width on the log scale, got {width:g}")
    if not (math.isfinite(args.allocation) and args.allocation > 0):
        raise CLIError(f"--allocation: must be a ratio n_B / n_A > 0, got {args.allocation:g}")
    try:
        where = parse_where(args.where)
        frame, history = load_runs_with_histories(args.inputs, store=args.store, histories=histories)
    except (RunLoadError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    inputs = {"paths": [str(p) for p in args.inputs], "store": args.store}
    factor = args.factor if args.factor is not None else _spec_factor(args.store, compare)
    analysis, skipped = None, None
    try:
        analysis = analyze_runs(
            frame,
            compare=compare,
            levels=levels,
            factor=factor,
            pool=args.pool,
            where=where,
            n_resamples=args.resamples,
            seed=args.seed,
            target_se=args.target_se,
            inputs=inputs,
            primary=args.primary,
            min_ratio=args.min_ratio,
            power=args.power,
            log_ratio_width=width,
            anova_type=args.anova_type,
            allocation=args.allocation,
            scope=f"this `cffaudit {args.command}` call",
        )
    except MissingLevelsError as exc:
        if chosen:
            raise CLIError(str(exc)) from None
        # The default comparison does not apply (a sources design trains one margin): say
        # so and go on with the sources of variance.
        skipped = (f"skipped: {exc}. Compare two levels of a column with --compare FACTOR --levels A,B"
                   + (" (for this spec's arms, e.g. --compare arm --levels "
                      f"{','.join(_two_arms(frame))})" if _two_arms(frame) else "") + ".")
    except (RunLoadError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    if analysis is not None:
        factor = analysis.options["factor"]
    try:
        sources = analyze_sources(frame, decompose_specs=args.decompose, compare=compare, levels=levels,
                                  factor=factor, where=where, n_resamples=args.resamples, seed=args.seed,
                                  default_probe_spec=args.command == "report")
    except (RunLoadError, ValueError) as exc:
        prefix = "--decompose: " if args.decompose and str(exc).startswith("spec:") else ""
        raise CLIError(prefix + str(exc)) from None
    return Audit(analysis, skipped, sources, history, inputs)


def _two_arms(frame) -> list[str]:
    """The first two arms of a spec with arms among the runs (for the hint), else []."""
    if "arm" not in frame.columns:
        return []
    arms = [a for a in dict.fromkeys(frame["arm"].dropna().astype(str)) if a and "|" not in a]
    return arms[:2] if len(arms) >= 2 else []


def _spec_factor(store, compare: str):
    """With --store and no --factor: the spec's one other factor, if it has exactly one."""
    if not store:
        return None
    from cffaudit.report.runs import store_other_factor

    factor = store_other_factor(store, compare)
    if factor is not None:
        print(f"factor from the store's spec: {factor}", file=sys.stderr)
    return factor


def _write_json(path: str, payload: dict) -> None:
    try:
        atomic_write_json(path, payload)
    except OSError as exc:
        raise CLIError(f"--json {path}: {exc}") from None


def _json_payload(audit: Audit) -> dict:
    from cffaudit.report.analysis import SCHEMA
    from cffaudit.report.sources import sources_json

    head = (audit.analysis.to_dict() if audit.analysis is not None
            else {"schema": SCHEMA, "inputs": audit.inputs, "audit_skipped": audit.skipped})
    return {**head, **sources_json(audit.sources)}


def run_analyze(args: argparse.Namespace) -> int:
    """`cffaudit analyze`: print the audit as Markdown; write JSON with --json."""
    from cffaudit.report.audit_tables import analysis_markdown, skipped_audit_markdown

    audit = _analysis(args)
    sys.stdout.write(analysis_markdown(audit.analysis) if audit.analysis is not None
                     else skipped_audit_markdown(audit.skipped))
    sys.stdout.write("\n" + audit.sources.to_markdown())
    if args.json:
        _write_json(args.json, _json_payload(audit))
        print(f"\nJSON written to {args.json}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    """`cffaudit report`: write report.html (self-contained) and report.md with figures."""
    from cffaudit.report.build import analysis_report

    audit = _analysis(args, histories=True)
    doc = analysis_report(audit.analysis, audit.history, sources=audit.sources, inputs=audit.inputs,
                          skipped=audit.skipped)
    try:
        paths = doc.write(args.out)
    except OSError as exc:
        raise CLIError(f"--out {args.out}: {exc}") from None
    if args.json:
        _write_json(args.json, _json_payload(audit))
    print(f"report written: {paths['html']} and {paths['markdown']} ({len(doc.figures)} figures)")
    return 0


def run_paper(args: argparse.Namespace) -> int:
    """`cffaudit paper`: the paper's tables recomputed, beside the values it reports."""
    from cffaudit.report.paper import reproduce_paper
    from cffaudit.report.tables import reproduction_markdown

    if args.resamples < 1:
        raise CLIError(f"--resamples: must be at least 1, got {args.resamples}")
    rep = reproduce_paper(n_resamples=args.resamples, seed=args.seed)
    sys.stdout.write(reproduction_markdown(rep))
    if args.json:
        payload = {"schema": "cffaudit.paper/1", **rep.to_dict()}
        _write_json(args.json, payload)
        print(f"\nJSON written to {args.json}")
    if args.out:
        from cffaudit import paperdata
        from cffaudit.report.build import paper_report
        from cffaudit.report.paper import audit_paper_runs

        analysis = audit_paper_runs(n_resamples=args.resamples, seed=args.seed)
        doc = paper_report(rep, analysis, paperdata.clamp_activation_rate())
        try:
            paths = doc.write(Path(args.out), stem="paper")
        except OSError as exc:
            raise CLIError(f"--out {args.out}: {exc}") from None
        print(f"report written: {paths['html']} and {paths['markdown']} ({len(doc.figures)} figures)")
    return 0
