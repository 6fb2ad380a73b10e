"""Datasets as uint8 tensors: readers of the real on-disk formats, splits, synthetic data.

``load_splits(name, ...)`` is the entry point; every user-facing problem raises
:class:`DatasetError` with a message that says what to do.
"""

from cffaudit.data.errors import DatasetError
from cffaudit.data.splits import DATASETS, VAL_FRACTION, Splits, default_data_dir, load_splits
from cffaudit.data.synthetic import make_synthetic

__all__ = ["DATASETS", "VAL_FRACTION", "DatasetError", "Splits", "default_data_dir", "load_splits", "make_synthetic"]
