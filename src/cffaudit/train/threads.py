"""How many CPU threads a training process may use: never more cores than exist.

torch parallelises each operator over OpenMP threads that spin at every barrier while
waiting for each other. When the cores are oversubscribed (several workers with a thread
per core each, or other processes), a spinning thread burns the time slice its partner
needs, and every barrier waits for the partner to be scheduled again. Measured on the
2-core development machine (torch 2.13.0 CPU, load average 9-13 from other processes), a
small synthetic run (2,000 images, embed 32, depth 2, 2 stage-1 epochs at batch 128):

    threads  OMP_WAIT_POLICY  stage 1   process CPU
    1        (default)        2.1-2.4 s  2.0-2.3 s
    2        (default)         41-51 s    17-19 s
    2        PASSIVE           2.9 s      2.7 s

so two spinning threads ran stage 1 about 20 times slower than one thread, and a passive
wait (threads sleep instead of spinning) removes almost all of it. Hence: workers x
threads never exceed the cores this process may run on, and threads wait passively
unless the user's environment says otherwise. Both must be set before torch is imported
(OpenMP reads its environment once); `limit_threads` also applies the thread count to
an already imported torch.
"""

from __future__ import annotations

import os
import sys


def available_cores() -> int:
    """The CPUs this process may run on (its affinity mask, as `taskset` or a scheduler sets it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def threads_per_worker(workers: int) -> int:
    """Torch threads for each of `workers` processes sharing the available cores."""
    return max(1, available_cores() // max(1, workers))


def limit_threads(threads: int) -> None:
    """Make this process's torch use `threads` intra-op threads (fewer if OMP_NUM_THREADS
    already asks for fewer), waiting passively.

    Call it before torch is imported (worker initialisers, the CLI before training); an
    explicit OMP_WAIT_POLICY in the environment is kept.
    """
    asked = os.environ.get("OMP_NUM_THREADS", "")
    if asked.isdigit() and int(asked) > 0:
        threads = min(threads, int(asked))
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
