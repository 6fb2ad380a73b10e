"""From runs to audits: filters, design split, failed-run accounting and the JSON schema."""

import json
import math

import pandas as pd
import pytest

from cffaudit.paperdata import per_seed_accuracy
from cffaudit.report.analysis import SCHEMA, analyze_runs, apply_where, parse_where
from cffaudit.report.runs import load_runs
from cffaudit.stats import variance_ratio_test

from tests.report.fake_runs import write_store


def _paper_frame():
    return per_seed_accuracy().assign(status="done", run_id=lambda f: [str(i) for i in range(len(f))], source="paper")


def test_designs_are_split_by_dataset_experiment_schedule_and_augmentation():
    analysis = analyze_runs(_paper_frame(), factor="stability", pool=True, n_resamples=200)
    titles = [d.short_title for d in analysis.designs]
    assert len(titles) == 7
    assert "svhn · difficulty_sweep · standard · hard" in titles
    c10 = analysis.designs[0]
    assert c10.stratum["dataset"] == "cifar10" and c10.n_runs == 28
    vr = c10.audit.comparisons[0].variance_ratio
    assert vr.statistic == pytest.approx(1.0170109890 / 0.1723758241, rel=1e-6)
    fm = next(d for d in analysis.designs if d.stratum["dataset"] == "fashion_mnist")
    assert any("does not apply" in n for n in fm.notes)  # empty stability: compared without it
    svhn = next(d for d in analysis.designs if d.stratum.get("augmentation") == "easy")
    assert any("one level" in n for n in svhn.notes)


def test_where_filters_and_validates():
    assert parse_where(["dataset=cifar10", "margin=clamp,subtract", "dataset=svhn"]) == {
        "dataset": ["cifar10", "svhn"], "margin": ["clamp", "subtract"]}
    frame = _paper_frame()
    assert set(apply_where(frame, {"dataset": ["cifar100"]}).dataset) == {"cifar100"}
    # A factor as a sweep spec names it filters its column, like --compare and --factor.
    easy = apply_where(frame, {"augment": ["easy"]})
    assert len(easy) > 0 and set(easy.augmentation) == {"easy"}
    assert apply_where(frame, {"data.dataset": ["svhn"]}).equals(apply_where(frame, {"dataset": ["svhn"]}))
    with pytest.raises(ValueError, match="^where: unknown column 'datset'"):
        apply_where(frame, {"datset": ["cifar10"]})
    with pytest.raises(ValueError, match="^where: expected key=value"):
        parse_where(["dataset"])


@pytest.mark.parametrize(
    "kwargs, param",
    [({"compare": "loss"}, "compare"), ({"factor": "stabilty"}, "factor"), ({"levels": ("clamp", "none")}, "levels")],
)
def test_unknown_factor_or_level_is_an_error(kwargs, param):
    with pytest.raises(ValueError, match=f"^{param}:"):
        analyze_runs(_paper_frame(), n_resamples=10, **kwargs)


def test_failed_runs_are_excluded_and_counted(tmp_path):
    accs = {("clamp", "detach"): [78.5, 77.0, 80.1, 79.0], ("subtract", "detach"): [78.8, 79.3, 78.9, 79.0]}
    frame = load_runs([write_store(tmp_path, accs, failed=3)])
    analysis = analyze_runs(frame, n_resamples=100)
    assert (analysis.runs_total, analysis.runs_done, analysis.runs_failed) == (11, 8, 3)
    assert any("3 failed run(s) excluded" in n for n in analysis.notes)
    c = analysis.designs[0].audit.comparisons[0]
    assert c.a.n == 4 and c.variance_ratio.statistic == pytest.approx(
        variance_ratio_test(accs[("clamp", "detach")], accs[("subtract", "detach")]).statistic)


def test_runs_with_different_configs_are_not_pooled(tmp_path):
    accs = {("clamp", "detach"): [78.5, 77.0, 80.1], ("subtract", "detach"): [78.8, 79.3, 78.9]}
    write_store(tmp_path / "a", accs)
    frame = load_runs([tmp_path / "a"])
    frame2 = frame.assign(**{"cfg.stage1.epochs": 5, "run_id": frame.run_id + "-short"})
    analysis = analyze_runs(pd.concat([frame, frame2], ignore_index=True), n_resamples=50)
    assert len(analysis.designs) == 2
    assert "cfg.stage1.epochs" in analysis.options["design_columns"]


# ----------------------------------------------------------------------------- JSON schema

NUM = (int, float, type(None))
TEST_KEYS = {"statistic": NUM, "pvalue": NUM, "df": list}
GROUP_KEYS = {"label": str, "n": int, "mean": NUM, "sd": NUM, "var": NUM, "sem": NUM}


def _check(obj, spec, where="$"):
    for key, kind in spec.items():
        assert key in obj, f"{where}.{key} missing"
        if isinstance(kind, dict):
            if obj[key] is not None:
                _check(obj[key], kind, f"{where}.{key}")
        else:
            assert isinstance(obj[key], kind), f"{where}.{key}: {type(obj[key]).__name__}"


