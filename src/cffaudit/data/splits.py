"""Finding, verifying and reading a dataset, and splitting it into train/val/test."""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from cffaudit.data import synthetic
from cffaudit.data.download import extract_members, fetch
from cffaudit.data.errors import REMEDY as _REMEDY
from cffaudit.data.errors import DatasetError
from cffaudit.data.integrity import md5_of_bytes, md5_of_file
from cffaudit.data.sources import DATASETS, SOURCES, DataFile, DatasetSource

# Held-out validation fraction: 5000 of CIFAR's 50000, the same proportion elsewhere.
VAL_FRACTION = 0.1


@dataclass(frozen=True)
class Splits:
    """A dataset as uint8 image tensors and int64 labels, split three ways.

    Images are (N, C, H, W) uint8: C=3, 32x32 for CIFAR, SVHN and synthetic; C=1, 28x28
    for Fashion-MNIST. ``val`` is held out of the training set by ``split_seed``; ``test``
    is the dataset's own test set.
    """

    name: str
    num_classes: int
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def default_data_dir(dataset: str) -> Path:
    """The folder a dataset is looked for (and downloaded to) when no --data-dir is given.

    ``$CFFAUDIT_DATA/<dataset>`` if that variable is set, else
    ``$XDG_CACHE_HOME/cffaudit/<dataset>`` (``~/.cache/cffaudit/<dataset>``).
    """
    _check_dataset(dataset)
    if os.environ.get("CFFAUDIT_DATA"):
        base = Path(os.environ["CFFAUDIT_DATA"]).expanduser()
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "cffaudit"
    return base / dataset


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise DatasetError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")


# -- locating and verifying files ------------------------------------------------------

def _candidates(root: Path, f: DataFile) -> list[Path]:
    """Where file ``f`` may sit under ``root``: canonical layout, flat, or un-gzipped."""
    names = [f.path, Path(f.path).name]
    if f.content_md5 and f.path.endswith(".gz"):
        names += [n[: -len(".gz")] for n in names]
    return [root / n for n in dict.fromkeys(names)]


def _find_files(source: DatasetSource, root: Path) -> dict[DataFile, Path]:
    found = {}
    for f in source.files:
        hit = next((p for p in _candidates(root, f) if p.is_file()), None)
        if hit is not None:
            found[f] = hit
    return found


def _verify(f: DataFile, path: Path) -> None:
    """Check ``path`` against the published MD5s of ``f`` before anything parses it."""
    if path.suffix == ".gz" or not f.content_md5:
        actual = md5_of_file(path)
        if actual in f.md5:
            return
        expected = f.md5
        if f.content_md5 and path.suffix == ".gz":
            # A recompressed .gz (Debian's package) has other bytes but the same content.
            try:
                with gzip.open(path, "rb") as fh:
                    actual_content = md5_of_bytes(fh.read())
            except (OSError, EOFError) as exc:
                raise DatasetError(f"{path}: not a readable gzip file ({exc}). {_REMEDY}") from exc
            if actual_content in f.content_md5:
                return
            expected = f.md5 + tuple(f"{m} (decompressed)" for m in f.content_md5)
    else:  # an un-gzipped IDX file: compare with the published content
        actual = md5_of_file(path)
        if actual in f.content_md5:
            return
        expected = f.content_md5
    raise DatasetError(
        f"checksum mismatch for {path}: MD5 {actual}, expected {' or '.join(expected)}. The file is "
        f"truncated, corrupted or not the published version, so it was not read. {_REMEDY}"
    )


def _download(source: DatasetSource, root: Path, progress: bool) -> None:
    for d in source.downloads:
        if d.members:
            if all((root / m).is_file() for m in d.members):
                continue
            archive = root / d.filename
            if not (archive.is_file() and md5_of_file(archive) == d.md5):
                fetch(d.urls, archive, md5=d.md5, progress=progress)
            extract_members(archive, d.members, root, progress=progress)
            archive.unlink()  # the extracted, checksummed members are all that is read
        else:
            target = root / d.filename
            if target.is_file() and md5_of_file(target) == d.md5:
                continue
            fetch(d.urls, target, md5=d.md5, progress=progress)


def _locate(source: DatasetSource, data_dir: str | None, download: bool, progress: bool) -> dict[DataFile, Path]:
    """Find every file of ``source`` in one folder (downloading if asked) and verify it."""
    home = Path(data_dir).expanduser() if data_dir is not None else default_data_dir(source.name)
    # An explicit --data-dir is taken at its word; otherwise system installs are a fallback.
    roots = [home] if data_dir is not None else [home, *source.system_dirs]
    partial: list[str] = []
    for root in roots:
        found = _find_files(source, root)
        if len(found) == len(source.files):
            break
        if found:
            partial.append(f"{root} has only {', '.join(sorted(p.name for p in found.values()))}")
    else:
        if not download:
            expected = "\n  ".join(f.path for f in source.files)
            where = "\n  ".join(str(r) for r in roots)
            raise DatasetError(
                f"dataset {source.name!r} not found. Expected these files:\n  {expected}\n"
                f"in (or directly under) one of:\n  {where}\n"
                + (("Incomplete: " + "; ".join(partial) + "\n") if partial else "")
                + "Re-run with --download to fetch them into the first folder, or pass "
                "--data-dir pointing at a folder that holds them."
            )
        _download(source, home, progress)
        found = _find_files(source, home)
        missing = [f.path for f in source.files if f not in found]
        if missing:
            raise DatasetError(f"after downloading, {home} still lacks {', '.join(missing)}; delete the folder and retry")
    for f, path in found.items():
        _verify(f, path)  # all files, before any is read: nothing is half-read
    return found


