"""The store's record of Slurm jobs, and what Slurm says about them now.

Each run submitted through ``--executor slurm`` has a row in the store's
``slurm_jobs`` table: the sweep job it belongs to (its run id, or its seed group's id),
the Slurm job id of that job's array task, and the state the driver last saw. A
restarted driver re-attaches to a job it finds there still alive, instead of
submitting (and training) the same runs again; ``sweep --status`` shows the ids and
states.

sbatch's answer (the job id) cannot be recorded in the same instant it is given: a
driver killed between the two would leave jobs in Slurm that the store does not
know. So before sbatch the driver records the submission's runs in
``slurm_submissions`` under a Slurm job name unique to the submission, and the next
driver asks Slurm for jobs of that name (:func:`jobs_named`) before it submits
anything. Nothing here imports submitit or torch: ``--status`` works anywhere.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable, Optional

from cffaudit.experiments.lock import now_iso
from cffaudit.experiments.store import RunStore

#: Slurm states of a job that may still run (or run again: a requeued job).
ALIVE = frozenset({
    "PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "COMPLETING", "CONFIGURING",
    "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD", "STOPPED",
})


@dataclass(frozen=True)
class SlurmRecord:
    """One run's Slurm job, as recorded by the driver."""

    run_id: str
    job_key: str
    slurm_id: str
    state: Optional[str]
    reason: Optional[str]
    submitted: str
    collected: bool


@dataclass(frozen=True)
class Submission:
    """One run of a submission that was being made: its job's place among the
    submission's jobs, and the submission's unique Slurm job name."""

    run_id: str
    job_key: str
    job_name: str
    task: int
    tasks: int
    submitted: str

    def slurm_id(self, job_id: str) -> str:
        """This run's Slurm id, given the id sbatch gave the submission."""
        return job_id if self.tasks == 1 else f"{job_id}_{self.task}"


def record_submitting(store: RunStore, job_name: str, rows: list[tuple[str, str, int]], tasks: int) -> None:
    """Before sbatch: record (run_id, job_key, task) of a submission of `tasks` jobs
    named `job_name`, so that a driver killed before :func:`record_submitted` leaves
    the name by which the next one finds the jobs in Slurm."""
    with store._tx() as conn:
        conn.executemany(
            "INSERT OR REPLACE INTO slurm_submissions (run_id, job_key, job_name, task, tasks, submitted) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(rid, key, job_name, task, tasks, now_iso()) for rid, key, task in rows],
        )


def _rows(store: RunStore, query: str) -> list:
    """The rows of `query`; none from a store made before its table existed."""
    try:
        with store._read() as conn:
            return conn.execute(query).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise


def submissions(store: RunStore) -> dict[str, list[Submission]]:
    """The runs of submissions never recorded as made, by job name."""
    rows = _rows(store, "SELECT * FROM slurm_submissions ORDER BY job_name, task, run_id")
    out: dict[str, list[Submission]] = {}
    for r in rows:
        out.setdefault(r["job_name"], []).append(
            Submission(r["run_id"], r["job_key"], r["job_name"], r["task"], r["tasks"], r["submitted"]))
    return out


def forget_submitting(store: RunStore, run_ids: Iterable[str]) -> None:
    """Drop the runs' submission records (nothing of theirs is in Slurm's queue)."""
    with store._tx() as conn:
        conn.executemany("DELETE FROM slurm_submissions WHERE run_id = ?", [(rid,) for rid in run_ids])


def record_submitted(store: RunStore, rows: Iterable[tuple[str, str, str]]) -> None:
    """Record (run_id, job_key, slurm_id) for newly submitted jobs (replacing the runs'
    older records: a run has one current Slurm job), in the transaction that drops
    their submission records."""
    rows = list(rows)
    with store._tx() as conn:
        conn.executemany(
            "INSERT OR REPLACE INTO slurm_jobs (run_id, job_key, slurm_id, state, submitted, collected) "
            "VALUES (?, ?, ?, 'PENDING', ?, 0)",
            [(rid, key, sid, now_iso()) for rid, key, sid in rows],
        )
        conn.executemany("DELETE FROM slurm_submissions WHERE run_id = ?", [(rid,) for rid, _, _ in rows])


