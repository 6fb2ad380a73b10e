"""Keep freed CPU memory inside the process, so a training step does not page-fault.

PyTorch's CPU tensors come from the C library's `malloc`. glibc serves every request
above its mmap threshold (at most 32 MiB) with a fresh `mmap` and hands it back with
`munmap` on free. A stage-1 step at the paper configuration allocates and frees dozens
of activations of 30-100 MiB each, so every step the kernel maps, zeroes and unmaps
gigabytes: on a 2-core CPU (2026-11-22, torch 2.13.0+cpu) a step spent 25 s of 60 s in
the kernel and ran at 91 views/s; with the two settings below, 2.5 s and 165 views/s.

The settings: serve large blocks from the heap (`M_MMAP_MAX` = 0; glibc still falls
back to mmap when the heap cannot grow) and never trim the heap's top
(`M_TRIM_THRESHOLD` = max). Memory freed by one step is reused by the next. While a
run trains, the process keeps its peak footprint, which it reaches in its first step
anyway; when a run ends, `release_freed_memory` hands the free pages back, so a
long-lived sweep worker does not hold the largest run's heap between runs. This is
what jemalloc or tcmalloc in `LD_PRELOAD` would do for us, but those are not on every
machine, and a library cannot preload; where one is preloaded, it is left alone.

`mallopt` is process-wide and cannot be undone for blocks already placed, so it is
applied once, lazily, and only for CPU runs (`perf.cpu_allocator`).
"""

from __future__ import annotations

import ctypes
import os
import platform

_M_TRIM_THRESHOLD = -1  # <malloc.h>
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1

_applied: bool | None = None


def freed_memory_retained() -> bool:
    """Whether `retain_freed_memory` is in effect in this process."""
    return bool(_applied)


def retain_freed_memory() -> bool:
    """Apply the settings above if the C library is glibc; True when in effect.

    Idempotent. Returns False (changing nothing) on other C libraries or platforms.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or _preloaded_allocator():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already uses
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; both must hold for the effect described above.
    _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _INT_MAX))
    return _applied


def release_freed_memory() -> None:
    """Hand the heap's free pages back to the OS (glibc `malloc_trim`), where the
    settings above are in effect; for the end of a run, never inside one."""
    if _applied:
        trim = ctypes.CDLL(None).malloc_trim
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
        trim(0)


def _preloaded_allocator() -> bool:
    """jemalloc, tcmalloc or mimalloc in LD_PRELOAD replace malloc; mallopt would not reach them."""
    preload = os.environ.get("LD_PRELOAD", "")
    return any(name in preload for name in ("jemalloc", "tcmalloc", "mimalloc"))
