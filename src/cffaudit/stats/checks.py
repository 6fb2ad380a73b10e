"""Input checks over a tidy table of runs, made before any statistic is computed.

The statistics trust their input: a duplicated run pools into n (5 runs read as 8), an
accuracy of 170 or a fraction 0.78 passes as a number. `check_runs` refuses such tables
with a message that names the rows, their files and what to do, and reports every group
too small for a test (n < 2) with its n and the reason, so that it can stay in the tables
instead of vanishing.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from cffaudit.stats._validate import plain
from cffaudit.stats.results import _Result

#: Accuracies are percentages; anything outside this range is not one.
ACCURACY_RANGE = (0.0, 100.0)

# How many offending rows a message lists before it says "and k more".
_SHOWN = 5


class RunTableError(ValueError):
    """A table of runs that no statistic should be computed on (the message says why)."""


@dataclasses.dataclass(frozen=True)
class GroupCount(_Result):
    """One condition's number of runs and, when it is too small to test, why it was skipped."""

    label: str
    n: int
    skipped: bool
    reason: Optional[str]


@dataclasses.dataclass(frozen=True)
class RunCheck(_Result):
    """What `check_runs` found in a table that passed: the groups and those skipped."""

    response: str
    n_runs: int
    conditions: tuple[str, ...]
    groups: tuple[GroupCount, ...]

    @property
    def skipped(self) -> tuple[GroupCount, ...]:
        """The groups with too few runs for any test of spread."""
        return tuple(g for g in self.groups if g.skipped)


def _where(frame: pd.DataFrame, index: object, source: Optional[str]) -> str:
    row = f"row {plain(index)}"
    if source is not None and source in frame.columns:
        return f"{frame.at[index, source]} {row}"
    return row


def _listed(items: Sequence[str]) -> str:
    more = f"; and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return "; ".join(items[:_SHOWN]) + more


def _numeric_response(frame: pd.DataFrame, response: str, source: Optional[str]) -> pd.Series:
    raw = frame[response]
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() & raw.notna()
    if bad.any():
        where = [f"{_where(frame, i, source)}: {raw.at[i]!r}" for i in frame.index[bad]]
        raise RunTableError(
            f"{response}: {int(bad.sum())} value(s) are not numbers ({_listed(where)}); "
            f"fix or remove those rows"
        )
    missing = values.isna()
    if missing.any():
        where = [_where(frame, i, source) for i in frame.index[missing]]
        raise RunTableError(
            f"{response}: {int(missing.sum())} run(s) have no value ({_listed(where)}); "
            f"drop unfinished runs before the analysis"
        )
    return values.astype(np.float64)


def _check_range(frame: pd.DataFrame, values: pd.Series, response: str, source: Optional[str]) -> None:
    lo, hi = ACCURACY_RANGE
    out = (values < lo) | (values > hi)
    if out.any():
        where = [f"{_where(frame, i, source)}: {plain(values.at[i])}" for i in frame.index[out]]
        raise RunTableError(
            f"{response}: {int(out.sum())} accuracy value(s) outside {plain(lo)}-{plain(hi)} percent "
            f"({_listed(where)}); accuracies must be percentages"
        )
    # Fractions are judged per file: one file written as 0-1 among files in percent is
    # as wrong as all of them, and a whole table in 0-1 is no better.
    by = frame[source] if source is not None and source in frame.columns else pd.Series("the table", index=frame.index)
    for name, part in values.groupby(by, sort=True):
        if len(part) and float(part.max()) <= 1.0:
            raise RunTableError(
                f"{response}: every accuracy in {name} lies in 0-1 (max {plain(float(part.max()))}); "
                f"these look like fractions, but percentages are expected: multiply by 100"
            )


def _check_duplicates(frame: pd.DataFrame, keys: list[str], source: Optional[str]) -> None:
    dup = frame.duplicated(subset=keys, keep=False)
    if not dup.any():
        return
    clashes = []
    for key, rows in frame[dup].groupby(keys, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        what = ", ".join(f"{k}={plain(v)}" for k, v in zip(keys, key))
        where = ", ".join(_where(frame, i, source) for i in rows.index)
        clashes.append(f"{what} ({where})")
    raise RunTableError(
        f"runs: {len(clashes)} run(s) appear more than once with the same {', '.join(keys)}: "
        f"{_listed(clashes)}; a repeated run would be pooled as a new seed, so remove the copies"
    )


def check_runs(
    frame: pd.DataFrame,
    *,
    response: str = "test_acc",
    conditions: Sequence[str] = ("margin",),
    seeds: Sequence[str] = ("seed",),
    probe: Optional[str] = None,
    source: Optional[str] = "source",
    min_n: int = 2,
) -> RunCheck:
    """Refuse a table of runs that would give wrong statistics, and count each group.

    Args:
        frame: One row per run; its index labels are quoted as row numbers.
        response: Column of per-run accuracies, in percent.
        conditions: Columns that together name a group (e.g. margin, stability).
        seeds: Columns that identify a replicate: the run seed, or every stream seed
            where a design varies the streams apart.
        probe: Column of the probe index where a run has several probes, else None.
        source: Column naming each row's file; quoted in messages when present.
        min_n: Fewest runs a group needs to be tested; smaller groups are reported as
            skipped, with their n and the reason.

    Returns:
        A `RunCheck` with one `GroupCount` per group, in sorted order.

    Raises:
        RunTableError: (a ValueError) if a named column is missing, the response holds
            text or missing values, an accuracy lies outside 0-100, every accuracy of a
            file lies in 0-1 (fractions), or two rows are the same run (same conditions,
            seeds and probe).
    """
    conditions, seeds = list(conditions), list(seeds)
    needed = [response, *conditions, *seeds] + ([probe] if probe is not None else [])
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise RunTableError(f"frame: no column(s) {missing}; columns are {list(frame.columns)}")
    if not conditions:
        raise RunTableError("conditions: name at least one column that defines the groups")
    values = _numeric_response(frame, response, source)
    _check_range(frame, values, response, source)
    _check_duplicates(frame, conditions + seeds + ([probe] if probe is not None else []), source)
    groups = []
    for key, n in frame.groupby(conditions, dropna=False, sort=True).size().items():
        key = key if isinstance(key, tuple) else (key,)
        label = "/".join(str(plain(k)) for k in key)
        small = int(n) < min_n
        reason = f"{int(n)} run(s); a test of spread needs at least {min_n}" if small else None
        groups.append(GroupCount(label=label, n=int(n), skipped=small, reason=reason))
    return RunCheck(response=response, n_runs=int(len(frame)), conditions=tuple(conditions), groups=tuple(groups))
