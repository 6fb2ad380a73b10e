"""The sweep driver with injected run functions: outcomes, failures, recovery, reuse."""

from __future__ import annotations

import json

import os
import re

import pytest

from cffaudit.experiments.executors import Executor, Job, JobDone, LocalExecutor
from cffaudit.experiments.spec import ExperimentSpec
from cffaudit.experiments.store import RunStore, StoreError
from cffaudit.experiments.sweep import run_sweep
from cffaudit.experiments.worker import RunTask, execute_job

from .conftest import tiny_spec_dict
from .fakes import (
    FAIL_TEMPERATURE,
    RAISE_TEMPERATURE,
    calls_of,
    fake_accuracy,
    fake_returns_garbage,
    fake_train_run,
    fake_train_seeds,
    read_result,
)


def quiet(**kw):
    return dict(progress=False, say=lambda s: None, **kw)


def spec_of(**changes):
    return ExperimentSpec.from_dict(tiny_spec_dict(**changes))


def test_sweep_runs_everything_once_and_records_results(tmp_path):
    spec = spec_of()
    report = run_sweep(spec, tmp_path / "s", train_fn=fake_train_seeds, **quiet())
    assert report.complete and report.trained == 4 and report.failed == 0
    store = RunStore.open_existing(tmp_path / "s")
    for row in store.rows():
        assert row.status == "done" and row.attempts == 1 and row.wall_s is not None
        run_dir = store.run_dir(row.run_id)
        assert store.outcome(row).test_acc == read_result(run_dir)["test_acc"]
        assert "fake training epoch 1" in (run_dir / "log.txt").read_text()  # per-run log
        assert calls_of(run_dir) == [calls_of(run_dir)[0]] and "resume=False" in calls_of(run_dir)[0]
    # A second invocation has nothing to do.
    again = run_sweep(spec, tmp_path / "s", train_fn=fake_train_seeds, **quiet())
    assert again.trained == 0 and again.complete
    assert all(len(calls_of(store.run_dir(r.run_id))) == 1 for r in store.rows())


def test_progress_lines_name_each_finished_run_with_its_accuracy(tmp_path, capsys):
    run_sweep(spec_of(), tmp_path / "s", train_fn=fake_train_seeds, progress=True)
    out = capsys.readouterr()
    lines = [l for l in out.out.splitlines() if l.startswith("done")]
    assert len(lines) == 4
    # accuracies with two decimals, as everywhere in the CLI
    assert any("margin=subtract seed=2" in l and l.split("test_acc ")[1].startswith("52.02 ") for l in lines)
    assert all(re.search(r"test_acc \d+\.\d\d( |$)", l) for l in lines), lines
    assert "4/4" in out.err  # the overall bar


@pytest.mark.parametrize("temperature, error", [(FAIL_TEMPERATURE, "TrainingDiverged"), (RAISE_TEMPERATURE, "RuntimeError: fake programming error")])
def test_a_failing_run_is_recorded_and_does_not_stop_the_others(tmp_path, temperature, error):
    spec = spec_of(factors={"margin": ["clamp", "subtract"], "temperature": [0.15, temperature]})
    report = run_sweep(spec, tmp_path / "s", train_fn=fake_train_seeds, **quiet())
    assert report.total == 8 and report.done == 4 and report.failed == 4 and not report.complete
    store = RunStore.open_existing(tmp_path / "s")
    for row in store.rows():
        temp = row.conditions[0]["temperature"]
        if temp == temperature:
            outcome = store.outcome(row)
            assert row.status == "failed" and error in outcome.error and outcome.traceback
            result = read_result(store.run_dir(row.run_id))
            assert result["status"] == "failed" and error in result["error"]
        else:
            assert row.status == "done"
    # Failed runs are not retried unless asked (a NaN would just happen again).
    assert run_sweep(spec, tmp_path / "s", train_fn=fake_train_seeds, **quiet()).trained == 0
    retry = run_sweep(spec, tmp_path / "s", train_fn=fake_train_seeds, **quiet(retry_failed=True))
    assert retry.trained == 4 and all(r.attempts == 2 for r in store.rows() if r.status == "failed")


def test_malformed_results_are_failures(tmp_path):
    report = run_sweep(spec_of(seeds=[1]), tmp_path / "s", train_fn=fake_returns_garbage, **quiet())
    assert report.failed == 2
    store = RunStore.open_existing(tmp_path / "s")
    assert "returned str" in store.outcome(store.rows()[0]).error
    row = store.rows()[0]
    assert read_result(tmp_path / "s" / "runs" / row.run_id)["status"] == "failed"


