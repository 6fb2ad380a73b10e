"""Workers x torch threads never exceed the cores: oversubscribed OpenMP threads spin
against each other (measured in cffaudit/train/threads.py)."""

from __future__ import annotations

import os

from cffaudit.experiments.executors import Job, LocalExecutor
from cffaudit.train import threads as T


def torch_threads_here() -> tuple[int, str]:
    import torch

    return torch.get_num_threads(), os.environ.get("OMP_WAIT_POLICY", "")


def test_threads_per_worker_share_the_available_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4})
    assert T.available_cores() == 5
    assert [T.threads_per_worker(w) for w in (1, 2, 3, 5, 8)] == [5, 2, 1, 1, 1]


def test_limit_threads_keeps_a_smaller_request_and_the_wait_policy(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.delitem(os.sys.modules, "torch", raising=False)  # only the environment is set
    T.limit_threads(4)
    assert os.environ["OMP_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == "1"
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_local_worker_processes_split_the_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    executor = LocalExecutor(workers=2)
    done = list(executor.execute([Job(key="a", fn=torch_threads_here)]))
    assert done[0].ok, done[0].error
    assert done[0].value == (max(1, T.available_cores() // 2), "PASSIVE")
    assert "torch thread" in executor.describe()
