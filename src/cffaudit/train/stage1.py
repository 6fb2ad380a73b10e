"""Stage 1: every block trained by its own supervised contrastive loss.

The original CFF code runs, per batch and per block in turn: forward on the detached
input, loss, zero_grad, backward, step of that block's AdamW. Because each block's
input is detached (so a loss reaches only its own block) and AdamW is element-wise,
the same updates come from either order offered here:

* ``per_block``: backward each layer's loss as soon as it is computed, which frees
  that block's activations early (fastest on a CPU, where memory traffic dominates);
* ``fused``: one backward of the summed losses (fewer, larger launches on a GPU, and
  a single graph for `torch.compile`).

Both end in one optimiser step over all parameters; `tests/train` proves equality with
a literal per-block loop with one optimiser per block.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from cffaudit.diagnostics import EpochStats, block_grad_norms
from cffaudit.config import RunConfig
from cffaudit.loss import Link, MarginVariant, StandardLink, get_link, get_margin_variant, supcon_loss
from cffaudit.model import CFFViT, layer_representation


@dataclass(frozen=True)
class LossSpec:
    """What every layer's loss needs besides the representations."""

    margins: tuple[float, ...]
    variant: MarginVariant
    stability: str
    temperature: float
    link: Link = StandardLink()

    @classmethod
    def from_config(cls, cfg: RunConfig) -> "LossSpec":
        return cls(tuple(cfg.margins()), get_margin_variant(cfg.loss.margin), cfg.loss.stability,
                   cfg.loss.temperature, get_link(cfg.loss.link, cfg.loss.weince))


def layer_losses(
    model: CFFViT, views: torch.Tensor, labels: torch.Tensor, spec: LossSpec, *,
    backward_each: bool = False, autocast: contextlib.AbstractContextManager | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Forward through every layer on detached inputs and evaluate each layer's loss.

    Args:
        views: (S, N, C, H, W) images, both views of the batch stacked along N.
        labels: (S, N) classes.
        backward_each: backward each layer's loss right away (the per-block order).

    Returns:
        total (sum over layers and seeds; detached if `backward_each`), and per-layer
        (L, S) tensors of loss, CAR, positive pairs, anchors without positives and the
        link's mean gate (None for an ungated link).
    """
    autocast = autocast or contextlib.nullcontext()
    losses, cars, pos, anon, gates = [], [], [], [], []
    total = views.new_zeros((), dtype=torch.float32)
    with autocast:
        h = model.embed(views)
    for l, block in enumerate(model.blocks):
        with autocast:
            h = block(h)  # (S, N, T, E)
            z = layer_representation(h)  # (S, N, E)
        out = supcon_loss(z, labels, margin=spec.margins[l], variant=spec.variant,
                          stability=spec.stability, temperature=spec.temperature, link=spec.link)
        layer_total = out.loss.sum()  # seeds are independent: d(sum)/d(seed k) = d(loss_k)
        if backward_each:
            layer_total.backward()
            total = total + layer_total.detach()
        else:
            total = total + layer_total
        h = h.detach()  # no gradient crosses layers
        losses.append(out.loss.detach())
        cars.append(out.car)
        pos.append(out.pos_pairs)
        anon.append(out.anchors_without_positives)
        if out.gate is not None:
            gates.append(out.gate)
    gate = torch.stack(gates) if gates else None
    return total, torch.stack(losses), torch.stack(cars), torch.stack(pos), torch.stack(anon), gate


class Stage1Step:
    """One optimisation step of stage 1, in the chosen order, with diagnostics.

    Args:
        model: the ensemble ViT.
        optimizer: one optimiser over all parameters (element-wise, so it equals
            one optimiser per block).
        spec: the loss of every layer.
        order: "per_block" or "fused".
        autocast: context for the forward (bf16 on GPU), or None.
        compile: compile the fused forward with `torch.compile`.
    """

    def __init__(self, model: CFFViT, optimizer: torch.optim.Optimizer, spec: LossSpec, *,
                 order: str = "per_block", autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
                 compile: bool = False) -> None:
        if order not in ("per_block", "fused"):
            raise ValueError(f"order: {order!r} is not one of ['per_block', 'fused']")
        self.model, self.optimizer, self.spec, self.order = model, optimizer, spec, order
        self.autocast = autocast
        self.layer_params = [model.layer_parameters(l) for l in range(model.depth)]
        forward = self._forward
        if compile:
            # Dynamo guards each graph on the margins, temperature, margin variant and
            # shapes, and keeps at most `recompile_limit` (8) graphs per function. A
            # process that trains run after run (a sweep worker) would pass that limit
            # after a few configurations (two graphs each: full and short last batch)
            # and then run eagerly, saying so only in a log line. So every step object
            # starts from an empty cache; Inductor's on-disk cache makes compiling a
            # graph seen before cheap.
            torch.compiler.reset()
            forward = torch.compile(forward, dynamic=False)
        self.forward = forward

    def _forward(self, views: torch.Tensor, labels: torch.Tensor):
        return layer_losses(self.model, views, labels, self.spec, backward_each=False,
                            autocast=self.autocast() if self.autocast else None)

    def __call__(self, views: torch.Tensor, labels: torch.Tensor, stats: EpochStats | None = None) -> torch.Tensor:
        """Run one step; returns the summed loss (a device tensor, not synchronised)."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.order == "per_block":
            total, loss, car, pos, anon, gate = layer_losses(
                self.model, views, labels, self.spec, backward_each=True,
                autocast=self.autocast() if self.autocast else None)
        else:
            total, loss, car, pos, anon, gate = self.forward(views, labels)
            total.backward()
        grad_norms = block_grad_norms(self.layer_params, self.model.ensemble)
        self.optimizer.step()
        if stats is not None:
            stats.add(loss, car, pos, anon, grad_norms, gate=gate)
        return total.detach()


@torch.no_grad()
def validation_losses(model: CFFViT, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], spec: LossSpec,
                      autocast: Callable[[], contextlib.AbstractContextManager] | None = None) -> torch.Tensor:
    """Per-layer loss over validation batches, weighted by batch size, (L, S), on the device."""
    acc, n = None, 0
    for views, labels in batches:
        _, loss, *_ = layer_losses(model, views, labels, spec, autocast=autocast() if autocast else None)
        weighted = loss.double() * views.shape[1]  # a short last batch weighs what it holds
        acc = weighted if acc is None else acc + weighted
        n += views.shape[1]
    if acc is None:
        raise ValueError("validation_losses: no validation batches")
    return acc / n


def make_optimizer(params, *, lr: float, betas: tuple[float, float], weight_decay: float,
                   device: torch.device) -> torch.optim.AdamW:
    """AdamW as in the protocol; the fused CUDA kernel on GPU (same math, one launch)."""
    kwargs = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay, **kwargs)
