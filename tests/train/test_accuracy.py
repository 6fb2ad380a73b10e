"""Accuracies are exact ratios correct / total in float64, so result.json holds 61.04, not
float32's 61.04000091552734."""

import json

from cffaudit.predictions import read_predictions
from cffaudit.train.run import train_run
from cffaudit.train.stage2 import accuracy_of


def test_accuracy_of_is_the_float64_ratio_of_integer_counts():
    import torch

    pred = torch.tensor([[0, 1, 2] * 7 + [0, 0, 0, 0], [1] * 25])  # (2, 25)
    labels = torch.tensor([[0, 1, 2] * 7 + [1, 1, 1, 1], [1] * 8 + [0] * 17])
    acc = accuracy_of(pred, labels)
    assert acc.dtype == torch.float64
    # 21 of 25 and 8 of 25: 84.0 and 32.0 exactly; 1 of 3 would be 33.333... in float64
    assert acc.tolist() == [100 * 21 / 25, 100 * 8 / 25]
    thirds = accuracy_of(torch.tensor([[1, 0, 0]]), torch.tensor([[1, 1, 1]]))
    assert thirds.item() == 100 * 1 / 3  # float32 would give 33.33333206176758


def test_a_run_stores_every_accuracy_as_correct_over_total(tmp_path, tiny_config):
    # 300 test and 37 validation images: most counts give ratios that float32 cannot hold.
    cfg = tiny_config.override({"data.synthetic_train": 370, "data.synthetic_test": 300,
                                "stage2.probe_seeds": 2, "stage2.probe_augment": "none",
                                "stage2.untrained_baseline": "on"})
    train_run(cfg, tmp_path)
    result = json.loads((tmp_path / "result.json").read_text())
    preds = read_predictions(tmp_path)
    n = preds.labels.shape[0]
    assert n == 300
    correct = [int(c) for c in preds.correct.sum(axis=1)]
    assert result["test_acc"] == 100 * correct[0] / n
    assert result["probe_test_accs"] == [100 * c / n for c in correct]
    assert result["untrained_test_acc"] == 100 * int(preds.untrained_correct.sum()) / n
    assert list(preds.accuracies) == [100 * c / n for c in correct]
    n_val = result["data"]["val"]
    assert n_val == 37
    for key in ("best_val_acc", "untrained_val_acc"):
        value = result[key]
        assert value == 100 * round(value * n_val / 100) / n_val, (key, value)
    for record in result["history"]:
        if record.get("stage") == 2:
            for key in ("val_acc", "test_acc"):
                total = n_val if key == "val_acc" else n
                assert record[key] == 100 * round(record[key] * total / 100) / total, (record, key)
