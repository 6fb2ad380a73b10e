"""Command line: parses, builds configs, calls the layers below. Nothing else.

One module per command (`train`, `sweep`, `analysis` for analyze/report/paper,
`export`, `bench`), each with an `add_*` function that registers its subcommand. The library
never imports this package: it raises `ValueError` (or its own subclasses) and the
commands turn those into `CLIError`, printed as one line with exit status 2.

Heavy modules (torch, matplotlib, ray) are imported inside the command that needs
them, so `cffaudit analyze` starts without torch.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Optional, Sequence

from cffaudit.suggest import close_matches, did_you_mean


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def _commands() -> list[Callable[[argparse._SubParsersAction], None]]:
    # Imported here, not at the top: the command modules import CLIError from this one.
    from cffaudit.cli.analysis import add_analysis_commands
    from cffaudit.cli.bench import add_bench_command
    from cffaudit.cli.export import add_export_command
    from cffaudit.cli.sweep import add_sweep_command
    from cffaudit.cli.train import add_train_command

    return [add_train_command, add_analysis_commands, add_export_command, add_sweep_command, add_bench_command]


def build_parser() -> argparse.ArgumentParser:
    """The `cffaudit` parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="cffaudit",
        description="Contrastive Forward-Forward training of ViTs and seed-variance audits.",
    )
    from cffaudit import __version__

    parser.add_argument("--version", action="version", version=f"cffaudit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _commands():
        add(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run `cffaudit` with `argv` (default: the process arguments); return the exit status.

    A user error (`CLIError`) prints one line and returns 2, Ctrl-C returns 130 (saying how
    to resume where the command can).
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        _unrecognized(parser, args, extra)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CLIError as exc:
        print(f"cffaudit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # A command that can continue where it stopped says how (set_defaults(resume_hint=...)).
        hint = getattr(args, "resume_hint", None)
        print(f"cffaudit {args.command}: interrupted" + (f"; {hint}" if hint else ""), file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` or similar that closed early: not an error of ours.
        # Point stdout at devnull so the interpreter's final flush does not raise again.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _unrecognized(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]) -> None:
    """Exit (status 2) on arguments no parser took, with the usage of the subcommand they
    followed (argparse would print the top-level usage) and the closest flag it has."""
    command = getattr(args, "command", None)
    sub = parser
    if command:
        (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        sub = action.choices[command]
    flags = [s for a in sub._actions for s in a.option_strings]
    words = [w.split("=", 1)[0] for w in extra if w.startswith("-")]
    hints = {w: close_matches(w, flags) for w in words}
    hints = {w: found for w, found in hints.items() if found}
    message = f"unrecognized arguments: {' '.join(extra)}"
    if len(hints) == 1:
        message += did_you_mean(next(iter(hints)), flags)
    elif hints:
        message += "; did you mean " + ", ".join(f"{found[0]!r} for {w}" for w, found in hints.items()) + "?"
    sub.error(message)

