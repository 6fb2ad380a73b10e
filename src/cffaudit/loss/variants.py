"""The positive-pair margin variants: one class each, one registry, no torch import.

Everything about a variant lives here: its class (one hook), its registry name, and
whether its gradient depends on the margin values (``gradient_neutral``). The run
identity (``cffaudit.experiments.identity``) and the config (``cffaudit.config``) read
this module, and both must stay importable without torch (analysis code imports them),
so the hooks use only tensor methods; a hook that needs a ``torch`` function imports
torch inside itself.

To add a variant: write a subclass below with ``name``, ``gradient_neutral`` and one
overridden hook, and add it to ``MARGIN_VARIANTS``; ``--margin``, the config's choices
and the run identity follow from the registry. Test it against the loop reference in
``tests/loss/test_supcon.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import torch

#: How the row maximum that stabilises the softmax is taken: detached from the graph, or
#: differentiated through (the loss and its gradient are the same either way).
STABILITIES = ("detach", "direct")


class MarginVariant:
    """How the positive-pair margin enters the loss. Subclasses override one hook.

    Attributes:
        name: the registry name (``loss.margin``, ``--margin``).
        gradient_neutral: True when the loss gradient does not depend on the margin
            values, so runs that differ only in their margin schedule train the same
            model; the run identity then ignores the schedule.
    """

    name: ClassVar[str]
    gradient_neutral: ClassVar[bool]

    def similarities(self, sim: torch.Tensor, pos: torch.Tensor, margin: float) -> torch.Tensor:
        """Modify cosine similarities before they become logits (default: unchanged)."""
        return sim

    def log_probs(
        self, log_prob: torch.Tensor, pos: torch.Tensor, margin: float, temperature: float
    ) -> torch.Tensor:
        """Modify log-probabilities of positive pairs (default: unchanged)."""
        return log_prob


class NoMargin(MarginVariant):
    """Plain supervised contrastive loss."""

    name = "none"
    gradient_neutral = True


class ClampMargin(MarginVariant):
    """s'_ij = min(s_ij + m, 1) on positive pairs (the original CFF code's default).

    Written with ``masked_fill`` rather than ``clamp`` so that a saturated pair
    (s + m >= 1, the CAR definition) gets exactly zero gradient through its own logit,
    including at equality, where ``torch.clamp`` would pass the gradient.
    """

    name = "clamp"
    gradient_neutral = False

    def similarities(self, sim, pos, margin):
        shifted = sim + margin
        clamped = shifted.masked_fill(shifted >= 1.0, 1.0)
        return clamped.where(pos, sim)


class SubtractMargin(MarginVariant):
    """log p'_ij = log p_ij - m / tau on positive pairs (the paper's reference).

    The margin is expressed in logit units (m / tau), the shift a similarity margin m
    makes before saturation. Under the mean-over-positives reduction it adds the
    constant m / tau to every anchor's loss, so its gradient equals NoMargin's
    (Proposition 4.1); only the reported loss value differs.
    """

    name = "subtract"
    gradient_neutral = True

    def log_probs(self, log_prob, pos, margin, temperature):
        return (log_prob - margin / temperature).where(pos, log_prob)


#: name -> variant class, in the order the choices are listed to users.
MARGIN_VARIANTS: dict[str, type[MarginVariant]] = {
    cls.name: cls for cls in (ClampMargin, SubtractMargin, NoMargin)
}


def get_margin_variant(name: str) -> MarginVariant:
    """Look a margin variant up by name ("clamp", "subtract", "none")."""
    try:
        return MARGIN_VARIANTS[name]()
    except KeyError:
        raise ValueError(f"margin: unknown variant {name!r}; choose one of {sorted(MARGIN_VARIANTS)}") from None


def gradient_neutral_margins() -> tuple[str, ...]:
    """Names of the variants whose gradient does not depend on the margin values."""
    return tuple(name for name, cls in MARGIN_VARIANTS.items() if cls.gradient_neutral)
