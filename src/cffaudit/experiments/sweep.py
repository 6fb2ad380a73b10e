"""Sweeps: expand a spec, execute the runs not yet done, record every outcome.

:func:`run_sweep` is the driver. It is the only writer of the store's SQLite file;
workers (in this process, in worker processes or in Ray tasks) run
:func:`.worker.execute_job`, which writes the runs' own directories and returns
outcomes that the driver records. Killing the driver at any moment loses nothing that
finished:

* a run whose result.json says done is never trained again, even if the driver died
  before recording it (it is recovered from the file, :mod:`.recovery`);
* a run recorded done whose result.json is gone or cut short is trained again;
* a run left 'running' is requeued and resumes from its checkpoint;
* a failed run stays failed (with its error and traceback) until ``retry_failed``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from cffaudit.experiments.executors import Executor, Job, JobDone, LocalExecutor, OptionError
from cffaudit.experiments.identity import stable_hash
from cffaudit.experiments.recovery import import_reused, recover_finished, requeue_missing
from cffaudit.experiments.spec import ExperimentSpec, Expansion, PlannedRun
from cffaudit.experiments.store import RunStore, sweep_lock
from cffaudit.experiments.worker import RunTask, TrainFn, execute_job, train_entry


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
    missing: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.done == self.total


def check_sweep_options(*, max_runs: Optional[int] = None, seeds_per_job: int = 1) -> None:
    """Refuse option values no sweep can use (the CLI checks them before a dry run too).

    Raises:
        OptionError: naming the option.
    """
    if max_runs is not None and max_runs < 0:
        raise OptionError("max_runs", f"must be >= 0, got {max_runs}")
    if seeds_per_job < 1:
        raise OptionError("seeds_per_job", f"must be >= 1, got {seeds_per_job}")


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
    train_fn: TrainFn = train_entry,
    seeds_per_job: int = 1,
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
        train_fn: the training entry point, ``train_seeds``'s signature (tests inject
            their own).
        seeds_per_job: train up to this many runs that differ only in their seed
            together in one job (one process, one device).
        overrides: settings outside the run identity, e.g. ``{"device": "cuda"}``.
        max_runs: train at most this many runs in this invocation.
        retry_failed: requeue runs that failed in an earlier invocation.
        reuse: other stores whose finished runs with the same id are copied instead
            of trained (in addition to the spec's ``reuse`` list).
        progress: show the overall progress bar.
        say: where the per-run lines and notes go.
    """
    check_sweep_options(max_runs=max_runs, seeds_per_job=seeds_per_job)
    expansion = spec.expand(overrides)  # validates every config before touching the store
    executor = executor or LocalExecutor()
    executor.preflight()  # a backend that cannot run here fails before anything is queued
    store = open_store_for(expansion, store_dir)
    runs = {r.run_id: r for r in expansion.runs}
    ids = list(runs)
    with sweep_lock(store.root):
        executor.bind(store)
        store.add_runs([(r.run_id, r.seed, list(r.conditions)) for r in expansion.runs])
        report = SweepReport(total=len(ids), done=0, failed=0, remaining=0)
        # The lock proves no other driver is alive: 'running' rows are left over.
        report.requeued = [rid for rid in store.requeue("running") if rid in runs]
        if report.requeued:
            say(f"requeued {len(report.requeued)} run(s) interrupted by an earlier sweep; they resume from their checkpoints")
        missing = requeue_missing(store, ids)
        report.missing = [rid for rid, _ in missing]
        for rid, problem in missing:
            say(f"run {rid} was recorded done, but {problem}: training it again")
        if retry_failed:
            retried = store.requeue("failed", ids)
            if retried:
                say(f"retrying {len(retried)} failed run(s)")
        _settle_queued(store, ids, [Path(p) for p in list(spec.reuse) + list(reuse)], report, say)

        rows = {r.run_id: r for r in store.rows(ids)}
        pending = [runs[rid] for rid in ids if rows[rid].status == "queued"]
        if max_runs is not None:
            pending = pending[:max_runs]
        initial = sum(1 for r in rows.values() if r.status in ("done", "failed"))
        if pending:
            say(f"{len(pending)} run(s) to train on {executor.describe()}; {initial} of {len(ids)} already finished")
        groups = seed_groups(pending, seeds_per_job)
        jobs = (_job(store, group, train_fn) for group in groups)
        report.trained = _drive(store, runs, jobs, executor, initial, len(ids), progress, say, spec.name)

        counts = store.counts(ids)
        report.done, report.failed = counts["done"], counts["failed"]
        report.remaining = counts["queued"] + counts["running"]
        report.failed_ids = [r.run_id for r in store.rows(ids) if r.status == "failed"]
    return report


