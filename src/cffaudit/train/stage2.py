"""Stage 2: a linear probe (LayerNorm + Linear) on the frozen final representation.

The reported number is the test accuracy of the probe epoch with the best validation
accuracy (the first such epoch on ties), as in the seed paper. Validation and test
features are the encoder's output on un-augmented images, computed once (`ProbeFeatures`);
`probe_epoch` trains the probes of an ensemble's S seeds side by side for one epoch.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cffaudit.model import CFFViT, EnsembleLayerNorm, EnsembleLinear
from cffaudit.train.stage1 import gather


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
def accuracy(probe: LinearProbe, feats: torch.Tensor, labels: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Per-seed accuracy in percent, (S,), on the device. labels: (S, n)."""
    correct = torch.zeros(feats.shape[0], device=feats.device)
    for start in range(0, feats.shape[1], batch_size):
        logits = probe(feats[:, start:start + batch_size])
        correct += (logits.argmax(-1) == labels[:, start:start + batch_size]).sum(dim=1)
    return 100.0 * correct / feats.shape[1]


# -- one epoch of an ensemble -------------------------------------------------------------


class ProbeFeatures:
    """The frozen encoder's features of every split of stacked splits (S, n, ...).

    Args:
        model: the encoder, after stage 1.
        augment: the augmentation; `augment.eval` gives the un-augmented view.
        data: stacked splits (`train_x`, `val_x`, `test_x`, ...).
        batch_size: images per forward.
        autocast: context factory for the forward, or None.
        train_gens: per seed, the generator of the training images' views, or None to
            train the probe on un-augmented images (stage2.probe_augment = "none").
    """

    def __init__(self, model: CFFViT, augment: Any, data: Any, batch_size: int,
                 autocast: Callable[[], contextlib.AbstractContextManager] | None,
                 train_gens: Sequence[torch.Generator] | None) -> None:
        self.model, self.augment, self.data, self.batch_size = model, augment, data, batch_size
        self.autocast, self.train_gens = autocast, train_gens
        self._fixed: dict[str, torch.Tensor] = {}

    def fixed(self, split: str) -> torch.Tensor:
        """(S, n, E) features of the un-augmented images of `split`, computed once."""
        if split not in self._fixed:
            x = getattr(self.data, f"{split}_x")
            images = lambda a, b: torch.stack([self.augment.eval(x[k, a:b]) for k in range(x.shape[0])])  # noqa: E731
            self._fixed[split] = encode(self.model, images, x.shape[1], self.batch_size, self.autocast)
        return self._fixed[split]

    def train(self) -> torch.Tensor:
        """(S, n, E) features of the training images for one probe epoch: a fresh view of
        every image, or the fixed un-augmented features."""
        if self.train_gens is None:
            return self.fixed("train")
        x, gens = self.data.train_x, self.train_gens
        views = lambda a, b: torch.stack([self.augment(x[k, a:b], gens[k]) for k in range(x.shape[0])])  # noqa: E731
        return encode(self.model, views, x.shape[1], self.batch_size, self.autocast)


def probe_epoch(probe: LinearProbe, optimizer: torch.optim.Optimizer, features: ProbeFeatures, data: Any, *,
                order_gens: Sequence[torch.Generator], batch_size: int) -> list[tuple[float, float, float]]:
    """Train the probes one epoch in a per-seed order drawn from `order_gens`, then
    evaluate them.

    Returns:
        per seed, (mean training loss, validation accuracy %, test accuracy %).
    """
    feats = features.train()  # (S, n, E)
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
    test_acc = accuracy(probe, features.fixed("test"), data.test_y)
    host = torch.stack([loss_sum / steps, val_acc.double(), test_acc.double()]).cpu().tolist()  # one sync
    return list(zip(*host))
