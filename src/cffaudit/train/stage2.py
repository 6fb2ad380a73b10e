"""Stage 2: a linear probe (LayerNorm + Linear) on the frozen final representation.

The reported number is the test accuracy of the probe epoch with the best validation
accuracy (the first such epoch on ties), as in the seed paper. Validation and test
features are the encoder's output on un-augmented images, computed once.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cffaudit.model import CFFViT, EnsembleLayerNorm, EnsembleLinear


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
