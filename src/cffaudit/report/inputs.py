"""Checks of a run table before any statistic is computed on it (issue 10, item 8).

A tidy CSV is checked file by file when it is read, so that a message can name the file,
the row (the header is row 1, as a spreadsheet numbers it) and the column; the table of
the selected runs is checked as a whole before the audit, so that a run given twice (in
two files, or twice in one) is refused instead of being pooled as a new seed. The checks
themselves are `cffaudit.stats.check_runs`; this module says which columns name a
condition, a seed and a row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd

from cffaudit.stats import GroupCount, RunCheck, check_runs, jsonable

#: Columns that, besides the config (`cfg.*`), say which condition a run belongs to.
CONDITION_COLUMNS = ("dataset", "experiment", "margin_schedule", "margin", "stability", "augmentation")

#: Column of the probe index where a run has several probes (tidy CSVs may carry it).
PROBE_COLUMN = "probe"

#: Column the CSV reader adds: the row of the file a run came from (header = row 1).
ROW_COLUMN = "csv_row"


def seed_columns(frame: pd.DataFrame) -> list[str]:
    """Columns that identify a replicate: the run seed and every stream seed (`seed_*`)
    the table carries. Runs of two conditions with equal values here are paired."""
    streams = sorted(c for c in frame.columns if c.startswith("seed_") and frame[c].notna().any())
    return ["seed", *streams]


def _distinguishing(frame: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """The columns that take more than one value: a column constant over the table cannot
    tell two runs apart, so leaving it out finds the same duplicates in a shorter message."""
    present = [c for c in dict.fromkeys(columns) if c in frame.columns]
    varying = [c for c in present if frame[c].astype(str).nunique(dropna=False) > 1]
    return varying or present[:1]


def _check_seed_values(frame: pd.DataFrame, path: Path, columns: Sequence[str]) -> None:
    for col in columns:
        raw = frame[col]
        values = pd.to_numeric(raw, errors="coerce")
        bad = raw.notna() & (values.isna() | (values % 1 != 0))
        if bad.any():
            where = "; ".join(f"row {int(frame.at[i, ROW_COLUMN])}: {jsonable(raw.at[i])!r}" for i in frame.index[bad][:5])
            raise ValueError(f"{path}: column {col}: {int(bad.sum())} value(s) are not integer seeds ({where}); "
                             f"a seed is a whole number such as 3")


def check_csv_runs(frame: pd.DataFrame, path: Path) -> None:
    """Refuse a tidy CSV whose finished runs would give wrong statistics.

    `frame` is the file as read, with the `row` and `source` columns added. Checks, for
    the rows whose status is 'done': accuracies are numbers, present, within 0-100 and
    not all within 0-1 (fractions); seeds are integers; no run appears twice.

    Raises:
        ValueError: naming the file, the row(s) and the column.
    """
    done = frame[frame["status"].astype(str) == "done"]
    if done.empty:
        return
    seeds = seed_columns(done)
    _check_seed_values(done, path, seeds)
    # Index by the file's row numbers so that check_runs' messages quote them.
    table = done.set_index(done[ROW_COLUMN].astype(int).rename(None))
    conditions = _distinguishing(table, CONDITION_COLUMNS)
    probe = PROBE_COLUMN if PROBE_COLUMN in table.columns else None
    check_runs(table, response="test_acc", conditions=conditions, seeds=seeds, probe=probe, source="source")


def _locations(frame: pd.DataFrame) -> pd.Index:
    """'row 5 of runs.csv' for a CSV row, 'run in .../result.json' for a result, made unique."""
    rows = frame[ROW_COLUMN] if ROW_COLUMN in frame.columns else pd.Series(None, index=frame.index, dtype=object)
    sources = frame["source"] if "source" in frame.columns else pd.Series(None, index=frame.index, dtype=object)
    names = []
    for index, row, source in zip(frame.index, rows, sources):
        if pd.isna(source):  # a frame built in code: its own index is all there is
            names.append(str(index))
        else:
            names.append(f"{int(row)} of {source}" if pd.notna(row) else f"1 of {source}")
    seen: dict[str, int] = {}
    unique = []
    for n in names:  # a stored run serving two cells of a spec is one file, two records
        seen[n] = seen.get(n, 0) + 1
        unique.append(n if seen[n] == 1 else f"{n} (record {seen[n]})")
    return pd.Index(unique)


def check_selected_runs(frame: pd.DataFrame, conditions: Sequence[str]) -> RunCheck:
    """Refuse the finished, selected runs if a run appears twice or an accuracy is not a
    percentage; messages name each row as 'row k of FILE'.

    Args:
        frame: The runs the audit would use (status 'done', after --where).
        conditions: Every column that tells conditions apart (factors, design columns).

    Raises:
        ValueError: (`stats.RunTableError`) naming the rows, their files and what to do.
    """
    table = frame.set_axis(_locations(frame), axis=0)
    present = _distinguishing(table, conditions)
    probe = PROBE_COLUMN if PROBE_COLUMN in table.columns else None
    return check_runs(table, response="test_acc", conditions=present, seeds=seed_columns(table), probe=probe,
                      source=None)


def group_counts(frame: pd.DataFrame, compare: str, levels: Sequence[str], factor: Optional[str],
                 min_n: int = 2) -> tuple[GroupCount, ...]:
    """Runs per cell (compare x factor) of one design, each too small to test marked with why.

    Labels are those of the audit's cells ('clamp' or 'clamp/detach')."""
    data = frame[frame[compare].astype(str).isin(levels)]
    keys = [data[compare].astype(str)] + ([data[factor].astype(str)] if factor is not None else [])
    out = []
    for key, n in data.groupby(keys, sort=True).size().items():
        label = "/".join(key) if isinstance(key, tuple) else str(key)
        small = int(n) < min_n
        why = f"{int(n)} run(s); a test of spread needs at least {min_n}" if small else None
        out.append(GroupCount(label=label, n=int(n), skipped=small, reason=why))
    return tuple(out)


def run_identity(result: dict) -> Optional[str]:
    """The run id of a result: the hash of its config and seed (`experiments.identity`), so
    that two copies of one run are known as one wherever they lie; None where its config
    cannot be read as today's RunConfig (the run-table checks still see its copies)."""
    from cffaudit.config import RunConfig
    from cffaudit.experiments.identity import result_protocol, run_id

    try:
        return run_id(RunConfig.from_dict(result["config"]), result_protocol(result))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def refuse_repeated_runs(results: Sequence[tuple[dict, Any]]) -> None:
    """Refuse a run (config, seed and accuracy) read from two files: a folder inside a
    store, or a copy of its runs, beside --store would count each run twice (as two
    designs, where the store names the experiment and the copy does not). A store run that stands for several cells is one
    file read once per cell, and is not repeated.

    Args:
        results: (parsed result.json, the file it was read from) of every JSON input.

    Raises:
        ValueError: naming the run, its seed and both files.
    """
    first: dict[tuple, str] = {}
    for result, source in results:
        if result.get("status") != "done" or (rid := run_identity(result)) is None:
            continue
        where = str(Path(source).resolve())
        # With its accuracy: one config that gave another result (other data on disk) is left
        # to the checks of the run table and of the test labels, which say what differs.
        seen = first.setdefault((rid, result.get("test_acc")), where)
        if seen != where:
            seed = (result.get("config") or {}).get("seed")
            raise ValueError(f"run {rid} (seed={seed}) is given twice: {seen} and {where} hold the same run "
                             f"(same config and seed); give each run once, e.g. the store alone (--store DIR), "
                             f"not also a folder or copy of its runs")
