"""Checkpoint writes that fail for lack of space: a clear error, the last checkpoint intact."""

import errno
import subprocess

import pytest
import torch

from cffaudit.train import checkpoint as ckpt_module
from cffaudit.train.run import train_run, train_seeds

from tests.train.test_run import metrics


class _FullAfter:
    """A file that takes `room` bytes, then fails like a full disk (ENOSPC)."""

    def __init__(self, f, room: int) -> None:
        self.f, self.room = f, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def _disk_full_after(monkeypatch, saves: int) -> None:
    """Let `saves` checkpoint writes through, then fill the disk halfway through each
    later one. torch.save then raises what it raises on a real full disk:
    RuntimeError("[enforce fail at inline_container.cc:...] unexpected pos ...")."""
    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(1)
        target = f if len(calls) <= saves else _FullAfter(f, 4096)
        return real_save(obj, target, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def test_full_disk_fails_the_run_with_advice_and_keeps_the_last_checkpoint(tmp_path, tiny_config, monkeypatch):
    cfg = tiny_config.override({"stage1.epochs": 3})
    _disk_full_after(monkeypatch, saves=1)  # stage-1 epoch 0 is saved, epoch 1 is not
    res = train_run(cfg, tmp_path / "run")
    path = tmp_path / "run" / "checkpoint.pt"
    assert res["status"] == "failed"
    err = res["error"]
    assert err.startswith("DiskFullError: disk full: cannot write the checkpoint") and str(path) in err
    assert "needs about" in err and "KiB" in err and "is free" in err
    assert "--resume" in err and "last complete checkpoint" in err and "intact" in err
    assert "unexpected pos" in res["traceback"]  # torch's own message stays in the traceback
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # no partial file left

    monkeypatch.undo()
    st = torch.load(path, weights_only=True)
    assert (st["stage"], st["epoch"]) == (1, 1)
    # Resumed from it, the run ends exactly as one that never stopped.
    resumed = train_run(cfg, tmp_path / "run", resume=True)
    assert resumed["status"] == "done", resumed["error"]
    assert metrics(resumed) == metrics(train_run(cfg, tmp_path / "straight"))


def test_full_disk_before_any_checkpoint_says_the_run_starts_over(tmp_path, tiny_config, monkeypatch):
    _disk_full_after(monkeypatch, saves=0)
    res = train_seeds(tiny_config, [1, 2], [tmp_path / "a", tmp_path / "b"], checkpoint=tmp_path / "c.pt")
    for r in res:
        assert r["status"] == "failed" and "disk full" in r["error"] and str(tmp_path / "c.pt") in r["error"]
        assert "no checkpoint was completed yet" in r["error"] and "--resume" not in r["error"]
    assert not (tmp_path / "c.pt").exists()


def test_out_of_space_is_recognised_by_errno_or_by_free_space(tmp_path, monkeypatch):
    quota = OSError(errno.EDQUOT, "Disk quota exceeded")  # a cluster quota, e.g. from fsync
    assert ckpt_module._out_of_space(quota, tmp_path, 1)
    assert not ckpt_module._out_of_space(PermissionError(errno.EACCES, "Permission denied"), tmp_path, 1)
    torn = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    assert not ckpt_module._out_of_space(torn, tmp_path, 1)  # plenty of room: another fault
    assert ckpt_module._out_of_space(torn, tmp_path, 2**62)  # no context, but no room either
    assert not ckpt_module._out_of_space(ValueError("bad"), tmp_path, 2**62)


@pytest.fixture
def small_filesystem(tmp_path):
    """A 256 KiB tmpfs (root with mount rights only)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root with mount rights)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_a_real_full_filesystem(tmp_path, tiny_config, small_filesystem):
    """The tiny run's checkpoint takes about 150 KiB: the first fits, a second one
    written next to it (before the rename) does not."""
    path = small_filesystem / "checkpoint.pt"
    res = train_seeds(tiny_config, [0], [tmp_path / "out"], checkpoint=path)[0]
    assert res["status"] == "failed" and "disk full" in res["error"] and "intact" in res["error"]
    st = torch.load(path, weights_only=True)
    assert (st["stage"], st["epoch"]) == (1, 1)
    assert [p.name for p in small_filesystem.iterdir()] == ["checkpoint.pt"]
