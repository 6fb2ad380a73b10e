"""`cffaudit sweep`: argument parsing, the command and its status table, on top of
:mod:`.sweep`. Every check of a value (the store's design, option ranges, executor
defaults) is the library's; this module only names the flag in the message."""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Any, Optional

from cffaudit.config import DEVICES

#: The status --status shows for a run left 'running' by a sweep process that is gone.
INTERRUPTED = "interrupted"

#: Library parameter names that the command line spells differently, per executor.
_FLAG_OF = {"cpus_per_task": "--cpus-per-run"}
_SLURM_FLAG_OF = {"time_min": "--slurm-time", "cpus_per_task": "--slurm-cpus", "gpus_per_task": "--slurm-gpus",
                  "mem_gb": "--slurm-mem-gb", "array_parallelism": "--slurm-array-parallelism",
                  "sbatch_options": "--slurm-option", "partition": "--slurm-partition"}
#: The Slurm-only flags: (flag, attribute in the parsed arguments).
_SLURM_FLAGS = tuple((flag, "slurm_" + flag[len("--slurm-"):].replace("-", "_")) for flag in _SLURM_FLAG_OF.values())


def add_sweep_command(sub: argparse._SubParsersAction) -> None:
    """Register `cffaudit sweep` on the CLI's subparsers."""
    p = sub.add_parser(
        "sweep",
        help="run an experiment spec's runs into a resumable run store",
        description=(
            "Expand an experiment spec (base config x factors x seeds) into runs and train the "
            "ones the store does not have yet. Safe to kill and rerun: finished runs are kept, "
            "interrupted runs resume from their checkpoints."
        ),
    )
    p.add_argument("spec", nargs="?", help="experiment spec YAML (optional with --status: all runs of the store)")
    p.add_argument("--store", required=True, metavar="DIR", help="run store directory (created if missing)")
    p.add_argument("--status", action="store_true", help="print the table of runs and exit")
    p.add_argument("--dry-run", action="store_true", help="validate and expand the spec, show what would run, train nothing")
    p.add_argument("--executor", choices=("local", "slurm", "ray"), default="local",
                   help="where runs execute (default: local; slurm: a job array through submitit; ray: Ray tasks)")
    p.add_argument(
        "--address",
        default=None,
        metavar="auto|HOST:PORT",
        help="Ray cluster to join ('auto': the cluster this machine belongs to); default: start a local Ray instance",
    )
    p.add_argument("--device", choices=DEVICES, default=None, help="override the spec's device for every run (not part of run ids)")
    p.add_argument("--data-dir", default=None, metavar="DIR", help="override data.data_dir for every run (not part of run ids)")
    p.add_argument("--seeds", default=None, metavar="SEEDS", help="replace the spec's seeds, e.g. 1-20 (adds runs to the same store)")
    p.add_argument("--max-runs", type=int, default=None, metavar="N", help="train at most N runs in this invocation")
    p.add_argument("--retry-failed", action="store_true", help="train failed runs again (they resume from their checkpoints)")
    p.add_argument("--reuse", action="append", default=[], metavar="DIR", help="copy finished runs with the same id from this store (repeatable)")
    p.add_argument(
        "--seeds-per-job",
        type=int,
        default=1,
        metavar="N",
        help="train up to N seeds of one condition together in one process (one GPU); results equal solo runs",
    )
    p.add_argument("--workers", type=int, default=None, metavar="N", help="local executor: parallel worker processes (default: one per local GPU, else 1)")
    p.add_argument("--cpus-per-run", type=float, default=None, metavar="N", help="Ray executor: CPUs per task (default 1)")
    p.add_argument("--max-retries", type=int, default=None, metavar="N", help="Ray executor: retries when a worker dies (default 3)")
    s = p.add_argument_group("Slurm executor (--executor slurm; one array task per run or seed group)")
    s.add_argument("--slurm-partition", default=None, metavar="NAME", help="partition (default: the cluster's default)")
    s.add_argument("--slurm-time", default=None, metavar="LIMIT",
                   help="time limit per task: minutes, H:MM:SS or D-HH:MM:SS (default 60); a task that reaches it "
                   "is requeued and resumes from its checkpoint")
    s.add_argument("--slurm-cpus", type=int, default=None, metavar="N", help="CPUs per task (default 1)")
    s.add_argument("--slurm-gpus", type=int, default=None, metavar="N",
                   help="GPUs per task (default: 0 when every run is on the CPU, else 1 where the partition has GPUs)")
    s.add_argument("--slurm-mem-gb", type=float, default=None, metavar="GB", help="memory per task (default: the partition's)")
    s.add_argument("--slurm-array-parallelism", type=int, default=None, metavar="N",
                   help="at most N tasks of the array at once (default: as many as the cluster allows)")
    s.add_argument("--slurm-option", action="append", default=None, metavar="KEY=VALUE",
                   help="another sbatch option, e.g. account=mylab or qos=high (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (per-run lines are still printed)")
    p.add_argument("--tensorboard", type=Path, default=None, metavar="DIR",
                   help="also write TensorBoard logs, one subfolder per run id (not part of run ids); "
                        "needs cffaudit[tensorboard]")
    p.set_defaults(func=run_sweep_command, resume_hint="run the same command again to resume: finished runs "
                   "are kept and interrupted runs resume from their checkpoints")


