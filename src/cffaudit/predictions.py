"""Per-example test predictions of a run: ``predictions.npz`` beside its ``result.json``.

Training writes, per test example, the class each probe predicted at the probe epoch
whose accuracy is reported (the best validation epoch), the true labels and their
checksum, and the untrained baseline's predictions when it ran. The analysis reads
them (`read_predictions`) to tell the test set's sampling variance from the variance
between runs. Numpy only: nothing here imports torch.

Arrays in the file:
    probes: (K, N) predicted class of probe j for test example i (uint8 up to 256
        classes, int16 above), K = stage2.probe_seeds; row 0 gives ``test_acc``.
    labels: (N,) the true classes, in the same dtype.
    labels_sha256: the checksum of the labels (`labels_checksum`), as a 0-d string.
    untrained: (N,) the untrained baseline's predictions; absent when it did not run.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from cffaudit.atomic import atomic_write_bytes

PREDICTIONS_NAME = "predictions.npz"


def labels_checksum(labels: np.ndarray) -> str:
    """sha256 of the labels as little-endian int64, whatever dtype holds them, so two
    runs on one test set (in one order) have the same checksum."""
    return hashlib.sha256(np.ascontiguousarray(labels, dtype="<i8").tobytes()).hexdigest()


def compact_classes(values: np.ndarray, num_classes: int) -> np.ndarray:
    """Class indices in the smallest dtype that holds `num_classes` classes."""
    return np.asarray(values).astype(np.uint8 if num_classes <= 256 else np.int16)


@dataclass(frozen=True)
class Predictions:
    """A run's test predictions (see the module docstring for the arrays)."""

    probes: np.ndarray  # (K, N)
    labels: np.ndarray  # (N,)
    labels_sha256: str
    untrained: Optional[np.ndarray] = None  # (N,)

    @property
    def correct(self) -> np.ndarray:
        """(K, N) bool: whether probe j classified test example i correctly."""
        return self.probes == self.labels[None, :]

    @property
    def accuracies(self) -> np.ndarray:
        """(K,) test accuracy of each probe, in percent: 100 * correct / N in float64, the
        number training stored (a mean first, then * 100, can differ in the last bit)."""
        return 100.0 * self.correct.sum(axis=1) / self.labels.shape[0]

    @property
    def untrained_correct(self) -> Optional[np.ndarray]:
        """(N,) bool for the untrained baseline, or None when it did not run."""
        return None if self.untrained is None else self.untrained == self.labels


def write_predictions(run_dir: str | Path, probes: np.ndarray, labels: np.ndarray, num_classes: int,
                      untrained: Optional[np.ndarray] = None) -> Path:
    """Write ``run_dir/predictions.npz`` atomically; returns its path.

    Args:
        run_dir: the run's folder (beside its result.json).
        probes: (K, N) predicted classes.
        labels: (N,) true classes.
        num_classes: classes of the dataset (chooses the dtype).
        untrained: (N,) the untrained baseline's predictions, or None.
    """
    probes, labels = np.atleast_2d(probes), np.asarray(labels)
    if probes.shape[1] != labels.shape[0] or (untrained is not None and np.shape(untrained) != labels.shape):
        raise ValueError(f"predictions: probes {probes.shape}, labels {labels.shape} and untrained "
                         f"{None if untrained is None else np.shape(untrained)} must cover the same test examples")
    arrays = {"probes": compact_classes(probes, num_classes), "labels": compact_classes(labels, num_classes),
              "labels_sha256": np.array(labels_checksum(labels))}
    if untrained is not None:
        arrays["untrained"] = compact_classes(untrained, num_classes)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return atomic_write_bytes(Path(run_dir) / PREDICTIONS_NAME, buf.getvalue())


def read_predictions(run_dir: str | Path) -> Predictions:
    """The predictions of a run: its folder or the ``predictions.npz`` file itself.

    Raises:
        FileNotFoundError: there is no predictions.npz (a run trained before they were
            written, or one that failed).
        ValueError: the file is unreadable, lacks an array, or its labels do not match
            their checksum.
    """
    path = Path(run_dir)
    if path.is_dir():
        path = path / PREDICTIONS_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path}: no per-example predictions; runs write them since cffaudit records "
                                "predictions.npz (retrain the run, or leave it out of the test-set analysis)")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {name: f[name] for name in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"{path}: cannot read predictions ({exc}); delete it and retrain the run") from exc
    missing = sorted({"probes", "labels", "labels_sha256"} - set(arrays))
    if missing:
        raise ValueError(f"{path}: missing array(s) {missing}; not a cffaudit predictions file")
    labels, checksum = arrays["labels"], str(arrays["labels_sha256"])
    if labels_checksum(labels) != checksum:
        raise ValueError(f"{path}: the labels do not match their checksum; the file is damaged, retrain the run")
    return Predictions(probes=arrays["probes"], labels=labels, labels_sha256=checksum,
                       untrained=arrays.get("untrained"))