def test_execute_job_passes_keyboard_interrupt_through(tmp_path):
    def interrupted(cfg, seeds, out_dirs, *, checkpoint, resume, progress):
        raise KeyboardInterrupt

    task = RunTask("abc", spec_of().expand().runs[0].config.to_dict(), str(tmp_path / "r"))
    with pytest.raises(KeyboardInterrupt):
        execute_job((task,), None, interrupted)


def test_interrupted_run_is_requeued_and_resumes_from_its_checkpoint(tmp_path):
    spec = spec_of()
    exp = spec.expand()
    # First sweep trains one run, then the "driver dies" while the second runs.
    run_sweep(spec, tmp_path / "s", train_fn=fake_train_seeds, **quiet(max_runs=1))
    store = RunStore.open_existing(tmp_path / "s")
    victim = exp.runs[1].run_id
    store.claim(victim)
    (store.run_dir(victim)).mkdir(parents=True)
    (store.run_dir(victim) / "checkpoint.pt").write_text("epoch 1")
    first_done = store.row(exp.runs[0].run_id)

    notes = []
    report = run_sweep(spec, tmp_path / "s", train_fn=fake_train_seeds, progress=False, say=notes.append)
    assert report.complete and report.requeued == [victim]
    assert any("requeued 1 run" in n for n in notes)
    assert calls_of(store.run_dir(victim)) == [calls_of(store.run_dir(victim))[0]]
    assert "resume=True" in calls_of(store.run_dir(victim))[0]
    assert store.row(victim).attempts == 2
    # The run finished before the crash was not touched again.
    assert store.row(exp.runs[0].run_id).finished == first_done.finished
    assert len(calls_of(store.run_dir(exp.runs[0].run_id))) == 1


def test_finished_but_unrecorded_run_is_recovered_not_retrained(tmp_path):
    spec = spec_of()
    exp = spec.expand()
    run, other = exp.runs[0], exp.runs[1]
    run_sweep(spec, tmp_path / "s", train_fn=fake_train_seeds, **quiet(max_runs=0))
    st = RunStore.open_existing(tmp_path / "s")
    st.claim(run.run_id)  # the driver died after the worker wrote result.json
    fake_train_run(run.config, st.run_dir(run.run_id))
    # A done result.json of another config in a run's folder is not that run's result.
    fake_train_run(other.config.override({"seed": 99}), st.run_dir(other.run_id))
    report = run_sweep(spec, tmp_path / "s", train_fn=fake_train_seeds, **quiet())
    assert report.recovered == 1 and report.trained == 3 and report.complete
    assert len(calls_of(st.run_dir(run.run_id))) == 1
    assert len(calls_of(st.run_dir(other.run_id))) == 2
    assert read_result(st.run_dir(other.run_id))["config"]["seed"] == other.seed


def test_max_runs_limits_one_invocation(tmp_path):
    spec = spec_of()
    r1 = run_sweep(spec, tmp_path / "s", train_fn=fake_train_seeds, **quiet(max_runs=3))
    assert r1.trained == 3 and r1.remaining == 1 and not r1.complete
    r2 = run_sweep(spec, tmp_path / "s", train_fn=fake_train_seeds, **quiet())
    assert r2.trained == 1 and r2.complete


def test_reuse_copies_finished_runs_with_the_same_id(tmp_path):
    standard = spec_of(name="standard")
    run_sweep(standard, tmp_path / "standard", train_fn=fake_train_seeds, **quiet())
    low = tiny_spec_dict(name="low", reuse=[str(tmp_path / "standard")])
    low["base"]["loss"] = {"margin_schedule": "low"}
    notes = []
    report = run_sweep(ExperimentSpec.from_dict(low), tmp_path / "low", train_fn=fake_train_seeds, progress=False, say=notes.append)
    # The subtract runs (gradient-neutral) are copied; the clamp runs are trained.
    assert report.reused == 2 and report.trained == 2 and report.complete
    st = RunStore.open_existing(tmp_path / "low")
    for row in st.rows():
        if row.conditions[0]["margin"] == "subtract":
            assert row.reused_from == str(tmp_path / "standard")
            assert calls_of(st.run_dir(row.run_id)) == []  # never trained here
            assert (st.run_dir(row.run_id) / "checkpoint.pt").exists()
            assert st.outcome(row).test_acc == read_result(tmp_path / "standard" / "runs" / row.run_id)["test_acc"]
        else:
            assert row.reused_from is None and len(calls_of(st.run_dir(row.run_id))) == 1


