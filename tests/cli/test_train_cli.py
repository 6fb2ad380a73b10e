import json
import math

import pytest

from cffaudit.cli import main
from cffaudit.config import parse_seeds

TINY_FLAGS = ["--dataset", "synthetic", "--synthetic-train", "400", "--synthetic-test", "200",
              "--embed-dim", "16", "--depth", "2", "--heads", "2", "--patch-size", "8",
              "--epochs-stage1", "1", "--epochs-stage2", "2", "--batch-size", "100", "--device", "cpu",
              "--no-progress"]


def test_train_command_writes_result(tmp_path, capsys):
    rc = main(["train", *TINY_FLAGS, "--margin", "subtract", "--stability", "direct", "--seed", "4",
               "--set", "stage2.lr=0.01", "--out", str(tmp_path)])
    assert rc == 0
    res = json.loads((tmp_path / "result.json").read_text())
    assert res["config"]["loss"]["margin"] == "subtract"
    assert res["config"]["loss"]["stability"] == "direct"
    assert res["config"]["stage2"]["lr"] == 0.01 and res["config"]["seed"] == 4
    assert "test accuracy" in capsys.readouterr().out


def test_train_several_seeds_writes_one_folder_each(tmp_path):
    rc = main(["train", *TINY_FLAGS, "--seeds", "2-3", "--out", str(tmp_path)])
    assert rc == 0
    for s in (2, 3):
        assert json.loads((tmp_path / f"seed-{s}" / "result.json").read_text())["config"]["seed"] == s


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--margin", "hinge"], "loss.margin: 'hinge' is not one of"),
        (["--embed-dim", "30", "--heads", "4"], "must be divisible by model.heads"),
        (["--set", "stage9.lr=1"], "unknown config key"),
        (["--set", "stage1.lr"], "expected KEY=VALUE"),
        (["--set", "stage2.weight_decay=lots"], "stage2.weight_decay: expected a number"),
        (["--seeds", "5-2"], "--seeds: range '5-2' runs backwards"),
        (["--seeds", "1,x"], "--seeds: cannot read"),
        (["--margin-schedule", "steep"], "loss.margin_schedule"),
        (["--margin-shape", "steep"], "loss.margin_shape: 'steep' is not one of"),
        (["--margin-k", "0"], "loss.margin_k: must be > 0"),
        (["--link", "probit"], "loss.link: 'probit' is not one of"),
        (["--set", "loss.weince.q=2"], "loss.weince.q: must be a quantile"),
        (["--locality", "nearby"], "stage1.locality: 'nearby' is not one of"),
        (["--locality", "global", "--step-order", "per_block"], "needs stage1.locality=local"),
    ],
)
def test_bad_input_is_a_clear_one_line_error(tmp_path, capsys, flags, message):
    rc = main(["train", *TINY_FLAGS, *flags, "--out", str(tmp_path)])
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("cffaudit train: error:")
    assert not (tmp_path / "result.json").exists()


def test_unknown_flag_is_rejected_by_argparse(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--marginn", "clamp"])
    assert exc.value.code == 2


def test_missing_dataset_fails_with_instructions(tmp_path, capsys):
    rc = main(["train", *TINY_FLAGS, "--dataset", "cifar10", "--data-dir", str(tmp_path / "none"),
               "--out", str(tmp_path / "out")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "--download" in err
    assert json.loads((tmp_path / "out" / "result.json").read_text())["status"] == "failed"


def test_parse_seeds():
    assert parse_seeds("1-3,7") == (1, 2, 3, 7)
    with pytest.raises(ValueError, match="repeated"):
        parse_seeds("1,1")


def test_existing_run_is_not_overwritten_without_asking(tmp_path, capsys):
    assert main(["train", *TINY_FLAGS, "--out", str(tmp_path)]) == 0
    before = (tmp_path / "result.json").read_text()
    assert main(["train", *TINY_FLAGS, "--out", str(tmp_path)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert (tmp_path / "result.json").read_text() == before and (tmp_path / "checkpoint.pt").exists()
    assert main(["train", *TINY_FLAGS, "--out", str(tmp_path), "--overwrite"]) == 0


def test_set_accepts_exponent_numbers(tmp_path):
    assert main(["train", *TINY_FLAGS, "--set", "stage2.weight_decay=1e-3", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "result.json").read_text())["config"]["stage2"]["weight_decay"] == 0.001


def test_compile_with_per_block_order_is_refused(tmp_path, capsys):
    assert main(["train", *TINY_FLAGS, "--compile", "on", "--step-order", "per_block", "--out", str(tmp_path)]) == 2
    assert "per_block" in capsys.readouterr().err


def test_without_paths_drops_dotted_paths_and_copies():
    from cffaudit.config import without_paths

    d = {"a": {"b": 1, "c": {"d": 2, "e": 3}}, "f": 4}
    assert without_paths(d, ["a.c.d", "f", "x.y"]) == {"a": {"b": 1, "c": {"e": 3}}}
    assert d == {"a": {"b": 1, "c": {"d": 2, "e": 3}}, "f": 4}  # the input is untouched


@pytest.mark.parametrize("flags", [["--margin-shape", "parabolic", "--margin-k", "1.5"],
                                   ["--margin-shape", "cosine"],
                                   ["--margin-shape", "exponential", "--mL", "0.05"],
                                   ["--link", "weince", "--margin-shape", "cosine"]])
def test_margin_shapes_and_the_weince_link_train_with_finite_losses(tmp_path, flags):
    rc = main(["train", *TINY_FLAGS, *flags, "--out", str(tmp_path)])
    assert rc == 0
    res = json.loads((tmp_path / "result.json").read_text())
    loss_cfg = res["config"]["loss"]
    assert res["status"] == "done"
    assert len(loss_cfg["margins"]) == 2 and loss_cfg["margins"][0] == pytest.approx(0.4)
    layers = [rec for h in res["history"] if h["stage"] == 1 for rec in h["layers"]]
    assert layers and all(math.isfinite(rec["loss"]) for rec in layers)
    if "--link" in flags:
        assert loss_cfg["link"] == "weince" and loss_cfg["weince"]["q"] == 0.2
        assert all(0.0 <= rec["gate_mean"] <= 1.0 for rec in layers)
    else:
        assert loss_cfg["margin_shape"] == flags[1] and all(rec["gate_mean"] is None for rec in layers)


def test_margin_shape_and_link_flags_list_their_choices(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "linear | parabolic | cosine | exponential" in out and "standard | weince" in out
    assert "--margin-k" in out


@pytest.mark.parametrize("locality", ["global", "last"])
def test_non_local_localities_train_with_finite_losses(tmp_path, locality):
    rc = main(["train", *TINY_FLAGS, "--locality", locality, "--out", str(tmp_path)])
    assert rc == 0
    res = json.loads((tmp_path / "result.json").read_text())
    assert res["status"] == "done" and res["config"]["stage1"]["locality"] == locality
    assert res["runtime"]["step_order"] == "fused"  # one backward: the gradients cross blocks
    layers = [rec for h in res["history"] if h["stage"] == 1 for rec in h["layers"]]
    assert [rec["layer"] for rec in layers] == [0, 1]  # every layer recorded, trained or not
    assert all(math.isfinite(rec[k]) for rec in layers for k in ("loss", "car", "grad_norm"))
