"""load_splits: locating and verifying files, split sizes and seeds, synthetic data."""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from cffaudit.data import DatasetError, default_data_dir, load_splits, make_synthetic
from cffaudit.data import readers, sources, splits
from cffaudit.data.integrity import md5_of_bytes, md5_of_file
from cffaudit.data.readers import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC

from ._formats import idx_bytes, images, write_cifar_batch, write_idx, write_malicious_cifar_batch, write_svhn_mat

DEBIAN_FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """No test may see or fill the user's real dataset cache."""
    monkeypatch.setenv("CFFAUDIT_DATA", str(tmp_path / "cache"))


def trust_fixture_files(monkeypatch, dataset: str, root: Path) -> None:
    """Replace the published MD5s of ``dataset`` by those of the fixture files under root."""
    src = sources.SOURCES[dataset]

    def rehash(f):
        path = root / f.path
        if f.content_md5:
            with gzip.open(path, "rb") as fh:
                content = md5_of_bytes(fh.read())
            return dataclasses.replace(f, md5=(md5_of_file(path),), content_md5=(content,))
        return dataclasses.replace(f, md5=(md5_of_file(path),))

    patched = dataclasses.replace(src, train=tuple(map(rehash, src.train)), test=tuple(map(rehash, src.test)))
    monkeypatch.setitem(sources.SOURCES, dataset, patched)


def make_cifar10(root: Path, per_batch: int = 20) -> Path:
    rng = np.random.default_rng(1)
    for i in range(1, 6):
        write_cifar_batch(root / "cifar-10-batches-py" / f"data_batch_{i}", images(per_batch, seed=i),
                          rng.integers(0, 10, per_batch))
    write_cifar_batch(root / "cifar-10-batches-py" / "test_batch", images(30, seed=9), rng.integers(0, 10, 30))
    return root


def make_fmnist(root: Path, n_train: int = 50, n_test: int = 20) -> Path:
    rng = np.random.default_rng(2)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images(n, 1, 28)[:, 0], IDX_IMAGES_MAGIC)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n).astype(np.uint8), IDX_LABELS_MAGIC)
    return root


# -- arguments -------------------------------------------------------------------------

def test_unknown_dataset_lists_the_choices():
    with pytest.raises(DatasetError, match="choose one of cifar10, cifar100, svhn, fashion_mnist, synthetic"):
        load_splits("mnist")


@pytest.mark.parametrize("kwargs", [{"limit_train": 0}, {"limit_train": 2.5}, {"synthetic_train": 1},
                                    {"synthetic_classes": 1}, {"split_seed": "1"}])
def test_bad_arguments_are_dataset_errors(kwargs):
    with pytest.raises(DatasetError):
        load_splits("synthetic", **kwargs)


