"""Supervised contrastive loss of CFF with its margin variants (see `supcon.py`)."""

from cffaudit.loss.supcon import (
    MARGIN_VARIANTS,
    ClampMargin,
    LayerLoss,
    MarginVariant,
    NoMargin,
    SubtractMargin,
    get_margin_variant,
    supcon_loss,
)

__all__ = [
    "MARGIN_VARIANTS",
    "ClampMargin",
    "LayerLoss",
    "MarginVariant",
    "NoMargin",
    "SubtractMargin",
    "get_margin_variant",
    "supcon_loss",
]