def test_a_store_of_another_spec_is_refused_before_anything_runs(tmp_path):
    run_sweep(spec_of(), tmp_path / "s", train_fn=fake_train_seeds, **quiet())
    other = spec_of(factors={"margin": ["clamp", "none"]})
    with pytest.raises(StoreError, match="different design"):
        run_sweep(other, tmp_path / "s", train_fn=fake_train_seeds, **quiet())
    assert len(RunStore.open_existing(tmp_path / "s").rows()) == 4


def test_more_seeds_later_only_trains_the_new_ones(tmp_path):
    run_sweep(spec_of(seeds=[1, 2]), tmp_path / "s", train_fn=fake_train_seeds, **quiet())
    report = run_sweep(spec_of(seeds="1-3"), tmp_path / "s", train_fn=fake_train_seeds, **quiet())
    assert report.trained == 2 and report.total == 6 and report.complete


def test_local_worker_pool_runs_jobs_in_other_processes(tmp_path):
    spec = spec_of(seeds="1-3")
    report = run_sweep(spec, tmp_path / "s", executor=LocalExecutor(workers=2), train_fn=fake_train_seeds, **quiet())
    assert report.complete and report.trained == 6
    store = RunStore.open_existing(tmp_path / "s")
    import os

    pids = {calls_of(store.run_dir(r.run_id))[0].split("pid=")[1] for r in store.rows()}
    assert str(os.getpid()) not in pids and 1 <= len(pids) <= 2
    for r in store.rows():
        cfg = spec.expand().runs[[x.run_id for x in spec.expand().runs].index(r.run_id)].config
        assert store.outcome(r).test_acc == fake_accuracy(cfg)


def test_a_dead_worker_fails_only_its_runs_and_the_sweep_goes_on(tmp_path, monkeypatch):
    from tests.experiments.fakes import DIE_SEED

    monkeypatch.setenv("CFFAUDIT_DRIVER_PID", str(os.getpid()))
    spec = spec_of(seeds=[1, DIE_SEED, 2, 3])
    report = run_sweep(spec, tmp_path / "s", executor=LocalExecutor(workers=2), train_fn=fake_train_seeds, **quiet())
    rows = RunStore.open_existing(tmp_path / "s").rows()
    died = [r for r in rows if r.status == "failed"]
    assert died and all("worker process" in r.error or "BrokenProcessPool" in r.error for r in died)
    assert {r.seed for r in rows if r.seed == DIE_SEED} <= {r.seed for r in died}
    # every run of a surviving seed that was not in flight with the dead one finished
    assert sum(r.status == "done" for r in rows) >= len(rows) - 2 * 2
    assert report.failed == len(died)


class _DyingExecutor(Executor):
    """Every job 'loses its worker', as a Ray task past max_retries would."""

    def execute(self, jobs):
        for job in jobs:
            yield JobDone(job, error="WorkerCrashedError: node died", traceback="tb")


def test_a_job_that_never_completes_fails_its_runs(tmp_path):
    report = run_sweep(spec_of(), tmp_path / "s", executor=_DyingExecutor(), train_fn=fake_train_seeds, **quiet())
    assert report.failed == 4
    assert all("WorkerCrashedError" in r.error for r in RunStore.open_existing(tmp_path / "s").rows())


def test_jobs_are_pulled_lazily_so_running_means_handed_to_a_worker(tmp_path):
    seen = []

    class Recording(Executor):
        def execute(self, jobs):
            for job in jobs:
                store = RunStore(tmp_path / "s")
                seen.append(store.counts()["running"])
                assert isinstance(job, Job) and job.run_ids == (job.key,)
                yield JobDone(job, value=job.fn(*job.args))

    run_sweep(spec_of(), tmp_path / "s", executor=Recording(), train_fn=fake_train_seeds, **quiet())
    assert seen == [1, 1, 1, 1]


def test_result_json_is_valid_json_with_config(tmp_path):
    run_sweep(spec_of(seeds=[1]), tmp_path / "s", train_fn=fake_train_seeds, **quiet())
    for d in (tmp_path / "s" / "runs").iterdir():
        res = json.loads((d / "result.json").read_text())
        assert res["config"]["data"]["dataset"] == "synthetic"


