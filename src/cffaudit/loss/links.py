"""Link functions: how a layer's similarities become softmax logits. One class each, one registry.

A margin variant (``variants.py``) first modifies the similarities (clamp: s' = min(s + m, 1)
on positive pairs); the link then maps s' to logits; the variant's other hook (subtract)
acts on the log-probabilities after that. So every link combines with every margin
variant, a saturated positive (s' = 1, a constant) has no gradient through its own logit
under any link, and subtract stays a per-anchor constant, gradient-neutral.

* ``standard``: l_ij = s'_ij / tau (the seed paper's loss).
* ``weince``: the bounded-similarity correction of WEINCE (Erol et al., arXiv 2606.00262,
  as its public code github.com/hsme98/weince implements it, policy ``tlambda_select``),
  carried over to the supervised, multi-positive loss (a proposal, not from the paper or
  its code: negatives are the views of another class, one gate per anchor shared by all
  its positives, SupCon's mean over positives). Per anchor i, from its negatives (views of
  another class) only and with every statistic stop-gradient: rho_i = 1 - max_j s_ij; a
  Weibull-vs-Gumbel tail evidence Delta_i from two least-squares fits on its k hardest
  negatives; a batch pivot rho0 (the q-quantile of rho over anchors); the gate
  lambda_i = sigmoid(kappa_rho (log rho0 - log rho_i)) * sigmoid(kappa_A (Delta_i - m)).
  The logits of every candidate a != i (positives included) are
  g_ia = (1 - lambda_i) s'_ia / tau - lambda_i log(1 - min(s'_ia, 1 - eps)); lambda = 0 is
  the standard link. Optional auxiliary terms (off by default) add, per (anchor,
  positive) pair, a cross-entropy over [that positive | the M hardest negatives]
  with Weibit logits -beta log(1 - s~) and with s / tau.

This module imports no torch at import time (the config reads ``LINKS`` and
``WeinceParams``); the torch-backed hooks import it when called. To add a link: write a
subclass of ``Link`` here and add it to ``LINKS``; ``--link``, ``loss.link`` and the
config's choices follow from the registry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, NamedTuple

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class WeinceParams:
    """The WEINCE link's hyperparameters (``loss.weince.*``); defaults are the public code's.

    Attributes:
        q: quantile of rho over the batch's anchors that gives the pivot rho0 (select_q).
        tail_frac, min_tail_points: an anchor with K negatives fits its
            k = min(max(round(tail_frac K), min_tail_points, 10), K) hardest ones.
        kappa_rho, kappa_aic: slopes of the two gate sigmoids.
        aic_margin: the tail evidence Delta at which the second sigmoid is 1/2 (m).
        eps: similarities are capped at 1 - eps inside log(1 - s); shortfalls floored at eps.
        weib_weight, pl_weight: weights of the auxiliary top-M terms (0: off; the
            released CIFAR-100 script uses 0.5 and 0.5).
        weib_top_m, pl_top_m: M, the number of hardest negatives each auxiliary term sees.
        weib_beta: beta of the auxiliary Weibit term. The public code estimates it per
            batch and smooths it with an EMA started at 4.0; that state would have to
            live in checkpoints, so here beta is a fixed value (default: the EMA's start).
    """

    q: float = 0.2
    tail_frac: float = 0.10
    min_tail_points: int = 32
    kappa_rho: float = 10.0
    kappa_aic: float = 1.0
    aic_margin: float = 2.0
    eps: float = 1e-6
    weib_weight: float = 0.0
    weib_top_m: int = 50
    weib_beta: float = 4.0
    pl_weight: float = 0.0
    pl_top_m: int = 50

    def validate(self, prefix: str = "loss.weince.") -> None:
        """Raise ValueError naming the first hyperparameter out of its range."""
        def bad(name: str, rule: str) -> ValueError:
            return ValueError(f"{prefix}{name}: must be {rule}, got {getattr(self, name)!r}")

        if not 0.0 <= self.q <= 1.0:
            raise bad("q", "a quantile in [0, 1]")
        if not 0.0 < self.tail_frac <= 1.0:
            raise bad("tail_frac", "in (0, 1]")
        if not 0.0 < self.eps < 0.5:
            raise bad("eps", "in (0, 0.5)")
        for name in ("min_tail_points", "weib_top_m", "pl_top_m"):
            if getattr(self, name) < 1:
                raise bad(name, ">= 1")
        for name in ("kappa_rho", "kappa_aic", "weib_beta"):
            if not getattr(self, name) > 0:
                raise bad(name, "> 0")
        for name in ("weib_weight", "pl_weight"):
            if not getattr(self, name) >= 0:
                raise bad(name, ">= 0 (0 turns the term off)")
        if not math.isfinite(self.aic_margin):
            raise bad("aic_margin", "a finite number")


class Link:
    """How similarities become logits. Subclasses override ``logits`` (and may add a term).

    Shapes: ``sim`` is (..., A, C), the similarities of A anchors to C candidates after
    the margin variant; ``pos`` and ``neg`` (..., A, C) mark each anchor's positives and
    negatives (itself in neither). In the loss, A = C = N views.
    """

    name: ClassVar[str]

    def logits(self, sim: torch.Tensor, neg: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The logits (..., A, C) and the per-anchor gate (..., A), or None for an ungated link."""
        raise NotImplementedError

    def extra_loss(self, sim: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor,
                   temperature: float) -> torch.Tensor | None:
        """A per-anchor loss (..., A) added to the main term, or None (the default)."""
        return None


class StandardLink(Link):
    """l_ij = s'_ij / tau: the plain softmax of the seed paper."""

    name = "standard"

    def logits(self, sim, neg, temperature):
        return sim / temperature, None


@dataclass(frozen=True)
class WeinceLink(Link):
    """The WEINCE main term (and optional auxiliary terms); see the module docstring."""

    name: ClassVar[str] = "weince"
    params: WeinceParams = field(default_factory=WeinceParams)

    def logits(self, sim, neg, temperature):
        import torch

        with torch.no_grad():
            fit = tail_fit(sim.detach(), neg, self.params)
            lam = gates(fit, batch_pivot(fit.rho, fit.valid, self.params.q), self.params)  # (..., A)
        return blend(sim, lam, temperature, self.params.eps), lam

    def extra_loss(self, sim, pos, neg, temperature):
        p = self.params
        terms = []
        if p.weib_weight > 0:
            weibit = -p.weib_beta * (-sim.clamp(max=1.0 - p.eps)).log1p()
            terms.append(p.weib_weight * top_m_cross_entropy(weibit, sim, pos, neg, p.weib_top_m))
        if p.pl_weight > 0:
            terms.append(p.pl_weight * top_m_cross_entropy(sim / temperature, sim, pos, neg, p.pl_top_m))
        return sum(terms[1:], terms[0]) if terms else None


#: name -> link class, in the order the choices are listed to users.
LINKS: dict[str, type[Link]] = {cls.name: cls for cls in (StandardLink, WeinceLink)}


def get_link(name: str, weince: WeinceParams | None = None) -> Link:
    """Look a link up by name; ``weince`` holds the WEINCE link's hyperparameters."""
    if name not in LINKS:
        raise ValueError(f"loss.link: unknown link {name!r}; choose one of {list(LINKS)}")
    if name == "weince":
        return WeinceLink(weince or WeinceParams())
    return LINKS[name]()


# -- WEINCE's pieces (torch, imported by the hooks above) ------------------------------------


class TailFit(NamedTuple):
    """Per-anchor tail statistics, each (..., A); all computed without gradient.

    rho: shortfall of the hardest negative, max(1 - max_j s_ij, eps).
    beta, sse_w: slope and residual sum of squares of log F on log(shortfall) (Weibull).
    gamma, sse_g: the same for log(-log F) (Gumbel proxy); SSEs include the sign penalties.
    delta: AIC_G - AIC_W = n log(SSE_G / SSE_W) (> 0 favours the Weibull tail).
    n: points in the fits; valid: n >= 2 (a line needs two points). Anchors that are not
    valid (fewer than 3 negatives) get lambda = 0, the standard logits.
    """

    rho: torch.Tensor
    beta: torch.Tensor
    sse_w: torch.Tensor
    gamma: torch.Tensor
    sse_g: torch.Tensor
    delta: torch.Tensor
    n: torch.Tensor
    valid: torch.Tensor


_SSE_FLOOR = 1e-12  # OLS denominators and SSEs (as the public code)
_SIGN_PENALTY = 1e6  # added to a fit's SSE when its slope has the wrong sign


def tail_size(n_neg, p: WeinceParams):
    """k for K negatives: min(max(round(tail_frac K), min_tail_points, 10), K); K an int or a tensor."""
    if isinstance(n_neg, int):
        return min(max(round(p.tail_frac * n_neg), p.min_tail_points, 10), n_neg)
    k = (p.tail_frac * n_neg.double()).round().clamp(min=max(p.min_tail_points, 10))
    return k.minimum(n_neg.double()).long()


def tail_fit(sim: torch.Tensor, neg: torch.Tensor, p: WeinceParams) -> TailFit:
    """Fit each anchor's negative tail (WEINCE.md section 1), vectorised over anchors.

    Args:
        sim: (..., A, C) similarities (detached). neg: (..., A, C) negatives.
    """
    import torch

    n_neg = neg.sum(dim=-1)  # (..., A)
    k = tail_size(n_neg, p)  # (..., A)
    # The largest k over anchors is bounded by the one of C negatives: a shape, not data.
    k_max = max(tail_size(sim.shape[-1], p), 1)
    top = sim.masked_fill(~neg, float("-inf")).topk(k_max, dim=-1).values  # (..., A, k_max), descending
    rank = torch.arange(1, k_max + 1, device=sim.device, dtype=sim.dtype)  # r = 1..k_max
    in_tail = rank <= k.unsqueeze(-1)
    burn = (k // 20).clamp(min=1)  # the hardest b = max(1, floor(k/20)) points leave the fits
    used = in_tail & (rank > burn.unsqueeze(-1))
    # Shortfalls ascending (r = 1 is the hardest negative); 1 outside the tail keeps logs finite.
    shortfall = (1.0 - top).clamp(min=p.eps).where(in_tail, 1.0)
    x = shortfall.log()
    plotting = (rank / (k.unsqueeze(-1) + 1).to(sim.dtype)).clamp(min=p.eps).where(used, 0.5)  # F_r
    y_w = plotting.log()
    y_g = (-y_w).log()
    w = used.to(sim.dtype)
    n = w.sum(dim=-1)
    beta, sse_w = _ols(x, y_w, w, n)
    gamma, sse_g = _ols(x, y_g, w, n)
    sse_w = sse_w + _SIGN_PENALTY * (beta <= 0).to(sim.dtype)
    sse_g = sse_g + _SIGN_PENALTY * (gamma >= 0).to(sim.dtype)
    delta = n * (sse_g / sse_w).log()
    rho = shortfall[..., 0]  # already floored at eps
    return TailFit(rho, beta, sse_w, gamma, sse_g, delta, n, n >= 2)


def _ols(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Slope and SSE of the least-squares line of y on x over the points with weight 1."""
    n1 = n.clamp(min=1).unsqueeze(-1)
    xm = (w * x).sum(dim=-1, keepdim=True) / n1
    ym = (w * y).sum(dim=-1, keepdim=True) / n1
    dx, dy = x - xm, y - ym
    slope = (w * dx * dy).sum(dim=-1) / (w * dx * dx).sum(dim=-1).clamp(min=_SSE_FLOOR)
    resid = dy - slope.unsqueeze(-1) * dx  # y - (intercept + slope x), intercept = ym - slope xm
    sse = (w * resid * resid).sum(dim=-1).clamp(min=_SSE_FLOOR)
    return slope, sse


def batch_pivot(rho: torch.Tensor, valid: torch.Tensor, q: float) -> torch.Tensor:
    """rho0: the element at index round(q (M - 1)) of the M valid anchors' sorted rho, (..., 1)."""
    m = valid.sum(dim=-1, keepdim=True)  # (..., 1)
    ordered = rho.masked_fill(~valid, float("inf")).sort(dim=-1).values
    # Rounded half to even, as Python's round() in the public code.
    index = (q * (m - 1).clamp(min=0).double()).round().long()
    return ordered.gather(-1, index)


def gates(fit: TailFit, rho0: torch.Tensor, p: WeinceParams) -> torch.Tensor:
    """lambda_i = sigmoid(kappa_rho (log rho0 - log rho_i)) sigmoid(kappa_A (Delta_i - m)); 0 where not valid."""
    lam_rho = (p.kappa_rho * (rho0.clamp(min=p.eps).log() - fit.rho.clamp(min=p.eps).log())).sigmoid()
    lam_aic = (p.kappa_aic * (fit.delta - p.aic_margin)).sigmoid()
    return (lam_rho * lam_aic).where(fit.valid, 0.0)


def blend(sim: torch.Tensor, lam: torch.Tensor, temperature: float, eps: float) -> torch.Tensor:
    """g = (1 - lambda) s / tau + lambda (-log(1 - min(s, 1 - eps))); lambda (..., A) per anchor."""
    weibit = -(-sim.clamp(max=1.0 - eps)).log1p()  # log1p: the accurate log(1 - s)
    lam = lam.unsqueeze(-1)
    return (1.0 - lam) * (sim / temperature) + lam * weibit


def top_m_cross_entropy(logits: torch.Tensor, sim: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor,
                        m: int) -> torch.Tensor:
    """Per anchor, the mean over its positives p of -log softmax over [p | its m hardest negatives].

    Returns (..., A); 0 for an anchor without positives (the loss averages over anchors
    that have some). The hardest negatives are those of largest similarity.
    """
    import torch

    m = min(m, sim.shape[-1])
    # The most negative finite value instead of -inf where an anchor has fewer than m
    # negatives: exp() of it is still 0, and no NaN gradient comes out of an all-masked row.
    floor = torch.finfo(logits.dtype).min
    hardest = sim.masked_fill(~neg, float("-inf")).topk(m, dim=-1).indices  # (..., A, m)
    top = logits.masked_fill(~neg, floor).gather(-1, hardest).logsumexp(dim=-1, keepdim=True)  # (..., A, 1)
    pair = torch.logaddexp(logits, top) - logits  # -log softmax of the positive over [p | top m]
    n_pos = pos.sum(dim=-1)
    return pair.where(pos, 0.0).sum(dim=-1) / n_pos.clamp(min=1)
