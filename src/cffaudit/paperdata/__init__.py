"""The seed paper's data, shipped with the package so nothing depends on ../shared.

* `per_seed_test_accuracy.csv`: per-seed test accuracies (%), the paper's appendices.
* `clamp_activation_rate.csv`: CAR (%) by layer, the paper's Tables 7, 11 and 18.
* `reported_values.csv`: the numbers the paper prints, one per row (table, row, column,
  value as printed, note). An empty value marks one the text extraction lost; a value
  such as `<0.05` is a claim the text makes in words.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

_FILES = ("per_seed_test_accuracy.csv", "clamp_activation_rate.csv", "reported_values.csv")


def _read(name: str, **kwargs) -> pd.DataFrame:
    with resources.files(__name__).joinpath(name).open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh, **kwargs)


def per_seed_accuracy() -> pd.DataFrame:
    """The paper's per-seed test accuracies, one row per run.

    Columns: dataset, experiment, margin_schedule, margin, stability (NaN where the
    factor does not apply, Fashion-MNIST), augmentation, seed, test_acc (percent).
    """
    return _read("per_seed_test_accuracy.csv")


def clamp_activation_rate() -> pd.DataFrame:
    """CAR by layer: dataset, margin_schedule, layer, margin, car_percent."""
    return _read("clamp_activation_rate.csv")


def reported_values() -> pd.DataFrame:
    """The values the paper reports: table, row, column, value (text as printed), note."""
    return _read("reported_values.csv", dtype=str, keep_default_na=False)
