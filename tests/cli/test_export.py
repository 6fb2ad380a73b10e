"""`cffaudit export`: the tidy table of a store; analysing its CSV gives the store's audit."""

import json
import zlib
from pathlib import Path

import pandas as pd
import pytest

from cffaudit.cli import main
from cffaudit.experiments.spec import ExperimentSpec
from cffaudit.experiments.sweep import run_sweep
from tests.experiments.fakes import fake_train_seeds

SPEC = {
    "name": "export_like",
    "base": {"data": {"dataset": "synthetic"}, "model": {"embed_dim": 16, "depth": 2, "heads": 2}, "device": "cpu"},
    "factors": {"margin": ["clamp", "subtract"], "stability": ["detach", "direct"]},
    "seeds": "1-4",
}
STREAMS = ("init", "split", "data")


def train_with_diagnostics(cfg, seeds, out_dirs, *, checkpoint, resume=False, progress=False):
    """The sweep fake, with what a real result holds beyond the accuracy: stream seeds, an
    untrained baseline, a stage-1 history; accuracies spread per seed and condition."""
    results = fake_train_seeds(cfg, seeds, out_dirs, checkpoint=checkpoint, resume=resume)
    for seed, out, res in zip(seeds, out_dirs, results):
        noise = zlib.crc32(f"{cfg.loss.margin}{cfg.loss.stability}{seed}".encode()) % 1000 / 250
        res["test_acc"] += noise * (2 if cfg.loss.margin == "clamp" else 1)
        res["untrained_test_acc"] = 40.0 + seed / 8
        res["seeds"] = {"run": seed, **{s: seed * 1000 + i for i, s in enumerate(STREAMS)}}
        res["history"] = [{"stage": 1, "epoch": e, "layers": [{"layer": k, "loss": 4.0, "car": 0.5 + 0.1 * e - 0.1 * k,
                                                                "grad_norm": 1.0 + k + e} for k in range(2)]}
                          for e in range(2)]
        (Path(out) / "result.json").write_text(json.dumps(res))
    return results


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(SPEC))
    store = tmp_path / "store"
    run_sweep(ExperimentSpec.load(path), store, train_fn=train_with_diagnostics, progress=False, say=lambda s: None)
    return store


def _audit(path):
    audit = json.loads(path.read_text())
    del audit["inputs"]  # where the runs were read from: the only difference allowed
    return audit


def test_export_writes_one_row_per_run_with_seeds_gain_and_layers(store, tmp_path, capsys):
    out = tmp_path / "runs.csv"
    assert main(["export", "--store", str(store), "--csv", str(out)]) == 0
    assert "16 run(s)" in capsys.readouterr().err
    frame = pd.read_csv(out)
    assert len(frame) == 16 and frame["run_id"].is_unique
    assert list(frame.columns[:10]) == ["run_id", "status", "experiment", "dataset", "margin_schedule", "margin",
                                        "stability", "augmentation", "locality", "seed"]
    for col in ("seed_init", "seed_split", "seed_data", "stream_init", "stream_split", "stream_data", "untrained_test_acc", "stage1_gain",
                "car_l0", "car_l1", "grad_norm_l0", "grad_norm_l1"):
        assert col in frame.columns, col
    row = frame.iloc[0]
    assert row["seed_init"] == row["seed"]  # drawn from the run seed (no seeds.init override)
    assert row["stream_init"] == row["seed"] * 1000  # the generator's derived seed, as result.json records it
    assert row["stage1_gain"] == pytest.approx(row["test_acc"] - row["untrained_test_acc"])
    assert row["car_l1"] == pytest.approx(0.5) and row["grad_norm_l1"] == pytest.approx(3.0)  # final epoch


def test_analyze_of_the_export_is_the_audit_of_the_store(store, tmp_path, capsys):
    csv = tmp_path / "runs.csv"
    assert main(["export", "--store", str(store), "--csv", str(csv)]) == 0
    flags = ["--resamples", "200", "--pool"]
    assert main(["analyze", "--store", str(store), *flags, "--json", str(tmp_path / "store.json")]) == 0
    # --store takes the second factor from the spec; a CSV has no spec, so it is named.
    assert main(["analyze", str(csv), *flags, "--factor", "stability", "--json", str(tmp_path / "csv.json")]) == 0
    from_store, from_csv = _audit(tmp_path / "store.json"), _audit(tmp_path / "csv.json")
    assert from_store["runs"]["done"] == 16 and from_store["designs"]
    assert from_csv == from_store


def test_export_to_standard_output_and_of_result_folders(store, capsys):
    assert main(["export", str(store / "runs")]) == 0
    text = capsys.readouterr().out
    assert text.startswith("run_id,status,") and len(text.strip().splitlines()) == 17


@pytest.mark.parametrize("argv, message", [
    (["export"], "give a --store DIR, or INPUTs"),
    (["export", "/nonexistent/runs"], "/nonexistent/runs: no such file or directory"),
])
def test_export_errors_are_one_line_with_status_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("cffaudit export: error:") and message in err and len(err.strip().splitlines()) == 1
