"""What each real dataset consists of: its files, their published checksums, its sources.

The MD5s are facts published with the datasets (and used by torchvision's dataset
classes); the per-file CIFAR digests are of the extracted batch files, so the files that
are actually read are the ones verified. Fashion-MNIST lists both the MD5 of each ``.gz``
as published by Zalando and the MD5 of its decompressed bytes, because Debian's
``dataset-fashion-mnist`` package recompresses the files (different ``.gz`` bytes, same
content) and users may also keep them un-gzipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
class DatasetSource:
    """A real dataset: its class count, files, downloads and system-wide install folders."""

    name: str
    num_classes: int
    train: tuple[DataFile, ...]
    test: tuple[DataFile, ...]
    downloads: tuple[Download, ...]
    system_dirs: tuple[Path, ...] = ()

    @property
    def files(self) -> tuple[DataFile, ...]:
        return self.train + self.test


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
        train=_FMNIST[:2],
        test=_FMNIST[2:],
        downloads=tuple(Download(tuple(m + name for m in _FMNIST_MIRRORS), name, gz) for name, gz, _ in _FMNIST_FILES),
        # Where Debian's dataset-fashion-mnist package installs the files.
        system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
    ),
}
