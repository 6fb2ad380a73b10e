"""Input checks: every kind of bad table is refused with a message naming rows and files."""

import pandas as pd
import pytest

from cffaudit.stats.checks import RunTableError, check_runs
from cffaudit.stats._validate import plain

import numpy as np


def _runs(**overrides):
    rows = [
        {"margin": m, "seed": s, "test_acc": 78.0 + 0.1 * s + (0.5 if m == "clamp" else 0.0), "source": f"{m}.csv"}
        for m in ("clamp", "subtract")
        for s in range(1, 6)
    ]
    frame = pd.DataFrame(rows)
    for col, value in overrides.items():
        frame[col] = value
    return frame


def test_a_clean_table_passes_and_counts_each_group():
    res = check_runs(_runs())
    assert [(g.label, g.n, g.skipped) for g in res.groups] == [("clamp", 5, False), ("subtract", 5, False)]
    assert res.skipped == () and res.n_runs == 10


def test_duplicate_runs_are_refused_naming_the_run_and_its_files():
    frame = pd.concat([_runs(), _runs().iloc[[0, 0, 6]].assign(source="copy.csv")], ignore_index=True)
    with pytest.raises(RunTableError) as err:
        check_runs(frame)
    msg = str(err.value)
    assert msg.startswith("runs: 2 run(s) appear more than once")
    assert "margin=clamp, seed=1 (clamp.csv row 0, copy.csv row 10, copy.csv row 11)" in msg
    assert "margin=subtract, seed=2" in msg and "np." not in msg


def test_same_seed_with_a_different_probe_or_stream_seed_is_not_a_duplicate():
    frame = pd.concat([_runs().assign(probe=0), _runs().assign(probe=1)], ignore_index=True)
    assert check_runs(frame, probe="probe").n_runs == 20
    with pytest.raises(RunTableError, match="^runs:"):
        check_runs(frame)  # without the probe column the two probes look like copies
    streams = pd.concat([_runs().assign(data_seed=0), _runs().assign(data_seed=1)], ignore_index=True)
    assert check_runs(streams, seeds=("seed", "data_seed")).groups[0].n == 10


@pytest.mark.parametrize("bad", [170.0, -3.0])
def test_accuracies_outside_0_100_are_refused_with_plain_numbers(bad):
    frame = _runs()
    frame.loc[3, "test_acc"] = np.float64(bad)
    with pytest.raises(RunTableError) as err:
        check_runs(frame)
    assert f"clamp.csv row 3: {bad}" in str(err.value) and "outside 0.0-100.0 percent" in str(err.value)
    assert "np.float64" not in str(err.value)


def test_fractions_are_detected_per_file_with_the_advice_to_scale():
    frame = _runs()
    frame.loc[frame.margin == "subtract", "test_acc"] /= 100.0
    with pytest.raises(RunTableError, match=r"every accuracy in subtract.csv lies in 0-1 .*multiply by 100"):
        check_runs(frame)
    with pytest.raises(RunTableError, match="in the table lies in 0-1"):
        check_runs(_runs().drop(columns="source").assign(test_acc=0.78))


def test_text_and_missing_accuracies_name_row_column_and_file():
    frame = _runs()
    frame["test_acc"] = frame["test_acc"].astype(object)
    frame.loc[4, "test_acc"] = "abc"
    with pytest.raises(RunTableError, match=r"^test_acc: 1 value\(s\) are not numbers \(clamp.csv row 4: 'abc'\)"):
        check_runs(frame)
    frame.loc[4, "test_acc"] = None
    with pytest.raises(RunTableError, match=r"^test_acc: 1 run\(s\) have no value \(clamp.csv row 4\)"):
        check_runs(frame)


def test_a_group_with_one_run_is_kept_with_its_n_and_the_reason():
    frame = pd.concat([_runs(), pd.DataFrame([{"margin": "none", "seed": 1, "test_acc": 70.0, "source": "x"}])],
                      ignore_index=True)
    res = check_runs(frame)
    (g,) = res.skipped
    assert (g.label, g.n) == ("none", 1) and g.reason == "1 run(s); a test of spread needs at least 2"


def test_missing_columns_and_empty_conditions_are_refused():
    with pytest.raises(RunTableError, match=r"^frame: no column\(s\) \['stability'\]"):
        check_runs(_runs(), conditions=("margin", "stability"))
    with pytest.raises(RunTableError, match="^conditions:"):
        check_runs(_runs(), conditions=())


def test_plain_turns_numpy_scalars_into_python_numbers():
    assert repr(plain(np.float64(78.3))) == "78.3" and repr(plain(np.int64(5))) == "5"
    assert plain("clamp") == "clamp"


def test_argument_errors_print_plain_numbers():
    from cffaudit.stats import power_at_ratio, seeds_for_power, variance_ratio_test

    for call in (lambda: variance_ratio_test([1.0, 2.0], [1.0, 3.0], confidence_level=np.float64(1.5)),
                 lambda: seeds_for_power(np.float64(-2.0)),
                 lambda: power_at_ratio(np.float64(-2.0), 5)):
        with pytest.raises(ValueError) as err:
            call()
        assert "np.float64" not in str(err.value) and ("1.5" in str(err.value) or "-2.0" in str(err.value))
