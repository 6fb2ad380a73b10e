"""The parts of an ensemble run and how far they got: what a checkpoint holds.

An `Ensemble` holds S independent seeds side by side (an ensemble dimension in every
tensor): their stacked data splits, the model, its K probes (stage2.probe_seeds), the
optimisers, one generator per seed and random stream, and the untrained baseline's
outcome. `cffaudit.train.run` drives it through the protocol.
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
from cffaudit.train.seeds import derive_seeds, generator, probe_streams, untrained_probe_streams

# The generators a checkpoint keeps: attribute name -> (stream, on the run's device).
_GENERATORS = {"gen_data": ("data", False), "gen_aug": ("augment", True)}
_PROGRESS = ("stage", "epoch", "history", "failed", "timing", "baseline")


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
        self.derived = [derive_seeds(s, dict(vars(cfg.seeds)), probes=cfg.stage2.probe_seeds) for s in self.seeds]
        self.stage, self.epoch = 1, 0  # the next epoch to run
        self.history: list[list[dict]] = [[] for _ in self.seeds]
        self.failed: list[str | None] = [None] * self.S
        self.probes: list[s2.ProbeRun] = []  # made in build(); probes[0] gives test_acc
        # Per seed, the probe on the encoder as initialised: {"val_acc", "test_acc",
        # "predictions"}; None until it ran (or when it does not run).
        self.baseline: list[dict[str, Any]] | None = None
        self.encoder = s1.BestEncoder(self.S)  # used when stage1.select == "best_val_loss"
        self.timing: dict[str, float] = {"stage1_s": 0.0, "stage2_s": 0.0, "data_s": 0.0}

    @property
    def wants_baseline(self) -> bool:
        """Whether the untrained baseline runs: stage2.untrained_baseline, where "auto" is
        on when the probe trains on cached features (one cheap probe more) and off when it
        re-runs the encoder every epoch (a whole stage 2 more)."""
        choice = self.cfg.stage2.untrained_baseline
        if choice == "auto":
            return self.cfg.stage2.probe_augment == "none"
        return choice == "on"

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
        self.probes = [self.make_probe([probe_streams(d, j) for d in self.derived])
                       for j in range(c2.probe_seeds)]
        for name, (stream, on_device) in _GENERATORS.items():
            setattr(self, name, [generator(s, dev if on_device else "cpu") for s in streams(stream)])

    def _stream_seeds(self, stream: str) -> list[int]:
        return [d[stream] for d in self.derived]

    def make_probe(self, streams: Sequence[dict[str, int]]) -> s2.ProbeRun:
        """A fresh probe per seed drawing from `streams` (per seed, its probe streams)."""
        c2 = self.cfg.stage2
        return s2.ProbeRun(streams, self.cfg.model.embed_dim, self.data.num_classes, lr=c2.lr,
                           weight_decay=c2.weight_decay, device=self.rt.device)

    def untrained_probe(self) -> s2.ProbeRun:
        """The probe of the untrained baseline, from its own streams (so the other probes'
        draws are the same whether it runs or not)."""
        return self.make_probe([untrained_probe_streams(d) for d in self.derived])

    def initial_model(self) -> CFFViT:
        """The encoder as initialised: the model itself before stage 1 has begun, else
        built again from the init streams (the same weights)."""
        if self.stage == 1 and self.epoch == 0:
            return self.model
        return build_model(self.cfg, self._stream_seeds("init"), self.rt.device)

    def set_baseline(self, probe: s2.ProbeRun) -> None:
        """Record the untrained baseline's outcome, per seed, from its trained probe."""
        self.baseline = [{"val_acc": val, "test_acc": test, "predictions": pred}
                         for (val, test, _), pred in zip(probe.best, probe.best_predictions)]

    def resume(self) -> None:
        """Continue from the checkpoint, if there is one."""
        st = self.checkpoint.load()
        if st is None:
            return
        for name in ("model", "opt1"):
            getattr(self, name).load_state_dict(st[name])
        for probe, state in zip(self.probes, st["probes"]):
            probe.load_state_dict(state)
        for name, states in st["gens"].items():
            for g, s in zip(getattr(self, name), states):
                g.set_state(s.cpu())  # generator states are CPU byte tensors, CUDA generators too
        for name in _PROGRESS:
            setattr(self, name, st[name])
        if self.baseline is not None:
            for b in self.baseline:
                b["predictions"] = None if b["predictions"] is None else b["predictions"].cpu()
        self.encoder.best, self.encoder.state = [tuple(b) for b in st["best_encoder"]], st["best_encoder_state"]

    def save(self) -> None:
        """Write the checkpoint of the state as it is now."""
        self.checkpoint.save({
            **{name: getattr(self, name).state_dict() for name in ("model", "opt1")},
            "probes": [p.state_dict() for p in self.probes],
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

    def add_stage2_epoch(self, per_probe: list[list[tuple[float, float, float]]], elapsed: float) -> None:
        """Record a finished probe epoch (per probe, per seed, loss and accuracies): the
        history (of the first probe, whose accuracy is reported) and failures."""
        self.timing["stage2_s"] += elapsed
        for k, (loss, val_acc, test_acc) in enumerate(per_probe[0]):
            self.history[k].append({"stage": 2, "epoch": self.epoch, "time_s": elapsed,
                                    "train_loss": loss, "val_acc": val_acc, "test_acc": test_acc})
        for j, per_seed in enumerate(per_probe):
            for k, (loss, _, _) in enumerate(per_seed):
                if not math.isfinite(loss) and self.failed[k] is None:
                    which = f" of probe {j}" if j else ""
                    self.failed[k] = f"non-finite probe loss{which} in stage-2 epoch {self.epoch}; lower --lr2"
        self.epoch += 1

    def predictions(self, k: int) -> dict[str, Any] | None:
        """What seed k's predictions.npz holds (numpy arrays), or None before any probe epoch."""
        if any(p.best_predictions[k] is None for p in self.probes):
            return None
        untrained = self.baseline[k]["predictions"] if self.baseline else None
        return {"probes": torch.stack([p.best_predictions[k] for p in self.probes]).numpy(),
                "labels": self.data.test_y[k].cpu().numpy(),
                "untrained": None if untrained is None else untrained.numpy()}

    def results(self, error: str | None = None, tb: str | None = None) -> list[dict[str, Any]]:
        """One result per seed, as written to its result.json."""
        out, env = [], environment(self.rt.device if self.rt else None)
        for k, seed in enumerate(self.seeds):
            err = error or self.failed[k]
            done = err is None and self.cfg.stage2.epochs > 0
            if err is None and not done:
                err = "stage 2 has 0 epochs: no probe was trained, so there is no accuracy to report"
            best = self.probes[0].best[k] if self.probes else (math.nan, math.nan, -1)
            untrained = self.baseline[k] if self.baseline and self.cfg.stage2.epochs > 0 else {}
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
                "test_acc": best[1] if done else None,
                "best_val_acc": best[0] if done else None,
                "best_epoch": best[2] if done else None,
                # probe j on the one encoder, each from its own probe streams; [0] is test_acc
                "probe_test_accs": [p.best[k][1] for p in self.probes] if done else None,
                "untrained_test_acc": untrained.get("test_acc"),
                "untrained_val_acc": untrained.get("val_acc"),
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
