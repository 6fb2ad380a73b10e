"""--download against a local HTTP server: verification, atomic writes, extraction, mirrors."""

from __future__ import annotations

import dataclasses
import functools
import http.server
import io
import os
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from cffaudit.data import DatasetError, load_splits, sources
from cffaudit.data.download import extract_members, fetch
from cffaudit.data.integrity import md5_of_file
from cffaudit.data.readers import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC

from ._formats import images, write_cifar_batch, write_idx, write_svhn_mat


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CFFAUDIT_DATA", str(tmp_path / "cache"))


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/www on 127.0.0.1; yields (folder, base URL)."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield www, f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def publish(monkeypatch, dataset: str, downloads, files_root: Path) -> None:
    """Point ``dataset`` at local downloads and trust the MD5s of the files they will produce."""
    src = sources.SOURCES[dataset]

    def rehash(f):
        return dataclasses.replace(f, md5=(md5_of_file(files_root / f.path),))

    monkeypatch.setitem(sources.SOURCES, dataset, dataclasses.replace(
        src, downloads=tuple(downloads), train=tuple(map(rehash, src.train)), test=tuple(map(rehash, src.test))))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def test_fetch_writes_a_verified_file(server, tmp_path):
    www, base = server
    (www / "blob.bin").write_bytes(b"x" * 100_000)
    dest = tmp_path / "out" / "blob.bin"
    fetch((base + "blob.bin",), dest, md5=md5_of_file(www / "blob.bin"), progress=True)
    assert dest.read_bytes() == b"x" * 100_000
    assert leftovers(dest.parent) == ["blob.bin"]  # no temp file left behind
    # Readable as a plain write would leave it (a shared dataset cache), not mkstemp's 0600.
    mask = os.umask(0)
    os.umask(mask)
    assert dest.stat().st_mode & 0o777 == 0o666 & ~mask


def test_failed_checksum_leaves_no_file(server, tmp_path):
    www, base = server
    (www / "blob.bin").write_bytes(b"tampered")
    dest = tmp_path / "out" / "blob.bin"
    with pytest.raises(DatasetError, match="checksum mismatch"):
        fetch((base + "blob.bin",), dest, md5="0" * 32, progress=False)
    assert leftovers(dest.parent) == []


def test_fetch_falls_back_to_the_next_mirror_and_reports_all_failures(server, tmp_path):
    www, base = server
    (www / "blob.bin").write_bytes(b"payload")
    dest = tmp_path / "blob.bin"
    fetch((base + "missing/blob.bin", base + "blob.bin"), dest, md5=md5_of_file(www / "blob.bin"), progress=False)
    assert dest.read_bytes() == b"payload"
    with pytest.raises(DatasetError) as info:
        fetch((base + "a", base + "b"), tmp_path / "other", md5="0" * 32, progress=False)
    assert "404" in str(info.value) and base + "a" in str(info.value) and base + "b" in str(info.value)


def test_svhn_download_then_load(server, tmp_path, monkeypatch):
    www, base = server
    write_svhn_mat(www / "train_32x32.mat", images(20), np.arange(20) % 10 + 1)
    write_svhn_mat(www / "test_32x32.mat", images(10, seed=3), np.full(10, 3))
    downloads = [sources.Download((base + n,), n, md5_of_file(www / n)) for n in ("train_32x32.mat", "test_32x32.mat")]
    publish(monkeypatch, "svhn", downloads, www)
    target = tmp_path / "data"
    with pytest.raises(DatasetError, match="--download"):
        load_splits("svhn", data_dir=str(target))
    s = load_splits("svhn", data_dir=str(target), download=True, progress=False)
    assert (len(s.train_x), len(s.val_x), len(s.test_x)) == (18, 2, 10)
    assert leftovers(target) == ["test_32x32.mat", "train_32x32.mat"]
    # A second load finds the files and needs no server.
    (www / "train_32x32.mat").unlink()
    assert torch.equal(load_splits("svhn", data_dir=str(target), download=True).test_x, s.test_x)


def test_download_with_bad_checksum_leaves_nothing_and_loads_nothing(server, tmp_path, monkeypatch):
    www, base = server
    write_svhn_mat(www / "train_32x32.mat", images(20), np.arange(20) % 10 + 1)
    write_svhn_mat(www / "test_32x32.mat", images(10), np.full(10, 3))
    downloads = [sources.Download((base + "train_32x32.mat",), "train_32x32.mat", "f" * 32),
                 sources.Download((base + "test_32x32.mat",), "test_32x32.mat", md5_of_file(www / "test_32x32.mat"))]
    publish(monkeypatch, "svhn", downloads, www)
    target = tmp_path / "data"
    with pytest.raises(DatasetError, match="checksum mismatch"):
        load_splits("svhn", data_dir=str(target), download=True, progress=False)
    assert "train_32x32.mat" not in leftovers(target)
    assert not any(name.startswith(".") for name in leftovers(target))  # no temporary file left


def _cifar_tarball(www: Path, tmp_path: Path) -> tuple[Path, Path]:
    staging = tmp_path / "staging"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        write_cifar_batch(staging / "cifar-10-batches-py" / name, images(10, seed=i), np.arange(10))
    (staging / "cifar-10-batches-py" / "readme.html").write_text("not extracted")
    archive = www / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(staging / "cifar-10-batches-py", arcname="cifar-10-batches-py")
        evil = tarfile.TarInfo("../escaped.txt")  # path traversal must never be extracted
        evil.size = 4
        tar.addfile(evil, io.BytesIO(b"evil"))
    return archive, staging


def test_cifar10_download_extracts_only_the_batches(server, tmp_path, monkeypatch):
    www, base = server
    archive, staging = _cifar_tarball(www, tmp_path)
    members = tuple(f"cifar-10-batches-py/{n}" for n in
                    [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"])
    publish(monkeypatch, "cifar10",
            [sources.Download((base + archive.name,), archive.name, md5_of_file(archive), members)], staging)
    target = tmp_path / "data" / "c10"
    s = load_splits("cifar10", data_dir=str(target), download=True, progress=False)
    assert (len(s.train_x), len(s.val_x), len(s.test_x)) == (45, 5, 10)
    assert leftovers(target) == sorted(["cifar-10-batches-py", *(m.split("/")[1] for m in members)])
    assert not (tmp_path / "data" / "escaped.txt").exists()


def test_extract_refuses_a_member_that_is_not_a_regular_file(tmp_path):
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        link = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(DatasetError, match="not a regular file"):
        extract_members(archive, ("cifar-10-batches-py/data_batch_1",), tmp_path / "out", progress=False)
    assert leftovers(tmp_path / "out") == []


def test_fashion_mnist_download(server, tmp_path, monkeypatch):
    www, base = server
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 10)):
        write_idx(www / f"{prefix}-images-idx3-ubyte.gz", images(n, 1, 28)[:, 0], IDX_IMAGES_MAGIC)
        write_idx(www / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n).astype(np.uint8), IDX_LABELS_MAGIC)
    downloads = [sources.Download(("http://127.0.0.1:9/unreachable/" + f.path, base + f.path), f.path,
                                  md5_of_file(www / f.path)) for f in sources.SOURCES["fashion_mnist"].files]
    publish(monkeypatch, "fashion_mnist", downloads, www)
    s = load_splits("fashion_mnist", data_dir=str(tmp_path / "fm"), download=True, progress=False)
    assert s.train_x.shape == (27, 1, 28, 28) and s.test_x.shape == (10, 1, 28, 28)
