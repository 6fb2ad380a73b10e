"""The Slurm executor without a cluster: options, flags, the checks before anything is
queued, and reading job states from squeue and sacct."""

from __future__ import annotations

import os
import stat
import sys

import pytest

from cffaudit.cli import main
from cffaudit.experiments.executors import ExecutorError, OptionError
from cffaudit.experiments.slurm import SlurmCall, SlurmExecutor, parse_time_limit
from cffaudit.experiments.slurm_records import (
    expand_job_id, forget_submitting, jobs_named, query_states, record_submitted, record_submitting, slurm_records,
    submissions,
)
from cffaudit.experiments.store import RunStore

from .conftest import tiny_spec_dict


@pytest.mark.parametrize("text, minutes", [("90", 90), ("1:30:00", 90), ("2-00:00:00", 2880), ("1-2", 1560),
                                           ("45:30", 46), ("0:00:30", 1)])
def test_time_limits_are_read_as_slurm_writes_them(text, minutes):
    assert parse_time_limit(text) == minutes


@pytest.mark.parametrize("text", ["", "soon", "0", "1:2:3:4", "-5"])
def test_a_time_limit_slurm_would_not_take_is_refused(text):
    with pytest.raises(OptionError, match="not a time limit"):
        parse_time_limit(text)


def test_array_task_names_are_expanded():
    assert expand_job_id("7_3") == ["7_3"]
    assert expand_job_id("7_[0-2,5%2]") == ["7_0", "7_1", "7_2", "7_5"]
    assert expand_job_id("12") == ["12"]


@pytest.mark.parametrize("kwargs, problem", [
    ({"cpus_per_task": 0}, "cpus_per_task: must be an integer >= 1"),
    ({"time_min": 0}, "time_min: must be an integer >= 1"),
    ({"gpus_per_task": -1}, "gpus_per_task: must be an integer >= 0"),
    ({"mem_gb": 0}, "mem_gb: must be > 0"),
    ({"array_parallelism": 0}, "array_parallelism: must be >= 1"),
    ({"sbatch_options": {"--account": "x"}}, "is not an sbatch option name"),
])
def test_bad_executor_options_name_the_parameter(kwargs, problem):
    with pytest.raises(OptionError, match=problem):
        SlurmExecutor(**kwargs)


def test_the_task_callable_is_checkpointable_for_submitit():
    pytest.importorskip("submitit")
    call = SlurmCall()
    assert call(divmod, (7, 2)) == (3, 1)
    again = call.checkpoint(divmod, (7, 2))
    assert again.function is call and again.args == (divmod, (7, 2))


