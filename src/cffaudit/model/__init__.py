"""The CFF Vision Transformer (see `vit.py`)."""

from cffaudit.model.vit import (
    Attention,
    Block,
    CFFViT,
    EnsembleLayerNorm,
    EnsembleLinear,
    Mlp,
    PatchEmbed,
    layer_representation,
)

__all__ = [
    "Attention",
    "Block",
    "CFFViT",
    "EnsembleLayerNorm",
    "EnsembleLinear",
    "Mlp",
    "PatchEmbed",
    "layer_representation",
]