def run_sweep_command(args: argparse.Namespace) -> int:
    """Run `cffaudit sweep`; returns 0 when every run of the spec is done, 1 otherwise."""
    from cffaudit.cli import CLIError
    from cffaudit.experiments.executors import ExecutorError, OptionError
    from cffaudit.experiments.spec import SpecError
    from cffaudit.experiments.store import StoreError

    try:
        if args.status:
            return _status(args)
        if not args.spec:
            raise CLIError("give the spec file: cffaudit sweep SPEC.yaml --store DIR")
        return _sweep(args)
    except OptionError as exc:
        flags = _SLURM_FLAG_OF if getattr(args, "executor", None) == "slurm" else _FLAG_OF
        flag = flags.get(exc.option, "--" + exc.option.replace("_", "-"))
        raise CLIError(f"{flag} {exc.problem}") from None
    except (SpecError, StoreError, ExecutorError) as exc:
        raise CLIError(str(exc)) from None


def _load(args: argparse.Namespace):
    from cffaudit.experiments.spec import ExperimentSpec, SpecError, parse_seeds

    spec = ExperimentSpec.load(args.spec)
    if args.seeds is not None:
        try:
            spec = spec.with_seeds(parse_seeds(args.seeds))
        except ValueError as exc:
            raise SpecError(f"--seeds: {exc}") from None
    return spec


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.device is not None:
        out["device"] = args.device
    if args.data_dir is not None:
        out["data.data_dir"] = str(Path(args.data_dir).expanduser().resolve())
    return out


def _status(args: argparse.Namespace) -> int:
    from cffaudit.experiments.store import RunStore

    store = RunStore.open_existing(args.store)
    run_ids = None
    if args.spec:
        expansion = _load(args).expand(_overrides(args))
        store.check_design(expansion.design_hash, expansion.spec.source)
        run_ids = [r.run_id for r in expansion.runs]
    print(format_status(store, run_ids))
    return 0


