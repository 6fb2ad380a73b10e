"""`cffaudit bench`: argument parsing for `cffaudit.bench.run_benchmark`."""

from __future__ import annotations

import argparse
from pathlib import Path

from cffaudit.bench import BENCH_CONFIGS
from cffaudit.cli import CLIError


def add_bench_command(sub: argparse._SubParsersAction) -> None:
    """Register `cffaudit bench` on the CLI's subparsers."""
    p = sub.add_parser(
        "bench", help="measure stage-1 throughput against the original code's structure",
        description="Time stage-1 steps after warm-up: (a) the original CFF code's structure, (b) cffaudit "
                    "with one seed, (c) cffaudit with several seeds side by side; print views per second, "
                    "the speedups, FLOP/s and where the time goes (see the README, Speed).")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--config", default="paper", choices=sorted(BENCH_CONFIGS))
    p.add_argument("--steps", type=int, default=5, help="timed steps per measurement (after warm-up)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation happens here)")
    p.add_argument("--seeds", type=int, default=8, help="ensemble size of measurement (c)")
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers of the baseline (the original's 4)")
    p.add_argument("--no-baseline", action="store_true", help="skip (a)")
    p.add_argument("--no-profile", action="store_true", help="skip the per-operator breakdown")
    p.add_argument("--json", type=Path, default=None, help="write the record here")
    p.set_defaults(func=run_bench_command)


def run_bench_command(args: argparse.Namespace) -> int:
    """Run `cffaudit bench`: print the summary, write the JSON record with --json."""
    from cffaudit.atomic import atomic_write_json
    from cffaudit.bench import format_summary, run_benchmark

    try:
        rec = run_benchmark(device=args.device, config=args.config, steps=args.steps, warmup=args.warmup,
                            seeds=args.seeds, workers=args.workers, baseline=not args.no_baseline,
                            profile=not args.no_profile)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    print(format_summary(rec))
    if args.json:
        atomic_write_json(args.json, rec)
        print(f"wrote {args.json}")
    return 0
