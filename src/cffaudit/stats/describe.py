"""Per-group descriptive statistics."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cffaudit.stats._validate import as_sample
from cffaudit.stats.results import GroupSummary


def describe(values: Any, label: str = "") -> GroupSummary:
    """n, mean, standard deviation, sample variance (ddof 1) and standard error of the mean.

    A constant group is accepted here (its variance is a true zero, not an error); the
    tests that divide by a variance reject it themselves.

    Args:
        values: The per-seed values of one group.
        label: A name for the group, carried into tables and JSON.

    Raises:
        ValueError: If `values` has fewer than 2 values or holds NaN.
    """
    x = as_sample(values, "values", min_n=2, allow_constant=True)
    var = float(np.var(x, ddof=1))
    sd = math.sqrt(var)
    return GroupSummary(label=label, n=int(x.size), mean=float(np.mean(x)), sd=sd, var=var, sem=sd / math.sqrt(x.size))
