"""The CUDA code paths, run for real. Skipped where torch sees no CUDA device (CI).

Run them on a GPU machine with `python -m pytest -m cuda` (or `bash benchmarks/gpu_session.sh`,
which also runs the benchmark). Each test names the part of the GPU path it exercises.
"""

import json
import os

import pytest
import torch

from cffaudit.config import RunConfig
from cffaudit.train.run import Runtime, train_run, train_seeds

from tests.killing import uninterrupted_and_resumed

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


@pytest.fixture
def cuda_config(tiny_config) -> RunConfig:
    return tiny_config.override({"device": "cuda"})


def stage1_history(res):
    return [[(l["loss"], l["pos_pairs"]) for l in r["layers"]] for r in res["history"] if r["stage"] == 1]


#: What `perf.precision: auto` gives on this GPU: bf16 where it is native (Ampere on).
AUTO_PRECISION = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False) \
    else "fp32"


def test_auto_runtime_on_cuda_is_compiled_fused_and_bf16_where_native(cuda_config):
    rt = Runtime.from_config(cuda_config)
    assert (rt.device.type, rt.precision, rt.compile, rt.step_order, rt.cpu_allocator) == (
        "cuda", AUTO_PRECISION, True, "fused", "system")


def test_whole_run_with_the_gpu_defaults_learns(tmp_path, cuda_config):
    """bf16 autocast, torch.compile of the fused step (a short last batch included),
    fused AdamW, on-device augmentation and diagnostics, both probe modes."""
    cfg = cuda_config.override({"stage1.epochs": 4, "stage2.epochs": 10, "data.synthetic_train": 1050})
    for probe in ("view", "none"):
        res = train_run(cfg.override({"stage2.probe_augment": probe}), tmp_path / probe)
        assert res["status"] == "done", res["error"]
        assert res["runtime"] == {"device": "cuda", "precision": AUTO_PRECISION, "compile": True,
                                  "step_order": "fused", "cpu_allocator": "system"}
        assert res["test_acc"] > 35.0  # 10 classes, chance 10%
        s1 = [r for r in res["history"] if r["stage"] == 1]
        for rec in s1:
            for layer in rec["layers"]:
                assert 0.0 <= layer["car"] <= 1.0 and layer["grad_norm"] > 0 and layer["pos_pairs"] > 0
        assert s1[-1]["layers"][-1]["loss"] < s1[0]["layers"][-1]["loss"]


def test_same_seed_twice_on_cuda_is_reproducible(tmp_path, cuda_config):
    cfg = cuda_config.override({"perf.compile": "off", "perf.precision": "fp32"})
    a, b = train_run(cfg, tmp_path / "a"), train_run(cfg, tmp_path / "b")
    for ra, rb in zip(stage1_history(a), stage1_history(b)):
        for (la, pa), (lb, pb) in zip(ra, rb):
            assert pa == pb and la == pytest.approx(lb, rel=1e-4, abs=1e-5)  # atomics may reorder sums


def test_ensemble_member_tracks_its_solo_run_on_cuda(tmp_path, cuda_config):
    """CUDA generators: seed k of an ensemble draws the solo run's data order and augmentations."""
    cfg = cuda_config.override({"perf.compile": "off", "perf.precision": "fp32"})
    results = train_seeds(cfg, [1, 2], [tmp_path / "s1", tmp_path / "s2"])
    solo = train_run(cfg.override({"seed": 2}), tmp_path / "solo2")
    assert all(r["status"] == "done" for r in results), [r["error"] for r in results]
    for re_, rs in zip(stage1_history(results[1]), stage1_history(solo)):
        for (le, pe), (ls, ps) in zip(re_, rs):
            assert pe == ps and le == pytest.approx(ls, rel=1e-3, abs=1e-3)
    assert json.loads((tmp_path / "s2" / "result.json").read_text())["config"]["seed"] == 2


def test_cpu_and_cuda_start_from_the_same_weights_and_split(tmp_path, tiny_config):
    from cffaudit.train.ensemble import Ensemble

    runs = {}
    for dev in ("cpu", "cuda"):
        ens = Ensemble(tiny_config.override({"device": dev}), [3], tmp_path / f"{dev}.pt", False)
        ens.build()
        runs[dev] = ens
    for p, q in zip(runs["cpu"].model.parameters(), runs["cuda"].model.parameters()):
        assert q.device.type == "cuda" and torch.equal(p, q.cpu())
    assert torch.equal(runs["cpu"].data.train_y, runs["cuda"].data.train_y.cpu())


@pytest.mark.slow
def test_killed_and_resumed_cuda_run_finishes_like_an_uninterrupted_one(tmp_path):
    """Checkpoints on CUDA: model, AdamW state and CUDA generator states survive SIGKILL."""
    a, b = uninterrupted_and_resumed(tmp_path, "--device", "cuda", "--precision", "fp32", "--compile", "off",
                                     "--epochs-stage1", "30", timeout=300, grace=0.2)
    for ra, rb in zip(stage1_history(a), stage1_history(b)):
        for (la, pa), (lb, pb) in zip(ra, rb):
            assert pa == pb and la == pytest.approx(lb, rel=1e-4, abs=1e-5)


def test_benchmark_on_cuda_records_device_and_peak(tmp_path):
    from cffaudit.bench import run_benchmark

    rec = run_benchmark(device="cuda", config="tiny", steps=2, warmup=2, seeds=2, workers=0)
    assert rec["env"]["device"] == "cuda" and rec["env"]["device_name"]
    assert rec["solo"]["precision"] == AUTO_PRECISION and rec["solo"]["compile"] is True
    assert rec["views_per_s"] > 0 and rec["multi_seed_views_per_s"] > 0
    if any(k in rec["env"]["device_name"] for k in ("H100", "H200", "A100")):
        assert 0 < rec["fraction_of_peak"] < 1
    assert rec["where_time_goes"]


@pytest.mark.slow
def test_sweep_pins_a_worker_pool_to_the_gpu(tmp_path):
    """The local executor's spawned, GPU-pinned workers see their GPU and use it."""
    from cffaudit.experiments.executors import Job, LocalExecutor, local_gpus

    gpu = local_gpus()[0]  # an index, or a UUID where this process was restricted (MIG)
    done = list(LocalExecutor(workers=2, gpus=[gpu, gpu]).execute(
        [Job(fn=_device_in_worker, args=(i,), key=str(i)) for i in range(2)]))
    assert sorted(d.value for d in done) == [(gpu, "cuda"), (gpu, "cuda")], [d.error for d in done]


def _device_in_worker(i):
    x = torch.ones(2, device="cuda")
    return os.environ.get("CUDA_VISIBLE_DEVICES"), (x * i).device.type
