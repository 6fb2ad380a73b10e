"""Which GPU each run lands on: local worker pinning and Ray task options (no GPU needed)."""

from __future__ import annotations

import sys
import types

import pytest

from cffaudit.experiments import executors
from cffaudit.experiments.executors import Job, LocalExecutor, RayExecutor, local_gpus, visible_device_entries

from .fakes import visible_devices_of_this_worker


def test_visible_entries_follow_a_restricted_parent():
    assert visible_device_entries(None, 2) == ["0", "1"]
    assert visible_device_entries("", 1) == ["0"]
    # A scheduler gave this process GPUs 4 and 5: its workers must stay on those.
    assert visible_device_entries("4,5", 2) == ["4", "5"]
    assert visible_device_entries(" GPU-aa11 , GPU-bb22", 2) == ["GPU-aa11", "GPU-bb22"]
    assert visible_device_entries("4,5,6", 2) == ["4", "5"]  # torch saw 2 of them


def test_local_gpus_reads_the_environment(monkeypatch):
    monkeypatch.setattr(executors, "local_gpu_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "6,3")
    assert local_gpus() == ["6", "3"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert local_gpus() == ["0", "1"]


def test_pool_workers_are_pinned_one_gpu_each():
    done = list(LocalExecutor(workers=2, gpus=["6", "3"]).execute(
        [Job(key=str(i), fn=visible_devices_of_this_worker, args=(i,)) for i in range(4)]))
    assert all(d.ok for d in done), [d.error for d in done]
    pinned: dict[int, set] = {}
    for dev, pid in (d.value for d in done):
        pinned.setdefault(pid, set()).add(dev)
    # Two workers, each on one GPU of the two given, for all its jobs.
    assert sorted(devs.pop() for devs in pinned.values() if len(devs) == 1) == ["3", "6"]


class _FakeRay(types.ModuleType):
    """Just enough of Ray's API to see the options a task is submitted with."""

    def __init__(self, gpus: float):
        super().__init__("ray")
        self.gpus, self.options = gpus, None

    def is_initialized(self):
        return True

    def cluster_resources(self):
        return {"CPU": 8.0, "GPU": self.gpus}

    def remote(self, **options):
        self.options = options

        def wrap(fn):
            return types.SimpleNamespace(remote=lambda f, args: ("ref", f(*args)))
        return wrap

    def wait(self, refs, num_returns=1):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        return ref[1]


@pytest.mark.parametrize("cluster_gpus, max_calls", [(2.0, 1), (0.0, None)])
def test_ray_gpu_tasks_get_a_fresh_worker_process_each(monkeypatch, cluster_gpus, max_calls):
    fake = _FakeRay(cluster_gpus)
    monkeypatch.setitem(sys.modules, "ray", fake)
    done = list(RayExecutor().execute([Job(key="a", fn=pow, args=(2, 3))]))
    assert done[0].value == 8
    assert fake.options["num_gpus"] == (1 if cluster_gpus else 0)
    assert fake.options.get("max_calls") == max_calls