def test_json_output_schema():
    analysis = analyze_runs(_paper_frame(), factor="stability", n_resamples=100, where={"dataset": ["cifar10"]})
    doc = json.loads(json.dumps(analysis.to_dict(), allow_nan=False))  # strict JSON: no NaN
    _check(doc, {"schema": str, "inputs": dict, "options": dict, "runs": dict, "designs": list, "notes": list})
    assert doc["schema"] == SCHEMA == "cffaudit.analysis/1"
    _check(doc["runs"], {"total": int, "done": int, "failed_excluded": int, "other_status_excluded": int, "filtered_out": int})
    _check(doc["options"], {"compare": str, "levels": list, "factor": str, "pool": bool, "where": dict,
                            "n_resamples": int, "bootstrap_seed": int, "target_se": float, "design_columns": list})
    assert doc["runs"]["filtered_out"] == 109 - 49
    for design in doc["designs"]:
        _check(design, {"stratum": dict, "n_runs": int, "notes": list, "audit": dict})
        audit = design["audit"]
        _check(audit, {"response": str, "compare": str, "levels": list, "cells": list, "comparisons": list,
                       "levene_cells": (dict, type(None)), "brown_forsythe_cells": (dict, type(None)),
                       "factorial_levene": (dict, type(None)), "factorial_brown_forsythe": (dict, type(None)), "seed_budget": list, "bootstrap_seed": int, "notes": list})
        for cell in audit["cells"]:
            _check(cell, GROUP_KEYS)
        for c in audit["comparisons"]:
            _check(c, {"label": str, "a": GROUP_KEYS, "b": GROUP_KEYS,
                       "variance_ratio": {**TEST_KEYS, "confidence_interval": list, "confidence_level": float},
                       "bootstrap": {"statistic": NUM, "confidence_interval": list, "n_resamples": int, "n_infinite": int},
                       "levene": TEST_KEYS, "brown_forsythe": TEST_KEYS,
                       "welch": {"statistic": NUM, "pvalue": NUM, "df": float, "mean_difference": float,
                                 "confidence_interval": list},
                       "power_at_n": {"ratio": float, "power": float}, "seeds_for_power": (int, type(None)),
                       "shapiro_a": {"statistic": NUM, "pvalue": NUM, "n": int}, "shapiro_b": dict})
            assert len(c["variance_ratio"]["confidence_interval"]) == 2
        if audit["factorial_levene"]:
            for t in audit["factorial_levene"]["terms"]:
                _check(t, {"term": str, **TEST_KEYS, "sum_sq": float})
    c10 = doc["designs"][0]["audit"]
    assert [t["term"] for t in c10["factorial_levene"]["terms"]] == ["margin", "stability", "margin:stability"]
    assert not math.isnan(c10["comparisons"][0]["variance_ratio"]["pvalue"])


def test_a_design_mixing_devices_is_noted_and_can_be_filtered(tmp_path):
    accs = {("clamp", "detach"): [78.5, 77.0, 80.1, 79.0], ("subtract", "detach"): [78.8, 79.3, 78.9, 79.0]}
    store = write_store(tmp_path, accs)
    for i, path in enumerate(sorted(store.rglob("result.json"))):
        doc = json.loads(path.read_text())
        gpu = i % 2 == 0
        doc["runtime"] = {"device": "cuda:0" if gpu else "cpu", "precision": "bf16" if gpu else "fp32",
                          "compile": gpu, "step_order": "fused" if gpu else "per_block"}
        path.write_text(json.dumps(doc))
    frame = load_runs([store])
    assert sorted(frame["device"].value_counts().items()) == [("cpu", 4), ("cuda", 4)]
    notes = analyze_runs(frame, n_resamples=50).designs[0].notes
    assert any("device cpu (4 runs), cuda (4 runs)" in n and "--where device=cpu" in n for n in notes)
    assert any("precision bf16 (4 runs), fp32 (4 runs)" in n for n in notes)
    only_gpu = analyze_runs(frame, where=parse_where(["device=cuda"]), n_resamples=50)
    assert only_gpu.runs_done == 4 and not any("mixes" in n for n in only_gpu.designs[0].notes)


def test_runs_without_a_runtime_record_are_not_flagged(tmp_path):
    accs = {("clamp", "detach"): [78.5, 77.0, 80.1], ("subtract", "detach"): [78.8, 79.3, 78.9]}
    frame = load_runs([write_store(tmp_path, accs)])
    assert frame["device"].isna().all()
    assert not any("mixes" in n for n in analyze_runs(frame, n_resamples=50).designs[0].notes)


def test_settings_that_cannot_change_a_result_do_not_split_designs(tmp_path):
    accs = {("clamp", "detach"): [78.5, 77.0, 80.1, 79.0], ("subtract", "detach"): [78.8, 79.3, 78.9, 79.0]}
    store = write_store(tmp_path, accs)
    for i, path in enumerate(sorted(store.rglob("result.json"))):
        doc = json.loads(path.read_text())
        if i % 2:  # written before perf.cpu_allocator existed, or with the other value
            doc["config"]["perf"] = {"cpu_allocator": "system" if i % 4 == 1 else "retain"}
        path.write_text(json.dumps(doc))
    analysis = analyze_runs(load_runs([store]), n_resamples=50)
    assert len(analysis.designs) == 1 and analysis.designs[0].n_runs == 8
