"""Suggestions for misspelt names ("did you mean"): config keys, spec keys, command-line flags.

One place, so that every error about an unknown name suggests the same way.
"""

from __future__ import annotations

import difflib
from typing import Iterable


def close_matches(word: str, options: Iterable[str], n: int = 3) -> list[str]:
    """The options closest to `word`, best first: difflib's ratio at least 0.6 and within
    0.05 of the best one (a list of near-equals helps, a list of also-rans does not)."""
    found = difflib.get_close_matches(word, sorted(set(options)), n=n, cutoff=0.6)
    ratio = [difflib.SequenceMatcher(None, word, f).ratio() for f in found]
    return [f for f, r in zip(found, ratio) if r >= ratio[0] - 0.05]


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` (or ``'x' or 'y'``) for the closest options, else ``""``.

    Meant to end an error message that already names `word`.
    """
    found = close_matches(word, options)
    if not found:
        return ""
    return "; did you mean " + " or ".join(repr(f) for f in found) + "?"
