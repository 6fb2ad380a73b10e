"""The worker side of a sweep: one job trains one or more seeds of a condition.

A job runs wherever the executor puts it (this process, a worker process, a Ray
task, a Slurm array task), so everything it takes is plain data. It writes the runs' own directories and
returns one outcome per run for the driver to record; it never touches the store's
database. A job of one run is a solo run: its checkpoint and training log are in the
run's directory. A job of several seeds (``--seeds-per-job``) trains them side by side
in one process with a shared checkpoint in its group directory.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import traceback as tb
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from cffaudit.atomic import atomic_write_json
from cffaudit.config import CHECKPOINT_NAME, RESULT_NAME, RunConfig
from cffaudit.experiments.lock import now_iso, worker_name
from cffaudit.experiments.outcomes import float_or_none

LOG_NAME = "log.txt"

#: ``train_fn(cfg, seeds, out_dirs, *, checkpoint, resume, progress) -> [result, ...]``,
#: one result dict per seed: the training entry point's signature
#: (:func:`cffaudit.train.run.train_seeds`; a solo run is one seed).
TrainFn = Callable[..., list]


def train_entry(cfg: RunConfig, seeds: Sequence[int], out_dirs: Sequence[str | Path], *,
                checkpoint: str | Path, resume: bool = False, progress: bool = False,
                tensorboard: str | None = None) -> list:
    """The default training function: :func:`cffaudit.train.run.train_seeds`, imported
    when first called so that the driver (and ``--status``) start without torch.

    ``tensorboard``: a root folder for TensorBoard logs (``sweep --tensorboard``, bound
    with ``functools.partial``), one subfolder per run named by its run id (the name of
    its run directory); not a result setting, so it never enters a run id.
    """
    from cffaudit.train.run import train_seeds

    logs = None if tensorboard is None else [Path(tensorboard) / Path(d).name for d in out_dirs]
    return train_seeds(cfg, seeds, out_dirs, checkpoint=checkpoint, resume=resume, progress=progress,
                       tensorboard=logs)


@dataclass(frozen=True)
class RunTask:
    """What a worker needs to train one run; plain data so it pickles anywhere."""

    run_id: str
    config: dict[str, Any]
    run_dir: str
    attempt: int = 1


def execute_job(tasks: Sequence[RunTask], group_dir: Optional[str] = None,
                train_fn: TrainFn = train_entry) -> list[dict[str, Any]]:
    """A job: train `tasks` (runs that differ only in their seed) in one call of
    `train_fn` and return one outcome dict per task.

    Every seed gets its solo run's initial weights, split, data order and augmentation
    draws (the training layer's guarantee); arithmetic differs only by floating-point
    reassociation in batched kernels, so a run's id does not depend on its grouping.

    Args:
        tasks: the runs; one task is a solo run.
        group_dir: where several tasks keep their shared checkpoint and training log
            (a requeued group resumes from it when the next sweep forms the same group
            again); None for a solo run, which keeps both in its run directory.
        train_fn: the training entry point (tests inject their own).

    Never raises for a failed run: training errors, exceptions from `train_fn` and
    malformed results all become ``status: failed`` with the error and traceback, and
    every run's result.json exists afterwards. KeyboardInterrupt and SystemExit pass
    through (the checkpoint stays, the next sweep resumes).
    """
    if group_dir is None and len(tasks) != 1:
        raise ValueError(f"group_dir: a job of {len(tasks)} runs needs a group directory")
    home = Path(group_dir) if group_dir is not None else Path(tasks[0].run_dir)
    home.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        Path(task.run_dir).mkdir(parents=True, exist_ok=True)
    checkpoint = home / CHECKPOINT_NAME
    resume = checkpoint.exists()
    t0 = time.monotonic()
    if group_dir is None:
        header = _header(tasks[0]) + (" (resuming from checkpoint.pt)" if resume else "")
    else:
        ids = " ".join(t.run_id for t in tasks)
        for task in tasks:
            _append(task, f"{_header(task)}, in seed group {home.name} ({ids}); its training log is "
                    f"{home / LOG_NAME}" + (" (resuming from the group's checkpoint.pt)" if resume else ""))
        header = f"=== group {home.name} ({ids}) at {now_iso()}"
    with _run_log(home / LOG_NAME, header) as log:
        try:
            cfgs = [RunConfig.from_dict(t.config) for t in tasks]
            results = train_fn(cfgs[0], [c.seed for c in cfgs], [t.run_dir for t in tasks],
                               checkpoint=checkpoint, resume=resume, progress=False)
            if not isinstance(results, (list, tuple)) or len(results) != len(tasks):
                got = f"{len(results)} results" if isinstance(results, (list, tuple)) else type(results).__name__
                raise RuntimeError(f"training function returned {got} for {len(tasks)} seed(s)")
        except Exception as exc:  # anything else is a failed attempt, with its traceback
            results = [_failed_result(t, f"{type(exc).__name__}: {exc}", tb.format_exc()) for t in tasks]
            for task, result in zip(tasks, results):
                atomic_write_json(Path(task.run_dir) / RESULT_NAME, result)
        wall = time.monotonic() - t0
        if group_dir is not None:
            print(f"=== group finished after {wall:.1f} s", file=log)
    outcomes = []
    for task, result in zip(tasks, results):
        result = _checked(task, result)
        _append(task, _footer(result, wall))
        outcomes.append(_outcome(task, result, wall))
    return outcomes


def _header(task: RunTask) -> str:
    return f"=== {task.run_id} attempt {task.attempt} on {worker_name()} at {now_iso()}"


def _append(task: RunTask, line: str) -> None:
    with open(Path(task.run_dir) / LOG_NAME, "a") as f:
        print(line, file=f)


def _checked(task: RunTask, result: Any) -> dict[str, Any]:
    """`result` if it is a proper outcome, else a failed one; result.json always exists."""
    result_path = Path(task.run_dir) / RESULT_NAME
    problem = _result_problem(result)
    if problem:
        result = _failed_result(task, f"run function {problem}", None, base=result)
        atomic_write_json(result_path, result)
    elif not result_path.exists():
        # A run function that returns without writing: keep the store's promise
        # that every attempted run has an outcome-tagged result.json.
        atomic_write_json(result_path, result)
    return result


def _footer(result: dict[str, Any], wall: float) -> str:
    return f"=== {result['status']} after {wall:.1f} s" + (f": {result.get('error')}" if result.get("error") else "")


def _outcome(task: RunTask, result: dict[str, Any], wall: float) -> dict[str, Any]:
    """What the driver records (status, timing, owner) and prints (accuracy, error);
    the outcome itself stays in result.json."""
    return {
        "run_id": task.run_id,
        "status": result["status"],
        "error": result.get("error"),
        "test_acc": float_or_none(result.get("test_acc")),
        "wall_s": wall,
        "worker": worker_name(),
    }


def _result_problem(result: Any) -> Optional[str]:
    if not isinstance(result, dict):
        return f"returned {type(result).__name__}, not a result dict"
    status = result.get("status")
    if status not in ("done", "failed"):
        return f"returned status {status!r} (expected 'done' or 'failed')"
    if status == "done" and float_or_none(result.get("test_acc")) is None:
        return "reported done without a numeric test_acc"
    return None


def _failed_result(task: RunTask, error: str, traceback: Optional[str], base: Any = None) -> dict[str, Any]:
    result = dict(base) if isinstance(base, dict) else {}
    result.update(status="failed", error=error, traceback=traceback)
    result.setdefault("config", task.config)
    return result


@contextlib.contextmanager
def _run_log(path: Path, header: str) -> Iterator[io.TextIOBase]:
    """Send this job's prints, warnings and log records to its log.txt (appended, one
    header per attempt). Python-level redirection: it also works inside a Ray task."""
    with open(path, "a", buffering=1) as log:
        print(header, file=log)
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield log
        finally:
            root.removeHandler(handler)
