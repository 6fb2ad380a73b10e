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
from cffaudit.experiments.slurm_records import expand_job_id, query_states, slurm_records
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
