"""The checkpoint of a run: what it must match to be resumed, and writing it safely.

One file per ensemble, rewritten after every epoch through a temporary file and a
rename (`cffaudit.atomic`), so the file on disk is always the last complete epoch. A
write that fails, for instance on a full disk, leaves that file as it was.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from typing import Any, Sequence

import torch

from cffaudit.atomic import atomic_torch_save
from cffaudit.config import NON_RESULT_KEYS, RunConfig, without_paths
from cffaudit.train.runtime import Runtime

CHECKPOINT_VERSION = 2  # 2: per-seed best-validation-loss encoder (stage1.select)

# ENOSPC: the file system is full; EDQUOT: the user's quota on it (clusters).
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


class DiskFullError(RuntimeError):
    """The checkpoint could not be written for lack of space; the message says where,
    how much it needs, and that the previous checkpoint is intact."""


def resumable_config(cfg: RunConfig) -> dict[str, Any]:
    """The config a checkpoint must match: all of it but what cannot change the
    computation (where the data lives, how the device was named, ...)."""
    return without_paths(cfg.resolved(), NON_RESULT_KEYS)


class Checkpoint:
    """The checkpoint file of one run of `seeds` with `cfg` on `runtime`.

    `save` and `load` exchange the run's parts (state dicts, generator states, progress)
    as a dict; the file adds what identifies the run, which `load` checks.
    """

    def __init__(self, path: Path, seeds: Sequence[int], cfg: RunConfig, runtime: Runtime) -> None:
        self.path, self.seeds, self.cfg, self.runtime = Path(path), list(seeds), cfg, runtime

    def save(self, parts: dict[str, Any]) -> None:
        """Replace the file with `parts`, atomically.

        Raises:
            DiskFullError: no space (or quota) left; the previous file is unchanged.
        """
        state = {"version": CHECKPOINT_VERSION, "seeds": self.seeds, "config": resumable_config(self.cfg),
                 "runtime": self.runtime.as_dict(), **parts}
        try:
            atomic_torch_save(self.path, state)
        except Exception as exc:
            # The tensors are the bulk of the file; the last complete file is a closer
            # estimate where there is one (the history only grows).
            need = max(tensor_bytes(state), self.path.stat().st_size if self.path.exists() else 0)
            if _out_of_space(exc, self.path.parent, need):
                raise DiskFullError(self._disk_full_message(need)) from exc
            raise

    def load(self) -> dict[str, Any] | None:
        """The parts saved last, or None if there is no file.

        Raises:
            RuntimeError: the file is unreadable, or was made for other seeds, another
                configuration, or another device or precision.
        """
        if not self.path.exists():
            return None
        try:
            st = torch.load(self.path, map_location=self.runtime.device, weights_only=True)
        except Exception as exc:  # a torn or foreign file: say so rather than crash obscurely
            raise RuntimeError(f"{self.path}: cannot read checkpoint ({exc}); delete it to start over") from exc
        if st.get("version") != CHECKPOINT_VERSION or st.get("seeds") != self.seeds:
            raise RuntimeError(f"{self.path}: checkpoint is for seeds {st.get('seeds')} "
                               f"(version {st.get('version')}), not {self.seeds}; delete it or use another --out")
        # Stored configs are filtered again: a checkpoint from before perf.cpu_allocator
        # existed lacks that key, one made with the other setting has another value.
        if without_paths(st["config"], NON_RESULT_KEYS) != resumable_config(self.cfg):
            raise RuntimeError(f"{self.path}: checkpoint was made with another configuration; "
                               "resume with the same flags, or use another --out")
        made = st["runtime"]
        made_type = torch.device(made["device"]).type
        if made_type != self.runtime.device.type or made["precision"] != self.runtime.precision:
            # Generator streams and numerics differ between devices: continuing elsewhere
            # would silently change what the seed means.
            raise RuntimeError(f"{self.path}: checkpoint was made on {made['device']} with "
                               f"{made['precision']}; resume there (--device {made_type}), "
                               "or delete the checkpoint to start over on this device")
        return {k: v for k, v in st.items() if k not in ("version", "seeds", "config", "runtime")}

    def delete(self) -> None:
        """Remove the file, so a fresh run is not confused with an old one."""
        self.path.unlink(missing_ok=True)

    def _disk_full_message(self, need: int) -> str:
        folder = self.path.parent
        try:
            free = f"{_size(shutil.disk_usage(folder).free)} is free"
        except OSError:
            free = "free space unknown"
        if self.path.exists():
            then = (f"rerun with --resume: it continues from the last complete checkpoint, {self.path}, "
                    "which is intact")
        else:
            then = "rerun: no checkpoint was completed yet, so the run starts from the beginning"
        # The new file is written next to the old one and replaces it only when complete.
        return (f"disk full: cannot write the checkpoint {self.path}: no space left on the device (or the quota "
                f"is reached) in {folder}; the checkpoint needs about {_size(need)} there, next to the last "
                f"one, and {free}. Free some space (or choose another --out) and {then}")


def tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in a nested structure of dicts, lists and tuples: the bulk of
    a checkpoint (what `torch.save` adds around them is small)."""
    if isinstance(obj, torch.Tensor):
        return obj.nelement() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def _out_of_space(exc: BaseException, folder: Path, need: int) -> bool:
    """Whether a failed write ran out of space. torch.save reports a short write as
    "RuntimeError: [enforce fail at inline_container.cc:...] unexpected pos", with the
    OSError (ENOSPC) as its context; without that, a folder with less free space than
    the checkpoint needs tells the same."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _FULL_ERRNOS:
            return True
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, RuntimeError) and "unexpected pos" in str(exc):
        try:
            return shutil.disk_usage(folder).free < need
        except OSError:
            return False
    return False


def _size(n: float) -> str:
    if n < 1024:
        return f"{n:.0f} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024:
            break
    return f"{n:.1f} {unit}"
