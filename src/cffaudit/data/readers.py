"""Readers of the datasets' real on-disk formats, each returning uint8 tensors.

Every reader validates structure strictly (keys, dtype, shape, sizes, label range) and
raises :class:`DatasetError` naming the file, so a wrong or damaged file fails loudly
instead of yielding a silently wrong dataset. Checksums are verified by the caller
(``splits.py``) before a reader is called; the readers themselves must be safe on any
input, which is why CIFAR's pickles go through the restricted unpickler.

The ``read_*_split`` functions at the end are the ones the dataset registry
(``sources.py``) names: each reads one split's files into ``(x, y)``.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from cffaudit.data.errors import REMEDY, DatasetError
from cffaudit.data.integrity import safe_unpickle

CIFAR_SIDE = 32
_CIFAR_PIXELS = 3 * CIFAR_SIDE * CIFAR_SIDE

# IDX magic numbers: two zero bytes, a type code (0x08 = unsigned byte), the rank.
IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801


def _labels_tensor(values: np.ndarray, path: Path, num_classes: int) -> torch.Tensor:
    """Check labels are integers in [0, num_classes) and return them as int64."""
    if values.size and not np.issubdtype(values.dtype, np.integer):
        if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
            raise DatasetError(f"{path}: labels are not integers; the file is not a valid dataset file")
    labels = values.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(
            f"{path}: labels must lie in 0..{num_classes - 1}, found {labels.min()}..{labels.max()}; "
            "the file is corrupted or belongs to another dataset"
        )
    return torch.from_numpy(labels.copy())


def read_cifar_batch(path: Path, *, label_key: bytes, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one CIFAR python-pickle batch (``data_batch_1``, ``train``, ``test``, ...).

    Args:
        path: the batch file.
        label_key: ``b"labels"`` for CIFAR-10, ``b"fine_labels"`` for CIFAR-100.
        num_classes: labels must lie in ``[0, num_classes)``.

    Returns:
        ``(x, y)``: uint8 (N, 3, 32, 32) and int64 (N,).
    """
    try:
        with open(path, "rb") as fh:
            batch = safe_unpickle(fh)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, struct.error, UnicodeDecodeError, MemoryError) as exc:
        raise DatasetError(
            f"{path}: not a readable CIFAR batch ({type(exc).__name__}: {exc}). Delete it and "
            "re-run with --download, or point --data-dir at the original files."
        ) from exc
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DatasetError(
            f"{path}: expected a dict with keys b'data' and {label_key!r}, found {keys}; "
            "this is not a CIFAR batch of this dataset"
        )
    data, labels = batch[b"data"], batch[label_key]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _CIFAR_PIXELS:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{path}: b'data' must be a uint8 array (N, {_CIFAR_PIXELS}), found {desc}")
    if not isinstance(labels, (list, np.ndarray)) or len(labels) != data.shape[0]:
        raise DatasetError(
            f"{path}: {label_key!r} must hold one label per image ({data.shape[0]}), "
            f"found {len(labels) if hasattr(labels, '__len__') else type(labels).__name__}"
        )
    if isinstance(labels, list) and not all(type(v) is int for v in labels):
        raise DatasetError(f"{path}: {label_key!r} must be a list of integers")
    y = _labels_tensor(np.asarray(labels), path, num_classes)
    # Rows are stored channel-major (1024 R, then G, then B), row by row: exactly (3, 32, 32).
    x = torch.from_numpy(data.reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE).copy())
    return x, y


