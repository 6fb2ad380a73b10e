"""Supervised contrastive loss of CFF with its margin variants, links and margin schedules.

``variants.py`` (the margin variants and their registry), ``links.py`` (the links from
similarities to logits, and their registry) and ``margins.py`` (the schedules and their
shapes) import no torch, because the config and the run identity read them; the
loss itself (``supcon.py``) is imported on first use, so ``import cffaudit.loss.variants``
stays torch-free.
"""

from __future__ import annotations

import importlib
from typing import Any

from cffaudit.loss.links import LINKS, Link, StandardLink, WeinceLink, WeinceParams, get_link
from cffaudit.loss.margins import MARGIN_SCHEDULES, MARGIN_SHAPES, layer_margins
from cffaudit.loss.variants import (
    MARGIN_VARIANTS,
    STABILITIES,
    ClampMargin,
    MarginVariant,
    NoMargin,
    SubtractMargin,
    get_margin_variant,
    gradient_neutral_margins,
)

_LAZY = {"LayerLoss": "cffaudit.loss.supcon", "supcon_loss": "cffaudit.loss.supcon"}


def __getattr__(name: str) -> Any:
    # PEP 562: the torch-backed names load when first asked for.
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LINKS",
    "Link",
    "MARGIN_SCHEDULES",
    "MARGIN_SHAPES",
    "MARGIN_VARIANTS",
    "STABILITIES",
    "ClampMargin",
    "LayerLoss",
    "MarginVariant",
    "NoMargin",
    "StandardLink",
    "SubtractMargin",
    "WeinceLink",
    "WeinceParams",
    "get_link",
    "get_margin_variant",
    "gradient_neutral_margins",
    "layer_margins",
    "supcon_loss",
]
