"""Diagnostics gathered on the device during an epoch and read once at its end.

Nothing here calls `.item()` inside a step: sums stay on the device as (L, S) tensors
(layers x seeds), and `EpochStats.records()` moves them to the host in one transfer.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch


def block_grad_norms(layer_params: Sequence[Iterable[torch.nn.Parameter]], ensemble: int) -> torch.Tensor:
    """L2 norm of each layer's full gradient vector, per seed: (L, S).

    Parameters carry the seed dimension first, so the norm of seed k is taken over
    the k-th slice of every parameter of the layer (the paper's Eq. 12, per seed).
    """
    norms = []
    for params in layer_params:
        grads = [p.grad.detach().reshape(ensemble, -1) for p in params if p.grad is not None]
        if not grads:
            raise RuntimeError("block_grad_norms: a layer has no gradients; call it after backward()")
        # One concatenation and one norm per layer: two kernel launches, where a
        # square-and-sum per parameter took ~36 per block (every step, on a GPU).
        norms.append(torch.linalg.vector_norm(torch.cat(grads, dim=1), dim=1).float())
    return torch.stack(norms)


class EpochStats:
    """Running sums of per-layer loss, CAR, positive pairs, gradient norms and link gates.

    CAR comes two ways. ``car`` is pooled over the epoch, saturated pairs / positive
    pairs, so batches with more positive pairs weigh more. ``car_batch_mean`` is the mean
    of the per-batch rates, each batch weighing the same, as the seed paper averages CAR
    over minibatches. A batch without positive pairs (its CAR NaN) enters neither. ``gate_mean`` (a
    gated link's mean per-anchor gate, WEINCE's lambda) is the mean over steps, and None
    when no step reported a gate (the standard link).
    """

    def __init__(self, layers: int, ensemble: int, device: torch.device) -> None:
        z = lambda: torch.zeros(layers, ensemble, dtype=torch.float64, device=device)  # noqa: E731
        self.loss_sum, self.saturated, self.pos_pairs = z(), z(), z()
        self.grad_sum, self.grad_last = z(), z()
        self.anchors_without_pos = z()
        self.car_batch_sum, self.car_batches = z(), z()
        self.gate_sum: torch.Tensor | None = None
        self.steps = 0

    def add(
        self,
        loss: torch.Tensor,
        car: torch.Tensor,
        pos_pairs: torch.Tensor,
        anchors_without_pos: torch.Tensor,
        grad_norms: torch.Tensor | None = None,
        gate: torch.Tensor | None = None,
    ) -> None:
        """Add one step; every argument is (L, S) on the device."""
        pos = pos_pairs.double()
        rate = torch.nan_to_num(car.double())  # NaN only where pos == 0: adds nothing below
        self.loss_sum += loss.detach().double()
        self.saturated += rate * pos
        self.pos_pairs += pos
        self.car_batch_sum += rate
        self.car_batches += (pos > 0).double()
        self.anchors_without_pos += anchors_without_pos.double()
        if grad_norms is not None:
            self.grad_sum += grad_norms.double()
            self.grad_last.copy_(grad_norms.double())
        if gate is not None:
            g = gate.detach().double()
            self.gate_sum = g if self.gate_sum is None else self.gate_sum + g
        self.steps += 1

    def records(self, val_loss: torch.Tensor | None = None) -> list[list[dict]]:
        """Per seed, a list of per-layer dicts (one host transfer for everything)."""
        n = max(self.steps, 1)
        parts = [self.loss_sum / n, self.saturated, self.pos_pairs, self.grad_sum / n, self.grad_last,
                 self.anchors_without_pos, self.car_batch_sum, self.car_batches]
        if val_loss is not None:
            parts.append(val_loss.double())
        if self.gate_sum is not None:
            parts.append(self.gate_sum / n)
        host = torch.stack(parts).cpu().tolist()  # (K, L, S)
        layers, ensemble = self.loss_sum.shape
        out: list[list[dict]] = []
        for k in range(ensemble):
            recs = []
            for l in range(layers):
                pos, batches = host[2][l][k], host[7][l][k]
                rec = {
                    "layer": l,
                    "loss": host[0][l][k],
                    "car": host[1][l][k] / pos if pos > 0 else math.nan,
                    "car_batch_mean": host[6][l][k] / batches if batches > 0 else math.nan,
                    "pos_pairs": int(pos),
                    "grad_norm": host[3][l][k],
                    "grad_norm_last": host[4][l][k],
                    "anchors_without_positives": int(host[5][l][k]),
                }
                if val_loss is not None:
                    rec["val_loss"] = host[8][l][k]
                rec["gate_mean"] = host[-1][l][k] if self.gate_sum is not None else None
                recs.append(rec)
            out.append(recs)
        return out
