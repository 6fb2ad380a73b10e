"""Shared fixtures for the experiments tests: tiny specs and one Ray instance per session."""

from __future__ import annotations

import copy

import pytest
import yaml

#: A quickstart-shaped spec on synthetic data, small enough to train in seconds.
TINY_BASE = {
    "data": {"dataset": "synthetic", "synthetic_train": 256, "synthetic_test": 128},
    "model": {"embed_dim": 16, "depth": 2, "heads": 2},
    "stage1": {"epochs": 1, "batch_size": 64},
    "stage2": {"epochs": 1},
    "device": "cpu",
}


def tiny_spec_dict(**changes):
    d = {
        "name": "tiny",
        "base": copy.deepcopy(TINY_BASE),
        "factors": {"margin": ["clamp", "subtract"]},
        "seeds": [1, 2],
    }
    d.update(changes)
    return d


@pytest.fixture
def write_spec(tmp_path):
    """Write a spec dict to a YAML file and return its path."""

    def write(d, name="spec.yaml"):
        path = tmp_path / name
        path.write_text(yaml.safe_dump(d, sort_keys=False))
        return path

    return write


@pytest.fixture(scope="session")
def ray_instance():
    """One local Ray instance for the whole test session (2 CPUs, no dashboard)."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
