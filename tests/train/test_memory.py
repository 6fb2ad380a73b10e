"""The CPU allocator setting (cffaudit.train.memory) and how runs record it.

mallopt is process-wide, so its effect is checked in fresh subprocesses. The check
reads glibc's accounting rather than page faults: the kernel's own sampling (NUMA
balancing) adds minor faults of its own, so fault counts are not a reliable signal.
"""

import json
import platform
import subprocess
import sys

import pytest

from cffaudit.config import RunConfig
from cffaudit.train.runtime import Runtime

_libc, _version = platform.libc_ver()
glibc_only = pytest.mark.skipif(
    _libc != "glibc" or tuple(int(v) for v in _version.split(".")[:2]) < (2, 33),
    reason="the setting acts on glibc's malloc; the check reads mallinfo2 (glibc 2.33+)")

# Allocate a 64 MiB tensor, then free it, and report glibc's own accounting
# (mallinfo2): whether the block came from mmap (returned to the OS on free, so the
# next step faults its pages in again) or from the heap, and what the heap keeps free.
_MALLINFO = """
import ctypes, json, sys, torch
from cffaudit.train.memory import freed_memory_retained, release_freed_memory, retain_freed_memory
applied = retain_freed_memory() if sys.argv[1] == "retain" else False
class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Mallinfo2
t = torch.empty(16 * 2**20)  # 64 MiB of float32
t.fill_(1.0)
held = libc.mallinfo2()
del t
freed = libc.mallinfo2()
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * 4096
before = rss()
release_freed_memory()
print(json.dumps({"applied": applied, "retained": freed_memory_retained(), "mmapped_while_held": held.hblkhd,
                  "mmapped_after_free": freed.hblkhd, "heap_free_after_free": freed.fordblks,
                  "rss_released": before - rss()}))
"""

MIB = 2**20


def _mallinfo(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _MALLINFO, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc_only
def test_retained_memory_stays_in_the_heap_for_the_next_step():
    system, retain = _mallinfo("system"), _mallinfo("retain")
    assert not system["retained"] and retain["applied"] and retain["retained"]
    # By default a large block is mmapped and unmapped again on free.
    assert system["mmapped_while_held"] >= 64 * MIB and system["mmapped_after_free"] < 64 * MIB
    # Retained: it comes from the heap and stays there, free for the next allocation.
    assert retain["mmapped_while_held"] < 64 * MIB and retain["heap_free_after_free"] >= 64 * MIB
    # At the end of a run the kept pages go back to the OS (a no-op by default).
    assert retain["rss_released"] >= 60 * MIB and abs(system["rss_released"]) < 16 * MIB


def test_runtime_resolves_the_allocator_per_device():
    assert Runtime.from_config(RunConfig(device="cpu")).cpu_allocator == "retain"
    cfg = RunConfig(device="cpu").override({"perf.cpu_allocator": "system"})
    rt = Runtime.from_config(cfg)
    assert rt.cpu_allocator == "system" and rt.prepare_process() is rt  # nothing applied
    assert rt.as_dict()["cpu_allocator"] == "system"


def test_runtime_reports_system_where_the_setting_cannot_apply(monkeypatch):
    import cffaudit.train.runtime as runtime

    monkeypatch.setattr(runtime, "retain_freed_memory", lambda: False)  # e.g. musl or macOS
    assert Runtime.from_config(RunConfig(device="cpu")).prepare_process().cpu_allocator == "system"


def test_a_preloaded_allocator_is_left_alone(monkeypatch):
    from cffaudit.train import memory

    monkeypatch.setattr(memory, "_applied", None)
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    assert memory.retain_freed_memory() is False and not memory.freed_memory_retained()


def test_unknown_allocator_is_a_config_error():
    with pytest.raises(ValueError, match="perf.cpu_allocator"):
        RunConfig().override({"perf.cpu_allocator": "jemalloc"})