def _settle_queued(store: RunStore, ids: list[str], reuse_dirs: list[Path], report: SweepReport,
                   say: Callable[[str], None]) -> None:
    """Record queued runs that already have a finished result here or in a reuse store."""
    for d in reuse_dirs:
        if not (d / "runs").is_dir():
            say(f"note: reuse store {d} not found; runs it would provide are trained here")
    for row in store.rows(ids):
        if row.status != "queued":
            continue
        if recover_finished(store, row.run_id):
            report.recovered += 1
        elif import_reused(store, row.run_id, reuse_dirs):
            report.reused += 1
    if report.recovered:
        say(f"recovered {report.recovered} run(s) that had finished but were not recorded")
    if report.reused:
        say(f"copied {report.reused} finished run(s) from {', '.join(map(str, reuse_dirs))}")


def seed_groups(pending: Sequence[PlannedRun], size: int) -> list[list[PlannedRun]]:
    """Runs that differ only in their seed, in chunks of at most `size`, ordered by
    their first run in `pending` (with size 1: one run per chunk, in order).

    Deterministic in `pending`, so after a crash the same requeued runs form the same
    group again and it resumes from the group's checkpoint.
    """
    by_condition: dict[str, list[PlannedRun]] = {}
    for run in pending:
        key = json.dumps(run.config.override({"seed": 0}).to_dict(), sort_keys=True)
        by_condition.setdefault(key, []).append(run)
    chunks = [runs[i : i + size] for runs in by_condition.values() for i in range(0, len(runs), size)]
    position = {run.run_id: i for i, run in enumerate(pending)}
    return sorted(chunks, key=lambda chunk: position[chunk[0].run_id])


def _job(store: RunStore, group: list[PlannedRun], train_fn: TrainFn) -> Job:
    """The job of `group`, claiming its runs: built as the executor pulls it, so
    'running' means handed to a worker (for Ray: submitted to the cluster's queue)."""
    tasks = tuple(
        RunTask(r.run_id, r.config.to_dict(), str(store.run_dir(r.run_id)), store.claim(r.run_id)) for r in group
    )
    ids = tuple(r.run_id for r in group)
    if len(group) == 1:  # a solo run: checkpoint and log in its own directory
        return Job(key=ids[0], fn=execute_job, args=(tasks, None, train_fn), run_ids=ids)
    group_id = "g-" + stable_hash(list(ids))[:12]
    group_dir = str(store.root / "groups" / group_id)
    return Job(key=group_id, fn=execute_job, args=(tasks, group_dir, train_fn), run_ids=ids)


def _drive(
    store: RunStore,
    runs: dict[str, PlannedRun],
    jobs: Iterator[Job],
    executor: Executor,
    initial: int,
    total: int,
    progress: bool,
    say: Callable[[str], None],
    desc: str,
) -> int:
    from tqdm.auto import tqdm

    trained = 0
    bar = tqdm(total=total, initial=initial, desc=desc, unit="run", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    write = (lambda s: tqdm.write(s, file=sys.stdout)) if progress else say
    try:
        for finished in executor.execute(jobs):
            for outcome in _outcomes(finished):
                store.finish(
                    outcome["run_id"],
                    status=outcome["status"],
                    error=outcome.get("job_error"),
                    traceback=outcome.get("job_traceback"),
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
    """Per-run outcomes of a job; a job that did not complete fails all its runs, and
    the store keeps why (they wrote no result of this attempt)."""
    if finished.ok and isinstance(finished.value, list):
        return finished.value
    error = finished.error or f"job returned {type(finished.value).__name__}, not a list of outcomes"
    return [
        {"run_id": rid, "status": "failed", "error": error, "job_error": error, "job_traceback": finished.traceback}
        for rid in finished.job.run_ids
    ]


def _finished_line(run: PlannedRun, outcome: dict[str, Any]) -> str:
    wall = outcome.get("wall_s")
    took = f" ({format_duration(wall)})" if wall is not None else ""
    if outcome["status"] == "done":
        acc = outcome.get("test_acc")
        return f"done    {run.run_id}  {run.label}  test_acc {acc:.2f}{took}"
    error = (outcome.get("error") or "").strip().splitlines() or ["(no error message)"]
    return f"FAILED  {run.run_id}  {run.label}  {error[0]}{took}"


def format_duration(seconds: float) -> str:
    """A duration as people read it: seconds, minutes or hours."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
