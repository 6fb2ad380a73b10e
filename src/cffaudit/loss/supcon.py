"""Layer-local supervised contrastive loss; the margin variants are in `variants.py`, the links in `links.py`.

Notation (seed paper, Section 4): for the 2B views of a batch, z_i is the L2-normalised
token mean of view i at one layer, s_ij = z_i . z_j, positives P(i) = {j != i : y_j = y_i}.
A margin variant may modify the similarities before the logits (clamp) or the
log-probabilities after them (subtract); the link maps the modified similarities to
logits (standard: s' / tau; weince: a gated blend with -log(1 - s')); everything else is
shared:

    l_ij    = link(s'_ij)                (standard: s'_ij / tau)
    l_ij   <- l_ij - max_k l_ik          (max detached or not: the stability mode)
    log p_ij = l_ij - log sum_{k != i} exp(l_ik)
    L       = mean over anchors with positives of  -mean_{j in P(i)} log p'_ij

All tensors may carry leading batch dimensions (the seed ensemble), so one call
evaluates the loss of every seed independently.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cffaudit.loss.links import Link, get_link
from cffaudit.loss.variants import STABILITIES, MarginVariant, get_margin_variant

# -- the loss --------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerLoss:
    """One layer's loss and diagnostics; each field has the leading batch shape of z.

    Attributes:
        loss: mean over anchors that have positives (0 where no anchor has any).
        car: clamp activation rate, fraction of positive pairs with s + m >= 1. It is
            computed for every margin variant, since it is the diagnostic a user checks
            before choosing one. NaN where there are no positive pairs.
        pos_pairs: number of (ordered) positive pairs.
        anchors_without_positives: anchors masked out of the mean.
        gate: mean over anchors of a gated link's per-anchor gate (WEINCE's lambda;
            0 for an anchor with too few negatives to fit), None for an ungated link.
    """

    loss: torch.Tensor
    car: torch.Tensor
    pos_pairs: torch.Tensor
    anchors_without_positives: torch.Tensor
    gate: torch.Tensor | None = None


def supcon_loss(
    z: torch.Tensor,
    labels: torch.Tensor,
    *,
    margin: float,
    variant: MarginVariant | str = "clamp",
    stability: str = "detach",
    temperature: float = 0.15,
    link: Link | str = "standard",
) -> LayerLoss:
    """Supervised contrastive loss of one layer, vectorised over anchors and seeds.

    Args:
        z: (..., N, D) L2-normalised representations of the N = 2B views.
        labels: (..., N) class of each view (broadcastable to z's leading shape).
        margin: this layer's margin m_l.
        variant: a `MarginVariant` or its registry name.
        stability: "detach" (row max detached) or "direct".
        temperature: tau.
        link: a `Link` or its registry name ("weince" with its default hyperparameters).

    Returns:
        A `LayerLoss` whose tensors have z's leading shape (scalars for a 2-D z).
    """
    if isinstance(variant, str):
        variant = get_margin_variant(variant)
    if isinstance(link, str):
        link = get_link(link)
    if stability not in STABILITIES:
        raise ValueError(f"stability: {stability!r} is not one of {list(STABILITIES)}")
    n = z.shape[-2]
    # The similarity matrix and everything after it stay in float32 even under autocast:
    # a bf16 similarity has ~3 significant digits, too coarse for s + m >= 1 decisions.
    zf = z if z.dtype == torch.float64 else z.float()
    sim = zf @ zf.transpose(-1, -2)  # (..., N, N)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    pos = (labels.unsqueeze(-1) == labels.unsqueeze(-2)) & ~eye  # (..., N, N)

    sim_m = variant.similarities(sim, pos, margin)
    neg = ~(pos | eye)
    logits, gate = link.logits(sim_m, neg, temperature)
    row_max = logits.amax(dim=-1, keepdim=True)
    if stability == "detach":
        row_max = row_max.detach()
    logits = logits - row_max
    # Self-pairs leave the denominator; -inf makes exp() exactly zero there.
    logits = logits.masked_fill(eye, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    log_prob = variant.log_probs(log_prob, pos, margin, temperature)

    n_pos = pos.sum(dim=-1)  # (..., N)
    has_pos = n_pos > 0
    # where() instead of multiplying by the mask: the diagonal holds -inf, and 0 * -inf is NaN.
    pos_sum = torch.where(pos, log_prob, 0.0).sum(dim=-1)
    mean_log_prob_pos = pos_sum / n_pos.clamp(min=1)
    # A link's own per-anchor term (WEINCE's optional top-M terms), added to -mean log p.
    extra = link.extra_loss(sim_m, pos, neg, temperature)  # (..., N) or None
    if extra is not None:
        mean_log_prob_pos = mean_log_prob_pos - extra
    n_anchors = has_pos.sum(dim=-1)
    loss = -torch.where(has_pos, mean_log_prob_pos, 0.0).sum(dim=-1)
    loss = loss / n_anchors.clamp(min=1)

    with torch.no_grad():
        pos_pairs = n_pos.sum(dim=-1)
        saturated = (pos & (sim.detach() + margin >= 1.0)).sum(dim=(-1, -2))
        car = saturated.to(sim.dtype) / pos_pairs.to(sim.dtype)  # NaN when no positive pairs
    return LayerLoss(
        loss=loss,
        car=car,
        pos_pairs=pos_pairs,
        anchors_without_positives=(~has_pos).sum(dim=-1),
        gate=None if gate is None else gate.mean(dim=-1),
    )
