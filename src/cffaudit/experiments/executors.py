"""Executors: where jobs run. A job is a picklable callable; backends only execute.

Every backend implements one method, :meth:`Executor.execute`, which takes an
iterable of :class:`Job` and yields a :class:`JobDone` for each as it finishes, in
any order. A job's own failure is its return value's business (the sweep's job
function catches training errors and returns them as failed outcomes); ``JobDone.error``
is for the job not completing at all (a worker process that died, a Ray task that
ran out of retries). A job may cover several runs (``run_ids``: a group of seeds
trained in one process). Bad option values raise :class:`OptionError`, which names
the parameter so that the CLI can name its flag.

Backends:

* :class:`LocalExecutor` — in this process one job after another, or, with
  ``workers > 1``, a pool of spawned worker processes, each pinned to one GPU when
  ``gpus`` are given and each with ``cores // workers`` torch threads.
* :class:`RayExecutor` — one Ray task per job through Ray's task API (``ray.remote``,
  ``ray.wait``), one GPU per task when the cluster has GPUs, ``max_retries`` on
  worker failure. Ray is imported only here, only when used.
* :class:`.slurm.SlurmExecutor` — one task of a Slurm job array per job, through
  submitit (in :mod:`.slurm`).
"""

from __future__ import annotations

import abc
import os
import traceback as tb
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

from cffaudit.train.threads import limit_threads, threads_per_worker


class ExecutorError(RuntimeError):
    """An executor that cannot start (missing backend, unreachable cluster)."""


class OptionError(ValueError):
    """A value no sweep or executor can use; `option` names the parameter."""

    def __init__(self, option: str, problem: str):
        super().__init__(f"{option}: {problem}")
        self.option, self.problem = option, problem


@dataclass(frozen=True)
class Job:
    """A unit of work: ``fn(*args)``, covering the runs ``run_ids``."""

    key: str
    fn: Callable[..., Any]
    args: tuple = ()
    run_ids: tuple[str, ...] = ()


@dataclass
class JobDone:
    """A finished job: its return value, or why it did not complete."""

    job: Job
    value: Any = None
    error: Optional[str] = None
    traceback: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Executor(abc.ABC):
    """Runs jobs; see the module docstring."""

    name: str = "executor"

    @abc.abstractmethod
    def execute(self, jobs: Iterable[Job]) -> Iterator[JobDone]:
        """Run `jobs` (consumed lazily, as capacity frees up) and yield each when done."""

    def describe(self) -> str:
        return self.name

    def preflight(self) -> None:
        """Refuse to start (ExecutorError) when the backend cannot run here; called
        before the sweep touches its store. Nothing to check by default."""

    def bind(self, store: Any) -> None:
        """Hand the executor the sweep's run store (under the sweep's lock), for a
        backend that keeps state of its own there (Slurm job ids). Unused by default."""


# -- local ------------------------------------------------------------------------------


class LocalExecutor(Executor):
    """Jobs on this machine.

    Args:
        workers: 1 runs jobs in this process, one after another (no pickling, errors
            surface directly); more starts that many spawned worker processes.
        gpus: `CUDA_VISIBLE_DEVICES` entries to pin workers to, one worker per GPU
            (see `local_gpus`); ``workers`` defaults to ``len(gpus)``.
    """

    name = "local"

    def __init__(self, workers: Optional[int] = None, gpus: Optional[Sequence[int | str]] = None):
        self.gpus = [str(g) for g in gpus] if gpus else []
        self.workers = workers if workers is not None else max(1, len(self.gpus))
        if self.workers < 1:
            raise OptionError("workers", f"must be >= 1, got {self.workers}")
        if self.gpus and self.workers > len(self.gpus):
            raise OptionError("workers", f"{self.workers}: only {len(self.gpus)} GPUs to pin workers to, one run per GPU")

    def describe(self) -> str:
        if self.workers == 1:
            return "local (one run at a time)"
        where = f"GPUs {self.gpus}" if self.gpus else "CPU"
        threads = threads_per_worker(self.workers)
        return f"local ({self.workers} worker processes, {where}, {threads} torch thread{'s' * (threads > 1)} each)"

    def execute(self, jobs: Iterable[Job]) -> Iterator[JobDone]:
        if self.workers == 1:
            yield from self._sequential(jobs)
        else:
            yield from self._pool(jobs)

    def _sequential(self, jobs: Iterable[Job]) -> Iterator[JobDone]:
        for job in jobs:
            try:
                value = job.fn(*job.args)
            except Exception as exc:  # KeyboardInterrupt/SystemExit propagate
                yield JobDone(job, error=_describe(exc), traceback=tb.format_exc())
            else:
                yield JobDone(job, value=value)

    def _pool(self, jobs: Iterable[Job]) -> Iterator[JobDone]:
        import multiprocessing as mp

        # spawn, not fork: a forked child would inherit this process's torch/CUDA and
        # thread state; a spawned one starts clean and honours CUDA_VISIBLE_DEVICES.
        ctx = mp.get_context("spawn")
        def new_pool() -> ProcessPoolExecutor:
            gpu_queue = ctx.Queue()
            for g in self.gpus[: self.workers]:
                gpu_queue.put(g)
            return ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=ctx,
                initializer=_pin_worker,
                initargs=(gpu_queue if self.gpus else None, threads_per_worker(self.workers)),
            )

        pool = new_pool()
        it = iter(jobs)
        running: dict[Future, Job] = {}
        pending: Optional[Job] = None
        try:
            while True:
                # Keep exactly `workers` jobs in flight; pulling a job from `it` is
                # what marks its runs as running in the store.
                while len(running) < self.workers:
                    job, pending = pending or next(it, None), None
                    if job is None:
                        break
                    try:
                        running[pool.submit(job.fn, *job.args)] = job
                    except BrokenProcessPool:  # broke since the last wait: retry in a fresh pool
                        pending = job
                        break
                if not running:
                    if pending is None:
                        break
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = new_pool()
                    continue
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                broken = False
                for fut in done:
                    job = running.pop(fut)
                    exc = fut.exception()
                    if exc is None:
                        yield JobDone(job, value=fut.result())
                    else:
                        broken |= isinstance(exc, BrokenProcessPool)
                        yield JobDone(job, error=_describe(exc), traceback="".join(tb.format_exception(exc)))
                if broken:
                    # A worker died (killed, out of memory): the pool fails every job it
                    # held. Those are reported failed (a rerun with --retry-failed resumes
                    # them from their checkpoints); the remaining jobs get a fresh pool.
                    for fut, job in list(running.items()):
                        yield JobDone(job, error="BrokenProcessPool: a worker process died while this run was "
                                      "in flight (killed or out of memory); rerun with --retry-failed to resume it")
                    running.clear()
                    pool.shutdown(wait=False, cancel_futures=True)
                    pool = new_pool()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _pin_worker(gpu_queue: Any, threads: int) -> None:
    # Before torch is imported in this fresh process: workers x threads <= cores, else
    # the threads spin against each other (train/threads.py has the measurement).
    limit_threads(threads)
    if gpu_queue is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_queue.get())


