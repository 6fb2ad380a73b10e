"""The Slurm executor against a real Slurm cluster (``bash scripts/slurm-local.sh start``):
results equal the local executor's, a requeued task resumes from its checkpoint, a
cancelled task fails with its Slurm job id and state, a killed driver re-attaches (also
one killed between sbatch and recording the job ids, at that exact point).

Skipped, with the reason, where ``sinfo`` finds no cluster. Real training (tiny
synthetic specs on the CPU) in Slurm jobs, so each test takes some seconds.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cffaudit.experiments.executors import LocalExecutor
from cffaudit.experiments.slurm_records import jobs_named, query_states, slurm_records, submissions
from cffaudit.experiments.spec import ExperimentSpec
from cffaudit.experiments.store import RunStore, load_store_results
from cffaudit.experiments.sweep import run_sweep

from .conftest import tiny_spec_dict


def _cluster_problem() -> str | None:
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no Slurm commands on PATH (bash scripts/slurm-local.sh start installs and starts a cluster)"
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 20 s"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["failed"])[-1][:200]
        return f"no Slurm cluster is running (sinfo: {last}); start one with bash scripts/slurm-local.sh start"
    if not any(s.strip().rstrip("*") in ("idle", "mixed", "allocated") for s in proc.stdout.split()):
        return f"the Slurm cluster has no usable node (sinfo: {proc.stdout.strip()})"
    try:
        import submitit  # noqa: F401
    except ImportError:
        return "submitit is not installed (pip install 'cffaudit[slurm]')"
    return None


_PROBLEM = _cluster_problem()
pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.skipif(_PROBLEM is not None, reason=_PROBLEM or "")]


@pytest.fixture(autouse=True)
def _no_thread_settings_from_earlier_tests(monkeypatch):
    """sbatch exports this process's environment to the tasks. Earlier in-process CLI tests
    (`cffaudit train`, `sweep`) set OMP_NUM_THREADS for the whole pytest process, which would
    give the tasks more threads than the one-thread local runs they are compared with."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)

#: Long enough to interrupt after the first epoch's checkpoint, short enough for CI.
LONGER = {"stage1": {"epochs": 16, "batch_size": 64}}


def _spec(tmp_path, name="spec.yaml", **changes) -> ExperimentSpec:
    import yaml

    d = tiny_spec_dict(**changes)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return ExperimentSpec.load(path)


def _longer(**changes) -> dict:
    d = tiny_spec_dict(**changes)
    d["base"].update(LONGER)
    return d


def _slurm(**kw):
    from cffaudit.experiments.slurm import SlurmExecutor

    return SlurmExecutor(time_min=10, poll_s=1, **kw)


