"""The Slurm executor: every job of a sweep is one task of a Slurm job array, through submitit.

A job (one run, or a seed group under ``--seeds-per-job``) becomes one array task
running :func:`.worker.execute_job` in ``python -m submitit.core._submit``; its sbatch
script, pickles and Slurm logs are under ``STORE/slurm/<jobid>_<task>/``. The driver
records each run's Slurm job id in the store (:mod:`.slurm_records`) and polls Slurm
for the jobs' states; it reads a task's outcome from the result pickle submitit
writes when the task returns.

* Preemption or timeout: submitit catches Slurm's warning signal (``--signal``) and
  requeues the task through the checkpointing hook (:class:`SlurmCall` is
  checkpointable); ``scontrol requeue`` or a preemption requeues it through Slurm
  itself (``--requeue``). Either way the task runs again and resumes from its
  ``checkpoint.pt``, as a resumed run does anywhere.
* A task that ends without a result (cancelled, out of memory, node failure) fails
  its runs with the Slurm job id, state and reason; ``--retry-failed`` resubmits them.
* The driver may die at any time: the jobs keep running on the cluster, and the next
  sweep finds them in the store and re-attaches to those still alive (or finished
  but not yet collected) instead of submitting the runs again. A driver killed
  after sbatch but before it recorded the job ids left the submission's unique job
  name in the store: the next sweep finds the jobs by that name (squeue, sacct).

submitit is imported only when a sweep runs here; ``--status`` does not need it.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

from cffaudit.experiments.executors import Executor, ExecutorError, Job, JobDone, OptionError
from cffaudit.experiments.slurm_records import (
    ALIVE, forget_submitting, jobs_named, query_states, record_states, record_submitted, record_submitting,
    slurm_records, submissions,
)

#: What to tell a user without sbatch on PATH.
_NO_SBATCH = (
    "--executor slurm submits jobs with sbatch, which is not on PATH here: run the sweep on a login node of "
    "your Slurm cluster (where sbatch, squeue and sacct are), or try Slurm on this machine with "
    "`bash scripts/slurm-local.sh start` (Debian, as root)"
)


class SlurmCall:
    """What an array task runs: ``fn(*args)``. Checkpointable for submitit: on timeout
    or preemption it is resubmitted as it was, and the job resumes from its
    checkpoint.pt (the training writes one every epoch)."""

    def __call__(self, fn: Callable[..., Any], args: tuple) -> Any:
        # Slurm ends a task it requeues (scontrol requeue, preemption) or cancels with
        # SIGTERM, then SIGKILL after KillWait. submitit only logs SIGTERM; training on
        # until the SIGKILL would be wasted (the requeued task resumes from the last
        # checkpoint) and could even finish a run that then trains again. Stop now.
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
        return fn(*args)

    def checkpoint(self, fn: Callable[..., Any], args: tuple) -> Any:
        """submitit's checkpointing hook (its signal handler looks for this name): the
        same call again; the training state is already in checkpoint.pt."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, fn, args)


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit("SIGTERM from Slurm (requeued, preempted or cancelled): stopping; the checkpoint stays")


