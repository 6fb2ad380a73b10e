"""`cffaudit export`: the tidy run table (one row per run) as CSV; `report.export` builds it."""

from __future__ import annotations

import argparse
import sys

from cffaudit.cli import CLIError


def add_export_command(sub: argparse._SubParsersAction) -> None:
    """Register `cffaudit export` on the CLI's subparsers."""
    p = sub.add_parser(
        "export",
        help="write the runs of stores, result files and folders as one tidy CSV (one row per run)",
        description=(
            "One row per run: factor levels, seed and the seed of every random stream, accuracies, "
            "the untrained baseline and stage-1 gain where recorded, final per-layer CAR and gradient "
            "norms, and the config settings that split designs. `cffaudit analyze` of the CSV gives "
            "the same audit as of the inputs (pass the --factor that analyze --store takes from the spec)."
        ),
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="tidy CSV files, result.json files, or directories searched recursively for result.json")
    p.add_argument("--store", metavar="DIR", help="a run store directory (runs/<run_id>/result.json)")
    p.add_argument("--csv", metavar="FILE", help="write the table here (default: standard output)")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    """`cffaudit export`: the tidy table as CSV, to --csv or standard output."""
    from cffaudit.report.export import export_runs, write_csv
    from cffaudit.report.runs import RunLoadError

    if not args.inputs and not args.store:
        raise CLIError("give a --store DIR, or INPUTs (CSV, result.json or directory)")
    try:
        frame = export_runs(args.inputs, store=args.store)
    except RunLoadError as exc:
        raise CLIError(str(exc)) from None
    try:
        text = write_csv(frame, args.csv)
    except OSError as exc:
        raise CLIError(f"--csv {args.csv}: {exc}") from None
    if text is not None:
        sys.stdout.write(text)
    else:
        print(f"{len(frame)} run(s), {len(frame.columns)} columns written to {args.csv}", file=sys.stderr)
    return 0
