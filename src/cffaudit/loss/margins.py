"""Margin schedules: the per-block margins m_l of a run, from block 0 to the last block.

Plain Python (no torch): the config resolves a run's margins with it, and the run
identity hashes the resolved list rather than the schedule's spelling.
"""

from __future__ import annotations

#: name -> (m0, mL): the margin of block 0 and of the last block (seed paper, Table 1:
#: the standard schedule 0.4 -> 0.1; the dose-response experiment's low one 0.2 -> 0.1).
MARGIN_SCHEDULES: dict[str, tuple[float, float]] = {"standard": (0.4, 0.1), "low": (0.2, 0.1)}


def layer_margins(schedule: str, depth: int, *, m0: float | None = None, mL: float | None = None) -> list[float]:
    """Per-block margins, linear from m0 (block 0) to mL (block depth - 1).

    Args:
        schedule: a name of ``MARGIN_SCHEDULES``; gives m0 and mL unless overridden.
        depth: number of blocks (>= 1); a single block gets m0.
        m0, mL: override the schedule's end points.

    Raises:
        ValueError: unknown schedule (the message lists the choices).
    """
    if schedule not in MARGIN_SCHEDULES:
        raise ValueError(
            f"loss.margin_schedule: unknown schedule {schedule!r}; choose one of {sorted(MARGIN_SCHEDULES)}"
        )
    first, last = MARGIN_SCHEDULES[schedule]
    first = first if m0 is None else m0
    last = last if mL is None else mL
    if depth == 1:
        return [float(first)]
    return [float(first + (last - first) * l / (depth - 1)) for l in range(depth)]
