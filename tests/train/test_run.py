import json
import math
import os

import pytest

from cffaudit.train.run import train_run, train_seeds

from tests.killing import uninterrupted_and_resumed


def metrics(res):
    """Everything of a result that training determines (timings excluded)."""
    hist = [{k: v for k, v in rec.items() if k != "time_s"} for rec in res["history"]]
    return res["test_acc"], res["best_val_acc"], res["best_epoch"], hist


def test_end_to_end_beats_chance_and_writes_complete_result(tmp_path, tiny_config):
    # 8 stage-1 epochs: under the original code's initialisation (N(0, 1) positions, the
    # model.init default) the tiny model learns slower than under "small", which needed 4
    # (seeds 0-5 at 4 epochs: 29-47.5%; at 8: 39-56%).
    cfg = tiny_config.override({"stage1.epochs": 8, "stage2.epochs": 10, "data.synthetic_train": 1000})
    res = train_run(cfg, tmp_path)
    assert res["status"] == "done", res["error"]
    assert res["test_acc"] > 35.0  # 10 classes: chance is 10%; untrained encoder ~14%
    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk == res
    for key in ("status", "error", "config", "test_acc", "best_val_acc", "history", "timing", "env", "seeds"):
        assert key in res
    c = res["config"]
    assert c["data"]["dataset"] == "synthetic" and c["loss"]["margin"] == "clamp"
    assert c["loss"]["stability"] == "detach" and c["seed"] == 0
    assert c["loss"]["margins"] == pytest.approx([0.4, 0.1])
    assert res["env"]["torch"] and res["env"]["package"] == "cffaudit"
    s1 = [r for r in res["history"] if r["stage"] == 1]
    s2 = [r for r in res["history"] if r["stage"] == 2]
    assert [r["epoch"] for r in s1] == list(range(8)) and len(s2) == 10
    for rec in s1:
        assert [l["layer"] for l in rec["layers"]] == [0, 1]
        for layer in rec["layers"]:
            assert 0.0 <= layer["car"] <= 1.0
            assert layer["grad_norm"] > 0 and layer["grad_norm_last"] > 0
            assert layer["pos_pairs"] > 0 and math.isfinite(layer["val_loss"])
    # Stage 1 learns: the last layer's loss falls.
    assert s1[-1]["layers"][-1]["loss"] < s1[0]["layers"][-1]["loss"]


def test_same_seed_twice_is_identical_and_other_seed_differs(tmp_path, tiny_config):
    a = train_run(tiny_config, tmp_path / "a")
    b = train_run(tiny_config, tmp_path / "b")
    c = train_run(tiny_config.override({"seed": 1}), tmp_path / "c")
    assert metrics(a) == metrics(b)
    assert metrics(a)[3] != metrics(c)[3]


def test_ensemble_writes_one_result_per_seed_matching_solo(tmp_path, tiny_config):
    results = train_seeds(tiny_config, [1, 2], [tmp_path / "s1", tmp_path / "s2"])
    solo = train_run(tiny_config.override({"seed": 2}), tmp_path / "solo2")
    assert [r["config"]["seed"] for r in results] == [1, 2]
    assert json.loads((tmp_path / "s2" / "result.json").read_text())["config"]["seed"] == 2
    ens_hist, solo_hist = metrics(results[1])[3], metrics(solo)[3]
    for e, s in zip(ens_hist, solo_hist):
        if e["stage"] == 1:
            for le, ls in zip(e["layers"], s["layers"]):
                assert le["loss"] == pytest.approx(ls["loss"], rel=1e-4, abs=1e-4)
                assert le["pos_pairs"] == ls["pos_pairs"]  # same data order and labels
    assert results[1]["test_acc"] == pytest.approx(solo["test_acc"], abs=2.0)


def test_nan_loss_fails_with_layer_and_epoch(tmp_path, tiny_config):
    res = train_run(tiny_config.override({"stage1.lr": 1e30}), tmp_path)
    assert res["status"] == "failed"
    assert "non-finite loss" in res["error"] and "layer" in res["error"] and "epoch 0" in res["error"]
    assert res["test_acc"] is None and res["best_val_acc"] is None
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "failed"


