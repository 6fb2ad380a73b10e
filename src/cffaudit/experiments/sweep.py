"""Sweeps: expand a spec, execute the runs not yet done, record every outcome.

:func:`run_sweep` is the driver. It is the only writer of the store's SQLite file;
workers (in this process, in worker processes or in Ray tasks) run
:func:`execute_runs`, which writes the run's own directory and returns outcomes that
the driver records. Killing the driver at any moment loses nothing that finished:

* a run whose result.json says done is never trained again, even if the driver died
  before recording it (it is recovered from the file);
* a run left 'running' is requeued and resumes from its checkpoint;
* a failed run stays failed (with its error and traceback) until ``retry_failed``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import sys
import time
import traceback as tb
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from cffaudit.atomic import atomic_write_json
from cffaudit.config import CHECKPOINT_NAME, RESULT_NAME, RunConfig
from cffaudit.experiments.executors import Executor, Job, JobDone, LocalExecutor
from cffaudit.experiments.identity import run_id as compute_run_id
from cffaudit.experiments.identity import stable_hash
from cffaudit.experiments.spec import ExperimentSpec, Expansion, PlannedRun, merged_levels
from cffaudit.experiments.store import RunStore, now_iso, sweep_lock, worker_name

#: ``run_fn(cfg, out_dir, *, resume, progress) -> result dict`` — the training entry
#: point's signature (:func:`cffaudit.train.run.train_run`).
RunFn = Callable[..., dict]


def train_run_entry(cfg: RunConfig, out_dir: str | Path, *, resume: bool = False, progress: bool = False) -> dict:
    """The default run function: :func:`cffaudit.train.run.train_run`, imported when
    first called so that the driver (and ``--status``) start without torch."""
    from cffaudit.train.run import train_run

    return train_run(cfg, out_dir, resume=resume, progress=progress)


# -- worker side -------------------------------------------------------------------


@dataclass(frozen=True)
class RunTask:
    """What a worker needs to train one run; plain data so it pickles anywhere."""

    run_id: str
    config: dict[str, Any]
    run_dir: str
    attempt: int = 1


def execute_runs(tasks: Sequence[RunTask], run_fn: RunFn = train_run_entry) -> list[dict[str, Any]]:
    """A job: train each task in turn and return one outcome dict per task."""
    return [execute_run(task, run_fn) for task in tasks]


def execute_run(task: RunTask, run_fn: RunFn = train_run_entry) -> dict[str, Any]:
    """Train one run into its directory and return its outcome.

    Never raises for a failed run: training errors, exceptions from `run_fn` and
    malformed results all become ``status: failed`` with the error and traceback,
    and result.json always exists afterwards. KeyboardInterrupt and SystemExit pass
    through (the checkpoint stays, the next sweep resumes).
    """
    run_dir = Path(task.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    result_path = run_dir / RESULT_NAME
    resume = (run_dir / CHECKPOINT_NAME).exists()
    t0 = time.monotonic()
    header = (
        f"=== {task.run_id} attempt {task.attempt} on {worker_name()} at {now_iso()}"
        + (" (resuming from checkpoint.pt)" if resume else "")
    )
    with _run_log(run_dir / "log.txt", header) as log:
        try:
            cfg = RunConfig.from_dict(task.config)
            result = _checked(task, run_fn(cfg, run_dir, resume=resume, progress=False))
        except Exception as exc:  # anything else is a failed attempt, with its traceback
            result = _failed_result(task, f"{type(exc).__name__}: {exc}", tb.format_exc())
            atomic_write_json(result_path, result)
        wall = time.monotonic() - t0
        print(_footer(result, wall), file=log)
    return _outcome(task, result, wall)


#: ``seeds_fn(cfg, seeds, out_dirs, *, checkpoint, resume, progress) -> [result, ...]``
#: — the multi-seed entry point's signature (:func:`cffaudit.train.run.train_seeds`).
SeedsFn = Callable[..., list]


def train_seeds_entry(cfg: RunConfig, seeds: Sequence[int], out_dirs: Sequence[str | Path], *,
                      checkpoint: str | Path, resume: bool = False, progress: bool = False) -> list:
    """The default group function: :func:`cffaudit.train.run.train_seeds`, imported lazily."""
    from cffaudit.train.run import train_seeds

    return train_seeds(cfg, seeds, out_dirs, checkpoint=checkpoint, resume=resume, progress=progress)


def execute_seed_group(tasks: Sequence[RunTask], group_dir: str, seeds_fn: SeedsFn = train_seeds_entry) -> list[dict[str, Any]]:
    """A job: train runs that differ only in their seed side by side in one process.

    Every seed gets its solo run's initial weights, split, data order and augmentation
    draws (the training layer's guarantee); the arithmetic differs only by floating-point
    reassociation in batched kernels, so a run's id does not depend on its grouping. The
    group shares one checkpoint in `group_dir`; a requeued group resumes from it when
    the next sweep forms the same group again, and starts afresh otherwise.
    """
    group = Path(group_dir)
    group.mkdir(parents=True, exist_ok=True)
    ckpt = group / CHECKPOINT_NAME
    resume = ckpt.exists()
    ids = " ".join(t.run_id for t in tasks)
    t0 = time.monotonic()
    headers = {
        t.run_id: f"=== {t.run_id} attempt {t.attempt} on {worker_name()} at {now_iso()}, in seed group "
        f"{group.name} ({ids}); its training log is {group / 'log.txt'}"
        + (" (resuming from the group's checkpoint.pt)" if resume else "")
        for t in tasks
    }
    for t in tasks:
        Path(t.run_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(t.run_dir) / "log.txt", "a") as f:
            print(headers[t.run_id], file=f)
    results: list[Any]
    with _run_log(group / "log.txt", f"=== group {group.name} ({ids}) at {now_iso()}") as log:
        try:
            cfgs = [RunConfig.from_dict(t.config) for t in tasks]
            results = list(seeds_fn(cfgs[0], [c.seed for c in cfgs], [t.run_dir for t in tasks],
                                    checkpoint=ckpt, resume=resume, progress=False))
            if len(results) != len(tasks):
                raise RuntimeError(f"group function returned {len(results)} results for {len(tasks)} seeds")
        except Exception as exc:
            results = [_failed_result(t, f"{type(exc).__name__}: {exc}", tb.format_exc()) for t in tasks]
            for t, r in zip(tasks, results):
                atomic_write_json(Path(t.run_dir) / RESULT_NAME, r)
        wall = time.monotonic() - t0
        print(f"=== group finished after {wall:.1f} s", file=log)
    outcomes = []
    for task, result in zip(tasks, results):
        result = _checked(task, result)
        with open(Path(task.run_dir) / "log.txt", "a") as f:
            print(_footer(result, wall), file=f)
        outcomes.append(_outcome(task, result, wall))
    return outcomes


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
    return {
        "run_id": task.run_id,
        "status": result["status"],
        "error": result.get("error"),
        "traceback": result.get("traceback"),
        "test_acc": _float_or_none(result.get("test_acc")),
        "best_val_acc": _float_or_none(result.get("best_val_acc")),
        "wall_s": wall,
        "worker": worker_name(),
    }


def _result_problem(result: Any) -> Optional[str]:
    if not isinstance(result, dict):
        return f"returned {type(result).__name__}, not a result dict"
    status = result.get("status")
    if status not in ("done", "failed"):
        return f"returned status {status!r} (expected 'done' or 'failed')"
    if status == "done" and _float_or_none(result.get("test_acc")) is None:
        return "reported done without a numeric test_acc"
    return None


def _failed_result(task: RunTask, error: str, traceback: Optional[str], base: Any = None) -> dict[str, Any]:
    result = dict(base) if isinstance(base, dict) else {}
    result.update(status="failed", error=error, traceback=traceback)
    result.setdefault("config", task.config)
    return result


def _float_or_none(v: Any) -> Optional[float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


@contextlib.contextmanager
def _run_log(path: Path, header: str) -> Iterator[io.TextIOBase]:
    """Send this run's prints, warnings and log records to its log.txt (appended, one
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


# -- driver side ----------------------------------------------------------------------


@dataclass
class SweepReport:
    """What a sweep invocation did, and the state of the spec's runs afterwards."""

    total: int
    done: int
    failed: int
    remaining: int
    trained: int = 0
    recovered: int = 0
    reused: int = 0
    requeued: list[str] = field(default_factory=list)
    failed_ids: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.done == self.total


def open_store_for(expansion: Expansion, store_dir: str | Path) -> RunStore:
    """Create or open the store of `expansion`'s spec (refusing another design)."""
    spec = expansion.spec
    text = spec.text or json.dumps({"name": spec.name}, indent=2)
    return RunStore.create_or_open(
        store_dir,
        spec_name=spec.name,
        design_hash=expansion.design_hash,
        factors=list(spec.factors),
        factor_paths=dict(spec.factor_paths),
        spec_text=text,
    )


def run_sweep(
    spec: ExperimentSpec,
    store_dir: str | Path,
    *,
    executor: Optional[Executor] = None,
    run_fn: RunFn = train_run_entry,
    seeds_per_job: int = 1,
    seeds_fn: SeedsFn = train_seeds_entry,
    overrides: Optional[dict[str, Any]] = None,
    max_runs: Optional[int] = None,
    retry_failed: bool = False,
    reuse: Sequence[str | Path] = (),
    progress: bool = True,
    say: Callable[[str], None] = print,
) -> SweepReport:
    """Execute the runs of `spec` not yet done in the store at `store_dir`.

    Args:
        spec: the experiment spec.
        store_dir: the run store directory (created if missing).
        executor: where runs execute; one after another in this process by default.
        run_fn: the training entry point (tests inject their own).
        seeds_per_job: train up to this many runs that differ only in their seed
            together in one job (one process, one device), with `seeds_fn`.
        seeds_fn: the multi-seed training entry point, for ``seeds_per_job > 1``.
        overrides: settings outside the run identity, e.g. ``{"device": "cuda"}``.
        max_runs: train at most this many runs in this invocation.
        retry_failed: requeue runs that failed in an earlier invocation.
        reuse: other stores whose finished runs with the same id are copied instead
            of trained (in addition to the spec's ``reuse`` list).
        progress: show the overall progress bar.
        say: where the per-run lines and notes go.
    """
    if max_runs is not None and max_runs < 0:
        raise ValueError(f"max_runs: must be >= 0, got {max_runs}")
    if seeds_per_job < 1:
        raise ValueError(f"seeds_per_job: must be >= 1, got {seeds_per_job}")
    expansion = spec.expand(overrides)  # validates every config before touching the store
    executor = executor or LocalExecutor()
    store = open_store_for(expansion, store_dir)
    runs = {r.run_id: r for r in expansion.runs}
    ids = list(runs)
    with sweep_lock(store.root):
        store.add_runs([(r.run_id, r.seed, r.config.to_dict(), list(r.conditions)) for r in expansion.runs])
        report = SweepReport(total=len(ids), done=0, failed=0, remaining=0)
        # The lock proves no other driver is alive: 'running' rows are left over.
        report.requeued = [rid for rid in store.requeue("running") if rid in runs]
        if report.requeued:
            say(f"requeued {len(report.requeued)} run(s) interrupted by an earlier sweep; they resume from their checkpoints")
        if retry_failed:
            retried = store.requeue("failed", ids)
            if retried:
                say(f"retrying {len(retried)} failed run(s)")

        reuse_dirs = [Path(p) for p in list(spec.reuse) + list(reuse)]
        for d in reuse_dirs:
            if not (d / "runs").is_dir():
                say(f"note: reuse store {d} not found; runs it would provide are trained here")
        for row in store.rows(ids):
            if row.status != "queued":
                continue
            if _recover_finished(store, row.run_id):
                report.recovered += 1
            elif _import_reused(store, row.run_id, reuse_dirs):
                report.reused += 1
        if report.recovered:
            say(f"recovered {report.recovered} run(s) that had finished but were not recorded")
        if report.reused:
            say(f"copied {report.reused} finished run(s) from {', '.join(map(str, reuse_dirs))}")

        rows = {r.run_id: r for r in store.rows(ids)}
        pending = [rid for rid in ids if rows[rid].status == "queued"]
        if max_runs is not None:
            pending = pending[:max_runs]
        initial = sum(1 for r in rows.values() if r.status in ("done", "failed"))
        if pending:
            say(f"{len(pending)} run(s) to train on {executor.describe()}; {initial} of {len(ids)} already finished")
        if seeds_per_job > 1:
            groups = seed_groups([runs[rid] for rid in pending], seeds_per_job)
            make_job = lambda group: _group_job(store, group, seeds_fn)  # noqa: E731
        else:
            groups = [[runs[rid]] for rid in pending]
            make_job = lambda group: _solo_job(store, group[0], run_fn)  # noqa: E731
        report.trained = _drive(store, runs, groups, make_job, executor, initial, len(ids), progress, say, spec.name)

        counts = store.counts(ids)
        report.done, report.failed = counts["done"], counts["failed"]
        report.remaining = counts["queued"] + counts["running"]
        report.failed_ids = [r.run_id for r in store.rows(ids) if r.status == "failed"]
    return report


def seed_groups(pending: Sequence[PlannedRun], size: int) -> list[list[PlannedRun]]:
    """Runs that differ only in their seed, in chunks of at most `size`, in order.

    Deterministic in `pending`, so after a crash the same requeued runs form the same
    group again and it resumes from the group's checkpoint.
    """
    by_condition: dict[str, list[PlannedRun]] = {}
    for run in pending:
        key = json.dumps(run.config.override({"seed": 0}).to_dict(), sort_keys=True)
        by_condition.setdefault(key, []).append(run)
    return [runs[i : i + size] for runs in by_condition.values() for i in range(0, len(runs), size)]


def _solo_job(store: RunStore, run: PlannedRun, run_fn: RunFn) -> Job:
    attempt = store.claim(run.run_id)
    task = RunTask(run.run_id, run.config.to_dict(), str(store.run_dir(run.run_id)), attempt)
    return Job(key=run.run_id, fn=execute_runs, args=((task,), run_fn), run_ids=(run.run_id,))


def _group_job(store: RunStore, group: list[PlannedRun], seeds_fn: SeedsFn) -> Job:
    tasks = tuple(
        RunTask(r.run_id, r.config.to_dict(), str(store.run_dir(r.run_id)), store.claim(r.run_id)) for r in group
    )
    ids = tuple(r.run_id for r in group)
    group_id = "g-" + stable_hash(list(ids))[:12]
    group_dir = str(store.root / "groups" / group_id)
    return Job(key=group_id, fn=execute_seed_group, args=(tasks, group_dir, seeds_fn), run_ids=ids)


def _drive(
    store: RunStore,
    runs: dict[str, PlannedRun],
    groups: list[list[PlannedRun]],
    make_job: Callable[[list[PlannedRun]], Job],
    executor: Executor,
    initial: int,
    total: int,
    progress: bool,
    say: Callable[[str], None],
    desc: str,
) -> int:
    from tqdm.auto import tqdm

    def jobs() -> Iterator[Job]:
        # Claiming happens as the executor pulls the job, so 'running' means handed
        # to a worker (for Ray: submitted to the cluster's queue).
        for group in groups:
            yield make_job(group)

    trained = 0
    bar = tqdm(total=total, initial=initial, desc=desc, unit="run", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    write = (lambda s: tqdm.write(s, file=sys.stdout)) if progress else say
    try:
        for finished in executor.execute(jobs()):
            for outcome in _outcomes(finished):
                store.finish(
                    outcome["run_id"],
                    status=outcome["status"],
                    error=outcome.get("error"),
                    traceback=outcome.get("traceback"),
                    test_acc=outcome.get("test_acc"),
                    best_val_acc=outcome.get("best_val_acc"),
                    wall_s=outcome.get("wall_s"),
                    worker=outcome.get("worker"),
                )
                trained += 1
                bar.update(1)
                write(_finished_line(runs[outcome["run_id"]], outcome))
    finally:
        bar.close()
    return trained


def _outcomes(finished: JobDone) -> list[dict[str, Any]]:
    """Per-run outcomes of a job; a job that did not complete fails all its runs."""
    if finished.ok and isinstance(finished.value, list):
        return finished.value
    error = finished.error or f"job returned {type(finished.value).__name__}, not a list of outcomes"
    return [
        {"run_id": rid, "status": "failed", "error": error, "traceback": finished.traceback}
        for rid in finished.job.run_ids
    ]


def _finished_line(run: PlannedRun, outcome: dict[str, Any]) -> str:
    wall = outcome.get("wall_s")
    took = f" ({_duration(wall)})" if wall is not None else ""
    if outcome["status"] == "done":
        acc = outcome.get("test_acc")
        return f"done    {run.run_id}  {run.label}  test_acc {acc:.4f}{took}"
    error = (outcome.get("error") or "").strip().splitlines() or ["(no error message)"]
    return f"FAILED  {run.run_id}  {run.label}  {error[0]}{took}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# -- recovery and reuse ------------------------------------------------------------------


def finished_result(result_path: Path, run_id: str) -> Optional[dict[str, Any]]:
    """The result at `result_path` if it is a finished ('done') result of run `run_id`."""
    try:
        result = json.loads(result_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(result, dict) or result.get("status") != "done":
        return None
    if _float_or_none(result.get("test_acc")) is None:
        return None
    try:
        same = compute_run_id(RunConfig.from_dict(result.get("config") or {})) == run_id
    except ValueError:
        same = False
    return result if same else None


def _recover_finished(store: RunStore, run_id: str) -> bool:
    """Record a run whose worker finished (result.json done) but whose driver died
    before recording it, instead of training it again."""
    result = finished_result(store.run_dir(run_id) / RESULT_NAME, run_id)
    if result is None:
        return False
    store.finish(
        run_id,
        status="done",
        test_acc=_float_or_none(result.get("test_acc")),
        best_val_acc=_float_or_none(result.get("best_val_acc")),
    )
    return True


def _import_reused(store: RunStore, run_id: str, reuse_dirs: list[Path]) -> bool:
    """Copy a finished run with the same id from another store (result, log, checkpoint)."""
    for other in reuse_dirs:
        src = other / "runs" / run_id
        result = finished_result(src / RESULT_NAME, run_id)
        if result is None:
            continue
        dst = store.run_dir(run_id)
        dst.mkdir(parents=True, exist_ok=True)
        for name in ("log.txt", CHECKPOINT_NAME):
            if (src / name).exists():
                _link_or_copy(src / name, dst / name)
        atomic_write_json(dst / RESULT_NAME, result)  # last: its presence means complete
        store.finish(
            run_id,
            status="done",
            test_acc=_float_or_none(result.get("test_acc")),
            best_val_acc=_float_or_none(result.get("best_val_acc")),
            reused_from=str(other),
        )
        return True
    return False


def _link_or_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(src, tmp)  # checkpoints are large and never modified once done
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


# -- status ---------------------------------------------------------------------------------


def format_status(store: RunStore, run_ids: Optional[list[str]] = None) -> str:
    """The table of runs printed by ``cffaudit sweep --status``."""
    rows = store.rows(run_ids)
    factors = store.factors()
    header = ["run_id", "status", "tries", *factors, "seed", "test_acc", "time", "note"]
    table = []
    for r in rows:
        levels = merged_levels(r.conditions)
        note = ""
        if r.status == "failed":
            note = (r.error or "").splitlines()[0][:80] if r.error else ""
        elif r.reused_from:
            note = f"copied from {r.reused_from}"
        elif r.status == "running" and r.worker:
            note = f"on {r.worker} since {r.started}"
        table.append(
            [
                r.run_id,
                r.status,
                str(r.attempts),
                *[str(levels.get(f, "")) for f in factors],
                str(r.seed),
                "" if r.test_acc is None else f"{r.test_acc:.4f}",
                "" if r.wall_s is None else _duration(r.wall_s),
                note,
            ]
        )
    widths = [max(len(h), *(len(row[i]) for row in table)) if table else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    counts = store.counts(run_ids)
    meta = store.meta()
    lines.append("")
    lines.append(
        f"{meta.get('spec_name')}: {len(rows)} run(s): "
        + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        + (f"  (store {store.root})")
    )
    if counts["failed"]:
        lines.append("failed runs keep their traceback in runs/<run_id>/result.json; rerun with --retry-failed to try again")
    return "\n".join(lines)
