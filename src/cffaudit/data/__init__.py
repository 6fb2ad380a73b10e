"""Datasets as uint8 tensors: readers of the real on-disk formats, splits, synthetic data.

``load_splits(name, ...)`` is the entry point (``read_dataset`` then ``split_dataset``,
to read a dataset once for several split seeds); every user-facing problem raises
:class:`DatasetError` with a message that says what to do. ``sources.py`` is the dataset
registry; neither it nor this file imports torch (the config reads the registry), so the
torch-backed names load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from cffaudit.data.errors import DatasetError
from cffaudit.data.sources import DATASETS, NORMALIZATIONS, SOURCES

_LAZY = {
    **dict.fromkeys(("VAL_FRACTION", "Dataset", "Splits", "check_split_arguments", "default_data_dir",
                     "load_splits", "read_dataset", "split_dataset"), "cffaudit.data.splits"),
    "make_synthetic": "cffaudit.data.synthetic",
}


def __getattr__(name: str) -> Any:
    # PEP 562: the torch-backed names load when first asked for.
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DATASETS", "NORMALIZATIONS", "SOURCES", "VAL_FRACTION", "Dataset", "DatasetError", "Splits",
           "check_split_arguments", "default_data_dir", "load_splits", "make_synthetic", "read_dataset",
           "split_dataset"]
