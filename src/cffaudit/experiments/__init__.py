"""Experiments: specs expanded into runs with stable ids, a resumable run store, and
executors (local or Ray) that train the runs a store does not have yet.

`cffaudit sweep` is the command; `load_store_results` and `store_factors` are what
analysis reads. Nothing here imports torch or ray at import time.
"""

from cffaudit.experiments.identity import canonical_config, run_id
from cffaudit.experiments.spec import ExperimentSpec, SpecError
from cffaudit.experiments.store import RunStore, StoreError, load_store_results, store_factors

__all__ = [
    "ExperimentSpec",
    "RunStore",
    "SpecError",
    "StoreError",
    "canonical_config",
    "load_store_results",
    "run_id",
    "store_factors",
]
