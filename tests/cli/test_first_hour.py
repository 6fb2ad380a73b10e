"""The mistakes of a first hour get an answer that says what to do: a --resume without a
checkpoint, a misspelt flag, config key or spec key."""

import pytest
import yaml

from cffaudit.cli import main
from cffaudit.config import RunConfig
from cffaudit.suggest import close_matches, did_you_mean

from .test_train_cli import TINY_FLAGS


def _run(capsys, *argv):
    try:
        rc = main(list(argv))
    except SystemExit as exc:  # argparse exits by itself
        rc = exc.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_did_you_mean_keeps_only_the_near_equals():
    assert close_matches("stage1.epoch", ["stage1.epochs", "stage2.epochs", "stage1.select"]) == ["stage1.epochs"]
    assert did_you_mean("zzz", ["stage1.epochs"]) == ""
    assert did_you_mean("--margn", ["--margin", "--m0"]) == "; did you mean '--margin'?"


def test_resume_without_a_checkpoint_is_an_error_with_advice(tmp_path, capsys):
    (tmp_path / "run1").mkdir()
    (tmp_path / "run1" / "checkpoint.pt").write_bytes(b"")
    rc, _, err = _run(capsys, "train", *TINY_FLAGS, "--resume", "--out", str(tmp_path / "run2"))
    assert rc == 2
    assert err.startswith("cffaudit train: error: --resume: no checkpoint at ")
    assert "drop --resume to start a new run" in err and f"did you mean '{tmp_path / 'run1'}'?" in err
    assert not (tmp_path / "run2" / "result.json").exists()  # nothing was trained


def test_unknown_flag_after_a_subcommand_prints_its_usage_and_the_closest_flag(capsys):
    rc, _, err = _run(capsys, "train", "--epoch-stage1", "3")
    assert rc == 2
    assert err.startswith("usage: cffaudit train ")
    assert err.endswith("cffaudit train: error: unrecognized arguments: --epoch-stage1 3; "
                        "did you mean '--epochs-stage1'?\n")
    rc, _, err = _run(capsys, "sweep", "--store", "x", "--stauts", "--wrokers=2")
    assert rc == 2 and err.startswith("usage: cffaudit sweep ")
    assert "did you mean '--status' for --stauts, '--workers' for --wrokers?" in err


def test_misspelt_config_key_suggests_the_right_one(tmp_path, capsys):
    rc, _, err = _run(capsys, "train", *TINY_FLAGS, "--set", "stage1.epoch=3", "--out", str(tmp_path))
    assert rc == 2
    assert "unknown config key 'stage1.epoch'; did you mean 'stage1.epochs'?" in err
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"stage2": {"lrr": 0.1}}))
    rc, _, err = _run(capsys, "train", *TINY_FLAGS, "--config", str(config), "--out", str(tmp_path))
    assert rc == 2
    assert "unknown config key(s) ['stage2.lrr']; did you mean 'stage2.lr'?" in err
    with pytest.raises(ValueError, match="did you mean 'loss.margin'"):
        RunConfig().override({"loss.margn": "clamp"})


@pytest.mark.parametrize(
    "change, message",
    [
        ({"seed": [1, 2]}, "unknown top-level key(s) ['seed']; did you mean 'seeds'?"),
        ({"factors": {"margn": ["clamp"]}}, "unknown factor 'margn'; did you mean 'margin'?"),
        ({"base": {"stage1": {"epoch": 1}}}, "unknown config key 'stage1.epoch'; did you mean 'stage1.epochs'?"),
    ],
)
def test_misspelt_spec_keys_suggest_the_right_one(tmp_path, capsys, change, message):
    spec = {"name": "tiny", "base": {"data": {"dataset": "synthetic"}}, "factors": {"margin": ["clamp"]},
            "seeds": [1], **change}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    rc, _, err = _run(capsys, "sweep", str(path), "--store", str(tmp_path / "store"), "--dry-run")
    assert rc == 2
    assert err.startswith("cffaudit sweep: error:") and message in err


def test_train_progress_has_one_bar_per_stage_and_labelled_losses(tmp_path, capsys):
    flags = [f for f in TINY_FLAGS if f != "--no-progress"]
    rc, _, err = _run(capsys, "train", *flags, "--seed", "3", "--out", str(tmp_path))
    assert rc == 0
    assert "stage 1 (seed 3)" in err and "1/1" in err and "probe (seed 3)" in err and "2/2" in err
    assert "L0 " in err and " L1 " in err and "loss 4" not in err


def test_synthetic_run_at_chance_says_why(tmp_path, capsys):
    # One stage-1 epoch and two probe epochs at the default probe rate: at chance.
    rc, out, err = _run(capsys, "train", *TINY_FLAGS, "--seed", "1", "--out", str(tmp_path))
    assert rc == 0 and "test accuracy" in out
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "at or below chance (10% for 10 classes)" in notes[0]
    assert "untrained encoder cannot separate it" in notes[0] and "--epochs-stage1 8" in notes[0]


def test_no_chance_note_for_a_run_that_learned():
    from cffaudit.cli.train import _synthetic_note

    cfg = RunConfig().override({"data.dataset": "synthetic"})
    assert _synthetic_note(cfg, [{"status": "done", "test_acc": 38.0}]) == ""
    assert _synthetic_note(cfg, [{"status": "failed", "test_acc": None}]) == ""
    assert _synthetic_note(cfg.override({"data.dataset": "cifar10"}), [{"status": "done", "test_acc": 5.0}]) == ""


@pytest.mark.parametrize("command, words", [
    ("train", ["Contrastive Forward-Forward", "clamp | subtract | none", "detach | direct", "standard (0.4->0.1)"]),
    ("paper", ["per-seed accuracies it published"]),
    ("bench", ["Time stage-1 steps after warm-up"]),
    ("export", ["One row per run"]),
])
def test_help_describes_the_command_and_lists_choices(capsys, command, words):
    rc, out, _ = _run(capsys, command, "-h")
    assert rc == 0
    flat = " ".join(out.split())
    for w in words:
        assert w in flat, w
