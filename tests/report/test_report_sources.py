"""Sources of variance in the run table and `analyze_sources` (no CLI)."""

import json
import math

import numpy as np
import pytest

from cffaudit.report.runs import flatten_result, load_runs
from cffaudit.report.sources import analyze_sources, spec_columns
from tests.report.fake_runs import result_doc
from tests.report.fake_sources import write_sources_runs


def test_flatten_result_reads_sources_columns():
    doc = result_doc("r", "clamp", "detach", 4, 61.0, epochs=3)
    doc.update(untrained_test_acc=55.5, probe_test_accs=[61.0, 60.5])
    doc["config"]["seeds"] = {"init": 9, "data": None}
    row = flatten_result(doc)
    assert row["untrained_test_acc"] == 55.5 and row["stage1_gain"] == pytest.approx(5.5)
    assert row["probe_test_accs"] == [61.0, 60.5]
    assert (row["seed_init"], row["seed_data"], row["seed_augment"], row["seed_split"], row["seed_probe"]) == (9, 4, 4, 4, 4)
    cars = [0.5 + 0.1 * e + 0.1 for e in range(3)]  # fake_runs: layer 0, clamp
    assert row["car_l0_final"] == pytest.approx(cars[-1]) and row["car_l0_mean"] == pytest.approx(np.mean(cars))
    assert row["grad_norm_l0_final"] == pytest.approx(3.0)


def test_old_results_give_nan_sources_columns():
    doc = result_doc("r", "clamp", "detach", 4, 61.0)
    doc["history"] = []
    row = flatten_result(doc)
    assert math.isnan(row["untrained_test_acc"]) and math.isnan(row["stage1_gain"]) and row["probe_test_accs"] is None
    assert all(math.isnan(row[c]) for c in ("car_l0_final", "car_l0_mean", "grad_norm_l0_final"))
    assert row["seed_init"] == 4  # every source was drawn from the run seed


def test_nested_decomposition_per_condition_with_ratio(tmp_path):
    frame = load_runs([write_sources_runs(tmp_path, predictions=False)])
    res = analyze_sources(frame, decompose_specs=["seed/probe_seed"], n_resamples=200)
    assert res.conditions == ("margin",)
    (d,) = res.decompositions
    assert [c.condition for c in d.conditions] == ["clamp", "subtract"]
    assert all(c.n_runs == 18 for c in d.conditions)  # 6 encoders x 3 probes
    assert d.ratios and d.ratios[0].numerator == "clamp"
    text = res.to_markdown()
    assert "## Sources of variance" in text and "design `seed/probe_seed`" in text and "clamp / subtract" in text
    json.dumps(res.to_dict())  # JSON-ready
    assert res.mechanism is not None and {c.predictor for c in res.mechanism.correlations} >= {"car_l0_final", "stage1_gain"}


def test_crossed_decomposition_of_seed_columns(tmp_path):
    frame = load_runs([write_sources_runs(tmp_path, crossed=True, probes=2, predictions=False)])
    (d,) = analyze_sources(frame, decompose_specs=["seed_init*seed_data"], n_resamples=200).decompositions
    assert d.kind == "crossed" and {c.n_levels_a for c in d.conditions} == {3}


def test_spec_columns_split_both_forms():
    assert spec_columns(" seed / probe_seed ") == ["seed", "probe_seed"]
    assert spec_columns("seed_init*seed_data") == ["seed_init", "seed_data"]


@pytest.mark.parametrize("spec, message", [
    ("seed/probe_sed", "probe_sed"),
    ("dataset/seed", "has one level"),
])
def test_bad_specs_raise_clear_errors(tmp_path, spec, message):
    frame = load_runs([write_sources_runs(tmp_path, predictions=False)])
    with pytest.raises(ValueError, match=message):
        analyze_sources(frame, decompose_specs=[spec], n_resamples=50)


def test_without_predictions_the_floor_is_skipped_with_a_note(tmp_path):
    frame = load_runs([write_sources_runs(tmp_path, predictions=False)])
    res = analyze_sources(frame, n_resamples=50)
    assert not res.floors and any("test-set floor: skipped" in n for n in res.notes)


def test_floor_per_condition_from_predictions(tmp_path):
    pytest.importorskip("cffaudit.predictions")
    frame = load_runs([write_sources_runs(tmp_path)])
    res = analyze_sources(frame, n_resamples=200)
    assert [f.label for f in res.floors] == ["clamp", "subtract"]
    clamp = [np.load(p)["probes"][0] == np.load(p)["labels"] for p in sorted(tmp_path.glob("runs/clamp-*/predictions.npz"))]
    accs = 100 * np.mean(clamp, axis=1)
    assert res.floors[0].n_runs == 6 and res.floors[0].observed.estimate == pytest.approx(np.var(accs, ddof=1))
    assert "test-set floor" in res.to_markdown()