@pytest.mark.parametrize("flags, message", [
    (["--slurm-cpus", "2"], "--slurm-cpus only applies to --executor slurm"),
    (["--slurm-partition", "gpu"], "--slurm-partition only applies to --executor slurm"),
    (["--executor", "ray", "--slurm-option", "qos=high"], "--slurm-option only applies to --executor slurm"),
    (["--executor", "slurm", "--workers", "2"], "--workers is for the local executor"),
    (["--executor", "slurm", "--address", "auto"], "--address only applies to --executor ray"),
    (["--executor", "slurm", "--slurm-option", "qos"], "--slurm-option 'qos': give KEY=VALUE"),
    (["--executor", "slurm", "--slurm-time", "soon"], "--slurm-time 'soon' is not a time limit"),
    (["--executor", "slurm", "--slurm-cpus", "0"], "--slurm-cpus must be an integer >= 1"),
])
def test_slurm_flags_are_checked_before_anything_is_queued(tmp_path, write_spec, capsys, flags, message):
    spec = write_spec(tiny_spec_dict())
    assert main(["sweep", str(spec), "--store", str(tmp_path / "store"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "store").exists()


def test_without_submitit_the_message_says_what_to_install(tmp_path, write_spec, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit raises ImportError
    spec = write_spec(tiny_spec_dict())
    assert main(["sweep", str(spec), "--store", str(tmp_path / "store"), "--executor", "slurm"]) == 2
    assert "pip install 'cffaudit[slurm]'" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()


def test_without_sbatch_the_message_says_where_to_run(tmp_path, write_spec, capsys, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    spec = write_spec(tiny_spec_dict())
    assert main(["sweep", str(spec), "--store", str(tmp_path / "store"), "--executor", "slurm"]) == 2
    err = capsys.readouterr().err
    assert "sbatch, which is not on PATH" in err and "login node" in err and "slurm-local.sh start" in err
    assert not (tmp_path / "store").exists()


def test_execute_outside_a_sweep_is_refused():
    with pytest.raises(ExecutorError, match="through run_sweep"):
        list(SlurmExecutor().execute([]))


def _fake_command(directory, name, script):
    path = directory / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _fake_slurm(tmp_path, monkeypatch, squeue, sacct):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_command(bin_dir, "squeue", squeue)
    _fake_command(bin_dir, "sacct", sacct)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_job_states_of_jobs_that_left_the_queue_come_from_sacct(tmp_path, monkeypatch):
    _fake_slurm(tmp_path, monkeypatch,
                squeue="echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1\n",
                sacct="echo '5_0|CANCELLED by 0|None'; echo '5_[1-2%1]|PENDING|JobArrayTaskLimit'\n")
    states, from_sacct = query_states(["5_0", "5_2", "6_0"])
    assert from_sacct
    assert states == {"5_0": ("CANCELLED", "CANCELLED by 0"), "5_2": ("PENDING", "JobArrayTaskLimit")}


def test_the_controller_answers_for_jobs_accounting_has_not_recorded_yet(tmp_path, monkeypatch):
    # For a few seconds after sbatch, sacct lists nothing about a job (slurmdbd lags
    # slurmctld); a restarted driver that believed it submitted running runs again.
    _fake_slurm(tmp_path, monkeypatch, squeue="echo '5_0|RUNNING|None'; echo '5_1|PENDING|Resources'\n",
                sacct="echo '5|PENDING|None'\n")
    states, from_sacct = query_states(["5_0", "5_1"])
    assert states == {"5_0": ("RUNNING", ""), "5_1": ("PENDING", "Resources")} and from_sacct


def test_a_line_for_a_whole_array_stands_for_its_tasks_without_their_own(tmp_path, monkeypatch):
    # An array cancelled while pending was never split into tasks: accounting has one line.
    _fake_slurm(tmp_path, monkeypatch, squeue="exit 0\n",
                sacct="echo '9|CANCELLED by 0|None'; echo '8|PENDING|None'; echo '8_0|RUNNING|None'\n")
    states, _ = query_states(["9_0", "9_1", "8_0", "8_1", "10"])
    assert states == {"9_0": ("CANCELLED", "CANCELLED by 0"), "9_1": ("CANCELLED", "CANCELLED by 0"),
                      "8_0": ("RUNNING", ""), "8_1": ("PENDING", "")}


def test_the_controller_overrides_what_accounting_says(tmp_path, monkeypatch):
    _fake_slurm(tmp_path, monkeypatch, squeue="echo '5_0|PENDING|BeginTime'\n",
                sacct="echo '5_0|REQUEUED|None'; echo '5_1|COMPLETED|None'\n")
    states, _ = query_states(["5_0", "5_1"])
    assert states == {"5_0": ("PENDING", "BeginTime"), "5_1": ("COMPLETED", "")}


def test_without_accounting_job_states_come_from_squeue(tmp_path, monkeypatch):
    _fake_slurm(tmp_path, monkeypatch, squeue="echo '5_1|RUNNING|None'\n",
                sacct="echo 'sacct: error: Slurm accounting storage is disabled' >&2; exit 1\n")
    states, from_sacct = query_states(["5_0", "5_1"])
    assert not from_sacct
    assert states == {"5_1": ("RUNNING", "")}  # 5_0 has left the queue: the executor fails it


def test_without_the_controller_job_states_are_not_guessed_from_accounting(tmp_path, monkeypatch):
    _fake_slurm(tmp_path, monkeypatch,
                squeue="echo 'squeue: error: Unable to contact slurm controller (connect failure)' >&2; exit 1\n",
                sacct="echo '5_0|PENDING|None'\n")
    with pytest.raises(OSError, match="squeue could not report job states: .*Unable to contact slurm controller"):
        query_states(["5_0"])


def test_a_store_without_the_slurm_table_has_no_slurm_jobs(tmp_path):
    store = RunStore.create_or_open(tmp_path / "s", spec_name="t", design_hash="h", factors=[], factor_paths={},
                                    spec_text="name: t\n")
    with store._tx() as conn:
        conn.execute("DROP TABLE slurm_jobs")
    assert slurm_records(store) == {}


@pytest.mark.parametrize("partition, gpus", [(None, 0), ("gpu", 1), ("cpu", 0)])
def test_unset_gpus_follow_the_partitions_gres(tmp_path, monkeypatch, partition, gpus):
    pytest.importorskip("submitit")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_command(bin_dir, "sinfo", "echo 'cpu* (null)'; echo 'gpu gpu:a100:4'\n")
    _fake_command(bin_dir, "sbatch", "exit 0\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    executor = SlurmExecutor(partition=partition)
    executor.preflight()
    assert executor.gpus_per_task == gpus


def _store(tmp_path):
    return RunStore.create_or_open(tmp_path / "s", spec_name="t", design_hash="h", factors=[], factor_paths={},
                                   spec_text="name: t\n")


def test_a_submission_is_recorded_before_sbatch_and_replaced_by_its_job_ids(tmp_path):
    store = _store(tmp_path)
    record_submitting(store, "cffaudit-x", [("a", "a", 0), ("b", "g-1", 1), ("c", "g-1", 1)], tasks=2)
    runs = submissions(store)["cffaudit-x"]
    assert [(r.run_id, r.job_key, r.task, r.slurm_id("7")) for r in runs] == [
        ("a", "a", 0, "7_0"), ("b", "g-1", 1, "7_1"), ("c", "g-1", 1, "7_1")]
    record_submitted(store, [("a", "a", "7_0")])  # in one transaction with dropping a's submission record
    assert [r.run_id for r in submissions(store)["cffaudit-x"]] == ["b", "c"]
    assert slurm_records(store)["a"].slurm_id == "7_0"
    forget_submitting(store, ["b", "c"])
    assert submissions(store) == {}
    record_submitting(store, "cffaudit-y", [("d", "d", 0)], tasks=1)
    assert submissions(store)["cffaudit-y"][0].slurm_id("8") == "8"  # one job: submitit submits no array


def test_the_jobs_of_a_submission_are_found_by_its_name(tmp_path, monkeypatch):
    _fake_slurm(tmp_path, monkeypatch, squeue='case "$*" in *--name=cffaudit-x*) printf "7_0\\n7_1\\n";; esac\n',
                sacct="exit 1\n")
    assert jobs_named("cffaudit-x", "2026-12-03T22:16:04+00:00") == ["7"]
    assert jobs_named("cffaudit-other", "2026-12-03T22:16:04+00:00") == []  # no accounting to ask either


def test_a_submission_that_left_the_queue_is_found_in_accounting(tmp_path, monkeypatch):
    _fake_slurm(tmp_path, monkeypatch, squeue="exit 0\n",
                sacct='echo "$@" > "$(dirname "$0")/args"; echo "5_[0-1]"\n')
    assert jobs_named("cffaudit-x", "2026-12-03T22:16:04+00:00") == ["5"]
    args = (tmp_path / "bin" / "args").read_text().split()
    assert "--name=cffaudit-x" in args and args[args.index("-S") + 1].startswith("2026-12-0")  # a day before


def test_without_the_controller_a_submission_is_not_looked_up(tmp_path, monkeypatch):
    _fake_slurm(tmp_path, monkeypatch, squeue="echo 'squeue: error: Unable to contact slurm controller' >&2; exit 1\n",
                sacct="echo 5_0\n")
    with pytest.raises(OSError, match="squeue could not list the jobs named cffaudit-x"):
        jobs_named("cffaudit-x", "2026-12-03T22:16:04+00:00")


def test_a_restarted_driver_records_the_jobs_its_predecessor_submitted_and_cancels_orphans(tmp_path, monkeypatch, capsys):
    submitit = pytest.importorskip("submitit")
    _fake_slurm(tmp_path, monkeypatch, squeue="printf '7_0\\n7_1\\n'\n", sacct="exit 1\n")
    _fake_command(tmp_path / "bin", "scancel", 'echo "$@" >> "$(dirname "$0")/cancelled"\n')
    store = _store(tmp_path)
    record_submitting(store, "cffaudit-x", [("a", "a", 0), ("b", "b", 1)], tasks=2)
    folder = store.root / "slurm" / "%j"
    placed = submitit.SlurmJob(folder=folder, job_id="7_0").paths.submitted_pickle
    placed.parent.mkdir(parents=True)
    placed.write_bytes(b"")  # submitit moved 7_0's pickle into place before the driver died, not 7_1's
    executor = SlurmExecutor()
    executor.bind(store)
    executor._settle_submissions(submitit, folder)
    assert {rid: r.slurm_id for rid, r in slurm_records(store).items()} == {"a": "7_0"}
    assert submissions(store) == {}  # b is submitted again by this driver
    assert (tmp_path / "bin" / "cancelled").read_text().split() == ["7_1"]
    assert "found Slurm job 7 (cffaudit-x)" in capsys.readouterr().err


def test_a_submission_slurm_never_received_is_forgotten(tmp_path, monkeypatch):
    submitit = pytest.importorskip("submitit")
    _fake_slurm(tmp_path, monkeypatch, squeue="exit 0\n", sacct="exit 0\n")
    store = _store(tmp_path)
    record_submitting(store, "cffaudit-x", [("a", "a", 0)], tasks=1)
    executor = SlurmExecutor()
    executor.bind(store)
    executor._settle_submissions(submitit, store.root / "slurm" / "%j")
    assert submissions(store) == {} and slurm_records(store) == {}


def test_the_status_column_shows_a_run_being_submitted(tmp_path, monkeypatch):
    from cffaudit.cli.sweep import slurm_column

    _fake_slurm(tmp_path, monkeypatch, squeue="echo '7_0|RUNNING|None'\n", sacct="exit 1\n")
    store = _store(tmp_path)
    record_submitted(store, [("a", "a", "7_0")])
    record_submitting(store, "cffaudit-x", [("b", "b", 0)], tasks=1)
    assert slurm_column(store, ["a", "b", "c"]) == {"a": "7_0 RUNNING", "b": "? SUBMITTING"}
