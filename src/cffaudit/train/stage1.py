"""Stage 1: the blocks trained by the per-layer supervised contrastive losses.

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

That is ``stage1.locality = "local"``. To test whether locality is what amplifies the
clamp effect, two other localities keep the same losses but let gradients cross blocks
(one backward, so only the fused order): ``global`` sums every layer's loss without the
detach, ``last`` trains end to end on the last layer's loss alone (the other layers'
losses and CAR are still evaluated, on detached representations, for the records). One
AdamW over all parameters stays right: it is element-wise, and each parameter's gradient
is whatever the one backward accumulated into it.

`stage1_epoch` runs one epoch of an ensemble (S seeds, each with its own data order and
augmentation generators); `BestEncoder` keeps each seed's best epoch for
``stage1.select = "best_val_loss"``.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from cffaudit.diagnostics import EpochStats, block_grad_norms
from cffaudit.config import LOCALITIES, RunConfig
from cffaudit.loss import Link, MarginVariant, StandardLink, get_link, get_margin_variant, supcon_loss
from cffaudit.model import CFFViT, layer_representation

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class LossSpec:
    """What every layer's loss needs besides the representations, and which of the
    losses train which blocks (`locality`, one of ``LOCALITIES``; see the module docstring)."""

    margins: tuple[float, ...]
    variant: MarginVariant
    stability: str
    temperature: float
    link: Link = StandardLink()
    locality: str = "local"

    def __post_init__(self) -> None:
        if self.locality not in LOCALITIES:
            raise ValueError(f"locality: {self.locality!r} is not one of {list(LOCALITIES)}")

    @classmethod
    def from_config(cls, cfg: RunConfig) -> "LossSpec":
        return cls(tuple(cfg.margins()), get_margin_variant(cfg.loss.margin), cfg.loss.stability,
                   cfg.loss.temperature, get_link(cfg.loss.link, cfg.loss.weince), cfg.stage1.locality)


def layer_losses(
    model: CFFViT, views: torch.Tensor, labels: torch.Tensor, spec: LossSpec, *,
    backward_each: bool = False, autocast: contextlib.AbstractContextManager | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Forward through every layer and evaluate each layer's loss.

    Each block's input is detached under ``spec.locality == "local"``; otherwise the
    forward is one graph and only the trained losses (all for "global", the last for
    "last") enter the total.

    Args:
        views: (S, N, C, H, W) images, both views of the batch stacked along N.
        labels: (S, N) classes.
        backward_each: backward each layer's loss right away (the per-block order;
            local only).

    Returns:
        total (sum over the trained layers and seeds; detached if `backward_each`), and
        per-layer (L, S) tensors of loss, CAR, positive pairs, anchors without positives
        and the link's mean gate (None for an ungated link).
    """
    if backward_each and spec.locality != "local":
        raise ValueError(f"backward_each (the per_block order) needs locality 'local', got {spec.locality!r}: "
                         "its gradients cross blocks, so use the fused order")
    autocast = autocast or contextlib.nullcontext()
    losses, cars, pos, anon, gates = [], [], [], [], []
    total = views.new_zeros((), dtype=torch.float32)
    with autocast:
        h = model.embed(views)
    last = len(model.blocks) - 1
    for l, block in enumerate(model.blocks):
        with autocast:
            h = block(h)  # (S, N, T, E)
            z = layer_representation(h)  # (S, N, E)
        trained = spec.locality != "last" or l == last
        if not trained:
            z = z.detach()  # evaluated for the records only: no graph, no gradient
        out = supcon_loss(z, labels, margin=spec.margins[l], variant=spec.variant,
                          stability=spec.stability, temperature=spec.temperature, link=spec.link)
        layer_total = out.loss.sum()  # seeds are independent: d(sum)/d(seed k) = d(loss_k)
        if backward_each:
            layer_total.backward()
            total = total + layer_total.detach()
        elif trained:
            total = total + layer_total
        if spec.locality == "local":
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
        order: "per_block" or "fused" (per_block only for ``spec.locality == "local"``).
        autocast: context for the forward (bf16 on GPU), or None.
        compile: compile the fused forward with `torch.compile`.
    """

    def __init__(self, model: CFFViT, optimizer: torch.optim.Optimizer, spec: LossSpec, *,
                 order: str = "per_block", autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
                 compile: bool = False) -> None:
        if order not in ("per_block", "fused"):
            raise ValueError(f"order: {order!r} is not one of ['per_block', 'fused']")
        if order == "per_block" and spec.locality != "local":
            raise ValueError(f"order 'per_block' backpropagates each layer's loss on its own and needs locality "
                             f"'local', got {spec.locality!r}; use order 'fused'")
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


# -- one epoch of an ensemble -------------------------------------------------------------


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Batch bounds; a trailing batch of fewer than 2 images (no contrastive pair) is dropped."""
    bounds = [(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    return [b for b in bounds if b[1] - b[0] >= 2]


def gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (S, N, ...) and idx (S, b) -> (S, b, ...), each seed its own indices."""
    return torch.stack([x[k].index_select(0, idx[k]) for k in range(x.shape[0])])


def two_views(augment: Augment, x: torch.Tensor, gens: Sequence[torch.Generator]) -> torch.Tensor:
    """(S, b, C, H, W) uint8 -> (S, 2b, 3, H', W') float: two augmented views per image,
    seed k's drawn from `gens[k]`."""
    per_seed = []
    for k in range(x.shape[0]):
        v1 = augment(x[k], gens[k])
        v2 = augment(x[k], gens[k])
        per_seed.append(torch.cat([v1, v2]))
    return torch.stack(per_seed)


def validation_batches(augment: Augment, x: torch.Tensor, y: torch.Tensor, gens: Sequence[torch.Generator],
                       batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Views and labels of the validation images (S, n, ...), drawn once: the same views
    every epoch, so that epochs compare."""
    out = []
    for a, b in batch_bounds(x.shape[1], batch_size):
        labels = y[:, a:b]
        out.append((two_views(augment, x[:, a:b], gens), torch.cat([labels, labels], dim=1)))
    return out


def stage1_epoch(step: Stage1Step, augment: Augment, train_x: torch.Tensor, train_y: torch.Tensor, *,
                 order_gens: Sequence[torch.Generator], augment_gens: Sequence[torch.Generator], batch_size: int,
                 val_batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[list[list[dict]], int]:
    """Train every block for one epoch over `train_x` (S, n, ...), in a per-seed order
    drawn from `order_gens`; then evaluate the validation loss if there are batches.

    Returns:
        per seed, one record per layer (`EpochStats.records`), and the number of steps.
    """
    model = step.model
    n = train_x.shape[1]
    model.train()
    stats = EpochStats(model.depth, model.ensemble, train_x.device)
    perms = torch.stack([torch.randperm(n, generator=g) for g in order_gens]).to(train_x.device)  # (S, n)
    for a, b in batch_bounds(n, batch_size):
        idx = perms[:, a:b]
        x = gather(train_x, idx)
        y = gather(train_y, idx)
        views = two_views(augment, x, augment_gens)  # (S, 2b, 3, H, W)
        step(views, torch.cat([y, y], dim=1), stats)
    model.eval()
    val = validation_losses(model, val_batches, step.spec, step.autocast) if val_batches else None
    return stats.records(val), stats.steps


def non_finite_loss(layers: Sequence[dict], epoch: int) -> str | None:
    """The failure of a seed whose loss in these layer records is NaN or infinite, or None."""
    for rec in layers:
        if not math.isfinite(rec["loss"]):
            return (f"non-finite loss ({rec['loss']}) at layer {rec['layer']} in stage-1 "
                    f"epoch {epoch}; lower --lr1 or check the data")
    return None


class BestEncoder:
    """Per seed, the stage-1 epoch with the lowest last-layer validation loss and the
    encoder weights of that epoch (each seed's slice of every parameter).

    Attributes:
        best: per seed, (validation loss, epoch); epoch -1 until a finite loss is seen.
        state: the kept weights, a state dict of the whole ensemble, or None.
    """

    def __init__(self, seeds: int) -> None:
        self.best: list[tuple[float, int]] = [(math.inf, -1)] * seeds
        self.state: dict[str, torch.Tensor] | None = None

    def track(self, model: CFFViT, k: int, epoch: int, val_loss: float | None) -> None:
        """Keep seed k's weights if `val_loss` is its lowest so far."""
        if val_loss is None or not math.isfinite(val_loss) or val_loss >= self.best[k][0]:
            return
        self.best[k] = (val_loss, epoch)
        state = model.state_dict()
        if self.state is None:
            self.state = {n: t.detach().clone() for n, t in state.items()}
        else:
            for n, t in state.items():
                self.state[n][k].copy_(t[k])

    @torch.no_grad()
    def restore(self, model: CFFViT) -> None:
        """Load each seed's kept weights into `model` (seeds without any stay as they are)."""
        if self.state is None:
            return
        state = model.state_dict()
        for k, (_, epoch) in enumerate(self.best):
            if epoch >= 0:
                for n, t in state.items():
                    t[k].copy_(self.state[n][k])
