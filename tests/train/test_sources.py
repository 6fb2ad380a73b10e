"""The untrained baseline, several probes per encoder, per-example predictions and
per-source seeds: each adds a measurement without changing what a run trains."""

import json
import subprocess
import sys

import numpy as np
import pytest

from cffaudit.predictions import PREDICTIONS_NAME, read_predictions, write_predictions
from cffaudit.train.run import train_run, train_seeds

from .test_run import metrics


def test_untrained_baseline_is_recorded_without_changing_the_trained_run(tmp_path, tiny_config):
    cached = tiny_config.override({"stage2.probe_augment": "none"})
    on = train_run(cached, tmp_path / "on")  # auto: on with cached features
    off = train_run(cached.override({"stage2.untrained_baseline": "off"}), tmp_path / "off")
    assert metrics(on) == metrics(off)  # bit-identical: the baseline draws from its own streams
    assert 0.0 <= on["untrained_test_acc"] <= 100.0 and 0.0 <= on["untrained_val_acc"] <= 100.0
    assert off["untrained_test_acc"] is None and off["untrained_val_acc"] is None
    assert read_predictions(tmp_path / "on").untrained is not None
    assert read_predictions(tmp_path / "off").untrained is None


def test_untrained_baseline_is_optional_when_the_probe_reruns_the_encoder(tmp_path, tiny_config):
    view = tiny_config.override({"stage2.probe_augment": "view", "stage2.epochs": 2})
    auto = train_run(view, tmp_path / "auto")
    on = train_run(view.override({"stage2.untrained_baseline": "on"}), tmp_path / "on")
    assert auto["untrained_test_acc"] is None and on["untrained_test_acc"] is not None
    assert metrics(auto) == metrics(on)


def test_several_probes_leave_the_first_one_as_it_was(tmp_path, tiny_config):
    one = train_run(tiny_config, tmp_path / "one")
    three = train_run(tiny_config.override({"stage2.probe_seeds": 3}), tmp_path / "three")
    assert metrics(one) == metrics(three)
    accs = three["probe_test_accs"]
    assert len(accs) == 3 and accs[0] == three["test_acc"] and one["probe_test_accs"] == [one["test_acc"]]
    assert len(set(accs)) > 1  # independent probe streams
    preds = read_predictions(tmp_path / "three")
    assert preds.probes.shape == (3, 200) and preds.probes.dtype == np.uint8 and preds.labels.dtype == np.uint8
    assert preds.accuracies == pytest.approx(accs, abs=1e-4)  # the reported (best-validation) epoch
    assert (read_predictions(tmp_path / "one").probes[0] == preds.probes[0]).all()


def test_an_ensemble_member_writes_the_predictions_of_its_solo_run(tmp_path, tiny_config):
    cfg = tiny_config.override({"stage2.probe_seeds": 2, "stage2.probe_augment": "none"})
    train_seeds(cfg, [1, 2], [tmp_path / "s1", tmp_path / "s2"])
    solo = train_run(cfg.override({"seed": 2}), tmp_path / "solo")
    a, b = read_predictions(tmp_path / "s2"), read_predictions(tmp_path / "solo")
    assert a.labels_sha256 == b.labels_sha256
    assert a.accuracies == pytest.approx(solo["probe_test_accs"], abs=2.0)


