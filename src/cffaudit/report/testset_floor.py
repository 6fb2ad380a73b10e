"""The test-set floor of `analyze` and `report`: per condition, the runs' per-example
predictions (`predictions.npz` beside each result.json, read by `cffaudit.predictions`)
turned into `stats.sampling_floor`.

The reader is imported lazily: a cffaudit without it, or runs without the files (trained
before they were written, tidy CSVs), skip the floor with a note rather than fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from cffaudit.stats import SamplingFloor, correctness, sampling_floor

#: The file a run writes beside its result.json (`cffaudit.predictions.PREDICTIONS_NAME`).
PREDICTIONS_FILE = "predictions.npz"

#: Fewest runs with predictions a condition's floor is computed from (`sampling_floor`'s minimum).
FLOOR_RUNS_NEEDED = 3


def _reader():
    """`cffaudit.predictions.read_predictions`, or None when this cffaudit has no reader."""
    try:
        from cffaudit.predictions import read_predictions
    except ImportError:
        return None
    return read_predictions


def _run_folder(source) -> Optional[Path]:
    """The folder of a run read from a result.json (None for a CSV row)."""
    if not isinstance(source, str) or not source or source.lower().endswith(".csv"):
        return None
    return Path(source).parent


def condition_correctness(runs: pd.DataFrame, label: str, read) -> tuple[Optional[np.ndarray], list[str]]:
    """(runs, N) correctness of probe 0 (the probe of `test_acc`) of the runs of one
    condition that have predictions, and notes on those that do not.

    Raises:
        ValueError: If a predictions file is damaged, or the runs' label checksums differ
            (they were tested on different test sets or orders).
    """
    folders = [(rid, _run_folder(src)) for rid, src in zip(runs["run_id"], runs["source"])]
    found = [(rid, f) for rid, f in folders if f is not None and (f / PREDICTIONS_FILE).is_file()]
    name = label or "all runs"
    notes = []
    if len(found) < len(folders):
        notes.append(f"{name}: {len(folders) - len(found)} of {len(folders)} run(s) have no {PREDICTIONS_FILE} "
                     f"beside their result.json; the floor uses the other {len(found)}")
    if len(found) < FLOOR_RUNS_NEEDED:
        notes.append(f"{name}: test-set floor skipped, {len(found)} run(s) with predictions (needs {FLOOR_RUNS_NEEDED})")
        return None, notes
    preds = [(rid, read(f)) for rid, f in found]
    first_id, first = preds[0]
    for rid, p in preds[1:]:
        if p.labels_sha256 != first.labels_sha256:
            raise ValueError(f"test-set floor: in {name}, run {rid} was tested on other labels than run {first_id} "
                             f"(the label checksums of their {PREDICTIONS_FILE} differ); its runs used different test "
                             f"sets or orders: analyse them separately (--where)")
    probes = np.stack([np.atleast_2d(p.probes)[0] for _, p in preds])  # (runs, N): probe 0 gives test_acc
    return correctness(probes, first.labels), notes


def testset_floors(groups: Sequence[tuple[str, pd.DataFrame]], *, n_resamples: int, seed: int
                   ) -> tuple[list[SamplingFloor], list[str]]:
    """The sampling floor of each condition whose runs have predictions, and notes.

    Args:
        groups: (condition label, its finished runs with `run_id` and `source`).
        n_resamples: Bootstrap resamples over runs.
        seed: Analysis seed.

    Raises:
        ValueError: As `condition_correctness`.
    """
    read = _reader()
    if read is None:
        return [], ["test-set floor: skipped; this cffaudit has no reader of per-example predictions "
                    "(module cffaudit.predictions); update cffaudit to a version whose runs write predictions.npz"]
    if not any((f := _run_folder(s)) is not None and (f / PREDICTIONS_FILE).is_file()
               for _, runs in groups for s in runs["source"]):
        return [], [f"test-set floor: skipped; no run has a {PREDICTIONS_FILE} beside its result.json (tidy CSVs "
                    f"and runs trained before predictions were recorded have none)"]
    floors = []
    notes = ["test-set floor: from each run's first probe, the one whose accuracy is test_acc"]
    for label, runs in groups:
        correct, why = condition_correctness(runs, label, read)
        notes += why
        if correct is not None:
            floors.append(sampling_floor(correct, label=label, n_resamples=max(int(n_resamples), 2), seed=seed))
    return floors, notes
