"""Writers of `result.json` files in the schema of `cffaudit train`, for the loader tests."""

import json
from pathlib import Path


def result_doc(run_id, margin, stability, seed, test_acc, *, status="done", dataset="cifar10", schedule="standard",
               epochs=2, layers=3, epochs_stage1=600):
    history = []
    for epoch in range(epochs):
        history.append({
            "stage": 1, "epoch": epoch,
            "layers": [{"layer": k, "loss": 1.0, "car": 0.5 + 0.1 * epoch - 0.05 * k + (0.1 if margin == "clamp" else 0.0),
                        "pos_pairs": 100, "grad_norm": 1.0 + k + epoch, "grad_norm_last": 0.5, "val_loss": 1.1}
                       for k in range(layers)],
        })
    history.append({"stage": 2, "epoch": 0, "train_loss": 1.0, "val_acc": 50.0, "test_acc": test_acc})
    return {
        "status": status,
        "error": None if status == "done" else "Traceback: boom",
        "run_id": run_id,
        "config": {
            "data": {"dataset": dataset, "augment": "cifar", "root": f"/data/{run_id}"},
            "model": {"embed_dim": 128, "depth": 8},
            "loss": {"margin": margin, "stability": stability, "margin_schedule": schedule, "m0": 0.4, "mL": 0.1,
                     "margins": [0.4, 0.25, 0.1], "temperature": 0.15},
            "stage1": {"epochs": epochs_stage1}, "stage2": {"epochs": 50}, "seed": seed, "device": "cpu",
        },
        "test_acc": test_acc if status == "done" else None,
        "best_val_acc": 79.0,
        "history": history,
        "timing": {}, "env": {},
    }


def write_store(root: Path, accs: dict, *, failed: int = 0, nested: str = "runs") -> Path:
    """accs: {(margin, stability): [acc per seed]} -> root/<nested>/<run_id>/result.json."""
    for (margin, stability), values in accs.items():
        for seed, acc in enumerate(values, start=1):
            rid = f"{margin}-{stability}-s{seed}"
            path = root / nested / rid / "result.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result_doc(rid, margin, stability, seed, acc)))
    for i in range(failed):
        rid = f"failed-{i}"
        path = root / nested / rid / "result.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result_doc(rid, "clamp", "detach", 100 + i, None, status="failed")))
    return root
