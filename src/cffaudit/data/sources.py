"""The dataset registry: everything cffaudit knows about each dataset, in one place.

Each entry of ``SOURCES`` says what a dataset consists of (its files, their published
checksums, where to download them), how many classes it has, which reader in
``readers.py`` turns its files into uint8 tensors, its default augmentation preset
(``data.augment: auto``) and its per-channel normalisation under each choice of
``data.normalization``. Adding a dataset means adding an entry here and, if its format
is new, a reader; the config's choices and ``--dataset`` follow from this registry.

This module imports no torch (the config reads it; readers are named, and loaded when a
dataset is read).

The MD5s are facts published with the datasets (and used by torchvision's dataset
classes); the per-file CIFAR digests are of the extracted batch files, so the files that
are actually read are the ones verified. Fashion-MNIST lists both the MD5 of each ``.gz``
as published by Zalando and the MD5 of its decompressed bytes, because Debian's
``dataset-fashion-mnist`` package recompresses the files (different ``.gz`` bytes, same
content) and users may also keep them un-gzipped.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DataFile:
    """One file a dataset is read from.

    Attributes:
        path: location relative to the dataset folder in the canonical layout (the one a
            download produces).
        md5: accepted MD5s of the file as stored.
        content_md5: for ``.gz`` files, accepted MD5s of the decompressed bytes; also the
            MD5 of the un-gzipped file, which is accepted in place of the ``.gz``.
    """

    path: str
    md5: tuple[str, ...]
    content_md5: tuple[str, ...] = ()


@dataclass(frozen=True)
class Download:
    """One file to fetch; an archive lists the members to extract from it."""

    urls: tuple[str, ...]
    filename: str
    md5: str
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reader:
    """A reader function of ``cffaudit.data.readers``, named so this module needs no torch.

    Called with the paths of one split's files (in the order the registry lists them)
    and the class count, plus ``options``; returns ``(x, y)``: uint8 (N, C, H, W) images
    and int64 (N,) labels.
    """

    function: str
    options: tuple[tuple[str, Any], ...] = ()

    def __call__(self, paths: list[Path], num_classes: int) -> tuple[Any, Any]:
        readers = importlib.import_module("cffaudit.data.readers")
        return getattr(readers, self.function)(paths, num_classes=num_classes, **dict(self.options))


def reader(function: str, **options: Any) -> Reader:
    """A :class:`Reader` of ``readers.<function>`` with keyword ``options``."""
    return Reader(function, tuple(sorted(options.items())))


@dataclass(frozen=True)
class Stats:
    """Per-channel mean and std of images scaled to [0, 1], and where they come from."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str


@dataclass(frozen=True)
class Normalization:
    """A dataset's statistics under each choice of ``data.normalization``.

    Attributes:
        original: the constants of the original CFF code (github
            HosseinAghagol/ContrastiveFF, ``utils.py``, ``set_loaders``), which decides
            what the seed paper ran; for a dataset that code does not load, the
            statistics the seed paper names.
        dataset: the dataset's own training-set statistics (cffaudit before protocol 2).
    """

    original: Stats
    dataset: Stats


#: The choices of ``data.normalization``.
NORMALIZATIONS = tuple(f.name for f in fields(Normalization))
#: The default choice (protocol 2 of ``cffaudit.experiments.identity``): what the seed paper ran.
DEFAULT_NORMALIZATION = "original"


@dataclass(frozen=True)
class DatasetSource:
    """One dataset: its classes, files, reader, default augmentation and normalisation.

    Attributes:
        name: the registry name (``data.dataset``, ``--dataset``).
        num_classes: class count; None for a generated dataset, whose config sets it.
        augment: augmentation preset that ``data.augment: auto`` resolves to.
        normalization: per-channel statistics under each ``data.normalization``.
        train, test: the files of each split (empty for a generated dataset).
        downloads: what ``--download`` fetches.
        reader: turns one split's files into tensors; None for a generated dataset.
        system_dirs: system-wide install folders, tried after the default folder.
    """

    name: str
    num_classes: int | None
    augment: str
    normalization: Normalization
    train: tuple[DataFile, ...] = ()
    test: tuple[DataFile, ...] = ()
    downloads: tuple[Download, ...] = ()
    reader: Reader | None = None
    system_dirs: tuple[Path, ...] = ()

    @property
    def files(self) -> tuple[DataFile, ...]:
        return self.train + self.test

    @property
    def generated(self) -> bool:
        """True for a dataset made in memory (synthetic) rather than read from files."""
        return self.reader is None


# -- normalisation constants -------------------------------------------------------------

_ORIGINAL_CODE = "github HosseinAghagol/ContrastiveFF utils.py set_loaders, v2.Normalize"
# The original code's CIFAR constants: the usual CIFAR-10 mean with the often-copied std
# (0.2023, 0.1994, 0.2010), an average of per-image stds rather than the per-pixel std over
# the training set. It uses them for CIFAR-100 as well.
_CIFAR_ORIGINAL = Stats((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010),
                        f"{_ORIGINAL_CODE} (cifar10 and cifar100 branches)")
