"""Where a run is wired together: config -> data, model, stages -> result.json.

`train_seeds` trains S independent seeds side by side in one process (an ensemble
dimension in every tensor); `train_run` is the solo case, S = 1. Each seed writes its
own `result.json`, exactly as a solo run with that seed would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from cffaudit.atomic import atomic_torch_save, atomic_write_json
from cffaudit.config import CHECKPOINT_NAME, NON_RESULT_KEYS, RESULT_NAME, RunConfig, without_paths
from cffaudit.diagnostics import EpochStats
from cffaudit.model import CFFViT
from cffaudit.provenance import environment
from cffaudit.train import stage2 as s2
from cffaudit.train.memory import release_freed_memory, retain_freed_memory
from cffaudit.train.seeds import derive_seeds, generator, seed_global_state
from cffaudit.train.stage1 import LossSpec, Stage1Step, make_optimizer, validation_losses

CHECKPOINT_VERSION = 2  # 2: per-seed best-validation-loss encoder (stage1.select)


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the message names the stage, layer and epoch."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was requested but torch sees no CUDA device; use --device cpu or auto")
    return torch.device(name)


@dataclass(frozen=True)
class Runtime:
    """Device-dependent choices, resolved once and stored in the result."""

    device: torch.device
    precision: str
    compile: bool
    step_order: str
    cpu_allocator: str = "system"


    @classmethod
    def from_config(cls, cfg: RunConfig) -> "Runtime":
        device = resolve_device(cfg.device)
        gpu = device.type == "cuda"
        # bf16 only where the GPU has it natively (Ampere and later); emulated bf16 on
        # a V100 would be slower than float32.
        native_bf16 = gpu and torch.cuda.is_bf16_supported(including_emulation=False)
        precision = cfg.perf.precision if cfg.perf.precision != "auto" else ("bf16" if native_bf16 else "fp32")
        compile_ = {"auto": gpu, "on": True, "off": False}[cfg.perf.compile]
        # Measured at the paper configuration on a 2-core CPU (2026-11-22, freed memory
        # retained): 5.5 s per step per-block vs 6.2-6.7 s fused, 6.5 s fused and compiled
        # (the per-block order frees each block's activations early). On a GPU one
        # backward means fewer, larger launches and one compiled graph.
        order = cfg.stage1.step_order if cfg.stage1.step_order != "auto" else (
            "fused" if gpu or compile_ else "per_block")
        allocator = cfg.perf.cpu_allocator if device.type == "cpu" else "system"
        return cls(device, precision, compile_ and order == "fused", order, allocator)

    def prepare_process(self) -> "Runtime":
        """Apply the process-wide settings; the runtime as it is in effect."""
        if self.cpu_allocator == "retain" and not retain_freed_memory():
            return dataclasses.replace(self, cpu_allocator="system")  # not glibc: nothing to do
        return self

    def autocast(self) -> Callable[[], contextlib.AbstractContextManager] | None:
        if self.precision == "fp32":
            return None
        return lambda: torch.autocast(self.device.type, dtype=torch.bfloat16)

    def as_dict(self) -> dict[str, Any]:
        return {"device": str(self.device), "precision": self.precision, "compile": self.compile,
                "step_order": self.step_order, "cpu_allocator": self.cpu_allocator}


# -- data, per seed -----------------------------------------------------------------------


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
                   patch_size=m.patch_size, mlp_ratio=m.mlp_ratio, image_size=m.image_size, in_chans=m.in_chans, init=m.init)
    model.init_weights([generator(s) for s in init_seeds])
    return model.to(device)


def split_sizes(data) -> dict[str, int]:
    """Images per split of stacked splits (the same for every seed)."""
    return {"train": data.train_y.shape[1], "val": data.val_y.shape[1], "test": data.test_y.shape[1]}


def _batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Batch bounds; a trailing batch of fewer than 2 images (no contrastive pair) is dropped."""
    bounds = [(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    return [b for b in bounds if b[1] - b[0] >= 2]


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (S, N, ...) and idx (S, b) -> (S, b, ...), each seed its own indices."""
    return torch.stack([x[k].index_select(0, idx[k]) for k in range(x.shape[0])])


# -- the run --------------------------------------------------------------------------------


def _finite_or_none(v: Any) -> Any:
    """JSON has no NaN: failed diagnostics become null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite_or_none(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite_or_none(x) for x in v]
    return v


class _Ensemble:
    """State of S seeds trained together; one instance per call of `train_seeds`."""

    def __init__(self, cfg: RunConfig, seeds: Sequence[int], out_dirs: Sequence[Path],
                 checkpoint: Path, progress: bool) -> None:
        self.cfg, self.seeds, self.out_dirs, self.checkpoint = cfg, list(seeds), list(out_dirs), checkpoint
        self.progress = progress
        self.S = len(self.seeds)
        self.rt: Runtime | None = None  # resolved in build(), where errors are recorded
        self.derived = [derive_seeds(s) for s in self.seeds]
        self.history: list[list[dict]] = [[] for _ in self.seeds]
        self.failed: list[str | None] = [None] * self.S
        self.timing: dict[str, float] = {"stage1_s": 0.0, "stage2_s": 0.0, "data_s": 0.0}
        self.best = [(-1.0, math.nan, -1)] * self.S  # (val_acc, test_acc, epoch) per seed
        # stage1.select == "best_val_loss": per seed, (last-layer val loss, epoch), and the
        # encoder weights of that epoch (each seed's slice of every parameter).
        self.best_encoder: list[tuple[float, int]] = [(math.inf, -1)] * self.S
        self.best_encoder_state: dict[str, torch.Tensor] | None = None
        self.stage, self.epoch = 1, 0  # the next epoch to run

    # -- setup ---------------------------------------------------------------------------
    def build(self) -> None:
        self.rt = Runtime.from_config(self.cfg).prepare_process()
        cfg, dev = self.cfg, self.rt.device
        seed_global_state(self.seeds[0])
        t0 = time.perf_counter()
        self.data = load_seed_data(cfg, [d["split"] for d in self.derived], dev, self.progress)
        self.sizes = split_sizes(self.data)
        self.timing["data_s"] = time.perf_counter() - t0
        from cffaudit.augment import build_augment

        self.augment = build_augment(cfg.augment_preset(), dataset=cfg.data.dataset)
        self.model = build_model(cfg, [d["init"] for d in self.derived], dev)
        s1 = cfg.stage1
        self.opt1 = make_optimizer(self.model.parameters(), lr=s1.lr, betas=(s1.beta1, s1.beta2),
                                   weight_decay=s1.weight_decay, device=dev)
        self.spec = LossSpec.from_config(cfg)
        self.step = Stage1Step(self.model, self.opt1, self.spec, order=self.rt.step_order,
                               autocast=self.rt.autocast(), compile=self.rt.compile)
        self.probe = s2.LinearProbe(self.S, cfg.model.embed_dim, self.data.num_classes)
        self.probe.init_weights([generator(d["probe"]) for d in self.derived])
        self.probe.to(dev)
        s2c = cfg.stage2
        self.opt2 = make_optimizer(self.probe.parameters(), lr=s2c.lr, betas=(0.9, 0.999),
                                   weight_decay=s2c.weight_decay, device=dev)
        self.gen_data = [generator(d["data"]) for d in self.derived]
        self.gen_aug = [generator(d["augment"], dev) for d in self.derived]
        self.gen_probe = [generator(d["probe_augment"], dev) for d in self.derived]
        self.gen_probe_order = [generator(d["probe_order"]) for d in self.derived]
        self.feats: dict[str, torch.Tensor] = {}

    # -- checkpoint ----------------------------------------------------------------------
    def _resumable_config(self) -> dict[str, Any]:
        """The config a checkpoint must match: all of it but what cannot change the
        computation (where the data lives, how the device was named, ...)."""
        return without_paths(self.cfg.resolved(), NON_RESULT_KEYS)

    def state(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "seeds": self.seeds,
            "config": self._resumable_config(),
            "runtime": self.rt.as_dict(),
            "stage": self.stage, "epoch": self.epoch,
            "model": self.model.state_dict(), "opt1": self.opt1.state_dict(),
            "probe": self.probe.state_dict(), "opt2": self.opt2.state_dict(),
            "gens": {name: [g.get_state() for g in getattr(self, name)]
                     for name in ("gen_data", "gen_aug", "gen_probe", "gen_probe_order")},
            "history": self.history, "failed": self.failed, "best": self.best, "timing": self.timing,
            "best_encoder": self.best_encoder, "best_encoder_state": self.best_encoder_state,
        }

    def save(self) -> None:
        atomic_torch_save(self.checkpoint, self.state())

    def load(self) -> bool:
        if not self.checkpoint.exists():
            return False
        try:
            st = torch.load(self.checkpoint, map_location=self.rt.device, weights_only=True)
        except Exception as exc:  # a torn or foreign file: say so rather than crash obscurely
            raise RuntimeError(f"{self.checkpoint}: cannot read checkpoint ({exc}); delete it to start over") from exc
        if st.get("version") != CHECKPOINT_VERSION or st.get("seeds") != self.seeds:
            raise RuntimeError(f"{self.checkpoint}: checkpoint is for seeds {st.get('seeds')} "
                               f"(version {st.get('version')}), not {self.seeds}; delete it or use another --out")
        # Stored configs are filtered again: a checkpoint from before perf.cpu_allocator
        # existed lacks that key, one made with the other setting has another value.
        if without_paths(st["config"], NON_RESULT_KEYS) != self._resumable_config():
            raise RuntimeError(f"{self.checkpoint}: checkpoint was made with another configuration; "
                               "resume with the same flags, or use another --out")
        made = st["runtime"]
        now = self.rt.as_dict()
        if torch.device(made["device"]).type != self.rt.device.type or made["precision"] != now["precision"]:
            # Generator streams and numerics differ between devices: continuing elsewhere
            # would silently change what the seed means.
            raise RuntimeError(f"{self.checkpoint}: checkpoint was made on {made['device']} with "
                               f"{made['precision']}; resume there (--device {torch.device(made['device']).type}), "
                               "or delete the checkpoint to start over on this device")
        self.model.load_state_dict(st["model"])
        self.opt1.load_state_dict(st["opt1"])
        self.probe.load_state_dict(st["probe"])
        self.opt2.load_state_dict(st["opt2"])
        for name, states in st["gens"].items():
            for g, s in zip(getattr(self, name), states):
                g.set_state(s.cpu())  # generator states are CPU byte tensors, CUDA generators too
        self.stage, self.epoch = st["stage"], st["epoch"]
        self.history, self.failed, self.best = st["history"], st["failed"], [tuple(b) for b in st["best"]]
        self.best_encoder = [tuple(b) for b in st["best_encoder"]]
        self.best_encoder_state = st["best_encoder_state"]
        self.timing = st["timing"]
        return True

    # -- stage 1 -------------------------------------------------------------------------
    def _views(self, x: torch.Tensor, gens: Sequence[torch.Generator]) -> torch.Tensor:
        """(S, b, C, H, W) uint8 -> (S, 2b, 3, H', W') float: two augmented views per image."""
        per_seed = []
        for k in range(self.S):
            v1 = self.augment(x[k], gens[k])
            v2 = self.augment(x[k], gens[k])
            per_seed.append(torch.cat([v1, v2]))
        return torch.stack(per_seed)

    def _val_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        # Same validation views every epoch (a generator reset per epoch), so epochs compare.
        gens = [generator(d["val"], self.rt.device) for d in self.derived]
        out = []
        for a, b in _batches(self.sizes["val"], self.cfg.stage1.batch_size):
            views = self._views(self.data.val_x[:, a:b], gens)
            y = self.data.val_y[:, a:b]
            out.append((views, torch.cat([y, y], dim=1)))
        return out

    def run_stage1_epoch(self, val_batches) -> None:
        cfg, dev = self.cfg, self.rt.device
        n = self.sizes["train"]
        self.model.train()
        stats = EpochStats(self.model.depth, self.S, dev)
        perms = torch.stack([torch.randperm(n, generator=g) for g in self.gen_data]).to(dev)  # (S, n)
        t0 = time.perf_counter()
        for a, b in _batches(n, cfg.stage1.batch_size):
            idx = perms[:, a:b]
            x = _gather(self.data.train_x, idx)
            y = _gather(self.data.train_y, idx)
            views = self._views(x, self.gen_aug)  # (S, 2b, 3, H, W)
            self.step(views, torch.cat([y, y], dim=1), stats)
        self.model.eval()
        val = validation_losses(self.model, val_batches, self.spec, self.rt.autocast()) if val_batches else None
        records = stats.records(val)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
        self.timing["stage1_s"] += elapsed
        for k in range(self.S):
            self.history[k].append({"stage": 1, "epoch": self.epoch, "time_s": elapsed,
                                    "steps": stats.steps, "layers": records[k]})
            self._track_best_encoder(k, records[k][-1].get("val_loss"))
            if self.failed[k] is None:
                for rec in records[k]:
                    if not math.isfinite(rec["loss"]):
                        self.failed[k] = (f"non-finite loss ({rec['loss']}) at layer {rec['layer']} in stage-1 "
                                          f"epoch {self.epoch}; lower --lr1 or check the data")
                        break

    def _track_best_encoder(self, k: int, val_loss: float | None) -> None:
        if self.cfg.stage1.select != "best_val_loss" or val_loss is None or not math.isfinite(val_loss):
            return
        if val_loss < self.best_encoder[k][0]:
            self.best_encoder[k] = (val_loss, self.epoch)
            state = self.model.state_dict()
            if self.best_encoder_state is None:
                self.best_encoder_state = {n: t.detach().clone() for n, t in state.items()}
            else:
                for n, t in state.items():
                    self.best_encoder_state[n][k].copy_(t[k])

    def select_encoder(self) -> None:
        """Load each seed's selected stage-1 epoch before the probe (no-op for "last")."""
        if self.cfg.stage1.select == "best_val_loss" and self.best_encoder_state is not None:
            with torch.no_grad():
                state = self.model.state_dict()
                for k, (_, epoch) in enumerate(self.best_encoder):
                    if epoch >= 0:
                        for n, t in state.items():
                            t[k].copy_(self.best_encoder_state[n][k])

    # -- stage 2 -------------------------------------------------------------------------
    def _eval_images(self, x: torch.Tensor) -> Callable[[int, int], torch.Tensor]:
        return lambda a, b: torch.stack([self.augment.eval(x[k, a:b]) for k in range(self.S)])

    def _features(self, split: str) -> torch.Tensor:
        if split not in self.feats:
            x = getattr(self.data, f"{split}_x")
            self.feats[split] = s2.encode(self.model, self._eval_images(x), self.sizes[split],
                                          self.cfg.stage2.batch_size, self.rt.autocast())
        return self.feats[split]

    def _train_features(self) -> torch.Tensor:
        if self.cfg.stage2.probe_augment == "none":
            return self._features("train")
        x = self.data.train_x
        aug = lambda a, b: torch.stack([self.augment(x[k, a:b], self.gen_probe[k]) for k in range(self.S)])  # noqa: E731
        return s2.encode(self.model, aug, self.sizes["train"], self.cfg.stage2.batch_size, self.rt.autocast())

    def run_stage2_epoch(self) -> None:
        cfg, dev = self.cfg, self.rt.device
        t0 = time.perf_counter()
        feats = self._train_features()  # (S, n, E)
        n = feats.shape[1]
        perms = torch.stack([torch.randperm(n, generator=g) for g in self.gen_probe_order]).to(dev)
        self.probe.train()
        loss_sum = torch.zeros(self.S, device=dev, dtype=torch.float64)
        steps = 0
        for a, b in [(i, min(i + cfg.stage2.batch_size, n)) for i in range(0, n, cfg.stage2.batch_size)]:
            idx = perms[:, a:b]
            loss_sum += s2.probe_step(self.probe, self.opt2, _gather(feats, idx), _gather(self.data.train_y, idx))
            steps += 1
        self.probe.eval()
        val_acc = s2.accuracy(self.probe, self._features("val"), self.data.val_y)
        test_acc = s2.accuracy(self.probe, self._features("test"), self.data.test_y)
        host = torch.stack([loss_sum / steps, val_acc.double(), test_acc.double()]).cpu().tolist()
        elapsed = time.perf_counter() - t0
        self.timing["stage2_s"] += elapsed
        for k in range(self.S):
            tl, va, ta = host[0][k], host[1][k], host[2][k]
            self.history[k].append({"stage": 2, "epoch": self.epoch, "time_s": elapsed,
                                    "train_loss": tl, "val_acc": va, "test_acc": ta})
            if not math.isfinite(tl) and self.failed[k] is None:
                self.failed[k] = f"non-finite probe loss in stage-2 epoch {self.epoch}; lower --lr2"
            if va > self.best[k][0]:
                self.best[k] = (va, ta, self.epoch)

    # -- driver --------------------------------------------------------------------------
    def train(self) -> None:
        cfg = self.cfg
        bar = None
        total = cfg.stage1.epochs + cfg.stage2.epochs
        done = self.epoch if self.stage == 1 else cfg.stage1.epochs + self.epoch
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=done, desc=f"seed {','.join(map(str, self.seeds))}", unit="ep",
                       dynamic_ncols=True)
        try:
            if self.stage == 1:
                val_batches = self._val_batches() if self.sizes["val"] >= 2 else []
                if not val_batches and cfg.stage1.select == "best_val_loss":
                    raise ValueError("stage1.select=best_val_loss needs at least 2 validation images; "
                                     "use select=last or a larger --limit-val")
                while self.epoch < cfg.stage1.epochs and not all(self.failed):
                    self.run_stage1_epoch(val_batches)
                    self.epoch += 1
                    if bar:
                        layers = self.history[0][-1]["layers"]
                        bar.set_postfix_str(
                            "loss " + " ".join(f"{r['loss']:.2f}" for r in layers)
                            + f" | CAR0 {layers[0]['car']:.3f}", refresh=False)
                        bar.update(1)
                    self.save()
                del val_batches  # the validation views (S x 2 x val images) are not needed again
                self.select_encoder()
                self.stage, self.epoch = 2, 0
                self.save()
            while self.epoch < cfg.stage2.epochs and not all(self.failed):
                self.run_stage2_epoch()
                self.epoch += 1
                if bar:
                    last = self.history[0][-1]
                    bar.set_postfix_str(f"probe loss {last['train_loss']:.3f} val {last['val_acc']:.2f}%",
                                        refresh=False)
                    bar.update(1)
                self.save()
        finally:
            if bar:
                bar.close()

    def results(self, error: str | None = None, tb: str | None = None) -> list[dict[str, Any]]:
        out = []
        env = environment(self.rt.device if self.rt else None)
        for k, seed in enumerate(self.seeds):
            err = error or self.failed[k]
            done = err is None and self.cfg.stage2.epochs > 0
            if err is None and not done:
                err = "stage 2 has 0 epochs: no probe was trained, so there is no accuracy to report"
            res = {
                "status": "done" if done else "failed",
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
                "stage1_selected_epoch": (self.best_encoder[k][1] if self.cfg.stage1.select == "best_val_loss"
                                          else self.cfg.stage1.epochs - 1),
                "history": self.history[k],
                "timing": {**self.timing, "ensemble_size": self.S},
                "env": env,
            }
            out.append(_finite_or_none(res))
        return out


def train_seeds(cfg: RunConfig, seeds: Sequence[int], out_dirs: Sequence[str | Path], *,
                checkpoint: str | Path | None = None, resume: bool = False,
                progress: bool = False) -> list[dict[str, Any]]:
    """Train independent seeds side by side; write and return one result per seed.

    Seed k gets exactly the initial weights, split, data order and augmentation draws of
    a solo run with that seed. A training failure (NaN loss, bad data) is returned and
    written as status "failed" with the error; it is not raised. KeyboardInterrupt and
    SystemExit propagate, leaving the last checkpoint for `resume=True`.

    Args:
        cfg: the run configuration (its `seed` is ignored in favour of `seeds`).
        seeds: run seeds, one per ensemble member.
        out_dirs: one output folder per seed, for its result.json.
        checkpoint: the shared checkpoint file (default: out_dirs[0]/checkpoint.pt).
        resume: continue from the checkpoint if it exists.
        progress: show a progress bar.
    """
    if len(seeds) != len(out_dirs) or not seeds:
        raise ValueError("seeds and out_dirs: need the same, non-zero, number of entries")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds: repeated seeds in {list(seeds)}")
    out_dirs = [Path(d) for d in out_dirs]
    ckpt = Path(checkpoint) if checkpoint else out_dirs[0] / CHECKPOINT_NAME
    for d in out_dirs:
        d.mkdir(parents=True, exist_ok=True)
    ens = _Ensemble(cfg, seeds, out_dirs, ckpt, progress)
    t0 = time.perf_counter()
    error = tb = None
    try:
        ens.build()
        if resume:
            ens.load()
        elif ckpt.exists():
            ckpt.unlink()  # a fresh run must not be confused with an old one
        ens.train()
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # recorded, not raised: a sweep goes on with other runs
        error, tb = f"{type(exc).__name__}: {exc}", traceback.format_exc()
    ens.timing["total_s"] = ens.timing.get("total_s", 0.0) + (time.perf_counter() - t0)
    results = ens.results(error, tb)
    for d, res in zip(out_dirs, results):
        atomic_write_json(d / RESULT_NAME, res)
    del ens  # model, data and optimiser state: freed before the heap is trimmed
    release_freed_memory()  # a sweep worker's next run may be smaller; hand the pages back
    return results


def train_run(cfg: RunConfig, out_dir: str | Path, *, resume: bool = False, progress: bool = False) -> dict[str, Any]:
    """Train one run (seed `cfg.seed`), write `out_dir/result.json` and return it."""
    return train_seeds(cfg, [cfg.seed], [out_dir], resume=resume, progress=progress)[0]
