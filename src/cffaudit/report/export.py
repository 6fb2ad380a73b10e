"""The tidy run table: one row per run, as `cffaudit export` writes it to CSV.

The rows are exactly those `cffaudit analyze` audits (`report.runs.load_runs`: the
same inputs, the same de-duplication, a store's runs labelled with the spec cell they
were run for), so `cffaudit analyze` of the exported CSV gives the audit of its inputs.
Added to them, from each run's result.json: the seed of every random stream
(`seed_<stream>`), the untrained baseline and the stage-1 gain when the run recorded
one. Numbers are written as stored, at full precision, so nothing changes on the way
back in.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd

from cffaudit.atomic import atomic_write_text
from cffaudit.report.runs import FACTOR_COLUMN_PATHS, PathLike, RunLoadError, load_runs

#: Leading columns, in this order; the rest follow grouped (see `_ordered`).
_FIRST = ("run_id", "status", "experiment", *FACTOR_COLUMN_PATHS, "seed")
_ACCURACIES = ("test_acc", "best_val_acc", "untrained_test_acc", "untrained_val_acc", "stage1_gain")


def export_runs(paths: Sequence[PathLike], store: Optional[PathLike] = None) -> pd.DataFrame:
    """The tidy table of the runs in `paths` (CSV, result.json files, folders) and `store`.

    Columns: run id, status, experiment, the factor columns (dataset, margin schedule,
    margin, stability, augmentation), seed, `seed_<source>` (the seed each source of
    randomness was drawn from) and `stream_<name>` (each generator's derived seed),
    test / best-validation accuracy, `untrained_test_acc`, `untrained_val_acc` and
    `stage1_gain` (test_acc - untrained_test_acc) where recorded, final-epoch
    `car_l<k>` and `grad_norm_l<k>` per layer, device, precision, every config setting
    that can split designs (`cfg.<key>`), error and source.

    Raises:
        RunLoadError: as `load_runs` (missing input, unreadable file, no runs).
    """
    frame = load_runs(paths, store=store)
    extra = [_result_extras(source) for source in frame["source"]]
    names = list(dict.fromkeys(k for e in extra for k in e))  # in the order results list them
    for name in names:
        if name not in frame.columns:  # a loaded column (from a CSV input) is kept as it is
            frame[name] = [e.get(name, math.nan) for e in extra]
    if "stage1_gain" not in frame.columns and "untrained_test_acc" in frame.columns:
        frame["stage1_gain"] = pd.to_numeric(frame["test_acc"], errors="coerce") - pd.to_numeric(
            frame["untrained_test_acc"], errors="coerce")
    return frame[_ordered(frame.columns)]


def write_csv(frame: pd.DataFrame, path: PathLike | None) -> Optional[str]:
    """Write `frame` as CSV to `path`, or return the CSV text when `path` is None."""
    if path is None:
        return frame.to_csv(index=False)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, frame.to_csv(index=False))
    return None


def _result_extras(source: Any) -> dict[str, Any]:
    """Stream seeds and baseline accuracies of the result.json at `source` (nothing for a
    CSV row, whose source is the CSV)."""
    path = Path(str(source))
    if path.suffix.lower() != ".json" or not path.is_file():
        return {}
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:  # load_runs has just read it
        raise RunLoadError(f"{path}: cannot read JSON ({exc})") from None
    out: dict[str, Any] = {}
    seeds = result.get("seeds") if isinstance(result.get("seeds"), dict) else {}
    # The derived seed of every generator, as `stream_<name>`: the run table's `seed_<source>`
    # columns name the seed a source was drawn from (the run seed or its override), which
    # is what designs vary; these are the numbers the generators were seeded with.
    for stream, value in seeds.items():
        if stream != "run":  # the run seed is the `seed` column
            out[f"stream_{stream}"] = value
    for key in ("untrained_test_acc", "untrained_val_acc"):
        if isinstance(result.get(key), (int, float)):
            out[key] = float(result[key])
    return out


def _layer_key(column: str) -> tuple[str, int]:
    name, _, layer = column.rpartition("_l")
    return name, int(layer) if layer.isdigit() else -1


def _ordered(columns) -> list[str]:
    """Identity and factors, stream seeds, accuracies, per-layer diagnostics by layer,
    runtime, config settings, then error and source."""
    cols = list(columns)
    first = [c for c in _FIRST if c in cols]
    seeds = [c for c in cols if c.startswith(("seed_", "stream_"))]
    accs = [c for c in _ACCURACIES if c in cols]
    layers = sorted((c for c in cols if c.startswith(("car_l", "grad_norm_l"))), key=_layer_key)
    runtime = [c for c in ("device", "precision") if c in cols]
    config = sorted(c for c in cols if c.startswith("cfg."))
    last = [c for c in ("error", "source") if c in cols]
    placed = set(first + seeds + accs + layers + runtime + config + last)
    others = [c for c in cols if c not in placed]
    return first + seeds + accs + layers + runtime + others + config + last
