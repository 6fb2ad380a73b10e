"""Command line: parses, builds configs, calls the layers below. Nothing else.

Heavy modules (torch, matplotlib, ray) are imported inside the command that needs
them, so `cffaudit analyze` starts without torch.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Optional, Sequence


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


# ----------------------------------------------------------------------------- train


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one CFF run (stage 1 + linear probe) and write result.json")
    from cffaudit.train.cli_args import add_train_arguments

    add_train_arguments(p)
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from cffaudit.train.cli_args import run_train_command

    return run_train_command(args)


# ----------------------------------------------------------------------------- analyze / report / paper


def _add_analysis(sub: argparse._SubParsersAction) -> None:
    from cffaudit.report.cli_args import add_analysis_commands

    add_analysis_commands(sub)


# ----------------------------------------------------------------------------- sweep


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    from cffaudit.experiments.cli_args import add_sweep_command

    add_sweep_command(sub)


# ----------------------------------------------------------------------------- bench


def _add_bench(sub: argparse._SubParsersAction) -> None:
    from cffaudit.train.bench import add_bench_command

    add_bench_command(sub)


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_train,
    _add_analysis,
    _add_sweep,
    _add_bench,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cffaudit",
        description="Contrastive Forward-Forward training of ViTs and seed-variance audits.",
    )
    from cffaudit import __version__

    parser.add_argument("--version", action="version", version=f"cffaudit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CLIError as exc:
        print(f"cffaudit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cffaudit {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` or similar that closed early: not an error of ours.
        # Point stdout at devnull so the interpreter's final flush does not raise again.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
