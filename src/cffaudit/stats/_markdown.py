"""Plain pipe tables for the Markdown renderers of the statistics (stats must not import report)."""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence


def number(value: Optional[float], digits: int = 3) -> str:
    """A number with `digits` significant figures; '—' for None or NaN, '∞' for infinity."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.{digits}g}"


def interval(ci: Optional[Sequence[float]], digits: int = 3) -> str:
    """An interval as '[low, high]'."""
    if ci is None:
        return "—"
    return f"[{number(ci[0], digits)}, {number(ci[1], digits)}]"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, left: int = 1) -> str:
    """A pipe table, its first `left` columns (labels) left-aligned and the others right-aligned."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) if i < left else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths))) + " |"

    rule = "|" + "|".join(":" + "-" * (w + 1) if i < left else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), rule] + [line(r) for r in cells])