def test_default_data_dir_follows_the_environment(tmp_path, monkeypatch):
    assert default_data_dir("svhn") == tmp_path / "cache" / "svhn"
    monkeypatch.delenv("CFFAUDIT_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_data_dir("cifar10") == tmp_path / "xdg" / "cffaudit" / "cifar10"


# -- missing, corrupt and tampered files -------------------------------------------------

def test_missing_files_error_lists_files_locations_and_remedies(tmp_path):
    with pytest.raises(DatasetError) as info:
        load_splits("cifar10", data_dir=str(tmp_path / "nowhere"))
    msg = str(info.value)
    assert "cifar-10-batches-py/data_batch_1" in msg and "test_batch" in msg
    assert str(tmp_path / "nowhere") in msg
    assert "--download" in msg and "--data-dir" in msg


def test_checksum_mismatch_names_the_file_and_reads_nothing(tmp_path, monkeypatch):
    root = make_cifar10(tmp_path / "c10")  # fixture files cannot match the published MD5s
    calls = []
    monkeypatch.setattr(readers, "read_cifar_batch", lambda *a, **k: calls.append(a))
    with pytest.raises(DatasetError, match=r"checksum mismatch for .*data_batch_1.*--download"):
        load_splits("cifar10", data_dir=str(root))
    assert calls == []


def test_one_bad_file_stops_the_load_before_any_file_is_read(tmp_path, monkeypatch):
    root = make_cifar10(tmp_path / "c10")
    trust_fixture_files(monkeypatch, "cifar10", root)
    test_batch = root / "cifar-10-batches-py" / "test_batch"
    test_batch.write_bytes(test_batch.read_bytes()[:-1])  # truncated after the MD5s were published
    calls = []
    monkeypatch.setattr(readers, "read_cifar_batch", lambda *a, **k: calls.append(a))
    with pytest.raises(DatasetError, match="test_batch"):
        load_splits("cifar10", data_dir=str(root))
    assert calls == []


def test_tampered_pickle_with_a_matching_checksum_is_still_refused(tmp_path, monkeypatch):
    # Defence in depth: even if a checksum table were wrong, the unpickler refuses code.
    root = make_cifar10(tmp_path / "c10")
    sentinel = tmp_path / "pwned"
    write_malicious_cifar_batch(root / "cifar-10-batches-py" / "data_batch_3", sentinel)
    trust_fixture_files(monkeypatch, "cifar10", root)
    with pytest.raises(DatasetError, match="refusing to load global"):
        load_splits("cifar10", data_dir=str(root))
    assert not sentinel.exists()


# -- real datasets from fixture files ----------------------------------------------------

def test_cifar10_from_fixture_files(tmp_path, monkeypatch):
    root = make_cifar10(tmp_path / "c10")
    trust_fixture_files(monkeypatch, "cifar10", root)
    s = load_splits("cifar10", data_dir=str(root))
    assert (s.name, s.num_classes) == ("cifar10", 10)
    assert (len(s.train_x), len(s.val_x), len(s.test_x)) == (90, 10, 30)
    assert s.train_x.dtype == torch.uint8 and s.train_x.shape[1:] == (3, 32, 32)
    # The flat layout (batch files directly in --data-dir) is found too.
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in (root / "cifar-10-batches-py").iterdir():
        (flat / p.name).write_bytes(p.read_bytes())
    s2 = load_splits("cifar10", data_dir=str(flat))
    assert torch.equal(s.train_x, s2.train_x) and torch.equal(s.test_y, s2.test_y)


def test_cifar100_from_fixture_files(tmp_path, monkeypatch):
    root = tmp_path / "c100"
    write_cifar_batch(root / "cifar-100-python" / "train", images(40), np.arange(40) * 2, label_key=b"fine_labels")
    write_cifar_batch(root / "cifar-100-python" / "test", images(10), np.arange(10) + 90, label_key=b"fine_labels")
    trust_fixture_files(monkeypatch, "cifar100", root)
    s = load_splits("cifar100", data_dir=str(root))
    assert s.num_classes == 100 and (len(s.train_x), len(s.val_x)) == (36, 4)
    assert s.test_y.tolist() == list(range(90, 100))


def test_svhn_from_fixture_files(tmp_path, monkeypatch):
    root = tmp_path / "svhn"
    write_svhn_mat(root / "train_32x32.mat", images(30), np.arange(30) % 10 + 1)
    write_svhn_mat(root / "test_32x32.mat", images(10), np.full(10, 10))
    trust_fixture_files(monkeypatch, "svhn", root)
    s = load_splits("svhn", data_dir=str(root))
    assert (len(s.train_x), len(s.val_x), len(s.test_x)) == (27, 3, 10)
    assert s.test_y.tolist() == [0] * 10


def test_fashion_mnist_from_fixture_files_gz_and_raw(tmp_path, monkeypatch):
    root = make_fmnist(tmp_path / "fm")
    trust_fixture_files(monkeypatch, "fashion_mnist", root)
    s = load_splits("fashion_mnist", data_dir=str(root))
    assert s.train_x.shape == (45, 1, 28, 28) and s.val_x.shape == (5, 1, 28, 28) and s.test_x.shape == (20, 1, 28, 28)
    # Recompressed .gz files (as Debian ships them) verify by their decompressed content.
    for p in root.glob("*.gz"):
        with gzip.open(p, "rb") as fh:
            content = fh.read()
        p.write_bytes(gzip.compress(content, compresslevel=1, mtime=12345))
    assert torch.equal(load_splits("fashion_mnist", data_dir=str(root)).test_x, s.test_x)
    # Un-gzipped files are accepted in place of the .gz.
    raw = tmp_path / "raw"
    raw.mkdir()
    for p in root.glob("*.gz"):
        with gzip.open(p, "rb") as fh:
            (raw / p.name[:-3]).write_bytes(fh.read())
    assert torch.equal(load_splits("fashion_mnist", data_dir=str(raw)).train_x, s.train_x)
    # ... but not with other content.
    (raw / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.ones(20, np.uint8), IDX_LABELS_MAGIC))
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte"):
        load_splits("fashion_mnist", data_dir=str(raw))