def format_status(store, run_ids: Optional[list[str]] = None) -> str:
    """The table of runs printed by ``cffaudit sweep --status``; accuracies and errors
    come from the runs' result.json files (the store's queue has neither)."""
    from cffaudit.experiments.lock import owner_is_gone
    from cffaudit.experiments.outcomes import MISSING
    from cffaudit.experiments.spec import merged_levels
    from cffaudit.experiments.store import STATUSES
    from cffaudit.experiments.sweep import format_duration

    rows = store.rows(run_ids)
    factors = store.factors()
    slurm = slurm_column(store, [r.run_id for r in rows])
    header = ["run_id", "status", "tries", *factors, "seed", "test_acc", "time", *(["slurm job"] if slurm else []), "note"]
    table = []
    counts = {s: 0 for s in (*STATUSES, MISSING, INTERRUPTED)}
    for r in rows:
        outcome = store.outcome(r)
        status = outcome.status
        # The store names the sweep process that claimed a run; if that process is gone,
        # nothing trains the run until the next sweep requeues it.
        if status == "running" and r.worker and owner_is_gone(r.worker):
            status = INTERRUPTED
        counts[status] += 1
        levels = merged_levels(r.conditions)
        note = ""
        if outcome.status == "failed":
            note = (outcome.error or "").splitlines()[0][:80] if outcome.error else ""
        elif outcome.status == MISSING:
            note = f"{outcome.error}; the next sweep trains it again"
        elif r.reused_from:
            note = f"copied from {r.reused_from}"
        elif status == INTERRUPTED:
            note = f"resumes on the next sweep (its sweep process {r.worker} is gone)"
        elif r.status == "running" and r.worker:
            note = f"on {r.worker} since {r.started}"
        acc = outcome.test_acc
        table.append(
            [
                r.run_id,
                status,
                str(r.attempts),
                *[str(levels.get(f, "")) for f in factors],
                str(r.seed),
                "" if acc is None else f"{acc:.2f}",
                "" if r.wall_s is None else format_duration(r.wall_s),
                *([slurm.get(r.run_id, "")] if slurm else []),
                note,
            ]
        )
    widths = [max(len(h), *(len(row[i]) for row in table)) if table else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    meta = store.meta()
    lines.append("")
    lines.append(
        f"{meta.get('spec_name')}: {len(rows)} run(s): "
        + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        + (f"  (store {store.root})")
    )
    if counts["failed"]:
        lines.append("failed runs keep their traceback in runs/<run_id>/result.json; rerun with --retry-failed to try again")
    if counts[INTERRUPTED]:
        lines.append("interrupted runs were claimed by a sweep that is no longer running; run the sweep "
                     "command again and they resume from their checkpoints")
    if counts[MISSING]:
        lines.append("missing runs were recorded done but their result.json is gone or unreadable; they are not "
                     "counted, and the next `cffaudit sweep` trains them again")
    return "\n".join(lines)


def slurm_column(store, run_ids: list[str]) -> dict[str, str]:
    """``run_id -> "JOBID STATE"`` for the runs submitted to Slurm (empty without any):
    the state Slurm reports now where squeue or sacct answers, else the one last recorded;
    ``"? SUBMITTING"`` for a run whose job id sbatch has not given (or a killed driver
    did not record: the next sweep finds it by the submission's job name)."""
    import shutil
    import subprocess

    from cffaudit.experiments.slurm_records import query_states, slurm_records, submissions

    records = slurm_records(store, run_ids)
    wanted = set(run_ids)
    submitting = {r.run_id for runs in submissions(store).values() for r in runs if r.run_id in wanted}
    if not records and not submitting:
        return {}
    states: dict[str, tuple[str, str]] = {}
    if records and shutil.which("squeue"):
        try:
            states, _ = query_states({r.slurm_id for r in records.values()}, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            pass  # the recorded states below
    out = {}
    for rid, rec in records.items():
        state = states.get(rec.slurm_id, (rec.state or "?", ""))[0]
        out[rid] = f"{rec.slurm_id} {state}"
    for rid in submitting:
        out[rid] = "? SUBMITTING"
    return out


def _check_executor_flags(args: argparse.Namespace) -> None:
    """Flags of the other executor are errors, not silently ignored (checked before a dry run too)."""
    from cffaudit.cli import CLIError

    if args.executor != "ray":
        for flag, value in (("--address", args.address), ("--cpus-per-run", args.cpus_per_run),
                            ("--max-retries", args.max_retries)):
            if value is not None:
                raise CLIError(f"{flag} only applies to --executor ray")
    if args.executor != "slurm":
        for flag, attr in _SLURM_FLAGS:
            if getattr(args, attr) is not None:
                raise CLIError(f"{flag} only applies to --executor slurm")


def _sweep(args: argparse.Namespace) -> int:
    _check_executor_flags(args)
    from cffaudit.experiments.recovery import reusable_runs
    from cffaudit.experiments.store import RunStore
    from cffaudit.experiments.sweep import check_sweep_options, run_sweep

    spec = _load(args)
    expansion = spec.expand(_overrides(args))  # every config built: bad specs stop here
    for line in expansion.summary():
        print(line)
    check_sweep_options(max_runs=args.max_runs, seeds_per_job=args.seeds_per_job)

    if args.dry_run:
        done: dict[str, str] = {}
        if RunStore.exists_at(args.store):
            store = RunStore.open_existing(args.store)
            store.check_design(expansion.design_hash, expansion.spec.source)
            done = {r.run_id: store.outcome(r).status for r in store.rows([r.run_id for r in expansion.runs])}
        for cond in expansion.conditions:
            ids = [r.run_id for r in expansion.runs if cond.levels in r.conditions]
            finished = sum(1 for i in ids if done.get(i) == "done")
            print(f"  {cond.label}: {len(ids)} run(s), {finished} done  [{' '.join(ids)}]")
        todo = [r.run_id for r in expansion.runs if done.get(r.run_id) != "done"]
        reusable = 0
        for other in [Path(p) for p in list(spec.reuse) + list(args.reuse)]:
            found = reusable_runs(todo, other)
            print(f"reuse {other}: {len(found)} finished run(s) with the same ids to copy")
            todo = [rid for rid in todo if rid not in found]
            reusable += len(found)
        print(f"dry run: {len(todo)} of {len(expansion.runs)} run(s) would be trained"
              + (f", {reusable} copied" if reusable else "") + " (nothing was trained)")
        return 0

    train_fn = _train_fn(args.tensorboard)  # before anything is queued: a missing package stops here
    if args.executor == "local":
        from cffaudit.train.threads import available_cores, limit_threads

        # Before torch is imported: one run at a time uses every core; worker processes
        # share them (each sets cores // workers threads).
        limit_threads(available_cores())
    # Runs pinned to the CPU (by --device or the spec) must not hold GPUs.
    executor = _executor(args, cpu_only=all(r.config.device == "cpu" for r in expansion.runs))
    report = run_sweep(
        spec,
        args.store,
        executor=executor,
        overrides=_overrides(args),
        max_runs=args.max_runs,
        seeds_per_job=args.seeds_per_job,
        retry_failed=args.retry_failed,
        reuse=args.reuse,
        progress=not args.no_progress,
        train_fn=train_fn,
    )
    print(
        f"{spec.name}: {report.done} of {report.total} run(s) done"
        + (f", {report.failed} failed" if report.failed else "")
        + (f", {report.remaining} not yet run" if report.remaining else "")
        + f"  (store {args.store})"
    )
    if report.failed:
        print(
            f"failed: {' '.join(report.failed_ids)}; see `cffaudit sweep {args.spec} --store {args.store} --status` "
            "and runs/<run_id>/log.txt; fix the cause and rerun with --retry-failed"
        )
        return 1
    if report.remaining:
        print("run the same command again to continue")
    return 0


def _train_fn(tensorboard: Optional[Path]):
    """The workers' training function, with the TensorBoard root bound (absolute: a Ray
    worker does not share the driver's working directory)."""
    from cffaudit.experiments.worker import train_entry

    if tensorboard is None:
        return train_entry
    from cffaudit.cli import CLIError
    from cffaudit.train.tblog import require_tensorboard

    try:
        require_tensorboard()
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    return functools.partial(train_entry, tensorboard=str(tensorboard.resolve()))


def _executor(args: argparse.Namespace, cpu_only: bool = False):
    from cffaudit.cli import CLIError
    from cffaudit.experiments.executors import LocalExecutor, RayExecutor, local_gpus

    if args.executor == "slurm":
        return _slurm_executor(args, cpu_only)
    if args.executor == "ray":
        if args.workers is not None:
            raise CLIError("--workers is for the local executor; Ray runs as many tasks as the cluster has room for")
        given = {"cpus_per_task": args.cpus_per_run, "max_retries": args.max_retries}
        return RayExecutor(address=args.address, gpus_per_task=0 if cpu_only else None,
                           **{k: v for k, v in given.items() if v is not None})  # unset: Ray executor defaults
    gpus = [] if cpu_only else local_gpus()
    if len(gpus) > 1:  # one worker per GPU unless --workers says fewer
        return LocalExecutor(workers=args.workers, gpus=gpus if args.workers is None else gpus[: args.workers])
    return LocalExecutor(workers=args.workers)


def _slurm_executor(args: argparse.Namespace, cpu_only: bool):
    from cffaudit.cli import CLIError
    from cffaudit.experiments.slurm import SlurmExecutor, parse_time_limit

    if args.workers is not None:
        raise CLIError("--workers is for the local executor; with Slurm every run (or seed group) is one array task "
                       "(--slurm-array-parallelism limits how many run at once)")
    options = {}
    for item in args.slurm_option or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise CLIError(f"--slurm-option {item!r}: give KEY=VALUE, e.g. account=mylab for sbatch --account=mylab")
        options[key.strip().lstrip("-")] = value.strip()
    given = {
        "partition": args.slurm_partition,
        "time_min": parse_time_limit(args.slurm_time) if args.slurm_time is not None else None,
        "cpus_per_task": args.slurm_cpus,
        # Unset: none for runs pinned to the CPU, else one where the partition has GPUs.
        "gpus_per_task": args.slurm_gpus if args.slurm_gpus is not None else (0 if cpu_only else None),
        "mem_gb": args.slurm_mem_gb,
        "array_parallelism": args.slurm_array_parallelism,
    }
    # run_sweep calls its preflight (submitit, sbatch, options Slurm refuses) before queueing anything.
    return SlurmExecutor(sbatch_options=options, **{k: v for k, v in given.items() if v is not None})
