"""Writers of tiny files in the datasets' real on-disk formats, for reader tests."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import scipy.io


def images(n: int, channels: int = 3, side: int = 32, seed: int = 0) -> np.ndarray:
    """Random uint8 images (n, channels, side, side) whose first pixel encodes the index."""
    x = np.random.default_rng(seed).integers(0, 256, size=(n, channels, side, side), dtype=np.uint8)
    x[:, 0, 0, 0] = np.arange(n) % 256
    return x


def write_cifar_batch(path: Path, x: np.ndarray, labels, *, label_key: bytes = b"labels", protocol: int = 2) -> Path:
    """A CIFAR python batch: dict with b'data' (N, 3072) uint8 channel-major and labels."""
    batch = {b"batch_label": b"testing batch", b"data": x.reshape(len(x), -1), label_key: list(map(int, labels)),
             b"filenames": [b"img%d.png" % i for i in range(len(x))]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(batch, protocol=protocol))
    return path


def write_svhn_mat(path: Path, x: np.ndarray, digits: np.ndarray) -> Path:
    """An SVHN .mat: X (32, 32, 3, N) uint8 and y (N, 1) with 1..10 (10 = digit 0)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"X": np.ascontiguousarray(x.transpose(2, 3, 1, 0)),
                                 "y": np.asarray(digits, dtype=np.uint8).reshape(-1, 1)})
    return path


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, magic: int, *, compress: bool = True) -> Path:
    """An IDX file (images: magic 0x803, (N, 28, 28); labels: magic 0x801, (N,)), gzipped or raw."""
    data = idx_bytes(array, magic)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


class Malicious:
    """Unpickling this would create ``sentinel`` via builtins.open: a stand-in for os.system."""

    def __init__(self, sentinel: Path):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def write_malicious_cifar_batch(path: Path, sentinel: Path) -> Path:
    """A batch-shaped pickle whose data field would run code when unpickled naively."""
    batch = {b"data": Malicious(sentinel), b"labels": [0]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(batch, protocol=2))
    return path