def read_svhn_mat(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Read an SVHN cropped-digits ``.mat`` file (``train_32x32.mat``, ``test_32x32.mat``).

    The file holds ``X`` (32, 32, 3, N) uint8 and ``y`` (N, 1) with digits 1..10, where
    10 stands for the digit 0; labels are mapped 10 -> 0.

    Returns:
        ``(x, y)``: uint8 (N, 3, 32, 32) and int64 (N,) in 0..9.
    """
    import scipy.io  # lazily: only SVHN needs it

    try:
        # MATLAB v5 files hold plain arrays; loadmat never unpickles or evaluates code.
        mat = scipy.io.loadmat(str(path), variable_names=("X", "y"))
    except Exception as exc:  # scipy raises a zoo of types on damaged files
        raise DatasetError(
            f"{path}: not a readable SVHN .mat file ({type(exc).__name__}: {exc}). Delete it and "
            "re-run with --download, or point --data-dir at the original files."
        ) from exc
    if "X" not in mat or "y" not in mat:
        raise DatasetError(f"{path}: expected variables X and y, found {sorted(k for k in mat if not k.startswith('__'))}")
    X, y = mat["X"], mat["y"]
    if X.dtype != np.uint8 or X.ndim != 4 or X.shape[:3] != (32, 32, 3):
        raise DatasetError(f"{path}: X must be uint8 (32, 32, 3, N), found {X.dtype} {X.shape}")
    n = X.shape[3]
    if y.size != n or (y.ndim == 2 and y.shape[1] != 1) or y.ndim > 2:
        raise DatasetError(f"{path}: y must be (N, 1) with N = {n} images, found {y.shape}")
    y = y.reshape(-1)
    if n and (y.min() < 1 or y.max() > 10):
        raise DatasetError(f"{path}: SVHN labels must lie in 1..10, found {y.min()}..{y.max()}")
    labels = _labels_tensor(np.where(y == 10, 0, y), path, 10)
    x = torch.from_numpy(np.ascontiguousarray(X.transpose(3, 2, 0, 1)))  # (N, 3, 32, 32)
    return x, labels


def _read_idx_bytes(path: Path) -> bytes:
    """The decompressed bytes of an IDX file, gzipped (``.gz``) or raw."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(
            f"{path}: could not be decompressed ({type(exc).__name__}: {exc}); it is truncated or "
            "not gzip. Delete it and re-run with --download."
        ) from exc


def _parse_idx(path: Path, data: bytes, magic: int, rank: int) -> tuple[tuple[int, ...], np.ndarray]:
    header = 4 + 4 * rank
    if len(data) < header:
        raise DatasetError(f"{path}: only {len(data)} bytes, shorter than an IDX header")
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise DatasetError(
            f"{path}: IDX magic number 0x{found:08x}, expected 0x{magic:08x} "
            f"({'images' if magic == IDX_IMAGES_MAGIC else 'labels'}); wrong or corrupted file"
        )
    dims = struct.unpack(f">{rank}I", data[4:header])
    expected = int(np.prod(dims, dtype=np.int64))
    if len(data) - header != expected:
        raise DatasetError(
            f"{path}: header promises {expected} bytes of {dims} data, file holds {len(data) - header}; "
            "it is truncated or corrupted"
        )
    return dims, np.frombuffer(data, dtype=np.uint8, offset=header)


def read_idx_images(path: Path) -> torch.Tensor:
    """Read an IDX3 unsigned-byte image file (``*-images-idx3-ubyte[.gz]``).

    Returns:
        uint8 (N, 1, rows, cols).
    """
    dims, flat = _parse_idx(path, _read_idx_bytes(path), IDX_IMAGES_MAGIC, 3)
    return torch.from_numpy(flat.reshape(dims[0], 1, dims[1], dims[2]).copy())


def read_idx_labels(path: Path, *, num_classes: int) -> torch.Tensor:
    """Read an IDX1 unsigned-byte label file (``*-labels-idx1-ubyte[.gz]``).

    Returns:
        int64 (N,) in ``[0, num_classes)``.
    """
    _, flat = _parse_idx(path, _read_idx_bytes(path), IDX_LABELS_MAGIC, 1)
    return _labels_tensor(flat, path, num_classes)


# -- one split of a registered dataset (named by sources.SOURCES) ------------------------------

def read_cifar_split(paths: list[Path], *, num_classes: int, label_key: bytes) -> tuple[torch.Tensor, torch.Tensor]:
    """The CIFAR batches of one split, concatenated in the given order."""
    parts = [read_cifar_batch(p, label_key=label_key, num_classes=num_classes) for p in paths]
    return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])


def read_svhn_split(paths: list[Path], *, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One SVHN ``.mat`` file; its labels are the ten digits whatever ``num_classes`` says."""
    (path,) = paths
    return read_svhn_mat(path)


def read_idx_split(paths: list[Path], *, num_classes: int, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An IDX image file and its label file: uint8 (N, 1, side, side) and int64 (N,)."""
    images_path, labels_path = paths
    x = read_idx_images(images_path)
    y = read_idx_labels(labels_path, num_classes=num_classes)
    if x.shape[0] != y.shape[0] or x.shape[2:] != (side, side):
        raise DatasetError(
            f"{images_path} holds {tuple(x.shape)} images and {labels_path} "
            f"{y.shape[0]} labels; expected matching counts of {side}x{side} images. {REMEDY}"
        )
    return x, y
