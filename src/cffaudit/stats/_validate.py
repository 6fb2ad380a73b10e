"""Input checks shared by the statistics: every failure names the offending parameter."""

from __future__ import annotations

import difflib
from typing import Any, Sequence

import numpy as np


def plain(value: Any) -> Any:
    """A number as plain Python (`78.3`, not `np.float64(78.3)`), for messages and notes.

    numpy 2 scalars repr as `np.float64(78.3)`; every message of the statistics goes
    through here so the user reads the number, not the type.
    """
    if hasattr(value, "item") and callable(value.item) and np.ndim(value) == 0:
        return value.item()
    return value


def as_sample(values: Any, name: str, *, min_n: int = 2, allow_constant: bool = False) -> np.ndarray:
    """Return `values` as a 1-D float64 array after checking it can carry a statistic.

    Args:
        values: Any array-like of numbers.
        name: The caller's parameter name, used in the error message.
        min_n: Fewest values accepted.
        allow_constant: Whether a sample whose values are all equal is acceptable.

    Raises:
        ValueError: If the sample is not 1-D, is too short, holds NaN or infinities, or
            is constant while `allow_constant` is false.
    """
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected numbers, got {type(values).__name__} ({exc})") from None
    if x.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sample, got shape {x.shape}")
    if x.size < min_n:
        raise ValueError(f"{name}: needs at least {min_n} values, got {x.size}")
    if not np.all(np.isfinite(x)):
        bad = int(np.sum(~np.isfinite(x)))
        raise ValueError(f"{name}: contains {bad} NaN or infinite value(s)")
    if not allow_constant and np.all(x == x[0]):
        raise ValueError(f"{name}: all {x.size} values are equal ({plain(x[0])!r}); its variance is zero")
    return x


def check_probability(value: float, name: str, *, open_interval: bool = True) -> float:
    """Check that `value` lies in (0, 1) (or [0, 1] when `open_interval` is false)."""
    v = float(value)
    ok = 0.0 < v < 1.0 if open_interval else 0.0 <= v <= 1.0
    if not ok or np.isnan(v):
        raise ValueError(f"{name}: must lie in {'(0, 1)' if open_interval else '[0, 1]'}, got {plain(value)!r}")
    return v


def check_alternative(alternative: str) -> str:
    """Check the name of a test's alternative hypothesis."""
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative: must be 'two-sided', 'greater' or 'less', got {alternative!r}")
    return alternative


def check_column(name: str, columns: Sequence[str], parameter: str) -> str:
    """Return `name` if it is one of `columns`; otherwise raise naming them and the closest.

    Raises:
        ValueError: If `name` is not a column.
    """
    columns = [str(c) for c in columns]
    if name in columns:
        return name
    close = difflib.get_close_matches(name, columns, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"{parameter}: no column {name!r} in the run table{hint}; columns are {columns}")
