"""Margin schedules: the per-block margins m_l of a run, from block 0 to the last block.

Plain Python (no torch): the config resolves a run's margins with it, and the run
identity hashes the resolved list rather than the schedule's spelling.

A schedule is two end points (m0 for block 0, mL for the last block) and a shape that
runs between them. The shapes are those of the original CFF code (github
HosseinAghagol/ContrastiveFF), each with its shape parameter k (default 1); for L
blocks and l = 0..L-1:

* linear:      m_l = m0 + (mL - m0) * l / (L-1)                (k plays no part)
* parabolic:   t = (m0 - mL)^(1/(2k)),  m_l = |l / ((L-1)/t) - t|^(2k) + mL
* cosine:      m_l = (m0 - mL)/2 * (cos(pi * l^k / (L-1)^k) + 1) + mL
* exponential: m_l = m0 * (mL/m0)^((l/(L-1))^k)

Every shape gives m0 at block 0 and mL at the last one; a single block gets m0.
"""

from __future__ import annotations

import math
from typing import Callable

#: name -> (m0, mL): the margin of block 0 and of the last block (seed paper, Table 1:
#: the standard schedule 0.4 -> 0.1; the dose-response experiment's low one 0.2 -> 0.1).
MARGIN_SCHEDULES: dict[str, tuple[float, float]] = {"standard": (0.4, 0.1), "low": (0.2, 0.1)}


# Each shape maps (m0, mL, l, L, k) to the margin of block l of L (L >= 2).

def _linear(m0: float, mL: float, l: int, L: int, k: float) -> float:
    # The arithmetic of the releases before shapes existed, so their margins (and the
    # losses that use them) stay the same to the last bit.
    return m0 + (mL - m0) * l / (L - 1)


def _parabolic(m0: float, mL: float, l: int, L: int, k: float) -> float:
    x = l / (L - 1)
    # The original's (l / ((L-1)/t) - t)^(2k) with t = (m0 - mL)^(1/(2k)) equals
    # (m0 - mL) * |1 - x|^(2k): written so, it also holds for mL > m0 (where t would be
    # the root of a negative number) and, with |.|, for a non-integer 2k.
    return (m0 - mL) * abs(1.0 - x) ** (2.0 * k) + mL


def _cosine(m0: float, mL: float, l: int, L: int, k: float) -> float:
    return (m0 - mL) / 2.0 * (math.cos(math.pi * l**k / (L - 1) ** k) + 1.0) + mL


def _exponential(m0: float, mL: float, l: int, L: int, k: float) -> float:
    # The original code hard-codes 0.1 where mL stands here (its schedules all ended at
    # 0.1); with mL the shape ends where the schedule says, and equals it for mL = 0.1.
    return m0 * (mL / m0) ** ((l / (L - 1)) ** k)


#: name -> margin of block l of L; the order is the one users see.
MARGIN_SHAPES: dict[str, Callable[[float, float, int, int, float], float]] = {
    "linear": _linear,
    "parabolic": _parabolic,
    "cosine": _cosine,
    "exponential": _exponential,
}


def layer_margins(
    schedule: str,
    depth: int,
    *,
    m0: float | None = None,
    mL: float | None = None,
    shape: str = "linear",
    k: float = 1.0,
) -> list[float]:
    """Per-block margins from m0 (block 0) to mL (block depth - 1) along a shape.

    Args:
        schedule: a name of ``MARGIN_SCHEDULES``; gives m0 and mL unless overridden.
        depth: number of blocks (>= 1); a single block gets m0.
        m0, mL: override the schedule's end points.
        shape: a name of ``MARGIN_SHAPES`` (see the module docstring for the formulas).
        k: the shape parameter (> 0); ignored by the linear shape.

    Raises:
        ValueError: unknown schedule or shape (the message lists the choices), k <= 0,
            or the exponential shape with m0 = 0 (it divides by m0).
    """
    if schedule not in MARGIN_SCHEDULES:
        raise ValueError(
            f"loss.margin_schedule: unknown schedule {schedule!r}; choose one of {sorted(MARGIN_SCHEDULES)}"
        )
    if shape not in MARGIN_SHAPES:
        raise ValueError(f"loss.margin_shape: unknown shape {shape!r}; choose one of {list(MARGIN_SHAPES)}")
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not k > 0 or not math.isfinite(k):
        raise ValueError(f"loss.margin_k: the shape parameter k must be a finite number > 0, got {k!r}")
    first, last = MARGIN_SCHEDULES[schedule]
    first = first if m0 is None else m0
    last = last if mL is None else mL
    if shape == "exponential" and first <= 0:
        raise ValueError(
            f"loss.margin_shape=exponential needs m0 > 0 (it computes m0 * (mL/m0)^x), got m0={first!r}; "
            "raise loss.m0 or choose another shape"
        )
    if depth == 1:
        return [float(first)]
    f = MARGIN_SHAPES[shape]
    return [float(f(first, last, l, depth, float(k))) for l in range(depth)]
