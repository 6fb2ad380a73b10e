"""Stage 2: a linear probe (LayerNorm + Linear) on the frozen final representation.

The reported number is the test accuracy of the probe epoch with the best validation
accuracy (the first such epoch on ties), as in the seed paper. Validation and test
features are the encoder's output on un-augmented images, computed once (`ProbeFeatures`);
`probe_epoch` trains the probes of an ensemble's S seeds side by side for one epoch, and
`ProbeRun` keeps one such probe per seed with its streams, its best epoch and that
epoch's test predictions.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cffaudit.model import CFFViT, EnsembleLayerNorm, EnsembleLinear
from cffaudit.train.seeds import generator
from cffaudit.train.stage1 import gather, make_optimizer


class LinearProbe(nn.Module):
    """Per-seed LayerNorm + Linear: (S, B, E) -> (S, B, classes)."""

    def __init__(self, ensemble: int, dim: int, classes: int) -> None:
        super().__init__()
        self.norm = EnsembleLayerNorm(ensemble, dim)
        self.head = EnsembleLinear(ensemble, dim, classes)

    def init_weights(self, generators) -> None:
        for k, g in enumerate(generators):
            self.norm.init_slice(k, g)
            self.head.init_slice(k, g)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(feats))


@torch.no_grad()
def encode(model: CFFViT, images: Callable[[int, int], torch.Tensor], n: int, batch_size: int,
           autocast: Callable[[], contextlib.AbstractContextManager] | None = None) -> torch.Tensor:
    """Frozen features (S, n, E) in float32; `images(start, stop)` gives (S, b, C, H, W)."""
    model.eval()
    chunks = []
    for start in range(0, n, batch_size):
        x = images(start, min(start + batch_size, n))
        with autocast() if autocast else contextlib.nullcontext():
            chunks.append(model.represent(x).float())
    return torch.cat(chunks, dim=1)


def probe_step(probe: LinearProbe, optimizer: torch.optim.Optimizer, feats: torch.Tensor,
               labels: torch.Tensor) -> torch.Tensor:
    """One probe step on (S, B, E) features; returns per-seed loss (S,), detached."""
    optimizer.zero_grad(set_to_none=True)
    logits = probe(feats)  # (S, B, classes)
    loss = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none").mean(dim=1)  # (S,)
    loss.sum().backward()
    optimizer.step()
    return loss.detach()


@torch.no_grad()
def predict(probe: LinearProbe, feats: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Predicted classes (S, n) of (S, n, E) features, on the device."""
    return torch.cat([probe(feats[:, a:a + batch_size]).argmax(-1) for a in range(0, feats.shape[1], batch_size)],
                     dim=1)