# -- seed groups: several seeds of one condition in one job ---------------------------------


def test_seed_groups_train_runs_of_one_condition_together(tmp_path):
    spec = spec_of(seeds="1-5")
    report = run_sweep(spec, tmp_path / "s", train_fn=fake_train_seeds, seeds_per_job=2, **quiet())
    assert report.complete and report.trained == 10
    store = RunStore.open_existing(tmp_path / "s")
    groups = {}
    for row in store.rows():
        calls = (store.run_dir(row.run_id) / "group_calls.txt").read_text().splitlines()
        assert len(calls) == 1
        groups.setdefault((row.conditions[0]["margin"], calls[0]), []).append(row)
    # Per margin: seeds [1, 2], [3, 4], [5], each group trained in one call.
    assert sorted(groups) == sorted(
        (m, f"{seeds} resume=False") for m in ("clamp", "subtract") for seeds in ([1, 2], [3, 4], [5])
    )
    for (margin, call), members in groups.items():
        assert sorted(m.seed for m in members) == json.loads(call.rsplit(" resume", 1)[0])
    # Results are the same as solo runs'.
    solo = run_sweep(spec, tmp_path / "solo", train_fn=fake_train_seeds, **quiet())
    assert solo.complete
    solo_store = RunStore.open_existing(tmp_path / "solo")
    assert {r.run_id: store.outcome(r).test_acc for r in store.rows()} == {
        r.run_id: solo_store.outcome(r).test_acc for r in solo_store.rows()
    }


def test_interrupted_seed_group_reforms_and_resumes(tmp_path):
    from cffaudit.experiments.sweep import seed_groups

    spec = spec_of(seeds="1-3")
    exp = spec.expand()
    run_sweep(spec, tmp_path / "s", train_fn=fake_train_seeds, **quiet(max_runs=0))
    store = RunStore.open_existing(tmp_path / "s")
    group = seed_groups(list(exp.runs), 3)[0]
    # A sweep died while this group trained: its runs are 'running', its checkpoint exists.
    from cffaudit.experiments.identity import stable_hash

    for r in group:
        store.claim(r.run_id)
    gdir = tmp_path / "s" / "groups" / ("g-" + stable_hash([r.run_id for r in group])[:12])
    gdir.mkdir(parents=True)
    (gdir / "checkpoint.pt").write_text("partial\n")
    report = run_sweep(spec, tmp_path / "s", train_fn=fake_train_seeds, seeds_per_job=3, **quiet())
    assert report.complete and sorted(report.requeued) == sorted(r.run_id for r in group)
    assert "resume=True" in (gdir / "checkpoint.pt").read_text()
    assert "resuming from the group's checkpoint" in (store.run_dir(group[0].run_id) / "log.txt").read_text()


def test_a_failing_group_fails_each_of_its_runs_with_the_error(tmp_path):
    def broken(cfg, seeds, out_dirs, *, checkpoint, resume=False, progress=False):
        raise RuntimeError("group exploded")

    report = run_sweep(spec_of(), tmp_path / "s", seeds_per_job=2, train_fn=broken, **quiet())
    assert report.failed == 4
    store = RunStore.open_existing(tmp_path / "s")
    for row in store.rows():
        assert "group exploded" in store.outcome(row).error
        assert read_result(store.run_dir(row.run_id))["status"] == "failed"


def test_a_job_of_several_runs_needs_a_group_directory(tmp_path):
    runs = spec_of().expand().runs[:2]
    tasks = [RunTask(r.run_id, r.config.to_dict(), str(tmp_path / r.run_id)) for r in runs]
    with pytest.raises(ValueError, match="group_dir: a job of 2 runs needs a group directory"):
        execute_job(tasks, None, fake_train_seeds)


def test_executors_check_their_options():
    from cffaudit.experiments.executors import OptionError, RayExecutor

    for kwargs, message in (({"max_retries": -1}, "max_retries: must be >= 0"),
                            ({"cpus_per_task": 0}, "cpus_per_task: must be > 0"),
                            ({"gpus_per_task": -1}, "gpus_per_task: must be >= 0")):
        with pytest.raises(OptionError, match=message):
            RayExecutor(**kwargs)
    with pytest.raises(OptionError, match="workers: 3: only 2 GPUs to pin workers to"):
        LocalExecutor(workers=3, gpus=[0, 1])
