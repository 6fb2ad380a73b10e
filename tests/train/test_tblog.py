"""TensorBoard logs (`--tensorboard`), read back with TensorBoard's own event reader."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import yaml

from cffaudit.cli import main

pytest.importorskip("tensorboard", reason="the optional tensorboard package is not installed "
                                          "(pip install 'cffaudit[tensorboard]')")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from cffaudit.train.tblog import TensorBoardLog  # noqa: E402
from tests.cli.test_train_cli import TINY_FLAGS  # noqa: E402
from tests.experiments.conftest import tiny_spec_dict  # noqa: E402


def read_events(log_dir):
    """{tag: [(step, value), ...]} of the scalars, and the config text, of one log directory."""
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    texts = [t for t in acc.Tags()["tensors"] if t.startswith("config")]
    text = acc.Tensors(texts[0])[0].tensor_proto.string_val[0].decode() if texts else None
    return scalars, text


def stage1_entry(epoch, losses):
    return {"stage": 1, "epoch": epoch, "time_s": 1.5, "steps": 3,
            "layers": [{"layer": l, "loss": v, "car": 0.5, "grad_norm": 0.1, "val_loss": v + 1,
                        "gate_mean": None} for l, v in enumerate(losses)]}


def test_log_writes_new_entries_once_and_the_config(tmp_path):
    history = [[stage1_entry(0, [3.0, 2.0])]]  # epoch 0 logged by an earlier process
    log = TensorBoardLog([tmp_path / "r"], [{"loss": {"margin": "clamp"}, "seed": 3}], history)
    history[0].append(stage1_entry(1, [2.5, 1.5]))
    log.update(history)
    history[0].append({"stage": 2, "epoch": 0, "time_s": 0.2, "train_loss": 1.2, "val_acc": 40.0,
                       "test_acc": math.nan})
    log.update(history)
    log.update(history)  # nothing new: nothing written twice
    log.close()
    scalars, text = read_events(tmp_path / "r")
    assert scalars["stage1_loss/layer0"] == [(1, 2.5)] and scalars["stage1_val_loss/layer1"] == [(1, 2.5)]
    assert scalars["stage1_car/layer1"] == [(1, 0.5)] and "stage1_gate_mean/layer0" not in scalars
    assert scalars["stage1/time_s"] == [(1, 1.5)]
    assert scalars["probe/train_loss"] == [(0, pytest.approx(1.2))] and "probe/test_acc" not in scalars  # NaN
    assert json.loads("\n".join(line[4:] for line in text.splitlines())) == {"loss": {"margin": "clamp"}, "seed": 3}


def test_train_writes_one_log_per_seed(tmp_path):
    tb = tmp_path / "tb"
    rc = main(["train", *TINY_FLAGS, "--seeds", "1-2", "--locality", "global", "--out", str(tmp_path / "out"),
               "--tensorboard", str(tb)])
    assert rc == 0
    for seed in (1, 2):
        result = json.loads((tmp_path / "out" / f"seed-{seed}" / "result.json").read_text())
        scalars, text = read_events(tb / f"seed-{seed}")
        for name in ("loss", "car", "car_batch_mean", "grad_norm", "val_loss"):
            for layer in (0, 1):
                assert [step for step, _ in scalars[f"stage1_{name}/layer{layer}"]] == [0], name
        assert scalars["stage1_loss/layer1"][0][1] == pytest.approx(result["history"][0]["layers"][1]["loss"])
        for name in ("train_loss", "val_acc", "test_acc"):
            assert [step for step, _ in scalars[f"probe/{name}"]] == [0, 1]
        assert scalars["probe/test_acc"][-1][1] == pytest.approx(result["history"][-1]["test_acc"])
        assert '"seed": %d' % seed in text and '"locality": "global"' in text


def test_sweep_writes_one_log_per_run_id(tmp_path):
    spec = tiny_spec_dict(factors={"margin": ["clamp"]}, seeds=[1])
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    rc = main(["sweep", str(path), "--store", str(tmp_path / "store"), "--no-progress",
               "--tensorboard", str(tmp_path / "tb")])
    assert rc == 0
    (run_dir,) = (tmp_path / "store" / "runs").iterdir()
    scalars, text = read_events(tmp_path / "tb" / run_dir.name)
    assert "stage1_car/layer1" in scalars and "probe/val_acc" in scalars and '"seed": 1' in text


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_missing_tensorboard_fails_before_training(tmp_path, monkeypatch, capsys, command):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard"
                        else find_spec(name, *a))
    if command == "train":
        args = ["train", *TINY_FLAGS, "--out", str(tmp_path / "out")]
    else:
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(tiny_spec_dict()))
        args = ["sweep", str(path), "--store", str(tmp_path / "out")]
    assert main([*args, "--tensorboard", str(tmp_path / "tb")]) == 2
    err = capsys.readouterr().err
    assert "needs the tensorboard package" in err and "pip install 'cffaudit[tensorboard]'" in err
    assert not (tmp_path / "tb").exists() and not list(tmp_path.glob("out/**/result.json"))
