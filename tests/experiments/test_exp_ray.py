"""A sweep through a real local Ray instance (one per test session, 2 CPUs)."""

from __future__ import annotations

import os

import pytest

from cffaudit.experiments.executors import RayExecutor
from cffaudit.experiments.spec import ExperimentSpec
from cffaudit.experiments.store import RunStore, load_store_results
from cffaudit.experiments.sweep import run_sweep

from .test_exp_cli import quickstart_tiny

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_sweep_through_ray_trains_in_ray_workers_and_records_everything(tmp_path, ray_instance):
    d = quickstart_tiny(factors={"margin": ["clamp", "subtract"], "dataset": ["synthetic", "cifar10"]})
    d["base"]["data"]["data_dir"] = str(tmp_path / "no-data-here")  # cifar10 runs fail
    spec = ExperimentSpec.from_dict(d)
    lines = []
    report = run_sweep(spec, tmp_path / "store", executor=RayExecutor(max_retries=1), progress=False, say=lines.append)
    assert report.total == 8 and report.done == 4 and report.failed == 4

    store = RunStore.open_existing(tmp_path / "store")
    workers = {r.worker for r in store.rows()}
    assert all(not w.endswith(f":{os.getpid()}") for w in workers)  # ran in Ray worker processes
    for r in store.rows():
        if r.conditions[0]["dataset"] == "synthetic":
            assert r.status == "done" and r.attempts == 1
            assert (store.run_dir(r.run_id) / "result.json").exists()
            assert "attempt 1" in (store.run_dir(r.run_id) / "log.txt").read_text()
        else:
            assert r.status == "failed" and "DatasetError" in store.outcome(r).error
    results = load_store_results(tmp_path / "store")
    assert sorted(r["seed"] for r in results) == [1, 1, 2, 2]
    assert all(0.0 <= r["test_acc"] <= 100.0 for r in results)

    # Nothing left to do: a second pass through Ray submits no task.
    again = run_sweep(spec, tmp_path / "store", executor=RayExecutor(), progress=False, say=lines.append)
    assert again.trained == 0


def test_ray_executor_reports_a_job_that_cannot_complete(tmp_path, ray_instance):
    from cffaudit.experiments.executors import Job

    def boom():
        raise ValueError("inside the task")

    done = list(RayExecutor(max_retries=0).execute([Job("j", boom, (), ("r1",))]))
    assert len(done) == 1 and not done[0].ok and "inside the task" in done[0].error
