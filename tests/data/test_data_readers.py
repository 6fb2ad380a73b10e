"""Readers on small files in the real formats: round trips, corrupted and tampered files."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
import torch

from cffaudit.data import DatasetError
from cffaudit.data.integrity import safe_unpickle_bytes
from cffaudit.data.readers import (IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, read_cifar_batch, read_idx_images,
                                   read_idx_labels, read_svhn_mat)

from ._formats import (idx_bytes, images, write_cifar_batch, write_idx, write_malicious_cifar_batch,
                       write_svhn_mat)


# -- CIFAR pickles ---------------------------------------------------------------------

@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_batch_round_trip(tmp_path, protocol):
    x = images(7)
    labels = [3, 0, 9, 1, 2, 9, 4]
    path = write_cifar_batch(tmp_path / "data_batch_1", x, labels, protocol=protocol)
    got_x, got_y = read_cifar_batch(path, label_key=b"labels", num_classes=10)
    assert got_x.dtype == torch.uint8 and got_x.shape == (7, 3, 32, 32)
    assert got_y.dtype == torch.int64 and got_y.tolist() == labels
    # The row layout is channel-major: the first 1024 values are the red plane.
    assert torch.equal(got_x, torch.from_numpy(x))
    raw = x.reshape(7, -1)
    assert got_x[2, 1, 0, 5].item() == raw[2, 1024 + 5]


def test_cifar100_uses_fine_labels(tmp_path):
    path = write_cifar_batch(tmp_path / "train", images(3), [99, 0, 57], label_key=b"fine_labels")
    _, y = read_cifar_batch(path, label_key=b"fine_labels", num_classes=100)
    assert y.tolist() == [99, 0, 57]
    with pytest.raises(DatasetError, match="labels"):
        read_cifar_batch(path, label_key=b"labels", num_classes=10)


def test_cifar_truncated_pickle_is_refused(tmp_path):
    path = write_cifar_batch(tmp_path / "data_batch_1", images(5), [0] * 5)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DatasetError, match="data_batch_1"):
        read_cifar_batch(path, label_key=b"labels", num_classes=10)


def test_cifar_wrong_shape_is_refused(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": np.zeros((4, 3000), np.uint8), b"labels": [0] * 4}, protocol=2))
    with pytest.raises(DatasetError, match="3072"):
        read_cifar_batch(path, label_key=b"labels", num_classes=10)


def test_cifar_wrong_dtype_is_refused(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, protocol=2))
    with pytest.raises(DatasetError, match="uint8"):
        read_cifar_batch(path, label_key=b"labels", num_classes=10)


@pytest.mark.parametrize("labels", [[0, 10, 1], [-1, 0, 1], [0, 1]])
def test_cifar_bad_labels_are_refused(tmp_path, labels):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": images(3).reshape(3, -1), b"labels": labels}, protocol=2))
    with pytest.raises(DatasetError):
        read_cifar_batch(path, label_key=b"labels", num_classes=10)


def test_cifar_malicious_pickle_is_refused_without_running(tmp_path):
    sentinel = tmp_path / "pwned"
    path = write_malicious_cifar_batch(tmp_path / "data_batch_1", sentinel)
    with pytest.raises(DatasetError, match="refusing to load global"):
        read_cifar_batch(path, label_key=b"labels", num_classes=10)
    assert not sentinel.exists()


def test_naive_unpickling_of_the_payload_would_run_it(tmp_path):
    # Guards the test above: the payload is real, so its refusal means something.
    sentinel = tmp_path / "pwned"
    data = write_malicious_cifar_batch(tmp_path / "b", sentinel).read_bytes()
    pickle.loads(data)[b"data"].close()
    assert sentinel.exists()


def test_safe_unpickler_refuses_object_arrays_and_other_globals():
    with pytest.raises(pickle.UnpicklingError):
        safe_unpickle_bytes(pickle.dumps(np.array([object()], dtype=object), protocol=2))
    with pytest.raises(pickle.UnpicklingError):
        safe_unpickle_bytes(pickle.dumps(torch.zeros(2)))
    # A hand-written protocol-0 pickle calling os.system('echo hi').
    with pytest.raises(pickle.UnpicklingError, match="os.system"):
        safe_unpickle_bytes(b"cos\nsystem\n(S'echo hi'\ntR.")


def test_safe_unpickler_admits_plain_values():
    value = {b"a": [1, 2.5, None, True, "s", (b"x",)], "n": np.arange(6, dtype=np.uint8).reshape(2, 3)}
    for protocol in (2, 5):
        got = safe_unpickle_bytes(pickle.dumps(value, protocol=protocol))
        assert got[b"a"] == value[b"a"] and np.array_equal(got["n"], value["n"])


# -- SVHN .mat -------------------------------------------------------------------------

def test_svhn_round_trip_maps_ten_to_zero(tmp_path):
    x = images(6)
    digits = np.array([10, 1, 2, 10, 9, 5])
    got_x, got_y = read_svhn_mat(write_svhn_mat(tmp_path / "train_32x32.mat", x, digits))
    assert got_x.dtype == torch.uint8 and got_x.shape == (6, 3, 32, 32)
    assert torch.equal(got_x, torch.from_numpy(x))
    assert got_y.tolist() == [0, 1, 2, 0, 9, 5]


def test_svhn_truncated_file_is_refused(tmp_path):
    path = write_svhn_mat(tmp_path / "train_32x32.mat", images(4), np.array([1, 2, 3, 4]))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DatasetError, match="train_32x32.mat"):
        read_svhn_mat(path)


def test_svhn_wrong_shape_is_refused(tmp_path):
    import scipy.io
    path = tmp_path / "train_32x32.mat"
    scipy.io.savemat(str(path), {"X": np.zeros((28, 28, 3, 2), np.uint8), "y": np.ones((2, 1), np.uint8)})
    with pytest.raises(DatasetError, match=r"\(32, 32, 3, N\)"):
        read_svhn_mat(path)


@pytest.mark.parametrize("bad", [0, 11])
def test_svhn_labels_out_of_range_are_refused(tmp_path, bad):
    path = write_svhn_mat(tmp_path / "test_32x32.mat", images(3), np.array([1, bad, 3]))
    with pytest.raises(DatasetError, match="1..10"):
        read_svhn_mat(path)


def test_svhn_label_count_mismatch_is_refused(tmp_path):
    import scipy.io
    path = tmp_path / "test_32x32.mat"
    scipy.io.savemat(str(path), {"X": np.zeros((32, 32, 3, 3), np.uint8), "y": np.ones((2, 1), np.uint8)})
    with pytest.raises(DatasetError, match="y must be"):
        read_svhn_mat(path)


# -- IDX -------------------------------------------------------------------------------

@pytest.mark.parametrize("compress", [True, False])
def test_idx_round_trip(tmp_path, compress):
    x = images(5, channels=1, side=28)[:, 0]
    y = np.array([0, 9, 3, 3, 7], np.uint8)
    suffix = ".gz" if compress else ""
    got_x = read_idx_images(write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", x, IDX_IMAGES_MAGIC, compress=compress))
    got_y = read_idx_labels(write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", y, IDX_LABELS_MAGIC, compress=compress),
                            num_classes=10)
    assert got_x.shape == (5, 1, 28, 28) and got_x.dtype == torch.uint8
    assert torch.equal(got_x[:, 0], torch.from_numpy(x))
    assert got_y.tolist() == [0, 9, 3, 3, 7] and got_y.dtype == torch.int64


def test_idx_wrong_magic_is_refused(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8), IDX_LABELS_MAGIC + 0x100)
    with pytest.raises(DatasetError, match="magic"):
        read_idx_images(path)
    labels = write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(3, np.uint8), IDX_LABELS_MAGIC)
    with pytest.raises(DatasetError, match="magic"):
        read_idx_images(labels)  # a labels file where images are expected


def test_idx_truncated_payload_is_refused(tmp_path):
    data = idx_bytes(np.zeros((4, 28, 28), np.uint8), IDX_IMAGES_MAGIC)[:-10]
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(data))
    with pytest.raises(DatasetError, match="truncated"):
        read_idx_images(path)


def test_idx_truncated_gzip_is_refused(tmp_path):
    path = write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images(50, 1, 28)[:, 0], IDX_IMAGES_MAGIC)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DatasetError, match="decompressed|truncated"):
        read_idx_images(path)


def test_idx_labels_out_of_range_are_refused(tmp_path):
    path = write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([0, 10], np.uint8), IDX_LABELS_MAGIC)
    with pytest.raises(DatasetError, match=r"0\.\.9"):
        read_idx_labels(path, num_classes=10)
