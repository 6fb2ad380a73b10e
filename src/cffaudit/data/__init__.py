"""Datasets as uint8 tensors: readers of the real on-disk formats, splits, synthetic data.

``load_splits(name, ...)`` is the entry point (``read_dataset`` then ``split_dataset``,
to read a dataset once for several split seeds); every user-facing problem raises
:class:`DatasetError` with a message that says what to do.
"""

from cffaudit.data.errors import DatasetError
from cffaudit.data.splits import (
    DATASETS,
    VAL_FRACTION,
    Dataset,
    Splits,
    check_split_arguments,
    default_data_dir,
    load_splits,
    read_dataset,
    split_dataset,
)
from cffaudit.data.synthetic import make_synthetic

__all__ = ["DATASETS", "VAL_FRACTION", "Dataset", "DatasetError", "Splits", "check_split_arguments",
           "default_data_dir", "load_splits", "make_synthetic", "read_dataset", "split_dataset"]