def jobs_named(job_name: str, since: str, timeout: float = 60) -> list[str]:
    """The ids sbatch gave the jobs named `job_name` submitted since `since` (an ISO
    time): from squeue, else (ended long ago) from sacct; without accounting, a job
    that has left the queue is not found.

    Raises:
        OSError: squeue cannot answer.
    """
    squeue = ["squeue", "-h", "-r", "-t", "all", f"--name={job_name}", "-o", "%i"]
    proc = subprocess.run(squeue, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise OSError(f"squeue could not list the jobs named {job_name}: "
                      f"{proc.stderr.strip() or f'exit {proc.returncode}'}")
    ids = _arrays(proc.stdout.split())
    if ids:
        return ids
    start = datetime.fromisoformat(since).astimezone() - timedelta(days=1)  # sacct reads local time
    sacct = ["sacct", "-X", "-n", "-P", "-o", "JobID", f"--name={job_name}",
             "-S", start.strftime("%Y-%m-%dT%H:%M:%S"), "-E", "now"]
    proc = subprocess.run(sacct, capture_output=True, text=True, timeout=timeout)
    return _arrays(proc.stdout.split()) if proc.returncode == 0 else []


def record_states(store: RunStore, states: dict[str, tuple[str, str]], collected: Iterable[str] = ()) -> None:
    """Store the latest (state, reason) of Slurm jobs by Slurm id; mark the jobs in
    `collected` as handed to the driver (never re-attached to again)."""
    with store._tx() as conn:
        conn.executemany("UPDATE slurm_jobs SET state = ?, reason = ? WHERE slurm_id = ?",
                         [(state, reason, sid) for sid, (state, reason) in states.items()])
        conn.executemany("UPDATE slurm_jobs SET collected = 1 WHERE slurm_id = ?", [(sid,) for sid in collected])


def slurm_records(store: RunStore, run_ids: Optional[Iterable[str]] = None) -> dict[str, SlurmRecord]:
    """The recorded Slurm job of each run (all, or those among `run_ids`) that has one."""
    rows = _rows(store, "SELECT * FROM slurm_jobs")
    wanted = None if run_ids is None else set(run_ids)
    out = {}
    for r in rows:
        if wanted is None or r["run_id"] in wanted:
            out[r["run_id"]] = SlurmRecord(r["run_id"], r["job_key"], r["slurm_id"], r["state"], r["reason"],
                                           r["submitted"], bool(r["collected"]))
    return out


def query_states(slurm_ids: Iterable[str], timeout: float = 60) -> tuple[dict[str, tuple[str, str]], bool]:
    """What Slurm says now about `slurm_ids`: ``({slurm_id: (state, reason)}, from_sacct)``.

    Asks ``squeue`` first: the controller's own view, which knows a job from the
    moment sbatch returns and keeps an ended one for MinJobAge (300 s by default).
    Accounting lags it: slurmdbd records a job only after slurmctld sends it, and for
    the first seconds after a submission ``sacct`` lists nothing (or the array as one
    PENDING line); taken as the answer, a job just submitted would look unknown (a
    restarted driver once submitted such runs again). So ``sacct`` is asked only
    about the ids squeue no longer lists (jobs that ended long ago). Where accounting
    is not running, ``from_sacct`` is False: a job neither lists has ended in a way
    nobody can tell. Ids Slurm does not know are left out.

    Raises:
        OSError: squeue cannot answer (no controller, no command): without the
            controller nobody can say whether a job is still alive.
    """
    ids = sorted(set(slurm_ids))
    if not ids:
        return {}, True
    wanted = set(ids)
    # -t all: also jobs that ended in the last MinJobAge seconds (cancelled, failed).
    squeue = ["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%r", "-j", ",".join(_arrays(ids))]
    proc = subprocess.run(squeue, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 and "Invalid job id" not in proc.stderr:  # (all of them have left the queue)
        raise OSError(f"squeue could not report job states: {proc.stderr.strip() or f'exit {proc.returncode}'}")
    states = _parse_states(proc.stdout, wanted)
    gone = sorted(wanted - set(states))
    if not gone:
        return states, True
    sacct = ["sacct", "-X", "-n", "-P", "-o", "JobID,State,Reason", "-j", ",".join(_arrays(gone))]
    proc = subprocess.run(sacct, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return states, False
    return {**_parse_states(proc.stdout, set(gone)), **states}, True


def _arrays(ids: Iterable[str]) -> list[str]:
    return sorted({i.split("_")[0] for i in ids})


def _parse_states(text: str, wanted: set[str]) -> dict[str, tuple[str, str]]:
    """``JOBID|STATE|REASON`` lines (squeue's or sacct's) as ``{slurm_id: (state, reason)}``.

    A line naming a whole array (``7``, as accounting lists an array cancelled or still
    pending before Slurm split it into tasks) stands for each of its tasks that no line
    of its own names.
    """
    states: dict[str, tuple[str, str]] = {}
    whole: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 3:
            continue
        state = parts[1].split()[0] if parts[1].strip() else "UNKNOWN"  # "CANCELLED by 0" -> CANCELLED
        detail = parts[1].strip() if parts[1].strip() != state else ""
        reason = "; ".join(x for x in (detail, parts[2].strip()) if x and x != "None")
        for sid in expand_job_id(parts[0].strip()):
            if sid in wanted:
                states[sid] = (state, reason)
            if "_" not in sid:
                whole[sid] = (state, reason)
    for sid in wanted - set(states):
        array, _, task = sid.partition("_")
        if task and array in whole:
            states[sid] = whole[array]
    return states


def expand_job_id(text: str) -> list[str]:
    """Slurm's names of array tasks, one per task: ``"7_3"`` -> ``["7_3"]``,
    ``"7_[0-2,5%2]"`` -> ``["7_0", "7_1", "7_2", "7_5"]``; a plain job id as is."""
    m = re.fullmatch(r"(\d+)_\[([0-9,\-]+)(?:%\d+)?\]", text)
    if not m:
        return [text]
    out = []
    for part in m.group(2).split(","):
        lo, _, hi = part.partition("-")
        out += [f"{m.group(1)}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return out
