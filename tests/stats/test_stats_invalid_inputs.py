"""Every test rejects the inputs it cannot qualify, naming the parameter."""

import math
import subprocess
import sys

import numpy as np
import pytest

from cffaudit.stats import (
    bootstrap_variance_ratio,
    describe,
    levene_test,
    shapiro_wilk,
    variance_ratio_test,
    welch_test,
)
from cffaudit.stats.variance import _percentile

GOOD = [1.0, 2.0, 4.0]


def _two_sample_calls():
    return {
        "variance_ratio": lambda a, b: variance_ratio_test(a, b),
        "bootstrap": lambda a, b: bootstrap_variance_ratio(a, b, n_resamples=50, rng=0),
        "welch": lambda a, b: welch_test(a, b),
        "levene": lambda a, b: levene_test(a, b),
    }


@pytest.mark.parametrize("name", list(_two_sample_calls()))
@pytest.mark.parametrize(
    "bad, message",
    [([1.0], "at least 2"), ([1.0, float("nan"), 2.0], "NaN"), ([1.0, math.inf], "NaN or infinite"), ([[1.0, 2.0]], "1-D")],
    ids=["one-value", "nan", "inf", "2-d"],
)
def test_two_sample_tests_reject_bad_samples_naming_them(name, bad, message):
    call = _two_sample_calls()[name]
    first = "groups[0]" if name == "levene" else "a"
    second = "groups[1]" if name == "levene" else "b"
    with pytest.raises(ValueError, match=rf"^{first.replace('[', '.').replace(']', '.')}: .*{message}"):
        call(bad, GOOD)
    with pytest.raises(ValueError, match=rf"^{second.replace('[', '.').replace(']', '.')}: .*{message}"):
        call(GOOD, bad)


@pytest.mark.parametrize("call", [variance_ratio_test, lambda a, b: bootstrap_variance_ratio(a, b, rng=0)])
def test_variance_ratio_rejects_a_constant_group(call):
    with pytest.raises(ValueError, match="^b: all 3 values are equal"):
        call(GOOD, [5.0, 5.0, 5.0])
    with pytest.raises(ValueError, match="^a: all 2 values are equal"):
        call([5.0, 5.0], GOOD)


def test_shapiro_and_describe_validation():
    with pytest.raises(ValueError, match="^values: needs at least 3"):
        shapiro_wilk([1.0, 2.0])
    with pytest.raises(ValueError, match="^values: all 4 values are equal"):
        shapiro_wilk([3.0] * 4)
    with pytest.raises(ValueError, match="^values: .*NaN"):
        describe([1.0, float("nan")])
    with pytest.raises(ValueError, match="^values: expected numbers"):
        describe(["a", "b"])


@pytest.mark.parametrize(
    "kwargs, param",
    [({"alternative": "two_sided"}, "alternative"), ({"confidence_level": 1.0}, "confidence_level"),
     ({"confidence_level": 95}, "confidence_level")],
)
def test_option_validation(kwargs, param):
    with pytest.raises(ValueError, match=f"^{param}:"):
        variance_ratio_test(GOOD, [1.0, 5.0], **kwargs)
    with pytest.raises(ValueError, match=f"^{param}:"):
        welch_test(GOOD, [1.0, 5.0], **kwargs)


def test_percentile_helper_matches_numpy_on_finite_values_and_keeps_inf():
    v = np.random.default_rng(0).normal(size=101)
    for q in (0.0, 0.025, 0.5, 0.975, 1.0):
        assert _percentile(v, q) == pytest.approx(np.percentile(v, 100 * q))
    assert _percentile(np.array([1.0, 2.0, math.inf]), 0.9) == math.inf
    assert _percentile(np.array([1.0, 2.0, math.inf]), 0.5) == 2.0


def test_importing_stats_does_not_import_torch_ray_or_matplotlib():
    # A fresh interpreter, so that modules imported by other tests do not mask an import.
    code = (
        "import sys, cffaudit.stats, cffaudit.stats.audit\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'ray', 'matplotlib'))\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
