"""Result folders with the sources-of-variance keys (untrained baseline, several probes,
per-source seeds, predictions.npz), written in the schema of `cffaudit train`, for the
analysis and report tests; no training."""

import hashlib
import json
from pathlib import Path

import numpy as np

from tests.report.fake_runs import result_doc

N_EXAMPLES = 120


def write_predictions_file(folder: Path, probes: np.ndarray, labels: np.ndarray) -> None:
    """predictions.npz in the format of cffaudit.predictions: probes (K, N) and labels as
    uint8, labels_sha256 the sha256 of the labels as little-endian int64."""
    checksum = hashlib.sha256(np.ascontiguousarray(labels, dtype="<i8").tobytes()).hexdigest()
    np.savez_compressed(folder / "predictions.npz", probes=probes.astype(np.uint8), labels=labels.astype(np.uint8),
                        labels_sha256=np.array(checksum))


def write_sources_runs(root: Path, *, seeds: int = 6, probes: int = 3, predictions: bool = True,
                       crossed: bool = False, label_seed: int = 0) -> Path:
    """Runs of clamp and subtract under root/runs/<id>/ (result.json, predictions.npz).

    Nested (default): `seeds` runs per margin, each with `probes` probe accuracies
    around its encoder's accuracy. Crossed: 3 init seeds x 3 data-order seeds per margin
    (config seeds.init, seeds.data). Clamp's encoder spread is larger than subtract's.
    """
    rng = np.random.default_rng(7)
    labels = np.random.default_rng(label_seed).integers(0, 10, N_EXAMPLES)
    cells = [(i, d) for i in range(3) for d in range(3)] if crossed else [(s, s) for s in range(seeds)]
    for margin, spread in (("clamp", 2.0), ("subtract", 0.7)):
        for run, (init, data) in enumerate(cells, start=1):
            encoder = 60.0 + spread * rng.standard_normal()
            accs = [round(encoder + 0.5 * rng.standard_normal(), 3) for _ in range(probes)]
            rid = f"{margin}-s{run}"
            doc = result_doc(rid, margin, "detach", run, accs[0], epochs=3)
            doc["probe_test_accs"] = accs
            doc["untrained_test_acc"] = 55.0 + 0.3 * rng.standard_normal()
            doc["config"]["seeds"] = {"init": init, "data": data, "augment": None, "split": None, "probe": None}
            for h in doc["history"]:  # a per-seed layer-0 CAR that tracks the encoder's accuracy
                for rec in h.get("layers", []):
                    if rec["layer"] == 0:
                        rec["car"] = 0.3 + 0.01 * (encoder - 60.0) + 0.02 * h["epoch"]
            folder = root / "runs" / rid
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "result.json").write_text(json.dumps(doc))
            if predictions:
                right = rng.random((probes, N_EXAMPLES)) < np.array(accs)[:, None] / 100
                preds = np.where(right, labels[None, :], (labels[None, :] + 1) % 10)
                write_predictions_file(folder, preds, labels)
    return root