# -- reading each dataset --------------------------------------------------------------

def _read_real(source: DatasetSource, paths: dict[DataFile, Path]):
    """(train_x, train_y, test_x, test_y) of a verified dataset, by its registered reader."""
    assert source.reader is not None  # generated datasets never get here
    train = source.reader([paths[f] for f in source.train], source.num_classes)
    test = source.reader([paths[f] for f in source.test], source.num_classes)
    return (*train, *test)


def _positive_int(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DatasetError(f"{name}: must be an integer >= {minimum}, got {value!r}")


def _first(idx: torch.Tensor, limit: int | None, name: str, what: str) -> torch.Tensor:
    """The first `limit` indices (all with None); more than there are is an error."""
    if limit is None:
        return idx
    if limit > idx.numel():
        flag = "--" + name.replace("_", "-")
        raise DatasetError(f"{name}={limit} exceeds the {idx.numel()} {what}; use a smaller {flag} or none")
    return idx[:limit]


@dataclass(frozen=True)
class Dataset:
    """A dataset as read, before any split: its own training and test sets."""

    name: str
    num_classes: int
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def load_splits(
    dataset: str,
    *,
    data_dir: str | None = None,
    download: bool = False,
    split_seed: int = 0,
    limit_train: int | None = None,
    limit_val: int | None = None,
    synthetic_train: int = 5000,
    synthetic_test: int = 1000,
    synthetic_classes: int = 10,
    progress: bool = True,
) -> Splits:
    """Load a dataset and split it into train / validation / test.

    Args:
        dataset: a name of the registry (``sources.DATASETS``).
        data_dir: folder holding the files (default :func:`default_data_dir`; for
            Fashion-MNIST, Debian's ``/usr/share/datasets/fashion-mnist`` is a fallback).
        download: fetch missing files from the datasets' canonical sources.
        split_seed: seed of the permutation that holds out the validation set (10% of the
            training set: 5000 for CIFAR). The training set keeps the permuted order.
        limit_train: keep only the first N training images after the split.
        limit_val: keep only the first N validation images (for quick runs; the
            held-out set itself, and so the training set, does not change).
        synthetic_train, synthetic_test, synthetic_classes: sizes of the synthetic dataset
            (ignored for real datasets).
        progress: show download progress bars.

    Returns:
        :class:`Splits` with uint8 images and int64 labels.

    Raises:
        DatasetError: unknown dataset, bad argument, missing/corrupt/tampered files.
    """
    _check_dataset(dataset)
    check_split_arguments(split_seed, limit_train, limit_val)  # before any file is read
    data = read_dataset(dataset, data_dir=data_dir, download=download, synthetic_train=synthetic_train,
                        synthetic_test=synthetic_test, synthetic_classes=synthetic_classes, progress=progress)
    return split_dataset(data, split_seed=split_seed, limit_train=limit_train, limit_val=limit_val)


def check_split_arguments(split_seed: int, limit_train: int | None, limit_val: int | None) -> None:
    """Refuse a split seed or limits that could not split any dataset."""
    if isinstance(split_seed, bool) or not isinstance(split_seed, int):
        raise DatasetError(f"split_seed: must be an integer, got {split_seed!r}")
    if limit_train is not None:
        _positive_int("limit_train", limit_train)
    if limit_val is not None:
        _positive_int("limit_val", limit_val)


def read_dataset(
    dataset: str,
    *,
    data_dir: str | None = None,
    download: bool = False,
    synthetic_train: int = 5000,
    synthetic_test: int = 1000,
    synthetic_classes: int = 10,
    progress: bool = True,
) -> Dataset:
    """Locate, verify and read a dataset once (arguments as :func:`load_splits`); split
    it with :func:`split_dataset`, as often as there are split seeds."""
    _check_dataset(dataset)
    source = SOURCES[dataset]
    if source.generated:
        _positive_int("synthetic_train", synthetic_train, 2)
        _positive_int("synthetic_test", synthetic_test)
        _positive_int("synthetic_classes", synthetic_classes, 2)
        train_x, train_y = synthetic.make_synthetic(synthetic_train, num_classes=synthetic_classes,
                                                    seed=synthetic.TRAIN_SEED)
        test_x, test_y = synthetic.make_synthetic(synthetic_test, num_classes=synthetic_classes,
                                                  seed=synthetic.TEST_SEED)
        return Dataset(dataset, synthetic_classes, train_x, train_y, test_x, test_y)
    return Dataset(dataset, source.num_classes, *_read_real(source, _locate(source, data_dir, download, progress)))


def split_dataset(data: Dataset, *, split_seed: int = 0, limit_train: int | None = None,
                  limit_val: int | None = None) -> Splits:
    """Hold out the validation set of ``split_seed`` and apply the limits (see :func:`load_splits`)."""
    check_split_arguments(split_seed, limit_train, limit_val)
    dataset, train_x, train_y = data.name, data.train_x, data.train_y
    n = train_x.shape[0]
    n_val = max(1, int(n * VAL_FRACTION))
    if n - n_val < 1:
        raise DatasetError(f"{dataset}: {n} training images are too few to hold out a validation set")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    train_idx = _first(train_idx, limit_train, "limit_train", f"training images of {dataset} after the validation split")
    val_idx = _first(val_idx, limit_val, "limit_val", f"validation images of {dataset}")
    return Splits(
        name=dataset,
        num_classes=data.num_classes,
        train_x=train_x[train_idx].contiguous(),
        train_y=train_y[train_idx].contiguous(),
        val_x=train_x[val_idx].contiguous(),
        val_y=train_y[val_idx].contiguous(),
        test_x=data.test_x.contiguous(),
        test_y=data.test_y.contiguous(),
    )
