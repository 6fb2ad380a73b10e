"""The parts of an ensemble run and how far they got: what a checkpoint holds.

An `Ensemble` holds S independent seeds side by side (an ensemble dimension in every
tensor): their stacked data splits, the model and probe, optimisers, and one generator
per seed and random stream. `cffaudit.train.run` drives it through the protocol.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from cffaudit.config import PROTOCOL_VERSION, RunConfig
from cffaudit.model import CFFViT
from cffaudit.provenance import environment
from cffaudit.train import stage1 as s1
from cffaudit.train import stage2 as s2
from cffaudit.train.checkpoint import Checkpoint
from cffaudit.train.runtime import Runtime
from cffaudit.train.seeds import derive_seeds, generator

# The generators a checkpoint keeps: attribute name -> (stream, on the run's device).
_GENERATORS = {"gen_data": ("data", False), "gen_aug": ("augment", True),
               "gen_probe": ("probe_augment", True), "gen_probe_order": ("probe_order", False)}
_PROGRESS = ("stage", "epoch", "history", "failed", "best", "timing")


def load_seed_data(cfg: RunConfig, split_seeds: Sequence[int], device: torch.device, progress: bool):
    """The splits of every seed of an ensemble, as one `Splits` whose tensors are
    stacked along a leading seed dimension, (S, N, ...), on the device."""
    from cffaudit.data import Splits, check_split_arguments, read_dataset, split_dataset

    limits = {"limit_train": cfg.data.limit_train, "limit_val": cfg.data.limit_val}
    for s in split_seeds:
        check_split_arguments(s, **limits)  # before any file is read
    # Read (and checksum) once; only the held-out permutation differs between seeds.
    data = read_dataset(cfg.data.dataset, data_dir=cfg.data.data_dir, download=cfg.data.download,
                        synthetic_train=cfg.data.synthetic_train, synthetic_test=cfg.data.synthetic_test,
                        synthetic_classes=cfg.data.synthetic_classes, progress=progress)
    splits = [split_dataset(data, split_seed=s, **limits) for s in split_seeds]
    stack = lambda attr: torch.stack([getattr(s, attr) for s in splits]).to(device)  # noqa: E731
    tensors = ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")
    return Splits(name=splits[0].name, num_classes=splits[0].num_classes, **{t: stack(t) for t in tensors})


def build_model(cfg: RunConfig, init_seeds: Sequence[int], device: torch.device) -> CFFViT:
    """The ViT of `cfg` with one ensemble member per seed, initialised from those seeds
    (on the CPU, so a seed's weights are the same on every device), on `device`."""
    m = cfg.model
    model = CFFViT(ensemble=len(init_seeds), embed_dim=m.embed_dim, depth=m.depth, heads=m.heads,
                   patch_size=m.patch_size, mlp_ratio=m.mlp_ratio, image_size=m.image_size, in_chans=m.in_chans,
                   init=m.init)
    model.init_weights([generator(s) for s in init_seeds])
    return model.to(device)


def split_sizes(data) -> dict[str, int]:
    """Images per split of stacked splits (the same for every seed)."""
    return {"train": data.train_y.shape[1], "val": data.val_y.shape[1], "test": data.test_y.shape[1]}


class Ensemble:
    """S seeds trained together: the parts `build` wires up, how far they got (what a
    checkpoint holds), and the result of each seed.

    Args:
        cfg: the run configuration.
        seeds: the run seeds, one per member.
        checkpoint: the checkpoint file.
        progress: show progress (of reading the data here; of the epochs in `run`).
    """

    def __init__(self, cfg: RunConfig, seeds: Sequence[int], checkpoint: Path, progress: bool) -> None:
        self.cfg, self.seeds, self.checkpoint_path = cfg, list(seeds), Path(checkpoint)
        self.progress, self.S = progress, len(seeds)
        self.rt: Runtime | None = None  # resolved in build(), where errors are recorded
        self.derived = [derive_seeds(s) for s in self.seeds]
        self.stage, self.epoch = 1, 0  # the next epoch to run
        self.history: list[list[dict]] = [[] for _ in self.seeds]
        self.failed: list[str | None] = [None] * self.S
        self.best = [(-1.0, math.nan, -1)] * self.S  # (val_acc, test_acc, epoch) per seed
        self.encoder = s1.BestEncoder(self.S)  # used when stage1.select == "best_val_loss"
        self.timing: dict[str, float] = {"stage1_s": 0.0, "stage2_s": 0.0, "data_s": 0.0}

    def build(self) -> None:
        """Resolve the runtime; read the data; make model, probe, optimisers, generators."""
        from cffaudit.augment import build_augment

        cfg = self.cfg
        self.rt = rt = Runtime.from_config(cfg).prepare_process()
        dev = rt.device
        streams = self._stream_seeds
        self.checkpoint = Checkpoint(self.checkpoint_path, self.seeds, cfg, rt)
        t0 = time.perf_counter()
        self.data = load_seed_data(cfg, streams("split"), dev, self.progress)
        self.sizes = split_sizes(self.data)
        self.timing["data_s"] = time.perf_counter() - t0
        self.augment = build_augment(cfg.augment_preset(), dataset=cfg.data.dataset,
                                     normalization=cfg.data.normalization)
        self.model = build_model(cfg, streams("init"), dev)
        c1, c2 = cfg.stage1, cfg.stage2
        self.opt1 = s1.make_optimizer(self.model.parameters(), lr=c1.lr, betas=(c1.beta1, c1.beta2),
                                      weight_decay=c1.weight_decay, device=dev)
        self.step = s1.Stage1Step(self.model, self.opt1, s1.LossSpec.from_config(cfg), order=rt.step_order,
                                  autocast=rt.autocast(), compile=rt.compile)
        self.probe = s2.LinearProbe(self.S, cfg.model.embed_dim, self.data.num_classes)
        self.probe.init_weights([generator(s) for s in streams("probe")])
        self.probe.to(dev)
        self.opt2 = s1.make_optimizer(self.probe.parameters(), lr=c2.lr, betas=(0.9, 0.999),
                                      weight_decay=c2.weight_decay, device=dev)
        for name, (stream, on_device) in _GENERATORS.items():
            setattr(self, name, [generator(s, dev if on_device else "cpu") for s in streams(stream)])

    def _stream_seeds(self, stream: str) -> list[int]:
        return [d[stream] for d in self.derived]

    def resume(self) -> None:
        """Continue from the checkpoint, if there is one."""
        st = self.checkpoint.load()
        if st is None:
            return
        for name in ("model", "opt1", "probe", "opt2"):
            getattr(self, name).load_state_dict(st[name])
        for name, states in st["gens"].items():
            for g, s in zip(getattr(self, name), states):
                g.set_state(s.cpu())  # generator states are CPU byte tensors, CUDA generators too
        for name in _PROGRESS:
            setattr(self, name, st[name])
        self.best = [tuple(b) for b in st["best"]]
        self.encoder.best, self.encoder.state = [tuple(b) for b in st["best_encoder"]], st["best_encoder_state"]

    def save(self) -> None:
        """Write the checkpoint of the state as it is now."""
        self.checkpoint.save({
            **{name: getattr(self, name).state_dict() for name in ("model", "opt1", "probe", "opt2")},
            "gens": {name: [g.get_state() for g in getattr(self, name)] for name in _GENERATORS},
            **{name: getattr(self, name) for name in _PROGRESS},
            "best_encoder": self.encoder.best, "best_encoder_state": self.encoder.state})

    def validation_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The stage-1 validation views, drawn afresh from each seed's "val" stream (the
        same views on resume); none with fewer than 2 validation images."""
        if self.sizes["val"] < 2:
            return []
        gens = [generator(d["val"], self.rt.device) for d in self.derived]
        return s1.validation_batches(self.augment, self.data.val_x, self.data.val_y, gens, self.cfg.stage1.batch_size)

    def add_stage1_epoch(self, records: list[list[dict]], steps: int, elapsed: float) -> None:
        """Record a finished stage-1 epoch (per seed, its layer records): history, encoder
        selection, failures."""
        self.timing["stage1_s"] += elapsed
        for k, layers in enumerate(records):
            self.history[k].append({"stage": 1, "epoch": self.epoch, "time_s": elapsed, "steps": steps,
                                    "layers": layers})
            if self.cfg.stage1.select == "best_val_loss":
                self.encoder.track(self.model, k, self.epoch, layers[-1].get("val_loss"))
            self.failed[k] = self.failed[k] or s1.non_finite_loss(layers, self.epoch)
        self.epoch += 1

    def add_stage2_epoch(self, per_seed: list[tuple[float, float, float]], elapsed: float) -> None:
        """Record a finished probe epoch (per seed, loss and accuracies): history, best
        validation epoch, failures."""
        self.timing["stage2_s"] += elapsed
        for k, (loss, val_acc, test_acc) in enumerate(per_seed):
            self.history[k].append({"stage": 2, "epoch": self.epoch, "time_s": elapsed,
                                    "train_loss": loss, "val_acc": val_acc, "test_acc": test_acc})
            if not math.isfinite(loss) and self.failed[k] is None:
                self.failed[k] = f"non-finite probe loss in stage-2 epoch {self.epoch}; lower --lr2"
            if val_acc > self.best[k][0]:
                self.best[k] = (val_acc, test_acc, self.epoch)
        self.epoch += 1

    def results(self, error: str | None = None, tb: str | None = None) -> list[dict[str, Any]]:
        """One result per seed, as written to its result.json."""
        out, env = [], environment(self.rt.device if self.rt else None)
        for k, seed in enumerate(self.seeds):
            err = error or self.failed[k]
            done = err is None and self.cfg.stage2.epochs > 0
            if err is None and not done:
                err = "stage 2 has 0 epochs: no probe was trained, so there is no accuracy to report"
            out.append(_finite_or_none({
                "status": "done" if done else "failed",
                "protocol": PROTOCOL_VERSION,
                "error": err,
                "traceback": tb,
                "config": {**self.cfg.resolved(), "seed": seed},
                "seeds": {"run": seed, **self.derived[k]},
                "runtime": self.rt.as_dict() if self.rt else None,
                "ensemble": {"size": self.S, "seeds": self.seeds, "index": k},
                "data": getattr(self, "sizes", None),
                "test_acc": self.best[k][1] if done else None,
                "best_val_acc": self.best[k][0] if done else None,
                "best_epoch": self.best[k][2] if done else None,
                "stage1_selected_epoch": (self.encoder.best[k][1] if self.cfg.stage1.select == "best_val_loss"
                                          else self.cfg.stage1.epochs - 1),
                "history": self.history[k],
                "timing": {**self.timing, "ensemble_size": self.S},
                "env": env,
            }))
        return out


def _finite_or_none(v: Any) -> Any:
    """JSON has no NaN: failed diagnostics become null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite_or_none(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite_or_none(x) for x in v]
    return v