def test_data_error_is_recorded_not_raised(tmp_path, tiny_config):
    cfg = tiny_config.override({"data.dataset": "cifar10", "data.data_dir": str(tmp_path / "nothing")})
    res = train_run(cfg, tmp_path / "out")
    assert res["status"] == "failed" and "DatasetError" in res["error"] and res["traceback"]


@pytest.mark.slow
def test_killed_and_resumed_run_equals_uninterrupted(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    a, b = uninterrupted_and_resumed(tmp_path, "--device", "cpu", env=env)
    assert metrics(a) == metrics(b)


def test_ensemble_member_gets_the_solo_run_weights_split_order_and_augmentations(tmp_path, tiny_config):
    import torch

    from cffaudit.train.ensemble import Ensemble
    from cffaudit.train.stage1 import two_views

    ens = Ensemble(tiny_config, [1, 2], tmp_path / "e.pt", False)
    solo = Ensemble(tiny_config, [2], tmp_path / "s.pt", False)
    ens.build()
    solo.build()
    for p, q in zip(ens.model.parameters(), solo.model.parameters()):
        assert torch.equal(p[1], q[0])
    assert not torch.equal(next(ens.model.parameters())[0], next(solo.model.parameters())[0])
    for split in ("train_x", "train_y", "val_x", "test_x"):
        assert torch.equal(getattr(ens.data, split)[1], getattr(solo.data, split)[0])
    n = ens.sizes["train"]
    assert torch.equal(torch.randperm(n, generator=ens.gen_data[1]), torch.randperm(n, generator=solo.gen_data[0]))
    x_ens, x_solo = ens.data.train_x[:, :16], solo.data.train_x[:, :16]
    for _ in range(2):  # successive batches keep matching
        assert torch.equal(two_views(ens.augment, x_ens, ens.gen_aug)[1],
                           two_views(solo.augment, x_solo, solo.gen_aug)[0])


def test_best_val_loss_selection_probes_the_selected_epoch(tmp_path, tiny_config):
    import torch

    from cffaudit.train.ensemble import Ensemble

    cfg = tiny_config.override({"stage1.select": "best_val_loss", "stage1.epochs": 3, "stage2.epochs": 1})
    res = train_run(cfg, tmp_path / "best")
    val = [r["layers"][-1]["val_loss"] for r in res["history"] if r["stage"] == 1]
    assert res["status"] == "done" and res["stage1_selected_epoch"] == val.index(min(val))
    assert train_run(tiny_config, tmp_path / "last")["stage1_selected_epoch"] == tiny_config.stage1.epochs - 1

    # The selected seed slices are restored, and only those: seed 0 keeps epoch 0, seed 1 epoch 1.
    ens = Ensemble(cfg, [1, 2], tmp_path / "e.pt", False)
    ens.build()
    snapshots = []
    for epoch, losses in enumerate([(1.0, 5.0), (2.0, 4.0)]):
        with torch.no_grad():
            for p in ens.model.parameters():
                p.add_(1.0)
        snapshots.append([p.detach().clone() for p in ens.model.parameters()])
        for k, loss in enumerate(losses):
            ens.encoder.track(ens.model, k, epoch, loss)
    ens.encoder.restore(ens.model)
    for p, first, second in zip(ens.model.parameters(), *snapshots):
        assert torch.equal(p[0], first[0]) and torch.equal(p[1], second[1])


def test_resume_ignores_data_location_but_refuses_another_configuration(tmp_path, tiny_config):
    train_run(tiny_config, tmp_path)
    moved = tiny_config.override({"data.data_dir": str(tmp_path / "elsewhere"), "device": "auto"})
    assert train_run(moved, tmp_path, resume=True)["status"] == "done"
    other = train_run(tiny_config.override({"loss.margin": "subtract"}), tmp_path, resume=True)
    assert other["status"] == "failed" and "another configuration" in other["error"]


def test_resume_ignores_the_cpu_allocator_and_accepts_checkpoints_from_before_it(tmp_path, tiny_config):
    import torch

    train_run(tiny_config, tmp_path)
    assert train_run(tiny_config.override({"perf.cpu_allocator": "system"}), tmp_path, resume=True)["status"] == "done"
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert "cpu_allocator" not in ckpt["config"]["perf"]  # as before the setting existed
    ckpt["config"]["perf"]["cpu_allocator"] = "retain"  # a checkpoint that recorded it
    torch.save(ckpt, tmp_path / "checkpoint.pt")
    assert train_run(tiny_config.override({"perf.cpu_allocator": "system"}), tmp_path, resume=True)["status"] == "done"


def test_resume_on_another_device_is_refused(tmp_path, tiny_config):
    import torch

    train_run(tiny_config, tmp_path)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    ckpt["runtime"]["device"] = "cuda:0"
    torch.save(ckpt, tmp_path / "checkpoint.pt")
    res = train_run(tiny_config, tmp_path, resume=True)
    assert res["status"] == "failed" and "made on cuda:0" in res["error"]


def test_gpu_style_run_bf16_fused_end_to_end_on_cpu(tmp_path, tiny_config):
    """The GPU defaults (fused order, bf16 autocast) through a whole run, stage 2 included."""
    cfg = tiny_config.override({"perf.precision": "bf16", "stage1.step_order": "fused"})
    res = train_run(cfg, tmp_path)
    assert res["status"] == "done", res["error"]
    assert res["runtime"] == {"device": "cpu", "precision": "bf16", "compile": False, "step_order": "fused",
                              "cpu_allocator": "retain"}
    assert all(math.isfinite(l["loss"]) for r in res["history"] if r["stage"] == 1 for l in r["layers"])
    fp32 = train_run(tiny_config.override({"stage1.step_order": "fused"}), tmp_path / "fp32")
    first = lambda r: r["history"][0]["layers"][0]["loss"]  # noqa: E731
    assert first(res) == pytest.approx(first(fp32), rel=0.05)


def test_best_val_loss_without_a_validation_set_fails_with_advice(tmp_path, tiny_config):
    res = train_run(tiny_config.override({"stage1.select": "best_val_loss", "data.limit_val": 1}), tmp_path)
    assert res["status"] == "failed"
    assert "needs at least 2 validation images" in res["error"] and "--limit-val" in res["error"]


def test_an_ensemble_reads_its_dataset_once(tiny_config, monkeypatch):
    import torch

    import cffaudit.data as data
    from cffaudit.train.run import load_seed_data

    reads = []
    real = data.read_dataset
    monkeypatch.setattr(data, "read_dataset", lambda *a, **k: reads.append(a) or real(*a, **k))
    stacked = load_seed_data(tiny_config, [3, 4, 5], torch.device("cpu"), progress=False)
    assert len(reads) == 1 and stacked.train_x.shape[0] == 3
    assert not torch.equal(stacked.val_y[0], stacked.val_y[1])  # each seed its own split


def test_global_random_state_neither_matters_nor_changes(tmp_path, tiny_config):
    """Every draw (weights, split, data order, augmentations, validation views, probe
    weights, probe views and order) comes from the run's own generators: runs after the
    global torch, numpy and random states are scrambled differently are identical bit for
    bit, and leave those states as they found them (nothing drew from them or seeded them)."""
    import random

    import numpy as np
    import torch

    cfg = tiny_config.override({"stage1.select": "best_val_loss"})
    runs = []
    for scramble in (11, 12):
        random.seed(scramble)
        np.random.seed(scramble)
        torch.manual_seed(scramble)
        states = random.getstate(), np.random.get_state(), torch.get_rng_state()
        results = train_seeds(cfg, [1, 2], [tmp_path / f"{scramble}-1", tmp_path / f"{scramble}-2"])
        assert random.getstate() == states[0]
        after = np.random.get_state()
        assert after[0] == states[1][0] and np.array_equal(after[1], states[1][1]) and after[2:] == states[1][2:]
        assert torch.equal(torch.get_rng_state(), states[2])
        runs.append([(r["status"], metrics(r)) for r in results])
    assert runs[0] == runs[1] and runs[0][0][0] == "done"
