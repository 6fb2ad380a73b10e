"""Where a run is wired together: config -> data, model, stages -> result.json.

`train_seeds` trains S independent seeds side by side in one process (an ensemble
dimension in every tensor, `train.ensemble`); `train_run` is the solo case, S = 1. Each
seed writes its own `result.json`, exactly as a solo run with that seed would.

Randomness is owned: every draw (weights, split, data order, augmentations, validation
views, probe weights and order) comes from a generator seeded from its seed's streams
(`seeds.derive_seeds`). The global torch, numpy and `random` states are neither used nor
seeded, so seed k means the same solo or in an ensemble; `tests/train` checks that
scrambling them changes nothing.

Before stage 1, the untrained baseline (stage2.untrained_baseline) trains the same probe,
from its own streams, on the encoder as initialised; stage 2 trains K probes
(stage2.probe_seeds) on the trained one. Each finished seed writes `predictions.npz`
(`cffaudit.predictions`) before its result.json.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from cffaudit.atomic import atomic_write_json
from cffaudit.config import CHECKPOINT_NAME, RESULT_NAME, RunConfig
from cffaudit.predictions import PREDICTIONS_NAME, write_predictions
from cffaudit.train import stage1 as s1
from cffaudit.train import stage2 as s2
from cffaudit.train.ensemble import Ensemble, build_model, load_seed_data, split_sizes
from cffaudit.train.memory import release_freed_memory
from cffaudit.train.progress import StageBar, layer_losses, stage_bar
from cffaudit.train.runtime import Runtime, resolve_device

# Also imported from here by the benchmark, the sweep and tests.
__all__ = ["train_seeds", "train_run", "build_model", "load_seed_data", "split_sizes", "Runtime", "resolve_device"]


def train_seeds(cfg: RunConfig, seeds: Sequence[int], out_dirs: Sequence[str | Path], *,
                checkpoint: str | Path | None = None, resume: bool = False,
                progress: bool = False, tensorboard: Sequence[str | Path] | None = None) -> list[dict[str, Any]]:
    """Train independent seeds side by side; write and return one result per seed.

    Seed k gets exactly the initial weights, split, data order and augmentation draws of
    a solo run with that seed. A training failure (NaN loss, bad data, a full disk) is
    returned and written as status "failed" with the error; it is not raised.
    KeyboardInterrupt and SystemExit propagate, leaving the last checkpoint for `resume=True`.

    Args:
        cfg: the run configuration (its `seed` is ignored in favour of `seeds`).
        seeds: run seeds, one per ensemble member.
        out_dirs: one output folder per seed, for its result.json.
        checkpoint: the shared checkpoint file (default: out_dirs[0]/checkpoint.pt).
        resume: continue from the checkpoint if it exists.
        progress: show a progress bar.
        tensorboard: one TensorBoard log directory per seed, or None (``train.tblog``).
    """
    if len(seeds) != len(out_dirs) or not seeds:
        raise ValueError("seeds and out_dirs: need the same, non-zero, number of entries")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds: repeated seeds in {list(seeds)}")
    out_dirs = [Path(d) for d in out_dirs]
    for d in out_dirs:
        d.mkdir(parents=True, exist_ok=True)
    ens = Ensemble(cfg, seeds, Path(checkpoint) if checkpoint else out_dirs[0] / CHECKPOINT_NAME, progress)
    t0 = time.perf_counter()
    error = tb = log = None
    try:
        ens.build()
        if resume:
            ens.resume()
        else:
            ens.checkpoint.delete()  # a fresh run must not be confused with an old one
        if tensorboard is not None:
            log = _tensorboard_log(tensorboard, ens)
        _train(ens, log.update if log else None)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # recorded, not raised: a sweep goes on with other runs
        error, tb = f"{type(exc).__name__}: {exc}", traceback.format_exc()
    finally:
        if log is not None:
            log.close()
    ens.timing["total_s"] = ens.timing.get("total_s", 0.0) + (time.perf_counter() - t0)
    results = ens.results(error, tb)
    for k, (d, res) in enumerate(zip(out_dirs, results)):
        _write_predictions(ens, k, d, res)
        atomic_write_json(d / RESULT_NAME, res)
    del ens  # model, data and optimiser state: freed before the heap is trimmed
    release_freed_memory()  # a sweep worker's next run may be smaller; hand the pages back
    return results


def train_run(cfg: RunConfig, out_dir: str | Path, *, resume: bool = False, progress: bool = False) -> dict[str, Any]:
    """Train one run (seed `cfg.seed`), write `out_dir/result.json` and return it."""
    return train_seeds(cfg, [cfg.seed], [out_dir], resume=resume, progress=progress)[0]


def _tensorboard_log(log_dirs: Sequence[str | Path], ens: Ensemble):
    from cffaudit.train.tblog import TensorBoardLog

    if len(log_dirs) != len(ens.seeds):
        raise ValueError(f"tensorboard: {len(log_dirs)} log directories for {len(ens.seeds)} seeds")
    configs = [{**ens.cfg.resolved(), "seed": seed} for seed in ens.seeds]
    return TensorBoardLog(log_dirs, configs, ens.history)


def _train(ens: Ensemble, on_epoch: Callable[[list[list[dict]]], None] | None = None) -> None:
    """Stage 1, encoder selection, stage 2, from wherever `ens` stands; `on_epoch` sees
    the history after every epoch (the TensorBoard log)."""
    cfg = ens.cfg
    if ens.wants_baseline and ens.baseline is None and cfg.stage2.epochs > 0:
        _untrained_baseline(ens)
        ens.save()  # a resumed run keeps this baseline rather than computing it again
    if ens.stage == 1:
        with stage_bar(ens.progress, "stage 1", cfg.stage1.epochs, ens.epoch, ens.seeds) as bar:
            _stage1(ens, bar, on_epoch)
        if cfg.stage1.select == "best_val_loss":
            ens.encoder.restore(ens.model)
        ens.stage, ens.epoch = 2, 0
        ens.save()
    with stage_bar(ens.progress, "probe", cfg.stage2.epochs, ens.epoch, ens.seeds) as bar:
        _stage2(ens, bar, on_epoch)


def _untrained_baseline(ens: Ensemble) -> None:
    """Train the baseline probe on the encoder as initialised, all its epochs at once."""
    cfg, t0 = ens.cfg, time.perf_counter()
    model = ens.initial_model()
    features = s2.ProbeFeatures(model, ens.augment, ens.data, cfg.stage2.batch_size, ens.rt.autocast(),
                                views=cfg.stage2.probe_augment == "view")
    probe = ens.untrained_probe()
    for epoch in range(cfg.stage2.epochs):
        probe.epoch(features, ens.data, epoch, cfg.stage2.batch_size)
    ens.set_baseline(probe)
    ens.timing["untrained_baseline_s"] = time.perf_counter() - t0


def _write_predictions(ens: Ensemble, k: int, out_dir: Path, result: dict[str, Any]) -> None:
    """predictions.npz of a finished seed; a stale one of an earlier run is removed."""
    preds = ens.predictions(k) if result["status"] == "done" else None
    if preds is None:
        (out_dir / PREDICTIONS_NAME).unlink(missing_ok=True)
        return
    write_predictions(out_dir, preds["probes"], preds["labels"], ens.data.num_classes, preds["untrained"])


def _stage1(ens: Ensemble, bar: StageBar, on_epoch=None) -> None:
    """Stage-1 epochs from `ens.epoch` on, each followed by a checkpoint."""
    cfg = ens.cfg
    val_batches = ens.validation_batches()
    if not val_batches and cfg.stage1.select == "best_val_loss":
        raise ValueError("stage1.select=best_val_loss needs at least 2 validation images; "
                         "use select=last or a larger --limit-val")
    while ens.epoch < cfg.stage1.epochs and not all(ens.failed):
        t0 = time.perf_counter()
        records, steps = s1.stage1_epoch(ens.step, ens.augment, ens.data.train_x, ens.data.train_y,
                                         order_gens=ens.gen_data, augment_gens=ens.gen_aug,
                                         batch_size=cfg.stage1.batch_size, val_batches=val_batches)
        ens.add_stage1_epoch(records, steps, _elapsed(t0, ens.rt.device))
        bar.epoch(layer_losses(records[0]))
        ens.save()
        if on_epoch:
            on_epoch(ens.history)


def _stage2(ens: Ensemble, bar: StageBar, on_epoch=None) -> None:
    """Probe epochs from `ens.epoch` on, each followed by a checkpoint."""
    cfg = ens.cfg
    features = s2.ProbeFeatures(ens.model, ens.augment, ens.data, cfg.stage2.batch_size, ens.rt.autocast(),
                                views=cfg.stage2.probe_augment == "view")
    while ens.epoch < cfg.stage2.epochs and not all(ens.failed):
        t0 = time.perf_counter()
        per_probe = [p.epoch(features, ens.data, ens.epoch, cfg.stage2.batch_size) for p in ens.probes]
        ens.add_stage2_epoch(per_probe, time.perf_counter() - t0)
        loss, val_acc, _ = per_probe[0][0]
        bar.epoch(f"probe loss {loss:.3f} val {val_acc:.2f}%")
        ens.save()
        if on_epoch:
            on_epoch(ens.history)


def _elapsed(t0: float, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()  # the epoch's kernels, not just their launches
    return time.perf_counter() - t0