def local_gpu_count() -> int:
    """Number of CUDA devices visible here (0 without torch CUDA)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def local_gpus() -> list[str]:
    """The CUDA devices this process may use, as `CUDA_VISIBLE_DEVICES` entries.

    Workers are pinned by setting `CUDA_VISIBLE_DEVICES` to one entry, which the driver
    reads as a physical index (or UUID). Where this process was itself restricted
    (`CUDA_VISIBLE_DEVICES=4,5` from a scheduler), its device i is entry i of that list,
    not physical GPU i: pinning a worker to "1" would put it on another job's GPU.
    """
    return visible_device_entries(os.environ.get("CUDA_VISIBLE_DEVICES"), local_gpu_count())


def visible_device_entries(visible: Optional[str], count: int) -> list[str]:
    """The first `count` entries of a `CUDA_VISIBLE_DEVICES` value (all indices if unset)."""
    if visible is None or not visible.strip():
        return [str(i) for i in range(count)]
    return [e.strip() for e in visible.split(",") if e.strip()][:count]


# -- Ray --------------------------------------------------------------------------------


@dataclass
class RayExecutor(Executor):
    """One Ray task per job.

    Args:
        address: ``None`` starts a local Ray instance (or joins the one named by the
            RAY_ADDRESS environment variable), ``"auto"`` joins the cluster this
            machine is part of, ``"HOST:PORT"`` a specific head node. Ignored when
            Ray is already initialised in this process.
        gpus_per_task: GPUs each task requests; ``None`` = 1 if the cluster has GPUs.
        cpus_per_task: CPUs each task requests (also its torch thread count, which
            Ray sets through OMP_NUM_THREADS).
        max_retries: times Ray re-runs a task whose worker died (a retried run resumes
            from its checkpoint). Exceptions inside a run are not retried: the job
            returns them as a failed outcome.
        init_kwargs: extra keyword arguments for ``ray.init`` (e.g. ``num_cpus``).
    """

    address: Optional[str] = None
    gpus_per_task: Optional[float] = None
    cpus_per_task: float = 1
    max_retries: int = 3
    init_kwargs: dict[str, Any] = field(default_factory=dict)
    name: str = "ray"

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise OptionError("max_retries", f"must be >= 0, got {self.max_retries}")
        if self.cpus_per_task <= 0:
            raise OptionError("cpus_per_task", f"must be > 0, got {self.cpus_per_task}")
        if self.gpus_per_task is not None and self.gpus_per_task < 0:
            raise OptionError("gpus_per_task", f"must be >= 0, got {self.gpus_per_task}")

    def describe(self) -> str:
        return f"ray ({self.address or 'local instance'})"

    def execute(self, jobs: Iterable[Job]) -> Iterator[JobDone]:
        ray = _import_ray()
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, **self.init_kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ExecutorError(
                    f"could not connect to Ray at {self.address or 'a new local instance'}: {exc}; "
                    "start a cluster with `ray start --head` or check --address"
                ) from None
        gpus = self.gpus_per_task
        if gpus is None:
            gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        options: dict[str, Any] = {"num_cpus": self.cpus_per_task, "num_gpus": gpus,
                                   "max_retries": self.max_retries, "retry_exceptions": False}
        if gpus:
            # A worker process that initialised CUDA stays on that GPU whatever Ray
            # assigns its next task: one task per GPU worker process. (Ray only defaults
            # to this when num_gpus is given to the decorator itself, as here.)
            options["max_calls"] = 1
        remote = ray.remote(**options)(_call)
        # Ray schedules; all jobs are submitted at once and wait for free resources.
        pending = {remote.remote(job.fn, job.args): job for job in jobs}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    job = pending.pop(ref)
                    try:
                        value = ray.get(ref)
                    except Exception as exc:  # worker died beyond max_retries, or similar
                        yield JobDone(job, error=_describe(exc), traceback=tb.format_exc())
                    else:
                        yield JobDone(job, value=value)
        finally:
            for ref in pending:  # interrupted: don't leave tasks training for nobody
                ray.cancel(ref, force=True)


def _call(fn: Callable[..., Any], args: tuple) -> Any:
    return fn(*args)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ExecutorError(
            "the Ray executor needs Ray: pip install 'cffaudit[ray]' (or pip install 'ray[default]')"
        ) from None
    return ray


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