def _wait(what, predicate, timeout=90.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _squeue_state(slurm_id: str) -> str:
    out = subprocess.run(["squeue", "-h", "-r", "-j", slurm_id.split("_")[0], "-o", "%i %T"],
                         capture_output=True, text=True).stdout
    return dict(line.split() for line in out.splitlines() if line.strip()).get(slurm_id, "")


def _running_job(store_dir: Path, run_id: str) -> str | None:
    """The Slurm id of `run_id`'s job once Slurm runs it and its first checkpoint exists."""
    if not (store_dir / "store.sqlite").exists():
        return None
    rec = slurm_records(RunStore(store_dir), [run_id]).get(run_id)
    if rec is None or _squeue_state(rec.slurm_id) != "RUNNING":
        return None
    return rec.slurm_id if (store_dir / "runs" / run_id / "checkpoint.pt").exists() else None


def _in_thread(fn, **kw):
    out: dict = {}

    def target():
        try:
            out["report"] = fn(**kw)
        except BaseException as exc:  # re-raised by the test
            out["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, out


def _comparable(store_dir: Path) -> dict:
    """Each run's accuracies and per-epoch history, without wall-clock times."""
    def untimed(history):
        return [{k: v for k, v in epoch.items() if "time" not in k} for epoch in history]

    return {r["run_id"]: (r["test_acc"], r["best_val_acc"], untimed(r["history"])) for r in load_store_results(store_dir)}


def _local_sweep(spec, store_dir):
    """The same sweep with the local executor, on one torch thread as a Slurm task with
    one CPU: float sums then reduce in the same order, so results are equal to the bit."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_sweep(spec, store_dir, executor=LocalExecutor(), progress=False)
    finally:
        torch.set_num_threads(threads)


def _trainings(store_dir: Path, run_id: str) -> int:
    """How often a job started training `run_id` (one header per attempt in its log)."""
    log = (store_dir / "runs" / run_id / "log.txt").read_text()
    return sum(1 for line in log.splitlines() if line.startswith(f"=== {run_id} attempt"))


def test_a_two_condition_sweep_through_slurm_equals_the_local_one(tmp_path):
    spec = _spec(tmp_path, seeds=[1])
    report = run_sweep(spec, tmp_path / "slurm", executor=_slurm(), progress=False)
    assert report.complete and report.trained == 2
    _local_sweep(spec, tmp_path / "local")
    assert _comparable(tmp_path / "slurm") == _comparable(tmp_path / "local")
    records = slurm_records(RunStore(tmp_path / "slurm"))
    assert len(records) == 2 and len({r.slurm_id.split("_")[0] for r in records.values()}) == 1  # one array
    ids = ",".join(sorted({r.slurm_id.split("_")[0] for r in records.values()}))
    sacct = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ids], capture_output=True, text=True)
    if "accounting storage is disabled" not in sacct.stderr:  # a cluster without accounting has no sacct
        assert {line.split("|")[0] for line in sacct.stdout.split()} >= {r.slurm_id for r in records.values()}
    # the logs are under the store
    assert all((tmp_path / "slurm" / "slurm" / r.slurm_id).is_dir() for r in records.values())
    from cffaudit.cli.sweep import format_status

    table = format_status(RunStore.open_existing(tmp_path / "slurm"))
    assert "slurm job" in table.splitlines()[0]
    assert all(f"{r.slurm_id} " in table for r in records.values())


def test_a_requeued_task_resumes_from_its_checkpoint(tmp_path):
    spec = _spec(tmp_path, **{k: v for k, v in _longer(seeds=[3], factors={"margin": ["clamp"]}).items()
                              if k != "name"})
    rid = spec.expand().runs[0].run_id
    t, out = _in_thread(run_sweep, spec=spec, store_dir=tmp_path / "slurm", executor=_slurm(), progress=False)
    sid = _wait("the task to run and write its first checkpoint", lambda: _running_job(tmp_path / "slurm", rid))
    subprocess.run(["scontrol", "requeue", sid], check=True, capture_output=True)
    # Slurm holds a requeued job for two minutes before it may start again; release it now.
    _wait("the requeued task to be pending", lambda: _squeue_state(sid) == "PENDING", timeout=60)
    subprocess.run(["scontrol", "update", f"jobid={sid}", "starttime=now"], check=True, capture_output=True)
    t.join(timeout=150)
    assert not t.is_alive(), "the sweep did not finish after the requeue"
    assert "error" not in out, out.get("error")
    assert out["report"].complete
    assert "resuming from checkpoint.pt" in (tmp_path / "slurm" / "runs" / rid / "log.txt").read_text()
    _local_sweep(spec, tmp_path / "local")
    assert _comparable(tmp_path / "slurm") == _comparable(tmp_path / "local")


def test_a_task_warned_of_its_time_limit_requeues_itself_through_submitit(tmp_path):
    # Slurm warns a task before its time limit (and on preemption) with USR2 (--signal);
    # submitit's handler calls the checkpointing hook and requeues the task.
    spec = _spec(tmp_path, **{k: v for k, v in _longer(seeds=[6], factors={"margin": ["clamp"]}).items()
                              if k != "name"})
    rid = spec.expand().runs[0].run_id
    store_dir = tmp_path / "slurm"
    t, out = _in_thread(run_sweep, spec=spec, store_dir=store_dir, executor=_slurm(), progress=False)
    sid = _wait("the task to run and write its first checkpoint", lambda: _running_job(store_dir, rid))
    subprocess.run(["scancel", "--signal=USR2", sid], check=True)
    _wait("the task to requeue itself", lambda: _squeue_state(sid) == "PENDING", timeout=60)
    subprocess.run(["scontrol", "update", f"jobid={sid}", "starttime=now"], check=True, capture_output=True)
    t.join(timeout=150)
    assert not t.is_alive() and "error" not in out, out.get("error")
    assert out["report"].complete
    submitit_log = "".join(p.read_text() for p in (store_dir / "slurm" / sid).glob("*_log.*"))
    # (submitit logs "Requeued job" after scontrol returns, unless Slurm's SIGTERM ends the task first)
    assert "Caught signal SIGUSR2" in submitit_log and "Calling checkpoint method" in submitit_log
    job = subprocess.run(["scontrol", "show", "job", sid], capture_output=True, text=True).stdout
    assert "Restarts=1" in job, job
    assert "resuming from checkpoint.pt" in (store_dir / "runs" / rid / "log.txt").read_text()
    _local_sweep(spec, tmp_path / "local")
    assert _comparable(store_dir) == _comparable(tmp_path / "local")


def test_a_cancelled_task_fails_with_its_job_id_and_is_retried(tmp_path):
    spec = _spec(tmp_path, **{k: v for k, v in _longer(seeds=[4], factors={"margin": ["clamp"]}).items()
                              if k != "name"})
    rid = spec.expand().runs[0].run_id
    store_dir = tmp_path / "slurm"
    t, out = _in_thread(run_sweep, spec=spec, store_dir=store_dir, executor=_slurm(), progress=False)
    sid = _wait("the task to run", lambda: _running_job(store_dir, rid))
    subprocess.run(["scancel", sid], check=True)
    t.join(timeout=120)
    assert not t.is_alive() and "error" not in out, out.get("error")
    assert out["report"].failed_ids == [rid]
    row = RunStore(store_dir).row(rid)
    assert row.status == "failed" and f"Slurm job {sid} ended CANCELLED" in row.error
    assert "--retry-failed" in row.error

    report = run_sweep(spec, store_dir, executor=_slurm(), retry_failed=True, progress=False)
    assert report.complete
    record = slurm_records(RunStore(store_dir))[rid]
    assert record.slurm_id != sid  # a new job
    assert "resuming from checkpoint.pt" in (store_dir / "runs" / rid / "log.txt").read_text()


def test_a_killed_driver_reattaches_and_trains_every_run_once(tmp_path):
    import yaml

    d = _longer(seeds=[5])
    # Long enough that the tasks still run when the second driver asks Slurm about them
    # (a run that finished meanwhile is recovered from its result.json instead).
    d["base"]["stage1"]["epochs"] = 40
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(d, sort_keys=False))
    ids = [r.run_id for r in ExperimentSpec.load(spec_path).expand().runs]
    store_dir = tmp_path / "store"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "cffaudit", "sweep", str(spec_path), "--store", str(store_dir),
           "--executor", "slurm", "--slurm-time", "10", "--no-progress"]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait("a task to run", lambda: any(_running_job(store_dir, rid) for rid in ids))
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    before = {r.run_id: r.slurm_id for r in slurm_records(RunStore(store_dir)).values()}
    assert sorted(before) == sorted(ids)

    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "re-attached to" in second.stderr, second.stdout + second.stderr
    assert {r.run_id: r.slurm_id for r in slurm_records(RunStore(store_dir)).values()} == before  # nothing resubmitted
    assert all(_trainings(store_dir, rid) == 1 for rid in ids)
    assert RunStore(store_dir).counts()["done"] == len(ids)


#: `cffaudit sweep ARGS` in a process that SIGKILLs itself when it calls {target}.
_DIES_AT = """
import os, signal, sys
import {module}
from cffaudit.cli import main

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

{target} = die
sys.exit(main(sys.argv[1:]))
"""


def _sweep_killed_at(tmp_path, module, target):
    """A sweep whose driver dies at `target`; returns (its command line, run ids, store)."""
    import yaml

    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(_longer(seeds=[7]), sort_keys=False))
    ids = [r.run_id for r in ExperimentSpec.load(spec_path).expand().runs]
    store_dir = tmp_path / "store"
    args = ["sweep", str(spec_path), "--store", str(store_dir), "--executor", "slurm", "--slurm-time", "10",
            "--no-progress"]
    first = subprocess.run([sys.executable, "-c", _DIES_AT.format(module=module, target=target), *args],
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == -signal.SIGKILL, first.stdout + first.stderr
    return [sys.executable, "-m", "cffaudit", *args], ids, store_dir


def _submitted_by_the_dead_driver(store_dir: Path) -> str:
    store = RunStore(store_dir)
    assert slurm_records(store) == {}  # sbatch answered, nothing recorded
    ((name, runs),) = submissions(store).items()
    found = jobs_named(name, runs[0].submitted)
    assert len(found) == 1, found
    return found[0]


def test_a_driver_killed_between_sbatch_and_recording_the_job_ids_is_followed_by_one_that_finds_them(tmp_path):
    # submitit has put each task's pickle in place; the driver dies as it records the ids.
    cmd, ids, store_dir = _sweep_killed_at(tmp_path, "cffaudit.experiments.slurm",
                                           "cffaudit.experiments.slurm.record_submitted")
    array = _submitted_by_the_dead_driver(store_dir)

    second = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"found Slurm job {array} (" in second.stderr and "submitted 2" not in second.stderr, second.stderr
    assert {r.slurm_id for r in slurm_records(RunStore(store_dir)).values()} == {f"{array}_0", f"{array}_1"}
    assert all(_trainings(store_dir, rid) == 1 for rid in ids)
    assert RunStore(store_dir).counts()["done"] == len(ids) and submissions(RunStore(store_dir)) == {}


def test_a_driver_killed_before_submitit_placed_the_tasks_pickles_has_them_cancelled_and_resubmitted(tmp_path):
    # sbatch has queued the array, but its tasks can never get their function: cancel, submit again.
    cmd, ids, store_dir = _sweep_killed_at(tmp_path, "submitit.core.utils",
                                           "submitit.core.utils.JobPaths.move_temporary_file")
    array = _submitted_by_the_dead_driver(store_dir)

    second = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"found Slurm job {array} (" in second.stderr and f"cancelled {array}_0 {array}_1" in second.stderr
    records = slurm_records(RunStore(store_dir))
    assert sorted(records) == sorted(ids) and all(r.slurm_id.split("_")[0] != array for r in records.values())
    states, _ = query_states([f"{array}_0", f"{array}_1"])
    # Cancelled, or (started before that, without the log folder submitit makes as it places
    # the pickles) failed to launch: either way they never trained.
    assert len(states) == 2 and {state for state, _ in states.values()} <= {"CANCELLED", "FAILED"}, states
    assert all(_trainings(store_dir, rid) == 1 for rid in ids)
    assert RunStore(store_dir).counts()["done"] == len(ids)


def test_a_partition_slurm_does_not_know_fails_the_sweep_up_front(tmp_path, capsys):
    import yaml

    from cffaudit.cli import main

    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(tiny_spec_dict(), sort_keys=False))
    code = main(["sweep", str(spec_path), "--store", str(tmp_path / "store"), "--executor", "slurm",
                 "--slurm-partition", "no-such-partition"])
    assert code == 2
    err = capsys.readouterr().err
    assert "Slurm refuses the sweep's jobs" in err and "invalid partition" in err.lower()
    assert not (tmp_path / "store").exists()  # nothing queued