@pytest.mark.skipif(not (DEBIAN_FMNIST / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Debian's dataset-fashion-mnist package is not installed")
def test_debian_fashion_mnist_is_found_without_data_dir():
    s = load_splits("fashion_mnist", progress=False)  # CFFAUDIT_DATA points at an empty folder
    assert len(s.train_x) + len(s.val_x) == 60000 and len(s.val_x) == 6000
    assert s.test_x.shape == (10000, 1, 28, 28) and s.test_x.dtype == torch.uint8
    for y in (s.train_y, s.val_y, s.test_y):
        assert y.dtype == torch.int64 and y.min() == 0 and y.max() == 9
    assert torch.equal(torch.bincount(s.test_y), torch.full((10,), 1000))


# -- splitting -------------------------------------------------------------------------

def _rows(x: torch.Tensor) -> list[bytes]:
    return sorted(r.numpy().tobytes() for r in x.flatten(1))


def test_split_sizes_and_partition():
    s = load_splits("synthetic", synthetic_train=300, synthetic_test=70, synthetic_classes=5)
    assert (len(s.train_x), len(s.val_x), len(s.test_x)) == (270, 30, 70)
    assert s.num_classes == 5 and s.train_y.max() < 5
    full_x, _ = make_synthetic(300, num_classes=5)
    assert _rows(torch.cat([s.train_x, s.val_x])) == _rows(full_x)  # a partition, nothing lost or repeated


def test_cifar_sized_split_is_45k_5k(monkeypatch):
    fake = (torch.zeros(50000, 3, 32, 32, dtype=torch.uint8), torch.arange(50000) % 10,
            torch.zeros(10000, 3, 32, 32, dtype=torch.uint8), torch.arange(10000) % 10)
    monkeypatch.setattr(splits, "_locate", lambda *a: {})
    monkeypatch.setattr(splits, "_read_real", lambda *a: fake)
    s = load_splits("cifar10")
    assert (len(s.train_x), len(s.val_x), len(s.test_x)) == (45000, 5000, 10000)
    assert len(set(s.train_y.tolist()) | set(s.val_y.tolist())) == 10


def test_split_is_determined_by_split_seed():
    a = load_splits("synthetic", synthetic_train=400, split_seed=3)
    b = load_splits("synthetic", synthetic_train=400, split_seed=3)
    c = load_splits("synthetic", synthetic_train=400, split_seed=4)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.val_y, b.val_y)
    assert not torch.equal(a.val_x, c.val_x)
    assert torch.equal(a.test_x, c.test_x)  # the test set does not depend on the split


def test_limit_train_keeps_the_first_images_after_the_split():
    full = load_splits("synthetic", synthetic_train=400, split_seed=1)
    limited = load_splits("synthetic", synthetic_train=400, split_seed=1, limit_train=50)
    assert torch.equal(limited.train_x, full.train_x[:50]) and torch.equal(limited.train_y, full.train_y[:50])
    assert torch.equal(limited.val_x, full.val_x)
    with pytest.raises(DatasetError, match="limit_train=361"):
        load_splits("synthetic", synthetic_train=400, limit_train=361)


def test_limit_val_keeps_the_first_validation_images_and_the_same_training_set():
    full = load_splits("synthetic", synthetic_train=400, split_seed=1)
    limited = load_splits("synthetic", synthetic_train=400, split_seed=1, limit_val=7)
    assert torch.equal(limited.val_x, full.val_x[:7]) and torch.equal(limited.val_y, full.val_y[:7])
    assert torch.equal(limited.train_x, full.train_x)
    with pytest.raises(DatasetError, match="limit_val=41"):
        load_splits("synthetic", synthetic_train=400, limit_val=41)


# -- synthetic data --------------------------------------------------------------------

def test_synthetic_is_deterministic_and_splits_are_distinct_streams():
    x1, y1 = make_synthetic(64, seed=1)
    x2, y2 = make_synthetic(64, seed=1)
    x3, _ = make_synthetic(64, seed=2)
    assert x1.dtype == torch.uint8 and x1.shape == (64, 3, 32, 32) and y1.dtype == torch.int64
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)
    s = load_splits("synthetic", synthetic_train=200, synthetic_test=200)
    assert not set(_rows(s.test_x)) & set(_rows(torch.cat([s.train_x, s.val_x])))
    assert torch.bincount(make_synthetic(1003, num_classes=10)[1]).tolist() == [101] * 3 + [100] * 7


def test_synthetic_is_learnable_by_a_linear_probe_but_not_trivially():
    x, y = make_synthetic(2000, seed=1)
    xt, yt = make_synthetic(1000, seed=2)

    def probe_accuracy(features, ridge):
        a = torch.cat([features(x), torch.ones(len(x), 1, dtype=torch.float64)], 1)
        at = torch.cat([features(xt), torch.ones(len(xt), 1, dtype=torch.float64)], 1)
        targets = torch.nn.functional.one_hot(y, 10).double()
        w = torch.linalg.solve(a.T @ a + ridge * torch.eye(a.shape[1], dtype=a.dtype), a.T @ targets)
        return (at @ w).argmax(1).eq(yt).double().mean().item()

    # Class information is there for a model that sees the layout (raw pixels)...
    pixels = probe_accuracy(lambda im: im.double().flatten(1) / 255, 100)
    assert pixels > 0.8, pixels  # chance is 0.1
    # ...but pooled colour statistics alone (what a token mean sees of an untrained
    # encoder) are far from enough: the encoder has to learn texture and layout.
    mean_colour = probe_accuracy(lambda im: im.double().mean((2, 3)) / 255, 1e-3)
    assert 0.15 < mean_colour < 0.75, mean_colour


def test_read_once_split_per_seed_equals_load_splits():
    from cffaudit.data import read_dataset, split_dataset

    data = read_dataset("synthetic", synthetic_train=400)
    for seed in (1, 2):
        a = split_dataset(data, split_seed=seed, limit_val=7)
        b = load_splits("synthetic", synthetic_train=400, split_seed=seed, limit_val=7)
        assert all(torch.equal(getattr(a, t), getattr(b, t))
                   for t in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"))
    with pytest.raises(DatasetError, match="limit_val=41"):
        split_dataset(data, limit_val=41)