def accuracy_of(predictions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-seed accuracy in percent, (S,) float64, of predictions and labels (S, n).

    Integer counts divided in float64: 100 * correct / n is then the same number Python
    computes from the counts (61.04, where float32 would store 61.04000091552734).
    """
    correct = (predictions == labels).sum(dim=1)  # (S,) int64
    return 100.0 * correct.to(torch.float64) / predictions.shape[1]


def accuracy(probe: LinearProbe, feats: torch.Tensor, labels: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Per-seed accuracy in percent, (S,), on the device. labels: (S, n)."""
    return accuracy_of(predict(probe, feats, batch_size), labels)


# -- one epoch of an ensemble -------------------------------------------------------------


class ProbeFeatures:
    """The frozen encoder's features of every split of stacked splits (S, n, ...).

    Args:
        model: the encoder, after stage 1.
        augment: the augmentation; `augment.eval` gives the un-augmented view.
        data: stacked splits (`train_x`, `val_x`, `test_x`, ...).
        batch_size: images per forward.
        autocast: context factory for the forward, or None.
        views: train the probe on a fresh augmented view of every image per epoch
            (stage2.probe_augment = "view"), or on the fixed un-augmented features.
    """

    def __init__(self, model: CFFViT, augment: Any, data: Any, batch_size: int,
                 autocast: Callable[[], contextlib.AbstractContextManager] | None, views: bool) -> None:
        self.model, self.augment, self.data, self.batch_size = model, augment, data, batch_size
        self.autocast, self.views = autocast, views
        self._fixed: dict[str, torch.Tensor] = {}

    def fixed(self, split: str) -> torch.Tensor:
        """(S, n, E) features of the un-augmented images of `split`, computed once."""
        if split not in self._fixed:
            x = getattr(self.data, f"{split}_x")
            images = lambda a, b: torch.stack([self.augment.eval(x[k, a:b]) for k in range(x.shape[0])])  # noqa: E731
            self._fixed[split] = encode(self.model, images, x.shape[1], self.batch_size, self.autocast)
        return self._fixed[split]

    def train(self, gens: Sequence[torch.Generator]) -> torch.Tensor:
        """(S, n, E) features of the training images for one probe epoch: a fresh view of
        every image drawn from `gens` (one per seed), or the fixed un-augmented features."""
        if not self.views:
            return self.fixed("train")
        x = self.data.train_x
        views = lambda a, b: torch.stack([self.augment(x[k, a:b], gens[k]) for k in range(x.shape[0])])  # noqa: E731
        return encode(self.model, views, x.shape[1], self.batch_size, self.autocast)


def probe_epoch(probe: LinearProbe, optimizer: torch.optim.Optimizer, features: ProbeFeatures, data: Any, *,
                view_gens: Sequence[torch.Generator], order_gens: Sequence[torch.Generator],
                batch_size: int) -> tuple[list[tuple[float, float, float]], torch.Tensor]:
    """Train the probes one epoch on views drawn from `view_gens` (if the features are
    views) in a per-seed order drawn from `order_gens`, then evaluate them.

    Returns:
        per seed, (mean training loss, validation accuracy %, test accuracy %); and the
        test predictions (S, n_test), on the device.
    """
    feats = features.train(view_gens)  # (S, n, E)
    S, n = feats.shape[:2]
    perms = torch.stack([torch.randperm(n, generator=g) for g in order_gens]).to(feats.device)
    probe.train()
    loss_sum = torch.zeros(S, device=feats.device, dtype=torch.float64)
    steps = 0
    for a in range(0, n, batch_size):
        idx = perms[:, a:min(a + batch_size, n)]
        loss_sum += probe_step(probe, optimizer, gather(feats, idx), gather(data.train_y, idx))
        steps += 1
    probe.eval()
    val_acc = accuracy(probe, features.fixed("val"), data.val_y)
    test_pred = predict(probe, features.fixed("test"))
    test_acc = accuracy_of(test_pred, data.test_y)
    host = torch.stack([loss_sum / steps, val_acc, test_acc]).cpu().tolist()  # one sync; all float64
    return list(zip(*host)), test_pred


class ProbeRun:
    """One probe per seed of an ensemble, with its own streams: its weights, optimiser,
    view and order generators, and per seed the best validation epoch so far (the first
    on ties) with that epoch's test predictions (what `predictions.npz` holds).

    Args:
        streams: per seed, {"probe", "probe_augment", "probe_order"} -> seed.
        dim, classes: the probe's input width and classes.
        lr, weight_decay: its AdamW settings.
        device: where it trains.
    """

    def __init__(self, streams: Sequence[Mapping[str, int]], dim: int, classes: int, *, lr: float,
                 weight_decay: float, device: torch.device) -> None:
        S = len(streams)
        self.probe = LinearProbe(S, dim, classes)
        self.probe.init_weights([generator(s["probe"]) for s in streams])
        self.probe.to(device)
        self.opt = make_optimizer(self.probe.parameters(), lr=lr, betas=(0.9, 0.999), weight_decay=weight_decay,
                                  device=device)
        self.gen_view = [generator(s["probe_augment"], device) for s in streams]
        self.gen_order = [generator(s["probe_order"]) for s in streams]
        self.best: list[tuple[float, float, int]] = [(-1.0, math.nan, -1)] * S  # (val_acc, test_acc, epoch)
        # compact: uint8 up to 256 classes
        self.dtype = torch.uint8 if classes <= 256 else torch.int16
        self.best_predictions: list[torch.Tensor | None] = [None] * S  # per seed, (n_test,) on the CPU

    def epoch(self, features: ProbeFeatures, data: Any, epoch: int,
              batch_size: int) -> list[tuple[float, float, float]]:
        """Train one epoch, evaluate, and keep each seed's best epoch; returns per seed
        (mean training loss, validation accuracy %, test accuracy %)."""
        per_seed, test_pred = probe_epoch(self.probe, self.opt, features, data, view_gens=self.gen_view,
                                          order_gens=self.gen_order, batch_size=batch_size)
        for k, (_, val_acc, test_acc) in enumerate(per_seed):
            if val_acc > self.best[k][0]:
                self.best[k] = (val_acc, test_acc, epoch)
                self.best_predictions[k] = test_pred[k].to("cpu", self.dtype)
        return per_seed

    def state_dict(self) -> dict[str, Any]:
        return {"probe": self.probe.state_dict(), "opt": self.opt.state_dict(),
                "gen_view": [g.get_state() for g in self.gen_view], "gen_order": [g.get_state() for g in self.gen_order],
                "best": self.best, "best_predictions": self.best_predictions}

    def load_state_dict(self, st: Mapping[str, Any]) -> None:
        self.probe.load_state_dict(st["probe"])
        self.opt.load_state_dict(st["opt"])
        for name in ("gen_view", "gen_order"):
            for g, state in zip(getattr(self, name), st[name]):
                g.set_state(state.cpu())  # generator states are CPU byte tensors, CUDA generators too
        self.best = [tuple(b) for b in st["best"]]
        self.best_predictions = [None if p is None else p.cpu() for p in st["best_predictions"]]