_CIFAR10_OWN = Stats((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
                     "CIFAR-10 training set, per-channel mean and std over all pixels")
_CIFAR100_OWN = Stats((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
                      "CIFAR-100 training set, per-channel mean and std over all pixels")
# The original code loads neither SVHN nor Fashion-MNIST (its datasets are CIFAR-10,
# CIFAR-100 and Tiny ImageNet); the seed paper normalises SVHN with SVHN's statistics
# (SPEC.md, augmentation table), so both choices use each dataset's own.
_SVHN_OWN = Stats((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970),
                  "SVHN train_32x32 set, per-channel mean and std (the original code has no SVHN)")
# Fashion-MNIST is grey; its single statistic is used for all three replicated channels.
_FMNIST_OWN = Stats((0.2860,) * 3, (0.3530,) * 3,
                    "Fashion-MNIST training set, mean and std over all pixels (the original code has no "
                    "Fashion-MNIST)")

_CIFAR10_DIR = "cifar-10-batches-py"
_CIFAR100_DIR = "cifar-100-python"
_FMNIST_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
# (file, MD5 of the published .gz, MD5 of its decompressed content)
_FMNIST_FILES = (
    ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
    ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
    ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965"),
)
_FMNIST = tuple(DataFile(name, (gz,), (raw,)) for name, gz, raw in _FMNIST_FILES)

SOURCES: dict[str, DatasetSource] = {
    "cifar10": DatasetSource(
        name="cifar10",
        num_classes=10,
        augment="cifar",
        normalization=Normalization(original=_CIFAR_ORIGINAL, dataset=_CIFAR10_OWN),
        reader=reader("read_cifar_split", label_key=b"labels"),
        train=(
            DataFile(f"{_CIFAR10_DIR}/data_batch_1", ("c99cafc152244af753f735de768cd75f",)),
            DataFile(f"{_CIFAR10_DIR}/data_batch_2", ("d4bba439e000b95fd0a9bffe97cbabec",)),
            DataFile(f"{_CIFAR10_DIR}/data_batch_3", ("54ebc095f3ab1f0389bbae665268c751",)),
            DataFile(f"{_CIFAR10_DIR}/data_batch_4", ("634d18415352ddfa80567beed471001a",)),
            DataFile(f"{_CIFAR10_DIR}/data_batch_5", ("482c414d41f54cd18b22e5b47cb7c3cb",)),
        ),
        test=(DataFile(f"{_CIFAR10_DIR}/test_batch", ("40351d587109b95175f43aff81a1287e",)),),
        downloads=(
            Download(
                urls=("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                filename="cifar-10-python.tar.gz",
                md5="c58f30108f718f92721af3b95e74349a",
                members=tuple(f"{_CIFAR10_DIR}/{n}" for n in
                              ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                               "data_batch_5", "test_batch")),
            ),
        ),
    ),
    "cifar100": DatasetSource(
        name="cifar100",
        num_classes=100,
        augment="cifar",
        normalization=Normalization(original=_CIFAR_ORIGINAL, dataset=_CIFAR100_OWN),
        reader=reader("read_cifar_split", label_key=b"fine_labels"),
        train=(DataFile(f"{_CIFAR100_DIR}/train", ("16019d7e3df5f24257cddd939b257f8d",)),),
        test=(DataFile(f"{_CIFAR100_DIR}/test", ("f0ef6b0ae62326f3e7ffdfab6717acfc",)),),
        downloads=(
            Download(
                urls=("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
                filename="cifar-100-python.tar.gz",
                md5="eb9058c3a382ffc7106e4002c42a8d85",
                members=(f"{_CIFAR100_DIR}/train", f"{_CIFAR100_DIR}/test"),
            ),
        ),
    ),
    "svhn": DatasetSource(
        name="svhn",
        num_classes=10,
        augment="svhn_easy",
        normalization=Normalization(original=_SVHN_OWN, dataset=_SVHN_OWN),
        reader=reader("read_svhn_split"),
        train=(DataFile("train_32x32.mat", ("e26dedcc434d2e4c54c9b2d4a06d8373",)),),
        test=(DataFile("test_32x32.mat", ("eb5a983be6a315427106f1b164d9cef3",)),),
        downloads=(
            Download(("http://ufldl.stanford.edu/housenumbers/train_32x32.mat",), "train_32x32.mat",
                     "e26dedcc434d2e4c54c9b2d4a06d8373"),
            Download(("http://ufldl.stanford.edu/housenumbers/test_32x32.mat",), "test_32x32.mat",
                     "eb5a983be6a315427106f1b164d9cef3"),
        ),
    ),
    "fashion_mnist": DatasetSource(
        name="fashion_mnist",
        num_classes=10,
        augment="fashion_mnist",
        normalization=Normalization(original=_FMNIST_OWN, dataset=_FMNIST_OWN),
        reader=reader("read_idx_split", side=28),
        train=_FMNIST[:2],
        test=_FMNIST[2:],
        downloads=tuple(Download(tuple(m + name for m in _FMNIST_MIRRORS), name, gz) for name, gz, _ in _FMNIST_FILES),
        # Where Debian's dataset-fashion-mnist package installs the files.
        system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
    ),
    # Generated in memory (data/synthetic.py), sized by the config; its images imitate
    # CIFAR-10's in range, so it is augmented and normalised like CIFAR-10.
    "synthetic": DatasetSource(
        name="synthetic",
        num_classes=None,
        augment="cifar",
        normalization=Normalization(original=_CIFAR_ORIGINAL, dataset=_CIFAR10_OWN),
    ),
}

#: The registry's names, in the order they are listed to users.
DATASETS = tuple(SOURCES)


def normalization_stats(dataset: str, choice: str = DEFAULT_NORMALIZATION) -> Stats:
    """Per-channel statistics of ``dataset`` under ``choice`` (a ``data.normalization``).

    Raises:
        ValueError: unknown dataset or choice (the message lists the choices).
    """
    if dataset not in SOURCES:
        raise ValueError(f"dataset: no normalisation statistics for {dataset!r}; "
                         f"choose one of {', '.join(SOURCES)}")
    if choice not in NORMALIZATIONS:
        raise ValueError(f"normalization: {choice!r} is not one of {list(NORMALIZATIONS)}")
    return getattr(SOURCES[dataset].normalization, choice)
