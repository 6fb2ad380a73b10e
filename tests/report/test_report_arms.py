"""A sources design (a spec with arms) analysed per arm: the run table's `arm` column, the
audit skipped when the default comparison does not apply, components per arm."""

import json
from pathlib import Path

import pytest

from cffaudit.atomic import atomic_write_json
from cffaudit.cli import main
from cffaudit.config import PROTOCOL_VERSION
from cffaudit.experiments.spec import ExperimentSpec
from cffaudit.experiments.sweep import run_sweep
from cffaudit.report.runs import load_runs

SOURCES = {
    "name": "sources_like",
    "base": {"data": {"dataset": "synthetic"}, "model": {"embed_dim": 16, "depth": 2, "heads": 2},
             "stage2": {"probe_seeds": 2}, "device": "cpu"},
    "arms": [{"seed_init": [1, 2, 3, 4]}, {"seed_data": [1, 2, 3, 4]},
             {"seed_init": [1, 2, 3], "seed_data": [1, 2, 3]}],
    "seeds": 0,
}


def _level(cfg, source):
    chosen = getattr(cfg.seeds, source)
    return 0 if chosen is None else chosen


def train_sources(cfg, seeds, out_dirs, *, checkpoint, resume=False, progress=False):
    """Results with the sources keys: accuracy from the init and data-order seeds (with an
    interaction), the untrained baseline from the init seed only, two probes per encoder."""
    results = []
    for seed, out in zip(seeds, out_dirs):
        init, data = _level(cfg, "init"), _level(cfg, "data")
        acc = 70.0 + 0.3 * init - 0.2 * data + 0.15 * init * data + 0.01 * ((7 * init + 3 * data) % 5)
        history = [{"stage": 1, "epoch": e, "layers": [
            {"layer": k, "loss": 1.0, "car": 0.6 - 0.1 * k + 0.002 * ((5 * init + 2 * data + e) % 7), "grad_norm": 1.0}
            for k in range(2)]} for e in range(2)]
        cfg_seed = cfg.override({"seed": seed})
        result = {"status": "done", "protocol": PROTOCOL_VERSION, "error": None, "traceback": None,
                  "config": cfg_seed.resolved(), "test_acc": round(acc, 2), "best_val_acc": acc,
                  "untrained_test_acc": 55.0 + 0.1 * init, "probe_test_accs": [round(acc, 2), round(acc + 0.05 * (data - 1), 2)],
                  "history": history, "timing": {}}
        Path(out).mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(out) / "result.json", result)
        results.append(result)
    return results


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("arms")
    path = root / "spec.yaml"
    path.write_text(json.dumps(SOURCES))  # JSON is YAML
    run_sweep(ExperimentSpec.load(path), root / "store", train_fn=train_sources, progress=False, say=lambda s: None)
    return root / "store"


def test_a_cell_is_in_every_arm_whose_factorial_holds_it(tmp_path):
    spec = ExperimentSpec.from_dict({**SOURCES, "arms": [{"seed_init": [None, 1]}, {"seed_data": [None, 2]}]})
    assert spec.arm_names() == ["seed_init", "seed_data"]
    assert spec.arms_of({"seed_init": 1, "seed_data": None}) == ["seed_init"]
    assert spec.arms_of({"seed_init": None, "seed_data": None}) == ["seed_init", "seed_data"]  # the base, in both
    assert spec.arms_of({"seed_init": 1, "seed_data": 2}) == []  # in neither factorial
    assert ExperimentSpec.from_dict({**{k: v for k, v in SOURCES.items() if k != "arms"},
                                     "factors": {"margin": ["clamp"]}}).arms_of({"margin": "clamp"}) == []


def test_the_run_table_names_each_runs_arm(store):
    frame = load_runs([], store=store)
    assert frame["arm"].value_counts().to_dict() == {"seed_init*seed_data": 9, "seed_init": 4, "seed_data": 4}
    held = frame[frame["arm"] == "seed_data"]
    assert set(held["seed_init"]) == {0} and sorted(held["seed_data"]) == [1, 2, 3, 4]


def test_analyze_skips_the_default_audit_and_analyses_each_arm(store, capsys):
    assert main(["analyze", "--store", str(store), "--resamples", "200"]) == 0
    out = capsys.readouterr().out
    assert "Skipped: levels: unknown level(s) ['subtract'] of 'margin'" in out
    assert "--compare arm --levels seed_init,seed_data" in out
    assert "Conditions: arm." in out  # one margin: not a condition column
    gains = out.split("### What stage 1 learned")[1].split("###")[0]
    assert "| seed_init*seed_data | 9 |" in gains and "| seed_data           | 4 |" in gains
    # Only the data order varies in that arm: one untrained baseline, so the gain is a
    # shifted copy of the accuracy and no mechanism is claimed for it.
    assert "stage1_gain = test_acc - a constant here" in out


def test_a_comparison_asked_for_by_name_must_exist(store, capsys):
    assert main(["analyze", "--store", str(store), "--compare", "margin", "--levels", "clamp,subtract"]) == 2
    assert "unknown level(s) ['subtract']" in capsys.readouterr().err


def test_crossed_components_in_the_crossed_arm_and_a_note_for_the_others(store, capsys):
    assert main(["analyze", "--store", str(store), "--resamples", "200", "--decompose", "seed_init*seed_data"]) == 0
    out = capsys.readouterr().out
    comps = out.split("### Variance components")[1].split("### Test-set floor")[0]
    assert "| seed_init*seed_data | seed_init " in comps and "| seed_init*seed_data | seed_data " in comps
    assert "- seed_init: not decomposed (spec: 'seed_data' has one level (0)" in comps
    assert "- seed_data: not decomposed (spec: 'seed_init' has one level (0)" in comps


def test_a_spec_no_arm_identifies_is_refused(store, capsys):
    assert main(["analyze", "--store", str(store), "--decompose", "seed/probe_seed"]) == 2
    err = capsys.readouterr().err
    assert "identifies its components in no condition" in err and "'seed' has one level (0)" in err


def test_two_arms_can_be_compared_by_the_audit(store, capsys):
    assert main(["analyze", "--store", str(store), "--resamples", "200", "--compare", "arm",
                 "--levels", "seed_init*seed_data,seed_init"]) == 0
    out = capsys.readouterr().out
    assert "Compared: arm = seed_init*seed_data vs seed_init" in out
    assert "| seed_init*seed_data vs seed_init | 9 / 4 |" in out


def test_report_of_a_sources_design_decomposes_encoders_by_run(store, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["report", "--store", str(store), "--resamples", "200", "--out", str(out),
                 "--json", str(tmp_path / "a.json")]) == 0
    md = (out / "report.md").read_text()
    assert "variance components: 'run_id/probe_seed' by default" in md  # the seed is held at 0 in every arm
    assert "## Variance audit\n\nSkipped:" in md
    names = {p.name for p in (out / "figures").iterdir()}
    assert {"variance_components_1.png", "probe_spread.png", "car_against_accuracy.png", "layer_profiles.png",
            "per_seed_accuracy.png"} <= names
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["audit_skipped"].startswith("skipped: levels") and doc["sources"]["conditions"] == ["arm"]
