"""Multiplicity control: adjusted p-values over a named family of tests.

Two families per `analyze`/`report` call (issue 10, item 3): Holm across the primary
tests (family-wise error), Benjamini-Hochberg across every printed p-value (false
discovery rate). statsmodels' `multipletests` does the arithmetic; this module keeps the
labels attached and names the family, so an adjusted p-value is never read without it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Mapping, Union

from cffaudit.stats.results import _Result

#: Names accepted by `adjust_pvalues`, mapped to statsmodels' method names.
METHODS = {"holm": "holm", "bh": "fdr_bh", "bonferroni": "bonferroni"}
_DESCRIBED = {
    "holm": "Holm (family-wise error rate)",
    "bh": "Benjamini-Hochberg (false discovery rate)",
    "bonferroni": "Bonferroni (family-wise error rate)",
}


@dataclasses.dataclass(frozen=True)
class AdjustedPValues(_Result):
    """Raw and adjusted p-values of one family, in the order given."""

    family: str
    method: str
    description: str
    labels: tuple[str, ...]
    pvalues: tuple[float, ...]
    adjusted: tuple[float, ...]

    def __getitem__(self, label: str) -> float:
        """The adjusted p-value of the test named `label`.

        Raises:
            KeyError: If no test of the family has that label.
        """
        try:
            return self.adjusted[self.labels.index(label)]
        except ValueError:
            raise KeyError(f"label: no test {label!r} in family {self.family!r}") from None

    def __len__(self) -> int:
        return len(self.labels)


PValues = Union[Mapping[str, float], Iterable[tuple[str, float]]]


def adjust_pvalues(pvalues: PValues, *, method: str = "holm", family: str) -> AdjustedPValues:
    """Adjust labelled p-values for multiplicity within one family.

    Args:
        pvalues: A mapping label -> p-value, or (label, p-value) pairs; labels unique.
        method: 'holm', 'bh' (Benjamini-Hochberg) or 'bonferroni'.
        family: Name of the family, printed beside the adjusted values (e.g. "primary
            tests of this analysis, 7 designs").

    Raises:
        ValueError: If the method is unknown, the family has no name, a label repeats,
            or a p-value is not a number in [0, 1].
    """
    from statsmodels.stats.multitest import multipletests

    if method not in METHODS:
        raise ValueError(f"method: must be one of {sorted(METHODS)}, got {method!r}")
    if not str(family).strip():
        raise ValueError("family: name the family of tests the adjustment runs over")
    pairs = list(pvalues.items()) if isinstance(pvalues, Mapping) else [tuple(p) for p in pvalues]
    labels = [str(lbl) for lbl, _ in pairs]
    if len(set(labels)) != len(labels):
        dup = sorted({lbl for lbl in labels if labels.count(lbl) > 1})
        raise ValueError(f"pvalues: repeated label(s) {dup}; each test needs its own label")
    for lbl, p in pairs:
        v = float(p) if p is not None else math.nan
        if not 0.0 <= v <= 1.0:  # also refuses NaN
            raise ValueError(f"pvalues: {lbl!r} has p = {v}, not a probability; leave tests without a p-value out")
    raw = [float(p) for _, p in pairs]
    adjusted = [float(v) for v in multipletests(raw, method=METHODS[method])[1]] if raw else []
    return AdjustedPValues(
        family=str(family),
        method=method,
        description=_DESCRIBED[method],
        labels=tuple(labels),
        pvalues=tuple(raw),
        adjusted=tuple(adjusted),
    )


def holm(pvalues: PValues, *, family: str = "primary tests") -> AdjustedPValues:
    """Holm-adjusted p-values (the family of primary tests); see `adjust_pvalues`."""
    return adjust_pvalues(pvalues, method="holm", family=family)


def benjamini_hochberg(pvalues: PValues, *, family: str = "every printed p-value") -> AdjustedPValues:
    """Benjamini-Hochberg-adjusted p-values (every printed p-value); see `adjust_pvalues`."""
    return adjust_pvalues(pvalues, method="bh", family=family)
