"""The one-driver lock of a run store, and who holds it (host:pid, since when)."""

from __future__ import annotations

import contextlib
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from cffaudit.experiments.store_schema import StoreError


def now_iso() -> str:
    """UTC timestamp with seconds, as stored."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def worker_name() -> str:
    """This process as ``host:pid``: the owner recorded for a run it trains."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_is_gone(owner: str) -> bool:
    """Whether the process recorded as ``host:pid`` certainly no longer runs: it was on this
    host and no process has its pid. An owner on another host (or not in that form) is
    not known to be gone."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the pid exists
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's process: alive
        return False
    return False


@contextlib.contextmanager
def sweep_lock(root: str | Path) -> Iterator[None]:
    """Hold the store's driver lock; a second sweep on the same store is refused.

    The lock is an flock, so the kernel drops it when the holder dies: a run still
    marked 'running' after a sweep starts is certainly left over from a killed one.
    """
    import fcntl

    path = Path(root) / ".sweep.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise StoreError(
                f"another sweep ({holder}) is running on {root}; wait for it to finish or stop it "
                "(use --status to watch it)"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{worker_name()} since {now_iso()}\n")
        f.flush()
        yield
    finally:
        f.close()  # closing the descriptor releases the flock
