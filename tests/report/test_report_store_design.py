"""A sweep store analysed by the spec's cells, not by its canonical run configs."""

import json

from cffaudit.cli import main
from cffaudit.experiments.spec import ExperimentSpec
from cffaudit.experiments.sweep import run_sweep
from cffaudit.report.runs import load_runs
from tests.experiments.fakes import fake_train_seeds

DOSE = {
    "name": "dose_like",
    "base": {"data": {"dataset": "synthetic"}, "model": {"embed_dim": 16, "depth": 2, "heads": 2},
             "loss": {"margin_schedule": "low"}, "device": "cpu"},
    "factors": {"margin": ["clamp", "subtract"], "stability": ["detach", "direct"]},
    "exclude": [{"margin": "subtract", "stability": "direct"}],
    "seeds": "1-4",
}


def _store(tmp_path, spec_dict):
    path = tmp_path / f"{spec_dict['name']}.yaml"
    path.write_text(json.dumps(spec_dict))  # JSON is YAML
    spec = ExperimentSpec.load(path)
    store = tmp_path / "store"
    run_sweep(spec, store, train_fn=fake_train_seeds, progress=False, say=lambda s: None)
    return store


def test_gradient_neutral_runs_are_analysed_in_the_cell_they_were_run_for(tmp_path, capsys):
    store = _store(tmp_path, DOSE)
    frame = load_runs([], store=store)
    # The subtract runs are stored canonically (standard schedule) but belong to this
    # spec's low-schedule design, next to the clamp runs.
    assert set(frame["margin_schedule"]) == {"low"}
    assert sorted(frame.groupby("margin").size().to_dict().items()) == [("clamp", 8), ("subtract", 4)]
    assert set(frame["experiment"]) == {"dose_like"}
    rc = main(["analyze", "--store", str(store), "--pool", "--json", str(tmp_path / "a.json")])
    assert rc == 0
    out = capsys.readouterr()
    assert "factor from the store's spec: stability" in out.err
    audit = json.loads((tmp_path / "a.json").read_text())
    assert len(audit["designs"]) == 1


def test_spec_factor_names_are_accepted_by_analysis(tmp_path):
    spec = {"name": "aug", "base": {"data": {"dataset": "synthetic"}, "model": {"embed_dim": 16, "depth": 2,
            "heads": 2}, "device": "cpu"}, "factors": {"augment": ["cifar", "none"], "margin": ["clamp", "subtract"]},
            "seeds": "1-3"}
    store = _store(tmp_path, spec)
    assert main(["analyze", "--store", str(store), "--factor", "augment"]) == 0