def test_floor_refuses_runs_on_other_labels(tmp_path):
    pytest.importorskip("cffaudit.predictions")
    write_sources_runs(tmp_path / "a", seeds=3)
    write_sources_runs(tmp_path / "b", seeds=3, label_seed=1)
    for folder in (tmp_path / "b" / "runs").iterdir():  # distinct run ids
        folder.rename(folder.with_name(folder.name + "-b"))
    frame = load_runs([tmp_path / "a", tmp_path / "b"])
    frame["run_id"] = frame["source"]
    with pytest.raises(ValueError, match="other labels"):
        analyze_sources(frame, n_resamples=50)


def test_per_source_seeds_do_not_split_designs(tmp_path):
    from cffaudit.report.runs import design_config_columns

    frame = load_runs([write_sources_runs(tmp_path, crossed=True, probes=1, predictions=False)])
    assert frame["seed_init"].nunique() == 3 and not [c for c in design_config_columns(frame) if "seeds" in c]


def test_a_source_seed_path_names_its_column():
    from cffaudit.report.runs import column_of

    assert column_of("seeds.init") == "seed_init" and column_of("seed_data") == "seed_data"


def test_levels_given_as_text_match_a_numeric_compare_column(tmp_path):
    frame = load_runs([write_sources_runs(tmp_path, predictions=False)])
    frame["margin"] = frame["margin"].map({"clamp": 1, "subtract": 2})
    (d,) = analyze_sources(frame, decompose_specs=["seed/probe_seed"], levels=("1", "2"), n_resamples=50).decompositions
    assert d.ratios and (d.ratios[0].numerator, d.ratios[0].denominator) == ("1", "2")


def test_stage1_gain_per_condition_equals_the_runs_and_warns_when_weak(tmp_path):
    frame = load_runs([write_sources_runs(tmp_path, predictions=False)])
    res = analyze_sources(frame, n_resamples=50)
    done = frame[frame["status"] == "done"]
    text = res.to_markdown()
    assert "### What stage 1 learned" in text
    (row_clamp, row_subtract) = res.to_dict()["stage1_gains"]
    for row in (row_clamp, row_subtract):
        runs = done[done["margin"] == row["condition"]]
        gain = runs["test_acc"] - runs["untrained_test_acc"]
        assert row["n"] == len(runs)
        assert row["gain min"] == pytest.approx(gain.min()) and row["gain max"] == pytest.approx(gain.max())
        assert row["untrained"] == pytest.approx(runs["untrained_test_acc"].mean())
    weak = float(min(r["gain min"] for r in (row_clamp, row_subtract)))
    assert ("Warning: a run gained only" in text) == (weak < 10.0)
    # The same runs with their baseline 30 points lower: every gain is large, no warning.
    stronger = frame.assign(untrained_test_acc=frame["untrained_test_acc"] - 30.0,
                            stage1_gain=frame["stage1_gain"] + 30.0)
    assert "Warning: a run gained only" not in analyze_sources(stronger, n_resamples=50).to_markdown()
    # ...and with a baseline that leaves one run 5 points of gain, the warning names it.
    gain = frame["test_acc"] - frame["untrained_test_acc"]
    shift = float(gain.max()) - 5.0
    weaker = frame.assign(untrained_test_acc=frame["untrained_test_acc"] + shift, stage1_gain=gain - shift)
    weaker_text = analyze_sources(weaker, n_resamples=50).to_markdown()
    assert "Warning: a run gained only" in weaker_text and "below 10 points" in weaker_text


def test_without_baselines_there_is_no_stage1_gain_section(tmp_path):
    frame = load_runs([write_sources_runs(tmp_path, predictions=False)])
    res = analyze_sources(frame.assign(stage1_gain=math.nan, untrained_test_acc=math.nan), n_resamples=50)
    assert "What stage 1 learned" not in res.to_markdown() and res.to_dict()["stage1_gains"] == []


def test_a_gain_without_its_baseline_column_gives_the_baseline_as_test_minus_gain(tmp_path):
    frame = load_runs([write_sources_runs(tmp_path, predictions=False)]).drop(columns=["untrained_test_acc"])
    rows = analyze_sources(frame, n_resamples=50).to_dict()["stage1_gains"]
    done = frame[frame["status"] == "done"]
    for row in rows:
        runs = done[done["margin"] == row["condition"]]
        assert row["untrained"] == pytest.approx((runs["test_acc"] - runs["stage1_gain"]).mean())
