import pytest

from cffaudit.config import RunConfig

TINY = {
    "data.dataset": "synthetic",
    "data.synthetic_train": 400,
    "data.synthetic_test": 200,
    "model.embed_dim": 16,
    "model.depth": 2,
    "model.heads": 2,
    "model.patch_size": 8,
    "stage1.epochs": 2,
    "stage1.batch_size": 100,
    "stage2.epochs": 3,
    "stage2.batch_size": 100,
    "stage2.lr": 0.01,
    "device": "cpu",
}


@pytest.fixture
def tiny_config() -> RunConfig:
    """A run that trains in about a second on a CPU."""
    return RunConfig().override(TINY)