@dataclass
class SlurmExecutor(Executor):
    """One Slurm array task per job, submitted with submitit.

    Args:
        partition: the partition (``None``: the cluster's default).
        time_min: each task's time limit in minutes; a task that reaches it is
            requeued and resumes from its checkpoint (up to `max_timeouts` times).
        cpus_per_task: CPUs per task (also its torch thread count, OMP_NUM_THREADS).
        gpus_per_task: GPUs per task (``--gpus-per-node`` of its one node); ``None``:
            1 if the partition's nodes have GPUs (as ``sinfo`` lists their gres), else 0.
        mem_gb: memory per task in GB (``None``: the partition's default).
        array_parallelism: at most this many tasks of the array run at once
            (``None``: as many as the cluster allows).
        sbatch_options: more sbatch options, without the dashes: ``{"account":
            "lab", "qos": "high"}`` becomes ``--account=lab --qos=high``.
        max_timeouts: how often a task may be requeued after reaching its time limit.
        poll_s: seconds between two queries of Slurm's job states.
    """

    partition: Optional[str] = None
    time_min: int = 60
    cpus_per_task: int = 1
    gpus_per_task: Optional[int] = None
    mem_gb: Optional[float] = None
    array_parallelism: Optional[int] = None
    sbatch_options: dict[str, str] = field(default_factory=dict)
    max_timeouts: int = 3
    poll_s: float = 10.0
    name: str = "slurm"

    def __post_init__(self) -> None:
        for option, value, low in (("time_min", self.time_min, 1), ("cpus_per_task", self.cpus_per_task, 1),
                                   ("gpus_per_task", self.gpus_per_task, 0), ("max_timeouts", self.max_timeouts, 0)):
            if option == "gpus_per_task" and value is None:
                continue
            if not isinstance(value, int) or value < low:
                raise OptionError(option, f"must be an integer >= {low}, got {value!r}")
        if self.mem_gb is not None and self.mem_gb <= 0:
            raise OptionError("mem_gb", f"must be > 0, got {self.mem_gb}")
        if self.array_parallelism is not None and self.array_parallelism < 1:
            raise OptionError("array_parallelism", f"must be >= 1, got {self.array_parallelism}")
        if self.poll_s <= 0:
            raise OptionError("poll_s", f"must be > 0, got {self.poll_s}")
        for key in self.sbatch_options:
            if not key or key.startswith("-") or "=" in key:
                raise OptionError("sbatch_options", f"{key!r} is not an sbatch option name (give KEY=VALUE, "
                                  "e.g. account=mylab for --account=mylab)")
        self._store: Any = None

    def describe(self) -> str:
        where = f"partition {self.partition}" if self.partition else "the default partition"
        gpus = "GPUs as the partition has" if self.gpus_per_task is None else f"{self.gpus_per_task} GPU(s)"
        return f"slurm ({where}, {self.cpus_per_task} CPU(s), {gpus} per task)"

    # -- before the store is touched ------------------------------------------------------
    def preflight(self) -> None:
        """Refuse to start without submitit, without sbatch, or with options Slurm rejects
        (``sbatch --test-only``: nothing is submitted), with Slurm's own message."""
        _import_submitit()
        if shutil.which("sbatch") is None:
            raise ExecutorError(_NO_SBATCH)
        if self.gpus_per_task is None:
            self.gpus_per_task = 1 if self._partition_has_gpus() else 0
        cmd = ["sbatch", "--test-only", *self._sbatch_flags(), "--wrap", "true"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ExecutorError(f"could not ask Slurm about the job options ({' '.join(cmd)}): {exc}") from None
        if proc.returncode != 0:
            message = " ".join(line.strip() for line in proc.stderr.splitlines() if line.strip())
            raise ExecutorError(f"Slurm refuses the sweep's jobs: {message or 'sbatch failed'} "
                                f"(checked with: {' '.join(cmd)}); fix the --slurm-* options")

    def _partition_has_gpus(self) -> bool:
        try:
            proc = subprocess.run(["sinfo", "-h", "-o", "%P %G"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return False
        for line in proc.stdout.splitlines():
            name, _, gres = line.strip().partition(" ")
            if (name.rstrip("*") == self.partition) if self.partition else name.endswith("*"):
                if "gpu" in gres:
                    return True
        return False

    def _sbatch_flags(self) -> list[str]:
        flags = [f"--time={self.time_min}", f"--cpus-per-task={self.cpus_per_task}"]
        if self.partition:
            flags.append(f"--partition={self.partition}")
        if self.gpus_per_task:
            flags.append(f"--gpus-per-node={self.gpus_per_task}")
        if self.mem_gb is not None:
            flags.append(f"--mem={_mem(self.mem_gb)}")
        flags += [f"--{k}={v}" for k, v in self.sbatch_options.items()]
        return flags

    def bind(self, store: Any) -> None:
        self._store = store

    # -- running ----------------------------------------------------------------------------
    def execute(self, jobs: Iterable[Job]) -> Iterator[JobDone]:
        if self._store is None:
            raise ExecutorError("the Slurm executor keeps its job ids in the run store: run it through run_sweep")
        store = self._store
        jobs = list(jobs)  # claims every run: all are submitted to Slurm's queue at once
        if not jobs:
            return
        submitit = _import_submitit()
        folder = store.root / "slurm" / "%j"
        self._settle_submissions(submitit, folder)
        records = slurm_records(store, [rid for job in jobs for rid in job.run_ids])
        known = {r.slurm_id for r in records.values()}
        try:
            states, _ = query_states(known) if known else ({}, True)
        except (OSError, subprocess.TimeoutExpired) as exc:
            # Without the states, jobs still running could be submitted a second time.
            raise ExecutorError(f"could not ask Slurm about the jobs an earlier sweep submitted ({exc}); "
                                "the runs stay queued: run the sweep again when squeue answers") from None

        running: dict[str, tuple[Job, Any]] = {}  # slurm_id -> (job, submitit job)
        to_submit: list[Job] = []
        for job in jobs:
            recs = [records.get(rid) for rid in job.run_ids]
            sid = recs[0].slurm_id if recs[0] else None
            same = all(r is not None and r.job_key == job.key and r.slurm_id == sid and not r.collected for r in recs)
            handle = submitit.SlurmJob(folder=folder, job_id=sid) if same else None
            if handle is not None and (states.get(sid, ("",))[0] in ALIVE or handle.paths.result_pickle.exists()):
                running[sid] = (job, handle)  # a job submitted by an earlier driver: re-attach
                continue
            for stale in {r.slurm_id for r in recs if r is not None and states.get(r.slurm_id, ("",))[0] in ALIVE}:
                # Alive, but for another grouping of these runs (a changed --seeds-per-job):
                # it would train them a second time beside the new job.
                subprocess.run(["scancel", stale], capture_output=True, timeout=60)
            to_submit.append(job)
        if running:
            print(f"re-attached to {len(running)} Slurm job(s) submitted by an earlier sweep: "
                  + " ".join(sorted(running)), file=sys.stderr)
        if to_submit:
            running.update(self._submit(submitit, folder, to_submit))
        yield from self._follow(running)

    def _settle_submissions(self, submitit: Any, folder: Path) -> None:
        """Record the jobs of submissions whose driver died between sbatch and recording
        the job ids (found in Slurm by the submission's job name); forget a submission
        Slurm has no job of (the driver died before sbatch, or sbatch refused it)."""
        for job_name, runs in submissions(self._store).items():
            try:
                found = jobs_named(job_name, runs[0].submitted)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise ExecutorError(f"could not ask Slurm for the jobs an earlier sweep was submitting ({exc}); "
                                    "the runs stay queued: run the sweep again when squeue answers") from None
            if len(found) > 1:
                raise ExecutorError(f"Slurm has {len(found)} jobs named {job_name} ({' '.join(found)}), a name "
                                    "this store gives one submission; cancel those not wanted, then run the "
                                    "sweep again")
            if not found:
                forget_submitting(self._store, [r.run_id for r in runs])
                continue
            # submitit moves each job's pickle into place right after sbatch returns; a
            # task whose pickle is missing can only wait for it and fail: cancel it, and
            # its runs are submitted again.
            placed = [r for r in runs if submitit.SlurmJob(folder=folder, job_id=r.slurm_id(found[0]))
                      .paths.submitted_pickle.exists()]
            orphans = sorted({r.slurm_id(found[0]) for r in runs if r not in placed})
            record_submitted(self._store, [(r.run_id, r.job_key, r.slurm_id(found[0])) for r in placed])
            if orphans:
                subprocess.run(["scancel", *orphans], capture_output=True, timeout=60)
                forget_submitting(self._store, [r.run_id for r in runs if r not in placed])
            print(f"found Slurm job {found[0]} ({job_name}), submitted by a sweep that died before recording it"
                  + (f"; cancelled {' '.join(orphans)}, which never got their runs" if orphans else ""),
                  file=sys.stderr)

    def _submit(self, submitit: Any, folder: Path, jobs: list[Job]) -> dict[str, tuple[Job, Any]]:
        ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=self.max_timeouts)
        job_name = f"cffaudit-{uuid.uuid4().hex[:16]}"  # unique: how a restarted driver finds these jobs
        params: dict[str, Any] = dict(
            job_name=job_name, time=self.time_min, cpus_per_task=self.cpus_per_task,
            # Requeueable even where the cluster's JobRequeue is 0: a requeued task resumes.
            additional_parameters={"requeue": True, **self.sbatch_options},
            setup=[f"export OMP_NUM_THREADS={self.cpus_per_task}"],
        )
        if self.partition:
            params["partition"] = self.partition
        if self.gpus_per_task:  # None only before preflight, which run_sweep calls first
            params["gpus_per_node"] = self.gpus_per_task
        if self.mem_gb is not None:
            params["mem"] = _mem(self.mem_gb)
        if self.array_parallelism is not None:
            params["array_parallelism"] = self.array_parallelism
        ex.update_parameters(**params)
        call = SlurmCall()
        record_submitting(self._store, job_name, [(rid, job.key, task) for task, job in enumerate(jobs)
                                                  for rid in job.run_ids], tasks=len(jobs))
        try:
            with ex.batch():
                handles = [ex.submit(call, job.fn, job.args) for job in jobs]
        except Exception as exc:  # sbatch refused (FailedSubmissionError, CalledProcessError)
            output = getattr(exc, "output", None) or getattr(exc, "stderr", None) or b""
            output = output.decode(errors="replace") if isinstance(output, bytes) else str(output)
            # The submission stays recorded: the next sweep asks Slurm whether a job of
            # that name exists after all (sbatch may fail after Slurm queued the job).
            raise ExecutorError(f"sbatch refused the sweep's job array: {exc} {output.strip()}".strip()
                                + "; the runs stay queued for the next sweep") from None
        record_submitted(self._store, [(rid, job.key, h.job_id) for job, h in zip(jobs, handles)
                                       for rid in job.run_ids])
        print(f"submitted {len(jobs)} Slurm job(s): array {handles[0].job_id.split('_')[0]}; logs in "
              f"{self._store.root / 'slurm'}", file=sys.stderr)
        return {h.job_id: (job, h) for job, h in zip(jobs, handles)}

    def _follow(self, running: dict[str, tuple[Job, Any]]) -> Iterator[JobDone]:
        """Yield each job as its result pickle appears or Slurm says it ended without one."""
        try:
            yield from self._poll(running)
        except BaseException:
            if running:  # interrupted (Ctrl-C, an error in the driver): the jobs are Slurm's
                print(f"{len(running)} Slurm job(s) keep running ({' '.join(sorted(running))}); the same sweep "
                      "command re-attaches to them, or cancel them with scancel", file=sys.stderr)
            raise

    def _poll(self, running: dict[str, tuple[Job, Any]]) -> Iterator[JobDone]:
        ended_since: dict[str, float] = {}  # slurm_id -> when first seen ended without a result
        last_query = float("-inf")
        states: dict[str, tuple[str, str]] = {}
        from_sacct = True
        while running:
            now = time.monotonic()
            if now - last_query >= self.poll_s:
                try:
                    states, from_sacct = query_states(running)
                except (OSError, subprocess.TimeoutExpired) as exc:  # a slow controller: try again later
                    print(f"note: could not query Slurm ({exc}); retrying", file=sys.stderr)
                else:
                    record_states(self._store, states)
                last_query = now
            for sid in list(running):
                job, handle = running[sid]
                if handle.paths.result_pickle.exists():
                    del running[sid]
                    record_states(self._store, {}, collected=[sid])
                    yield _collect(job, handle, sid)
                    continue
                state, reason = states.get(sid, ("", ""))
                gone = (state and state not in ALIVE) or (not from_sacct and sid not in states)
                if not gone:
                    ended_since.pop(sid, None)
                    continue
                # A task's result pickle may lag its end on a network file system, and a
                # preempted or failed node's task may still be requeued: wait a little.
                grace = 120 if state in ("PREEMPTED", "NODE_FAIL") else 15
                if now - ended_since.setdefault(sid, now) >= grace:
                    del running[sid]
                    record_states(self._store, {}, collected=[sid])
                    yield JobDone(job, error=_ended_message(sid, state, reason, handle))
            if running:
                time.sleep(min(1.0, self.poll_s))


def _collect(job: Job, handle: Any, sid: str) -> JobDone:
    try:
        value = handle.result()
    except Exception as exc:  # the task itself raised (e.g. cffaudit not importable on the node)
        first = next((ln for ln in reversed(str(exc).splitlines()) if ln.strip() and not ln.startswith("-")), str(exc))
        return JobDone(job, error=f"Slurm job {sid} failed: {first.strip()}", traceback=str(exc))
    return JobDone(job, value=value)


def _ended_message(sid: str, state: str, reason: str, handle: Any) -> str:
    how = f"ended {state}" if state else "left Slurm's queue (no accounting says how it ended)"
    why = f" ({reason})" if reason else ""
    return (f"Slurm job {sid} {how}{why} before its run(s) finished; its log: {handle.paths.stderr}; "
            "rerun with --retry-failed to resume from the checkpoint")


def _mem(gb: float) -> str:
    return f"{int(gb)}G" if gb == int(gb) else f"{int(gb * 1024)}M"


def parse_time_limit(text: str) -> int:
    """A Slurm time limit as minutes: ``"90"``, ``"1:30:00"``, ``"2-00:00:00"``, ``"45:00"`` (MM:SS).

    Raises:
        OptionError: for anything else.
    """
    problem = OptionError("time_min", f"{text!r} is not a time limit (give minutes, H:MM:SS or D-HH:MM:SS)")
    days, sep, rest = text.strip().rpartition("-")
    if sep and not days:
        raise problem
    try:
        parts = [int(p) for p in rest.split(":")]
        d = int(days) if days else 0
    except ValueError:
        raise problem from None
    if any(p < 0 for p in parts) or d < 0 or len(parts) > 3:
        raise problem
    if len(parts) == 1:  # minutes, or days-hours
        minutes = parts[0] if not days else d * 24 * 60 + parts[0] * 60
    elif len(parts) == 2:  # minutes:seconds, or days-hours:minutes
        minutes = parts[0] + (parts[1] > 0) if not days else d * 24 * 60 + parts[0] * 60 + parts[1]
    else:
        minutes = d * 24 * 60 + parts[0] * 60 + parts[1] + (parts[2] > 0)
    if minutes < 1:
        raise problem
    return minutes


def _import_submitit():
    try:
        import submitit
    except ImportError:
        raise ExecutorError(
            "the Slurm executor needs submitit: pip install 'cffaudit[slurm]' (or pip install submitit) "
            "in the environment the sweep runs in, on a machine with access to the cluster's sbatch"
        ) from None
    return submitit
