"""Stand-ins for `train_seeds` (and `train_run`) with the same contract, for fast sweep tests.

Module-level functions so that spawned worker processes and Ray workers can import
them by name.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from cffaudit.atomic import atomic_write_json
from cffaudit.config import PROTOCOL_VERSION

#: loss.temperature values that trigger the failure modes below.
FAIL_TEMPERATURE = 0.77  # returns status "failed", as train_run does on NaN loss
RAISE_TEMPERATURE = 0.66  # raises, as a programming error would
DIE_SEED = 4242  # with workers: the worker process dies (as when killed or out of memory)


def fake_accuracy(cfg) -> float:
    """Deterministic 'accuracy' from the config, so reruns can be compared."""
    return round(50.0 + cfg.seed + (0.5 if cfg.loss.margin == "clamp" else 0.0) + 0.01 * cfg.model.depth, 4)


def fake_train_run(cfg, out_dir, *, resume=False, progress=False):
    """Writes a checkpoint, then an outcome-tagged result.json, like train_run."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    delay = float(os.environ.get("CFFAUDIT_FAKE_DELAY", "0"))
    calls = out / "calls.txt"
    with open(calls, "a") as f:
        f.write(f"resume={resume} pid={os.getpid()}\n")
    (out / "checkpoint.pt").write_text("epoch 1")
    if delay:
        time.sleep(delay)
    print("fake training epoch 1")  # goes to the run's log.txt
    driver = os.environ.get("CFFAUDIT_DRIVER_PID")  # set by the dead-worker test only
    if cfg.seed == DIE_SEED and driver and os.getpid() != int(driver):
        os._exit(1)
    if cfg.loss.temperature == RAISE_TEMPERATURE:
        raise RuntimeError("fake programming error")
    if cfg.loss.temperature == FAIL_TEMPERATURE:
        result = {"status": "failed", "protocol": PROTOCOL_VERSION, "error": "TrainingDiverged: non-finite loss (fake)", "traceback": "tb",
                  "config": {**cfg.resolved()}, "test_acc": None, "best_val_acc": None}
    else:
        acc = fake_accuracy(cfg)
        result = {"status": "done", "protocol": PROTOCOL_VERSION, "error": None, "traceback": None, "config": cfg.resolved(),
                  "test_acc": acc, "best_val_acc": acc + 1, "history": [], "timing": {"total_s": delay}}
    atomic_write_json(out / "result.json", result)
    return result


def fake_returns_garbage(cfg, seeds, out_dirs, *, checkpoint, resume=False, progress=False):
    return ["not a dict" for _ in seeds]


def calls_of(run_dir: Path) -> list[str]:
    p = Path(run_dir) / "calls.txt"
    return p.read_text().splitlines() if p.exists() else []


def read_result(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "result.json").read_text())


def fake_train_seeds(cfg, seeds, out_dirs, *, checkpoint, resume=False, progress=False):
    """Like train_seeds: one call trains every seed (one for a solo run); records the
    group in each run dir."""
    with open(checkpoint, "a") as f:
        f.write(f"group {list(seeds)} resume={resume}\n")
    results = []
    for seed, out in zip(seeds, out_dirs):
        with open(Path(out) / "group_calls.txt", "a") as f:
            f.write(f"{list(seeds)} resume={resume}\n")
        results.append(fake_train_run(cfg.override({"seed": seed}), out, resume=resume))
    return results


def visible_devices_of_this_worker(i: int):
    """For the GPU-pinning test: what a worker process was pinned to (no CUDA needed)."""
    time.sleep(1.0)  # keep both workers busy at once, so that both take jobs
    return os.environ.get("CUDA_VISIBLE_DEVICES"), os.getpid()