def test_a_resumed_run_keeps_its_baseline(tmp_path, tiny_config, monkeypatch):
    from cffaudit.train import run as run_module
    from cffaudit.train import stage1 as s1

    cfg = tiny_config.override({"stage2.probe_augment": "none", "stage2.probe_seeds": 2, "stage1.epochs": 3})
    whole = train_run(cfg, tmp_path / "whole")
    real, calls = s1.stage1_epoch, []

    def killed_in_epoch_1(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(s1, "stage1_epoch", killed_in_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg, tmp_path / "resumed")
    monkeypatch.setattr(s1, "stage1_epoch", real)
    monkeypatch.setattr(run_module, "_untrained_baseline", lambda ens: pytest.fail("baseline computed again"))
    resumed = train_run(cfg, tmp_path / "resumed", resume=True)
    for key in ("test_acc", "probe_test_accs", "untrained_test_acc", "untrained_val_acc"):
        assert resumed[key] == whole[key], key
    a, b = read_predictions(tmp_path / "whole"), read_predictions(tmp_path / "resumed")
    assert (a.probes == b.probes).all() and (a.untrained == b.untrained).all()


def test_a_baseline_turned_on_at_resume_uses_the_initial_encoder(tmp_path, tiny_config, monkeypatch):
    from cffaudit.train import stage1 as s1

    cfg = tiny_config.override({"stage2.probe_augment": "none", "stage1.epochs": 2})
    whole = train_run(cfg, tmp_path / "whole")
    real, calls = s1.stage1_epoch, []

    def killed_in_epoch_1(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(s1, "stage1_epoch", killed_in_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        train_run(cfg.override({"stage2.untrained_baseline": "off"}), tmp_path / "late")
    monkeypatch.setattr(s1, "stage1_epoch", real)
    late = train_run(cfg, tmp_path / "late", resume=True)
    assert late["untrained_test_acc"] == whole["untrained_test_acc"]
    assert late["test_acc"] == whole["test_acc"]


def test_a_source_seed_draws_that_source_as_its_seed_and_nothing_else(tmp_path, tiny_config):
    import torch

    from cffaudit.train.ensemble import Ensemble

    def built(cfg, seed):
        ens = Ensemble(cfg, [seed], tmp_path / f"{seed}-{cfg.seeds.init}.pt", False)
        ens.build()
        return ens

    held = built(tiny_config.override({"seeds.init": 3}), 0)
    three, zero = built(tiny_config, 3), built(tiny_config, 0)
    for p, q, r in zip(held.model.parameters(), three.model.parameters(), zero.model.parameters()):
        assert torch.equal(p, q)
    assert not all(torch.equal(p, r) for p, r in zip(held.model.parameters(), zero.model.parameters()))
    n = held.sizes["train"]
    assert torch.equal(torch.randperm(n, generator=held.gen_data[0]), torch.randperm(n, generator=zero.gen_data[0]))
    assert torch.equal(held.data.train_x, zero.data.train_x)
    assert held.derived[0]["init"] == three.derived[0]["init"] and held.derived[0]["data"] == zero.derived[0]["data"]


def test_train_command_with_three_probe_seeds_writes_baseline_accuracies_and_predictions(tmp_path):
    from cffaudit.cli import main

    from tests.cli.test_train_cli import TINY_FLAGS

    rc = main(["train", *TINY_FLAGS, "--probe-seeds", "3", "--probe-augment", "none", "--seed-init", "2",
               "--out", str(tmp_path)])
    assert rc == 0
    res = json.loads((tmp_path / "result.json").read_text())
    assert len(res["probe_test_accs"]) == 3 and res["probe_test_accs"][0] == res["test_acc"]
    assert res["untrained_test_acc"] is not None and res["config"]["seeds"]["init"] == 2
    assert {"probe:1", "probe:2", "untrained_probe"} <= set(res["seeds"])
    preds = read_predictions(tmp_path)
    assert preds.probes.shape == (3, 200) and preds.untrained.shape == (200,)
    assert (tmp_path / PREDICTIONS_NAME).stat().st_size < 10_000


def test_a_failed_run_leaves_no_predictions(tmp_path, tiny_config):
    res = train_run(tiny_config.override({"stage1.lr": 1e30}), tmp_path)
    assert res["status"] == "failed" and not (tmp_path / PREDICTIONS_NAME).exists()


# -- the reader ---------------------------------------------------------------------------------


def test_predictions_round_trip_in_a_compact_dtype(tmp_path):
    labels = np.arange(300) % 300
    write_predictions(tmp_path, np.stack([labels, labels[::-1]]), labels, num_classes=300, untrained=labels)
    p = read_predictions(tmp_path / PREDICTIONS_NAME)
    assert p.probes.dtype == np.int16 and p.labels.dtype == np.int16
    assert p.accuracies[0] == 100.0 and p.correct.shape == (2, 300) and p.untrained_correct.all()


def test_reading_predictions_that_are_missing_damaged_or_mismatched_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="no per-example predictions"):
        read_predictions(tmp_path)
    (tmp_path / PREDICTIONS_NAME).write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot read predictions"):
        read_predictions(tmp_path)
    np.savez(tmp_path / PREDICTIONS_NAME, probes=np.zeros((1, 3), np.uint8), labels=np.zeros(3, np.uint8),
             labels_sha256=np.array("0" * 64))
    with pytest.raises(ValueError, match="do not match their checksum"):
        read_predictions(tmp_path)
    np.savez(tmp_path / PREDICTIONS_NAME, probes=np.zeros((1, 3), np.uint8))
    with pytest.raises(ValueError, match="missing array"):
        read_predictions(tmp_path)
    with pytest.raises(ValueError, match="same test examples"):
        write_predictions(tmp_path, np.zeros((1, 3)), np.zeros(4), num_classes=10)


def test_the_predictions_reader_does_not_import_torch():
    code = "import sys, cffaudit.predictions; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
